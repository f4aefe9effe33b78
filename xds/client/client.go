// Package client is the sidecar's xDS client: one ADS stream (state of the
// world) to the control plane over mutual TLS, subscribed to the sidecar's
// extension configs (components and documents) and the trust bundle. Each
// response is applied; an ACK follows a change that applied, a NACK with
// the reason one that did not, and the sidecar keeps serving its last good
// configuration. When the control plane goes away the client reconnects
// with backoff while the sidecar serves on.
package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/xds/translate"
)

// Options configure the client.
type Options struct {
	// Address is the control plane's host:port.
	Address string
	// Node is this sidecar's node id: its SPIFFE ID.
	Node string
	// TLS is the connection's TLS (the sidecar's certificate, the control
	// plane's identity checked). Required.
	TLS func() *tls.Config
	// Apply applies the sidecar's resources; an error NACKs them.
	Apply func(*config.Resources) error
	// Applied, when set, learns of every ACK (version) and NACK (error).
	Applied func(version string, err error)
	Logger  *slog.Logger
}

// Run keeps the ADS stream up until ctx is done. Ready (if not nil) is
// closed after the first response was applied or refused.
func Run(ctx context.Context, o Options, ready chan<- struct{}) error {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	backoff := 100 * time.Millisecond
	first := true
	for ctx.Err() == nil {
		got, err := stream(ctx, o, func() {
			if first && ready != nil {
				close(ready)
			}
			first = false
		})
		if ctx.Err() != nil {
			return nil
		}
		if got {
			backoff = 100 * time.Millisecond
		}
		o.Logger.Warn("xDS stream to the control plane ended; serving the last good configuration and reconnecting", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
	return nil
}

// stream runs one ADS stream; got says whether any response arrived.
func stream(ctx context.Context, o Options, onResponse func()) (got bool, err error) {
	conn, err := grpc.NewClient(o.Address, grpc.WithTransportCredentials(credentials.NewTLS(o.TLS())))
	if err != nil {
		return false, err
	}
	defer conn.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ads, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(sctx)
	if err != nil {
		return false, err
	}
	node := &corev3.Node{Id: o.Node, UserAgentName: "outrigger"}
	if err := ads.Send(&discoverygrpc.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ExtensionConfigType}); err != nil {
		return false, err
	}
	for {
		resp, err := ads.Recv()
		if err != nil {
			if status.Code(err) == codes.Canceled && ctx.Err() != nil {
				return got, nil
			}
			return got, err
		}
		got = true
		ack := &discoverygrpc.DiscoveryRequest{Node: node, TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce(), VersionInfo: resp.GetVersionInfo()}
		applyErr := apply(o, resp)
		if applyErr != nil {
			o.Logger.Error("configuration from the control plane refused (NACK); keeping the last good one", "version", resp.GetVersionInfo(), "err", applyErr)
			ack.ErrorDetail = &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: applyErr.Error()}
			ack.VersionInfo = "" // the last version that applied; none is tracked per type yet
		}
		if o.Applied != nil {
			o.Applied(resp.GetVersionInfo(), applyErr)
		}
		onResponse()
		if err := ads.Send(ack); err != nil {
			return got, err
		}
	}
}

func apply(o Options, resp *discoverygrpc.DiscoveryResponse) error {
	if resp.GetTypeUrl() != resourcev3.ExtensionConfigType {
		return fmt.Errorf("unexpected type %q", resp.GetTypeUrl())
	}
	configs := make([]*corev3.TypedExtensionConfig, 0, len(resp.GetResources()))
	for _, a := range resp.GetResources() {
		var ec corev3.TypedExtensionConfig
		if err := a.UnmarshalTo(&ec); err != nil {
			return fmt.Errorf("a resource is not a TypedExtensionConfig: %w", err)
		}
		configs = append(configs, &ec)
	}
	res, err := translate.FromExtensionConfigs(configs)
	if err != nil {
		return err
	}
	if o.Apply == nil {
		return errors.New("nothing applies the configuration")
	}
	return o.Apply(res)
}
