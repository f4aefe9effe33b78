package main

import (
	"log/slog"
	"testing"
	"time"

	"github.com/outrigger/outrigger/building-blocks/pubsub"
	"github.com/outrigger/outrigger/config"
)

// TestInboundRetriesDefaults: a pub/sub component a Resiliency names takes
// its inbound target (or the built-in retries when it has none); any other
// takes the pub/sub inbound defaults, from any document.
func TestInboundRetriesDefaults(t *testing.T) {
	docs := func(texts ...string) []config.Document {
		var out []config.Document
		for _, text := range texts {
			res, err := config.ParseResources("r.yaml", []byte(text))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, res.Resiliencies...)
		}
		return out
	}
	const defaults = `kind: Resiliency
metadata: {name: z-defaults}
spec:
  policies:
    timeouts:
      DefaultComponentInboundTimeoutPolicy: 2s
    retries:
      DefaultPubsubComponentInboundRetryPolicy: {policy: constant, duration: 10ms, maxRetries: 2}
      DefaultRetryPolicy: {policy: constant, duration: 1s, maxRetries: 9}
`
	const targets = `kind: Resiliency
metadata: {name: a-targets}
spec:
  policies:
    retries:
      once: {policy: exponential, maxInterval: 3s, maxRetries: 1}
  targets:
    components:
      orders: {inbound: {retry: once}}
      outboundOnly: {outbound: {retry: once}}
`
	r := &inboundRetries{log: slog.New(slog.DiscardHandler)}
	if _, ok := r.get("any"); ok {
		t.Error("before any documents: a policy")
	}
	r.set(docs(defaults, targets))
	for _, tc := range []struct {
		name   string
		pubsub string
		want   pubsub.RetryPolicy
		ok     bool
	}{
		{"its inbound target, from another document than the defaults", "orders", pubsub.RetryPolicy{Attempts: 2, Initial: 500 * time.Millisecond, Max: 3 * time.Second}, true},
		{"named without an inbound target: the built-in retries, no defaults", "outboundOnly", pubsub.RetryPolicy{}, false},
		{"not named: the pub/sub inbound defaults", "events", pubsub.RetryPolicy{Attempts: 3, Initial: 10 * time.Millisecond, Max: 10 * time.Millisecond, Timeout: 2 * time.Second}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := r.get(tc.pubsub)
			if got != tc.want || ok != tc.ok {
				t.Errorf("got %+v %v, want %+v %v", got, ok, tc.want, tc.ok)
			}
		})
	}
	r.set(docs(targets))
	if got, ok := r.get("events"); ok {
		t.Errorf("without defaults: %+v", got)
	}
}
