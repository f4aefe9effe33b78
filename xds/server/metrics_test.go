package server

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
)

// TestMetricsPushesNACKsStreams: each response sent counts by type, a
// NACK counts by type (an unknown type under "_other"), and the gauge
// follows the open streams.
func TestMetricsPushesNACKsStreams(t *testing.T) {
	dir := t.TempDir()
	comp := "kind: Component\nmetadata:\n  name: vault\nspec:\n  type: secretstores.local.env\n  version: v1\n"
	if err := os.WriteFile(filepath.Join(dir, "c.yaml"), []byte(comp), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startPlane(t, dir)
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("waited 30s for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	streams := func() float64 {
		families, err := p.metrics.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			if f.GetName() == "outrigger_xds_server_connected_streams" {
				return f.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatal("no outrigger_xds_server_connected_streams")
		return 0
	}

	s := p.dial(t, "orders")
	node := &corev3.Node{Id: "spiffe://public/ns/default/orders"}
	if err := s.Send(&discoverygrpc.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ExtensionConfigType}); err != nil {
		t.Fatal(err)
	}
	resp, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if got := streams(); got != 1 {
		t.Errorf("connected streams %v, want 1", got)
	}
	pushes := p.server.typePushes.WithLabelValues(resourcev3.ExtensionConfigType)
	if got := testutil.ToFloat64(pushes); got != 1 {
		t.Errorf("pushes of %s: %v, want 1", resourcev3.ExtensionConfigType, got)
	}
	if err := s.Send(&discoverygrpc.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ExtensionConfigType, ResponseNonce: resp.GetNonce(),
		ErrorDetail: &rpcstatus.Status{Code: 3, Message: "cannot load vault"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&discoverygrpc.DiscoveryRequest{Node: node, TypeUrl: "type.example.com/made.up", ResponseNonce: "1",
		ErrorDetail: &rpcstatus.Status{Code: 3, Message: "whatever"}}); err != nil {
		t.Fatal(err)
	}
	nacks := p.server.typeNACKs
	wait("the NACKs to be counted", func() bool {
		return testutil.ToFloat64(nacks.WithLabelValues(resourcev3.ExtensionConfigType)) == 1 && testutil.ToFloat64(nacks.WithLabelValues("_other")) == 1
	})
	// The cache answers the NACK with the same snapshot: a second push.
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(pushes); got != 2 {
		t.Errorf("pushes of %s after the NACK: %v, want 2", resourcev3.ExtensionConfigType, got)
	}
	if n := testutil.CollectAndCount(nacks); n != 2 {
		t.Errorf("%d NACK series, want 2", n)
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	wait("the stream to close", func() bool { return streams() == 0 })
	if n, err := testutil.GatherAndCount(p.metrics, "outrigger_xds_server_pushes_total"); err != nil || n != 1 {
		t.Errorf("push series %d (%v), want 1", n, err)
	}
}
