package client_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/mtls"
	"github.com/outrigger/outrigger/mtls/ca"
	"github.com/outrigger/outrigger/xds/client"
	"github.com/outrigger/outrigger/xds/server"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestMetricsACKsAndNACKs: against the control plane's own xDS server, an
// update the sidecar refuses counts as a nack and the next one, which it
// applies, as an ack, by type.
func TestMetricsACKsAndNACKs(t *testing.T) {
	dir := t.TempDir()
	comp := "kind: Component\nmetadata:\n  name: vault\nspec:\n  type: secretstores.local.env\n  version: v1\n"
	if err := os.WriteFile(filepath.Join(dir, "c.yaml"), []byte(comp), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := ca.New(ca.Options{DataDir: t.TempDir(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(server.Options{
		ResourcesPaths: []string{dir},
		TrustAnchors:   func() []byte { return mtls.CertsPEM(a.Bundle().X509Authorities()) },
		Verify:         func(cs tls.ConnectionState) (mtls.Identity, error) { return mtls.VerifyPeer(cs, a, nil) },
		Logger:         quiet,
	})
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(a.ServerTLSConfig("default"))))
	srv.Register(g)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	runDone := make(chan struct{})
	go func() { _ = srv.Run(ctx); close(runDone) }()
	go func() { _ = g.Serve(l) }()
	t.Cleanup(func() { g.Stop(); cancel(); <-runDone })

	id, _ := mtls.NewIdentity("", "", "orders")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	chain, err := a.Sign(csr, id)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{PrivateKey: key}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}

	m := client.NewMetrics("orders")
	var applies atomic.Int32
	c := client.New(client.Options{
		Address: l.Addr().String(),
		Node:    id.String(),
		TLS: func() *tls.Config {
			return &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12} //nolint:gosec // the test trusts its own server
		},
		Apply: func(*config.Resources) error {
			if applies.Add(1) == 1 {
				return errors.New("not this one")
			}
			return nil
		},
		Logger:  quiet,
		Metrics: m,
	})
	clientDone := make(chan struct{})
	go func() { _ = c.Run(ctx, nil); close(clientDone) }()
	t.Cleanup(func() { cancel(); <-clientDone })

	waitApplies := func(n int32) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for applies.Load() < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d updates applied or refused in 30s, want %d", applies.Load(), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitApplies(1)
	// A change of the resources is the next update.
	if err := os.WriteFile(filepath.Join(dir, "d.yaml"), []byte(strings.ReplaceAll(comp, "vault", "vault2")), 0o600); err != nil {
		t.Fatal(err)
	}
	waitApplies(2)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)
	// The count follows Apply's return.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if n, _ := testutil.GatherAndCount(reg); n == 2 {
			break
		}
	}
	want := `# HELP outrigger_xds_client_updates_total Configuration updates from the control plane, by type and result: ack (applied) or nack (refused; the last good one serves on).
# TYPE outrigger_xds_client_updates_total counter
outrigger_xds_client_updates_total{app_id="orders",result="ack",type_url="type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"} 1
outrigger_xds_client_updates_total{app_id="orders",result="nack",type_url="type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}
