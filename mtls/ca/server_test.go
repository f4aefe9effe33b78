package ca

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	sentryv1pb "github.com/dapr/dapr/pkg/proto/sentry/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/outrigger/outrigger/mtls"
	"github.com/outrigger/outrigger/mtls/svid"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// startCA serves the Sentry API of a fresh authority over TLS on loopback.
func startCA(t *testing.T, opts Options, dev bool) (*Authority, *Server, string) {
	t.Helper()
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	opts.Logger = quiet
	a, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(a, ServerOptions{Dev: dev, Registerer: prometheus.NewRegistry(), Logger: quiet})
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(a.ServerTLSConfig("default"))))
	srv.Register(g)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(l) }()
	t.Cleanup(g.Stop)
	return a, srv, l.Addr().String()
}

func newManager(t *testing.T, a *Authority, addr, app string, token func() (string, error)) *svid.Manager {
	t.Helper()
	m, err := svid.New(svid.Options{
		Identity:     mustIdentity(t, a.TrustDomain().Name(), "default", app),
		CAAddress:    addr,
		TrustAnchors: a.Bundle().X509Authorities(),
		Token:        token,
		Logger:       quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSidecarGetsAndRenewsItsCertificate(t *testing.T) {
	a, srv, addr := startCA(t, Options{WorkloadCertTTL: time.Hour}, false)
	tok, err := a.MintToken("orders", "default", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	m := newManager(t, a, addr, "orders", func() (string, error) { return tok, nil })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	go m.Run(ctx)
	first, err := m.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	if first.ID.String() != "spiffe://public/ns/default/orders" {
		t.Errorf("id %s", first.ID)
	}
	changed := m.Changed()
	if err := m.Renew(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	default:
		t.Error("Changed was not closed by a renewal")
	}
	second, _ := m.GetX509SVID()
	if second == first || second.Certificates[0].SerialNumber.Cmp(first.Certificates[0].SerialNumber) == 0 {
		t.Error("renewal kept the old certificate")
	}
	if got := testutil.ToFloat64(srv.signed); got != 2 {
		t.Errorf("signed %v certificates, want 2", got)
	}

}

func TestRenewalByCertificateAlone(t *testing.T) {
	a, _, addr := startCA(t, Options{}, false)
	tok, _ := a.MintToken("cart", "default", time.Hour)
	useToken := true
	m := newManager(t, a, addr, "cart", func() (string, error) {
		if useToken {
			return tok, nil
		}
		return "", nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	go m.Run(ctx)
	useToken = false
	if err := m.Renew(ctx); err != nil {
		t.Fatalf("renewal with the current certificate and no token: %v", err)
	}
}

func signWith(t *testing.T, addr string, a *Authority, req *sentryv1pb.SignCertificateRequest) error {
	t.Helper()
	cfg := &tls.Config{
		InsecureSkipVerify: true, // this test client checks nothing; it only sends requests
		MinVersion:         tls.VersionTLS12,
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = sentryv1pb.NewCAClient(conn).SignCertificate(ctx, req)
	return err
}

func pemCSR(t *testing.T) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: newCSR(t)})
}

func TestServerRefusesUnprovenIdentities(t *testing.T) {
	a, srv, addr := startCA(t, Options{}, false)
	other, _ := New(Options{DataDir: t.TempDir(), Logger: quiet})
	tokOrders, _ := a.MintToken("orders", "default", time.Hour)
	tokForeign, _ := other.MintToken("cart", "default", time.Hour)
	csr := pemCSR(t)
	cases := []struct {
		name string
		req  *sentryv1pb.SignCertificateRequest
		code codes.Code
		msg  string
	}{
		{"no proof", &sentryv1pb.SignCertificateRequest{Id: "cart", CertificateSigningRequest: csr}, codes.PermissionDenied, "join token"},
		{"someone else's token", &sentryv1pb.SignCertificateRequest{Id: "cart", Token: tokOrders, CertificateSigningRequest: csr}, codes.PermissionDenied, `app-id "orders"`},
		{"another CA's token", &sentryv1pb.SignCertificateRequest{Id: "cart", Token: tokForeign, CertificateSigningRequest: csr}, codes.PermissionDenied, "bad signature"},
		{"other namespace", &sentryv1pb.SignCertificateRequest{Id: "orders", Namespace: "prod", Token: tokOrders, CertificateSigningRequest: csr}, codes.PermissionDenied, "namespace"},
		{"control plane identity", &sentryv1pb.SignCertificateRequest{Id: mtls.ControlPlaneName, Token: tokOrders, CertificateSigningRequest: csr}, codes.PermissionDenied, "control plane"},
		{"other trust domain", &sentryv1pb.SignCertificateRequest{Id: "orders", TrustDomain: "evil.org", Token: tokOrders, CertificateSigningRequest: csr}, codes.PermissionDenied, "trust domain"},
		{"malformed CSR", &sentryv1pb.SignCertificateRequest{Id: "orders", Token: tokOrders, CertificateSigningRequest: []byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")}, codes.InvalidArgument, "certificate signing request"},
		{"no CSR", &sentryv1pb.SignCertificateRequest{Id: "orders", Token: tokOrders}, codes.InvalidArgument, "certificate_signing_request"},
		{"bad app-id", &sentryv1pb.SignCertificateRequest{Id: "a/b", Token: tokOrders, CertificateSigningRequest: csr}, codes.InvalidArgument, "app-id"},
		{"kubernetes token", &sentryv1pb.SignCertificateRequest{Id: "orders", Token: "x", TokenValidator: sentryv1pb.SignCertificateRequest_KUBERNETES, CertificateSigningRequest: csr}, codes.PermissionDenied, "Kubernetes"},
	}
	for _, c := range cases {
		err := signWith(t, addr, a, c.req)
		st := status.Convert(err)
		if st.Code() != c.code || !strings.Contains(st.Message(), c.msg) {
			t.Errorf("%s: got %v %q, want %v containing %q", c.name, st.Code(), st.Message(), c.code, c.msg)
		}
	}
	if got := testutil.ToFloat64(srv.signed); got != 0 {
		t.Errorf("signed %v certificates", got)
	}
	if got := testutil.ToFloat64(srv.failed.WithLabelValues("unproven_identity")); got < 4 {
		t.Errorf("unproven_identity refusals counted %v", got)
	}
	// The right token works on the same server.
	if err := signWith(t, addr, a, &sentryv1pb.SignCertificateRequest{Id: "orders", Token: tokOrders, CertificateSigningRequest: csr}); err != nil {
		t.Errorf("a valid request: %v", err)
	}
}

func TestDevSignsLoopbackWithoutToken(t *testing.T) {
	a, _, addr := startCA(t, Options{}, true)
	if err := signWith(t, addr, a, &sentryv1pb.SignCertificateRequest{Id: "orders", CertificateSigningRequest: pemCSR(t)}); err != nil {
		t.Errorf("dev over loopback: %v", err)
	}
}

func TestSidecarRefusesAForeignCA(t *testing.T) {
	_, _, addr := startCA(t, Options{}, true)
	impostor, _ := New(Options{DataDir: t.TempDir(), Logger: quiet})
	m, err := svid.New(svid.Options{
		Identity:     mustIdentity(t, "", "", "orders"),
		CAAddress:    addr,
		TrustAnchors: impostor.Bundle().X509Authorities(),
		Logger:       quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := m.Start(ctx); err == nil {
		t.Error("a sidecar trusted a CA outside its trust anchors")
	}
}

func TestSetTrustAnchorsFollowsRotation(t *testing.T) {
	a, _, addr := startCA(t, Options{}, true)
	m := newManager(t, a, addr, "orders", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.RotateRoot(); err != nil {
		t.Fatal(err)
	}
	changed := m.Changed()
	if err := m.SetTrustAnchors(a.Bundle().X509Authorities()); err != nil {
		t.Fatalf("the rotated bundle: %v", err)
	}
	select {
	case <-changed:
	default:
		t.Error("Changed was not closed by a new bundle")
	}
	_, bundle, _ := m.X509SVID()
	if n := len(bundle.X509Authorities()); n != 2 {
		t.Errorf("bundle has %d anchors, want old and new", n)
	}
	foreign, _ := New(Options{DataDir: t.TempDir(), Logger: quiet})
	if err := m.SetTrustAnchors(foreign.Bundle().X509Authorities()); err == nil {
		t.Error("took a bundle that does not verify the sidecar's own certificate")
	}
}
