package config

import (
	"slices"
	"testing"
	"time"
)

// defaultsA and defaultsB hold default policies at several levels and a
// few targets; together they show each rule of Dapr's defaults.
const defaultsA = `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: a
spec:
  policies:
    timeouts:
      DefaultTimeoutPolicy: 5s
      DefaultAppTimeoutPolicy: 1s
    retries:
      r1: {policy: constant, duration: 10ms, maxRetries: 1}
      DefaultRetryPolicy: {policy: constant, duration: 100ms, maxRetries: 3}
      DefaultPubsubComponentInboundRetryPolicy: {maxRetries: 7}
    circuitBreakers:
      DefaultCircuitBreakerPolicy: {trip: consecutiveFailures > 2}
  targets:
    apps:
      orders: {retry: r1}
    components:
      cache:
        inbound: {retry: r1}
`

const defaultsB = `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: b
spec:
  policies:
    timeouts:
      DefaultTimeoutPolicy: 9s
      DefaultComponentTimeoutPolicy: 2s
    retries:
      DefaultAppRetryPolicy: {maxRetries: 5}
      DefaultStatestoreComponentOutboundRetryPolicy: {maxRetries: 4}
      DefaultComponentInboundRetryPolicy: {maxRetries: 6}
    circuitBreakers:
      DefaultComponentOutboundCircuitBreakerPolicy: {}
  targets:
    apps:
      payments: {timeout: 3s}
`

const targetsOnly = `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: t
spec:
  policies:
    retries:
      r: {maxRetries: 2}
  targets:
    apps:
      orders: {retry: r}
`

func parseResiliencyDoc(t *testing.T, text string) *Resiliency {
	t.Helper()
	res, err := ParseResources("r.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseResiliency(res.Resiliencies[0])
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// retryOnly is a document with one retry policy named name, of maxRetries n.
func retryOnly(t *testing.T, doc, name, n string) *Resiliency {
	t.Helper()
	return parseResiliencyDoc(t, "kind: Resiliency\nmetadata:\n  name: "+doc+"\nspec:\n  policies:\n    retries:\n      "+name+": {maxRetries: "+n+"}\n")
}

func TestResiliencyDefaults(t *testing.T) {
	a, b, only := parseResiliencyDoc(t, defaultsA), parseResiliencyDoc(t, defaultsB), parseResiliencyDoc(t, targetsOnly)
	both := Resiliencies{b, a}
	both.Sort()
	if both[0] != a {
		t.Fatal("Sort: want a before b")
	}
	type want struct {
		ok         bool
		timeout    time.Duration
		retry      string
		maxRetries int
		breaker    string
		sources    []string
		isDefault  bool
	}
	for _, tc := range []struct {
		name string
		got  func() (Policy, bool)
		want want
	}{
		{"an app's target beats a more specific default from another document", func() (Policy, bool) { return both.App("orders") },
			want{ok: true, retry: "r1", maxRetries: 1, sources: []string{"a"}}},
		{"a target in one document beats defaults in another", func() (Policy, bool) { return both.App("payments") },
			want{ok: true, timeout: 3 * time.Second, sources: []string{"b"}}},
		{"an app without a target: each kind on its own, the most specific level from any document", func() (Policy, bool) { return both.App("other") },
			want{ok: true, timeout: time.Second, retry: "DefaultAppRetryPolicy", maxRetries: 5, breaker: "DefaultCircuitBreakerPolicy", sources: []string{"a", "b"}, isDefault: true}},
		{"the app defaults alone", both.AppDefaults,
			want{ok: true, timeout: time.Second, retry: "DefaultAppRetryPolicy", maxRetries: 5, breaker: "DefaultCircuitBreakerPolicy", sources: []string{"a", "b"}, isDefault: true}},
		{"a state store's outbound: kind, direction, component levels", func() (Policy, bool) { return both.ComponentOutbound("db", "state.redis") },
			want{ok: true, timeout: 2 * time.Second, retry: "DefaultStatestoreComponentOutboundRetryPolicy", maxRetries: 4, breaker: "DefaultComponentOutboundCircuitBreakerPolicy", sources: []string{"b"}, isDefault: true}},
		{"a pub/sub's outbound: the kind's state store default does not apply", func() (Policy, bool) { return both.ComponentOutbound("bus", "pubsub.redis") },
			want{ok: true, timeout: 2 * time.Second, retry: "DefaultRetryPolicy", maxRetries: 3, breaker: "DefaultComponentOutboundCircuitBreakerPolicy", sources: []string{"a", "b"}, isDefault: true}},
		{"a pub/sub's inbound: its kind's default first", func() (Policy, bool) { return both.ComponentInbound("bus", "pubsub") },
			want{ok: true, timeout: 2 * time.Second, retry: "DefaultPubsubComponentInboundRetryPolicy", maxRetries: 7, breaker: "DefaultCircuitBreakerPolicy", sources: []string{"a", "b"}, isDefault: true}},
		{"a state store's inbound: the direction's default", func() (Policy, bool) { return both.ComponentInbound("store", "state.redis") },
			want{ok: true, timeout: 2 * time.Second, retry: "DefaultComponentInboundRetryPolicy", maxRetries: 6, breaker: "DefaultCircuitBreakerPolicy", sources: []string{"a", "b"}, isDefault: true}},
		{"a component's inbound target", func() (Policy, bool) { return both.ComponentInbound("cache", "state.redis") },
			want{ok: true, retry: "r1", maxRetries: 1, sources: []string{"a"}}},
		{"a component with an entry but no outbound policies takes no defaults (as daprd)", func() (Policy, bool) { return both.ComponentOutbound("cache", "state.redis") },
			want{}},
		{"the same default in two documents: the first by name", func() (Policy, bool) {
			return Resiliencies{retryOnly(t, "c1", "DefaultRetryPolicy", "1"), retryOnly(t, "c2", "DefaultRetryPolicy", "2")}.App("x")
		}, want{ok: true, retry: "DefaultRetryPolicy", maxRetries: 1, sources: []string{"c1"}, isDefault: true}},
		{"a more specific default in a later document", func() (Policy, bool) {
			return Resiliencies{retryOnly(t, "c1", "DefaultRetryPolicy", "1"), retryOnly(t, "c2", "DefaultAppRetryPolicy", "2")}.App("x")
		}, want{ok: true, retry: "DefaultAppRetryPolicy", maxRetries: 2, sources: []string{"c2"}, isDefault: true}},
		{"a component default does not reach apps", func() (Policy, bool) {
			return Resiliencies{retryOnly(t, "c", "DefaultComponentRetryPolicy", "1")}.App("x")
		}, want{}},
		{"without defaults, an app without a target has none", func() (Policy, bool) { return Resiliencies{only}.App("x") }, want{}},
		{"without defaults, a component without a target has none", func() (Policy, bool) { return Resiliencies{only}.ComponentOutbound("db", "state.redis") }, want{}},
		{"no documents", func() (Policy, bool) { return Resiliencies(nil).App("x") }, want{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, ok := tc.got()
			got := want{ok: ok, timeout: p.Timeout, sources: p.Sources, isDefault: p.Default}
			if p.Retry != nil {
				got.retry, got.maxRetries = p.Retry.Name, p.Retry.MaxRetries
			}
			if p.CircuitBreaker != nil {
				got.breaker = p.CircuitBreaker.Name
			}
			if got.ok != tc.want.ok || got.timeout != tc.want.timeout || got.retry != tc.want.retry || got.maxRetries != tc.want.maxRetries ||
				got.breaker != tc.want.breaker || !slices.Equal(got.sources, tc.want.sources) || got.isDefault != tc.want.isDefault {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
