package client_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"testing"
	"time"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/mtls/ca"
	"github.com/outrigger/outrigger/xds/client"
)

// burstADS answers every delta stream with a burst of responses, as the
// control plane does when a sidecar starts (components, routes, clusters and
// endpoints at once), and then holds the stream open.
type burstADS struct {
	discoverygrpc.UnimplementedAggregatedDiscoveryServiceServer
	n int
}

func (b burstADS) DeltaAggregatedResources(s discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	if _, err := s.Recv(); err != nil {
		return err
	}
	go func() { // drain the ACKs
		for {
			if _, err := s.Recv(); err != nil {
				return
			}
		}
	}()
	for i := range b.n {
		resp := &discoverygrpc.DeltaDiscoveryResponse{
			TypeUrl:           resourcev3.ExtensionConfigType,
			SystemVersionInfo: fmt.Sprint(i),
			Nonce:             fmt.Sprint(i),
		}
		if err := s.Send(resp); err != nil {
			return err
		}
	}
	<-s.Context().Done()
	return nil
}

// TestRunStopsWithResponsesInFlight: a client stopped while responses are
// still arriving returns. It once waited forever when the stop came
// between a response's arrival and its hand-over to the apply loop (the
// reading goroutine left without a word); `outrigger run` with an app that
// exits at once hit it.
func TestRunStopsWithResponsesInFlight(t *testing.T) {
	a, err := ca.New(ca.Options{DataDir: t.TempDir(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(a.ServerTLSConfig("default"))))
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(g, burstADS{n: 200})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(l) }()
	t.Cleanup(g.Stop)

	for i := range 50 {
		ctx, cancel := context.WithCancel(t.Context())
		c := client.New(client.Options{
			Address: l.Addr().String(),
			Node:    "spiffe://public/ns/default/orders",
			TLS: func() *tls.Config {
				return &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12} //nolint:gosec // the test trusts its own server
			},
			// The stop comes with the first update, the rest of the
			// burst still on its way.
			Apply:  func(*config.Resources) error { cancel(); return nil },
			Logger: quiet,
		})
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx, nil) }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run %d: %v", i, err)
			}
		case <-time.After(30 * time.Second):
			cancel()
			t.Fatalf("run %d: the client had not returned 30 s after it was stopped", i)
		}
	}
}
