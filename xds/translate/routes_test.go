package translate

import (
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/nameresolution"
	outriggerv1alpha1 "github.com/outrigger/outrigger/xds/api/v1alpha1"
)

func TestEnvoyRetry(t *testing.T) {
	if envoyRetry(config.RetryPolicy{Policy: "constant", MaxRetries: 0}) != nil {
		t.Error("maxRetries 0 is no retry")
	}
	exp := envoyRetry(config.RetryPolicy{Policy: "exponential", MaxInterval: 15 * time.Second, MaxRetries: -1})
	if exp.GetNumRetries().GetValue() != unlimitedRetries ||
		exp.GetRetryBackOff().GetBaseInterval().AsDuration() != exponentialInitialInterval ||
		exp.GetRetryBackOff().GetMaxInterval().AsDuration() != 15*time.Second {
		t.Errorf("exponential, no limit: %v", exp)
	}
	if exp.GetRetryOn() != "reset,connect-failure,5xx,cancelled,deadline-exceeded,resource-exhausted,internal,unavailable" {
		t.Errorf("no matching retries every error: %q", exp.GetRetryOn())
	}
	c := envoyRetry(config.RetryPolicy{Policy: "constant", Duration: 0, MaxRetries: 2, HTTPStatusCodes: "429,500-502", GRPCStatusCodes: "2-4"})
	if b := c.GetRetryBackOff(); b.GetBaseInterval().AsDuration() != time.Millisecond || b.GetMaxInterval().AsDuration() != time.Millisecond {
		t.Errorf("a zero interval becomes the least grpc-go takes: %v", b)
	}
	if got := c.GetRetriableStatusCodes(); len(got) != 4 || got[0] != 429 || got[3] != 502 {
		t.Errorf("retriable status codes %v", got)
	}
	// Of 2-4 only 4 (DEADLINE_EXCEEDED) has a name in Envoy's retry_on.
	if c.GetRetryOn() != "reset,connect-failure,retriable-status-codes,deadline-exceeded" {
		t.Errorf("retry_on %q", c.GetRetryOn())
	}
}

