package config

import (
	"strings"
	"testing"
	"time"
)

const resiliencyDoc = `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: r
scopes: [checkout]
spec:
  policies:
    timeouts:
      general: 5s
    retries:
      fast:
        policy: constant
        duration: 100ms
        maxRetries: 3
        matching:
          httpStatusCodes: "429,500-599"
          gRPCStatusCodes: "1-4,14"
      forever:
        policy: exponential
        maxInterval: 15s
    circuitBreakers:
      cb:
        maxRequests: 2
        timeout: 30s
        trip: consecutiveFailures >= 3
      plain: {}
  targets:
    apps:
      orders:
        timeout: general
        retry: fast
        circuitBreaker: cb
        circuitBreakerCacheSize: 100
      payments:
        timeout: 750ms
    actors:
      cart:
        retry: forever
        circuitBreakerScope: both
    components:
      statestore:
        outbound:
          retry: fast
          circuitBreaker: plain
        inbound:
          timeout: general
`

func TestParseResiliency(t *testing.T) {
	res, err := ParseResources("r.yaml", []byte(resiliencyDoc))
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseResiliency(res.Resiliencies[0])
	if err != nil {
		t.Fatal(err)
	}
	if r.Name != "r" || strings.Join(r.Scopes, ",") != "checkout" {
		t.Errorf("identity %q %v", r.Name, r.Scopes)
	}
	if got := r.Retries["fast"]; got != (RetryPolicy{Name: "fast", Policy: "constant", Duration: 100 * time.Millisecond, MaxInterval: DefaultRetryMaxInterval, MaxRetries: 3, HTTPStatusCodes: "429,500-599", GRPCStatusCodes: "1-4,14"}) {
		t.Errorf("fast %+v", got)
	}
	if got := r.Retries["forever"]; got.Policy != "exponential" || got.MaxRetries != -1 || got.MaxInterval != 15*time.Second {
		t.Errorf("forever %+v (maxRetries defaults to -1)", got)
	}
	if got := r.CircuitBreakers["cb"]; got != (CircuitBreakerPolicy{Name: "cb", MaxRequests: 2, Timeout: 30 * time.Second, Trip: "consecutiveFailures >= 3"}) {
		t.Errorf("cb %+v", got)
	}
	if got := r.CircuitBreakers["plain"]; got.Trip != DefaultBreakerTrip || got.Timeout != DefaultBreakerTimeout || got.MaxRequests != 1 {
		t.Errorf("defaults %+v", got)
	}
	if got := r.Apps["orders"]; got != (TargetPolicy{Timeout: "general", Retry: "fast", CircuitBreaker: "cb", CircuitBreakerCacheSize: 100}) {
		t.Errorf("orders %+v", got)
	}
	if got := r.Apps["payments"]; got.Timeout != "750ms" || r.Timeouts["750ms"] != 750*time.Millisecond {
		t.Errorf("a timeout written in place: %+v %v", got, r.Timeouts)
	}
	if got := r.Actors["cart"]; got.Retry != "forever" || got.CircuitBreakerScope != "both" {
		t.Errorf("cart %+v", got)
	}
	if got := r.Components["statestore"]; got.Outbound.CircuitBreaker != "plain" || got.Inbound.Timeout != "general" {
		t.Errorf("statestore %+v", got)
	}
}

func TestParseResiliencyErrorsNameLineAndField(t *testing.T) {
	for _, c := range []struct{ old, new, want string }{
		{"duration: 100ms", "duration: soon", `r.yaml:13: resiliency "r": spec.policies.retries.fast.duration: "soon"`},
		{"policy: exponential", "policy: linear", `spec.policies.retries.forever.policy: "linear": want constant or exponential`},
		{"maxRetries: 3", "maxRetries: -2", `r.yaml:14: resiliency "r": spec.policies.retries.fast.maxRetries`},
		{`"429,500-599"`, `"429,500-700"`, `spec.policies.retries.fast.matching.httpStatusCodes: "500-700"`},
		{`"1-4,14"`, `"1-4,17"`, `matching.gRPCStatusCodes: "17"`},
		{"retry: fast\n        circuitBreaker: cb", "retry: slow\n        circuitBreaker: cb", `r.yaml:31: resiliency "r": spec.targets.apps.orders.retry: no retry policy "slow"`},
		{"timeout: 750ms", "timeout: later", `spec.targets.apps.payments.timeout: "later" is neither a timeout policy nor a duration`},
		{"circuitBreaker: plain", "circuitBreaker: none", `spec.targets.components.statestore.outbound.circuitBreaker: no circuit breaker "none"`},
		{"circuitBreakerScope: both", "circuitBreakerScope: all", `spec.targets.actors.cart.circuitBreakerScope: "all"`},
		{"trip: consecutiveFailures >= 3", "trip: ''", `spec.policies.circuitBreakers.cb.trip: empty`},
		{"trip: consecutiveFailures >= 3", "trip: consecutiveFailures >=", `spec.policies.circuitBreakers.cb.trip: trip "consecutiveFailures >="`},
		{"trip: consecutiveFailures >= 3", "trip: failures > 3", `undeclared reference to 'failures'`},
		{"general: 5s", "general: 5", `spec.policies.timeouts.general: "5"`},
		{"maxRequests: 2", "maxRequsts: 2", `spec.policies.circuitBreakers.cb.maxRequsts: unknown field`},
	} {
		doc := strings.Replace(resiliencyDoc, c.old, c.new, 1)
		if doc == resiliencyDoc {
			t.Fatalf("%q is not in the document", c.old)
		}
		_, err := ParseResources("r.yaml", []byte(doc))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s -> %s:\n got %v\nwant %s", c.old, c.new, err, c.want)
		}
	}
}
