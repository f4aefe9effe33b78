package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/outrigger/outrigger/mtls"
	"github.com/outrigger/outrigger/mtls/ca"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type testPlane struct {
	authority *ca.Authority
	server    *Server
	addr      string
	metrics   *prometheus.Registry
}

func startPlane(t *testing.T, resources string) *testPlane {
	t.Helper()
	a, err := ca.New(ca.Options{DataDir: t.TempDir(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	metrics := prometheus.NewPedanticRegistry()
	s := New(Options{
		ResourcesPaths: []string{resources},
		TrustAnchors:   func() []byte { return mtls.CertsPEM(a.Bundle().X509Authorities()) },
		Verify:         func(cs tls.ConnectionState) (mtls.Identity, error) { return mtls.VerifyPeer(cs, a, nil) },
		Registerer:     metrics,
		Logger:         quiet,
	})
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(a.ServerTLSConfig("default"))))
	s.Register(g)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	go func() { _ = g.Serve(l) }()
	t.Cleanup(func() { g.Stop(); cancel(); <-done })
	return &testPlane{authority: a, server: s, addr: l.Addr().String(), metrics: metrics}
}

// dial connects with a certificate for app.
func (p *testPlane) dial(t *testing.T, app string) discoverygrpc.AggregatedDiscoveryService_StreamAggregatedResourcesClient {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	id, _ := mtls.NewIdentity("", "", app)
	chain, err := p.authority.Sign(csr, id)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{PrivateKey: key}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	cfg := &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12} //nolint:gosec // the test client trusts its own server
	conn, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	s, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestOwnNodeOnlyAndNACKs(t *testing.T) {
	dir := t.TempDir()
	comp := "kind: Component\nmetadata:\n  name: vault\nspec:\n  type: secretstores.local.env\n  version: v1\n"
	if err := os.WriteFile(filepath.Join(dir, "c.yaml"), []byte(comp), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startPlane(t, dir)

	// Asking for another app's node ends the stream.
	s := p.dial(t, "orders")
	if err := s.Send(&discoverygrpc.DiscoveryRequest{Node: &corev3.Node{Id: "spiffe://public/ns/default/payments"}, TypeUrl: resourcev3.ExtensionConfigType}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err == nil || !strings.Contains(err.Error(), "own node") {
		t.Errorf("another node's request: %v", err)
	}

	// Its own node gets its components, and a NACK is counted.
	s = p.dial(t, "orders")
	node := &corev3.Node{Id: "spiffe://public/ns/default/orders"}
	if err := s.Send(&discoverygrpc.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ExtensionConfigType}); err != nil {
		t.Fatal(err)
	}
	resp, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(resp.GetResources()); n != 1 {
		t.Fatalf("%d resources, want the one component", n)
	}
	if err := s.Send(&discoverygrpc.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ExtensionConfigType, ResponseNonce: resp.GetNonce(),
		ErrorDetail: &rpcstatus.Status{Code: 3, Message: "cannot load vault"}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for testutil.ToFloat64(p.server.nacks.WithLabelValues(resourcev3.ExtensionConfigType)) < 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := testutil.ToFloat64(p.server.nacks.WithLabelValues(resourcev3.ExtensionConfigType)); got != 1 {
		t.Errorf("NACKs counted: %v", got)
	}
}
