package translate

import (
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/nameresolution"
)

// defaultsComponents are a state store and a pub/sub with no targets of
// their own, and one with a target.
const defaultsComponents = `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: cache
spec:
  type: state.in-memory
  version: v1
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: bus
spec:
  type: pubsub.in-memory
  version: v1
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: named
spec:
  type: state.in-memory
  version: v1
`

// defaultsDoc holds only default policies; targetsDoc, a later document,
// only targets.
const defaultsDoc = `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: a-defaults
spec:
  policies:
    timeouts:
      DefaultTimeoutPolicy: 4s
      DefaultComponentOutboundTimeoutPolicy: 6s
    retries:
      DefaultAppRetryPolicy: {policy: constant, duration: 100ms, maxRetries: 3}
      DefaultRetryPolicy: {policy: constant, duration: 1s, maxRetries: 9}
      DefaultStatestoreComponentOutboundRetryPolicy: {policy: constant, duration: 50ms, maxRetries: 2}
    circuitBreakers:
      DefaultComponentCircuitBreakerPolicy: {trip: consecutiveFailures > 4}
`

const targetsDoc = `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: b-targets
spec:
  policies:
    retries:
      once: {policy: constant, duration: 10ms, maxRetries: 1}
  targets:
    apps:
      payments: {timeout: 3s}
    components:
      named:
        inbound: {retry: once}
`