// TestSidecarRoutes: the building-block routes carry their component, the
// invocation routes their app's policies; nodes that see the same
// documents share one view.
func TestSidecarRoutes(t *testing.T) {
	res, err := config.LoadResources([]string{"testdata/basic"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := Prepare(Input{Resources: res, Endpoints: []nameresolution.Instance{{AppID: "orders", Host: "10.0.0.1", Port: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	routes := func(node Node) map[string]*routev3.Route {
		snap, err := p.Snapshot(node, "1")
		if err != nil {
			t.Fatal(err)
		}
		rc := snap.GetResources(resourcev3.RouteType)[SidecarAPIName].(*routev3.RouteConfiguration)
		out := map[string]*routev3.Route{}
		for _, r := range rc.GetVirtualHosts()[0].GetRoutes() {
			out[r.GetMatch().GetPathSeparatedPrefix()] = r
		}
		return out
	}
	orders := routes(Node{AppID: "orders"})
	binding, err := ParseComponentRoute(orders["/v1.0/state/statestore"])
	if err != nil || binding.GetComponent() != "statestore" || binding.GetApi() != "state" || binding.GetResource() != "component/statestore" {
		t.Errorf("state route binding %v %v", binding, err)
	}
	if pol, err := ParseResiliency(orders["/v1.0/invoke/orders/method"]); err != nil || pol != nil {
		t.Errorf("orders has no resiliency (scoped to payments): %v %v", pol, err)
	}
	payments := routes(Node{AppID: "payments"})
	if _, ok := payments["/v1.0/state/statestore"]; ok {
		t.Error("payments must not see the statestore route (scoped to orders)")
	}
	pol, err := ParseResiliency(payments["/v1.0/invoke/orders/method"])
	if err != nil || pol.GetTimeout().AsDuration() != 2*time.Second || pol.GetRetry().GetMaxRetries() != 3 ||
		pol.GetRetry().GetBackoff() != outriggerv1alpha1.Retry_CONSTANT || pol.GetCircuitBreaker().GetTrip() != "consecutiveFailures > 3" ||
		pol.GetCircuitBreaker().GetCacheSize() != 50 {
		t.Errorf("payments' policy for orders: %v %v", pol, err)
	}
	if a := payments["/v1.0/invoke/orders/method"].GetRoute(); a.GetTimeout().AsDuration() != 2*time.Second || a.GetRetryPolicy().GetNumRetries().GetValue() != 3 {
		t.Errorf("Envoy's fields: %v", a)
	}
	prod := routes(Node{AppID: "orders", Namespace: "prod"})
	if _, ok := prod["/v1.0/invoke/orders/method"]; ok {
		t.Error("a bare app-id reaches the caller's namespace only")
	}
	if r, ok := prod["/v1.0/invoke/orders.default/method"]; !ok || r.GetRoute().GetCluster() != "outrigger/default/orders" {
		t.Errorf("the namespaced form reaches any namespace: %v", r)
	}
	if len(p.views) != 3 {
		t.Errorf("%d views for three distinct nodes", len(p.views))
	}
	routes(Node{AppID: "checkout"}) // sees what every unscoped node sees
	routes(Node{AppID: "shipping"})
	if len(p.views) != 4 {
		t.Errorf("%d views: nodes that see the same documents must share one", len(p.views))
	}
	a, err := p.Snapshot(Node{AppID: "checkout"}, "7")
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Snapshot(Node{AppID: "shipping"}, "8")
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Error("nodes that see the same documents must share one snapshot")
	}
}

func TestBadResiliencyIsATranslationError(t *testing.T) {
	res := &config.Resources{Resiliencies: []config.Document{{Name: "r", JSON: []byte(`{"spec":{"targets":{"apps":{"a":{"retry":"none"}}}}}`)}}}
	if _, err := Prepare(Input{Resources: res}); err == nil || !strings.Contains(err.Error(), `no retry policy "none"`) {
		t.Errorf("got %v", err)
	}
}

func TestRouteTable(t *testing.T) {
	res, err := config.LoadResources([]string{"testdata/basic"})
	if err != nil {
		t.Fatal(err)
	}
	// Without a control plane and without endpoints, the Resiliency's
	// targets still get their routes.
	rc, err := LocalRoutes(res, Node{AppID: "payments"})
	if err != nil {
		t.Fatal(err)
	}
	rt, err := NewRoutes(rc)
	if err != nil {
		t.Fatal(err)
	}
	var table *RouteTable
	if table.InvokeTimeout("orders", "") != 0 {
		t.Error("a nil table has no timeouts")
	}
	table = &RouteTable{}
	if table.InvokeTimeout("orders", "") != 0 {
		t.Error("an empty table has no timeouts")
	}
	table.Set(rt)
	if got := table.InvokeTimeout("orders", ""); got != 2*time.Second {
		t.Errorf("orders: %v, want the policy's 2s", got)
	}
	if got := table.InvokeTimeout("orders", "prod"); got != 0 {
		t.Errorf("orders in prod is another app: %v", got)
	}
	if c, ok := rt.Component("vault"); !ok || c.GetApi() != "secrets" {
		t.Errorf("vault's binding: %v", c)
	}
	// A route whose payload does not decode is refused.
	bad := &routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{{Routes: []*routev3.Route{{
		Name:                 "secrets/x",
		Action:               &routev3.Route_NonForwardingAction{NonForwardingAction: &routev3.NonForwardingAction{}},
		TypedPerFilterConfig: map[string]*anypb.Any{ComponentFilterKey: {TypeUrl: "type.googleapis.com/outrigger.v1alpha1.ComponentRoute", Value: []byte{0xff}}},
	}}}}}
	if _, err := NewRoutes(bad); err == nil || !strings.Contains(err.Error(), "secrets/x") {
		t.Errorf("an undecodable binding: %v", err)
	}
}
