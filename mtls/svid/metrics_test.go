package svid_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/outrigger/outrigger/mtls"
	"github.com/outrigger/outrigger/mtls/ca"
	"github.com/outrigger/outrigger/mtls/svid"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// startCA serves a fresh authority's Sentry API on loopback; stop ends it.
func startCA(t *testing.T) (a *ca.Authority, addr string, stop func()) {
	t.Helper()
	a, err := ca.New(ca.Options{DataDir: t.TempDir(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(a.ServerTLSConfig("default"))))
	ca.NewServer(a, ca.ServerOptions{Registerer: prometheus.NewRegistry(), Logger: quiet}).Register(g)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(l) }()
	t.Cleanup(g.Stop)
	return a, l.Addr().String(), g.Stop
}

func newManager(t *testing.T, a *ca.Authority, addr, token string, m *svid.Metrics) *svid.Manager {
	t.Helper()
	id, err := mtls.NewIdentity(a.TrustDomain().Name(), "default", "orders")
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := svid.New(svid.Options{
		Identity: id, CAAddress: addr, TrustAnchors: a.Bundle().X509Authorities(),
		Token: func() (string, error) { return token, nil }, Logger: quiet, Metrics: m,
	})
	if err != nil {
		t.Fatal(err)
	}
	return mgr
}

// TestMetricsInitAndRotation: the first certificate counts as daprd's mTLS
// init, each renewal as a rotation, a renewal the authority cannot answer
// as a failed rotation (sentry_conn), a start the authority refuses as a
// failed init (sign); the expiry gauge follows the current certificate.
func TestMetricsInitAndRotation(t *testing.T) {
	a, addr, stopCA := startCA(t)
	tok, err := a.MintToken("orders", "default", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	m := svid.NewMetrics("orders")
	mgr := newManager(t, a, addr, tok, m)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := mgr.Start(ctx); err != nil {
		t.Fatal(err)
	}
	runCtx, stopRun := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { mgr.Run(runCtx); close(done) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopRun()
			<-done
			stopped = true
		}
	}
	defer stop()
	for range 2 {
		if err := mgr.Renew(ctx); err != nil {
			t.Fatal(err)
		}
	}
	cur, err := mgr.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	notAfter := cur.Certificates[0].NotAfter.Unix()
	stopCA()
	rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
	defer rcancel()
	if err := mgr.Renew(rctx); err == nil {
		t.Fatal("a renewal with the authority gone succeeded")
	}
	stop() // before Run tries again

	a2, addr2, _ := startCA(t)
	refused := newManager(t, a2, addr2, "not-a-token", m)
	if err := refused.Start(ctx); err == nil {
		t.Fatal("a start with a bad token succeeded")
	}

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)
	want := `# HELP dapr_runtime_mtls_init_fail_total The number of mTLS authenticator init failures.
# TYPE dapr_runtime_mtls_init_fail_total counter
dapr_runtime_mtls_init_fail_total{app_id="orders",reason="sign"} 1
# HELP dapr_runtime_mtls_init_total The number of successful mTLS authenticator initialization.
# TYPE dapr_runtime_mtls_init_total counter
dapr_runtime_mtls_init_total{app_id="orders"} 1
# HELP dapr_runtime_mtls_workload_cert_rotated_fail_total The number of the failed workload certificate rotations.
# TYPE dapr_runtime_mtls_workload_cert_rotated_fail_total counter
dapr_runtime_mtls_workload_cert_rotated_fail_total{app_id="orders",reason="sentry_conn"} 1
# HELP dapr_runtime_mtls_workload_cert_rotated_total The number of the successful workload certificate rotations.
# TYPE dapr_runtime_mtls_workload_cert_rotated_total counter
dapr_runtime_mtls_workload_cert_rotated_total{app_id="orders"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"dapr_runtime_mtls_init_total", "dapr_runtime_mtls_init_fail_total",
		"dapr_runtime_mtls_workload_cert_rotated_total", "dapr_runtime_mtls_workload_cert_rotated_fail_total"); err != nil {
		t.Error(err)
	}
	if got := expiry(t, reg); got != float64(notAfter) {
		t.Errorf("expiry gauge %v, want the certificate's NotAfter %d", got, notAfter)
	}
}

// expiry is the value of the expiry gauge's one series, of app orders.
func expiry(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "outrigger_mtls_workload_cert_expiry_timestamp_seconds" {
			if len(f.GetMetric()) != 1 || f.GetMetric()[0].GetLabel()[0].GetValue() != "orders" {
				t.Fatalf("expiry series: %v", f.GetMetric())
			}
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("no outrigger_mtls_workload_cert_expiry_timestamp_seconds")
	return 0
}