func defaultsResources(t *testing.T, docs ...string) *config.Resources {
	t.Helper()
	res := &config.Resources{}
	for i, text := range append([]string{defaultsComponents}, docs...) {
		r, err := config.ParseResources("doc"+string(rune('0'+i))+".yaml", []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		res.Append(r)
	}
	return res
}

// TestDefaultPolicies: where no target sets a policy, Dapr's default
// policies ride on the routes: on an app's own route, on the catch-all
// invocation route for apps without one, and on building-block routes.
func TestDefaultPolicies(t *testing.T) {
	rc, err := LocalRoutes(defaultsResources(t, targetsDoc, defaultsDoc), Node{AppID: "caller"})
	if err != nil {
		t.Fatal(err)
	}
	rt, err := NewRoutes(rc)
	if err != nil {
		t.Fatal(err)
	}
	table := &RouteTable{}
	table.Set(rt)

	type want struct {
		timeout    time.Duration
		retry      string
		maxRetries int32
		breaker    string
		source     string
	}
	for _, tc := range []struct {
		name string
		app  string // an invocation, or
		comp string // a component's outbound calls
		ns   string
		want want
	}{
		{name: "a target in one document beats defaults in another, which fill in nothing it leaves out", app: "payments",
			want: want{timeout: 3 * time.Second, source: "resiliency/b-targets"}},
		{name: "an app without a target takes the most specific defaults", app: "other",
			want: want{timeout: 4 * time.Second, retry: "DefaultAppRetryPolicy", maxRetries: 3, source: "resiliency/a-defaults"}},
		{name: "in any namespace", app: "other", ns: "prod",
			want: want{timeout: 4 * time.Second, retry: "DefaultAppRetryPolicy", maxRetries: 3, source: "resiliency/a-defaults"}},
		{name: "a state store: its kind's retry, the direction's timeout, the components' breaker", comp: "cache",
			want: want{timeout: 6 * time.Second, retry: "DefaultStatestoreComponentOutboundRetryPolicy", maxRetries: 2, breaker: "DefaultComponentCircuitBreakerPolicy", source: "resiliency/a-defaults"}},
		{name: "a pub/sub: the state store's retry is not its", comp: "bus",
			want: want{timeout: 6 * time.Second, retry: "DefaultRetryPolicy", maxRetries: 9, breaker: "DefaultComponentCircuitBreakerPolicy", source: "resiliency/a-defaults"}},
		{name: "a component named only for inbound takes no outbound defaults", comp: "named"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pol := rt.ComponentResiliency(tc.comp)
			if tc.app != "" {
				pol = table.InvokeResiliency(tc.app, tc.ns)
				if got := table.InvokeTimeout(tc.app, tc.ns); got != tc.want.timeout {
					t.Errorf("InvokeTimeout %v, want %v", got, tc.want.timeout)
				}
			}
			got := want{timeout: pol.GetTimeout().AsDuration(), retry: pol.GetRetry().GetName(), maxRetries: pol.GetRetry().GetMaxRetries(),
				breaker: pol.GetCircuitBreaker().GetName(), source: pol.GetSource()}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}

	// The catch-all comes last and does not forward: the sidecar serves it.
	routes := rc.GetVirtualHosts()[0].GetRoutes()
	last := routes[len(routes)-1]
	if last.GetName() != DefaultInvokeRouteName || last.GetMatch().GetPathSeparatedPrefix() != "/v1.0/invoke" || last.GetNonForwardingAction() == nil {
		t.Errorf("the catch-all route: %v", last)
	}
	if r, ok := rt.Invoke("other", ""); !ok || r.Cluster != "" {
		t.Errorf("Invoke of an app without a route: %+v %v, want the catch-all (no cluster)", r, ok)
	}
}

// TestDefaultPoliciesOnAppRoutes: an app with running sidecars and no
// target has its own route, and the default policies ride on it in both
// forms, and on its proxyless clients' listener.
func TestDefaultPoliciesOnAppRoutes(t *testing.T) {
	p, err := Prepare(Input{Resources: defaultsResources(t, defaultsDoc), Endpoints: []nameresolution.Instance{{AppID: "orders", Host: "10.0.0.1", Port: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := p.Snapshot(Node{AppID: "caller"}, "1")
	if err != nil {
		t.Fatal(err)
	}
	rc := snap.GetResources(resourcev3.RouteType)[SidecarAPIName].(*routev3.RouteConfiguration)
	var orders *routev3.Route
	for _, r := range rc.GetVirtualHosts()[0].GetRoutes() {
		if r.GetName() == "invoke/orders" {
			orders = r
		}
	}
	pol, err := ParseResiliency(orders)
	if err != nil || pol.GetRetry().GetName() != "DefaultAppRetryPolicy" {
		t.Errorf("orders' route policy: %v %v", pol, err)
	}
	if a := orders.GetRoute(); a.GetTimeout().AsDuration() != 4*time.Second || a.GetRetryPolicy().GetNumRetries().GetValue() != 3 {
		t.Errorf("orders' route, Envoy's fields: %v", a)
	}
	l := snap.GetResources(resourcev3.ListenerType)["orders"].(*listenerv3.Listener)
	hcm := &hcmv3.HttpConnectionManager{}
	if err := l.GetApiListener().GetApiListener().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	if a := hcm.GetRouteConfig().GetVirtualHosts()[0].GetRoutes()[0].GetRoute(); a.GetRetryPolicy().GetNumRetries().GetValue() != 3 || a.GetTimeout().AsDuration() != 4*time.Second {
		t.Errorf("orders' listener route: %v", a)
	}

	// Without default policies there is no catch-all.
	rc, err = LocalRoutes(defaultsResources(t, targetsDoc), Node{AppID: "caller"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rc.GetVirtualHosts()[0].GetRoutes() {
		if r.GetName() == DefaultInvokeRouteName {
			t.Errorf("a catch-all without default policies: %v", r)
		}
	}
	rt, err := NewRoutes(rc)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := rt.Invoke("other", ""); ok {
		t.Error("an app without a route, and no defaults, has no route")
	}
}

// TestBuiltInServiceRetry: a retry named DaprBuiltInServiceRetries rides on
// the catch-all invocation route, alone when there are no default app
// policies (apps then still have no policy, so they take it), and the
// sidecar reads it back; without one the routes carry none (Dapr's own
// applies).
func TestBuiltInServiceRetry(t *testing.T) {
	const builtInDoc = `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: c-builtin
spec:
  policies:
    retries:
      DaprBuiltInServiceRetries: {policy: exponential, maxInterval: 2s, maxRetries: 7}
`
	for _, tc := range []struct {
		name        string
		docs        []string
		wantRetries int32 // -1: none carried
		wantPolicy  bool  // apps without a target have a policy
	}{
		{"alone", []string{builtInDoc}, 7, false},
		{"with default app policies", []string{builtInDoc, defaultsDoc}, 7, true},
		{"not redefined", []string{defaultsDoc}, -1, true},
		{"nothing", nil, -1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc, err := LocalRoutes(defaultsResources(t, tc.docs...), Node{AppID: "caller"})
			if err != nil {
				t.Fatal(err)
			}
			rt, err := NewRoutes(rc)
			if err != nil {
				t.Fatal(err)
			}
			table := &RouteTable{}
			table.Set(rt)
			got := table.BuiltInServiceRetry()
			switch {
			case tc.wantRetries < 0 && got != nil:
				t.Errorf("BuiltInServiceRetry %v, want none", got)
			case tc.wantRetries >= 0 && (got.GetMaxRetries() != tc.wantRetries || got.GetMaxInterval().AsDuration() != 2*time.Second || got.GetName() != config.BuiltInServiceRetries):
				t.Errorf("BuiltInServiceRetry %v, want the document's", got)
			}
			if pol := table.InvokeResiliency("other", ""); (pol != nil) != tc.wantPolicy {
				t.Errorf("an app without a target has policy %v, want one: %v", pol, tc.wantPolicy)
			}
		})
	}
}
