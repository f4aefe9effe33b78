package resiliency

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/types/known/durationpb"

	outriggerv1alpha1 "github.com/outrigger/outrigger/xds/api/v1alpha1"
)

func TestMetricsOfARunner(t *testing.T) {
	m := NewMetrics("app", "default")
	p := &Policies[string]{Metrics: m, Direction: Outbound, Target: func(k string) string { return ComponentTarget("Statestore", k) }}
	run := p.For("cache", &outriggerv1alpha1.Resiliency{
		Source:         "resiliency/store",
		Timeout:        durationpb.New(20 * time.Millisecond),
		Retry:          &outriggerv1alpha1.Retry{Name: "r", Duration: durationpb.New(time.Millisecond), MaxRetries: 2},
		CircuitBreaker: &outriggerv1alpha1.CircuitBreaker{Name: "cb", Timeout: durationpb.New(time.Minute), Trip: "consecutiveFailures >= 3"},
	})
	m.Loaded("store")
	// Three attempts, each cut by the timeout: the breaker opens on the third.
	err := run.Do(context.Background(), func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	}, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Do: %v", err)
	}
	labels := func(policy, status string) []string {
		return []string{"app", "store", policy, "default", "outbound", "Statestore_cache", status}
	}
	for _, c := range []struct {
		what string
		got  float64
		want float64
	}{
		{"timeout applied", testutil.ToFloat64(m.count.WithLabelValues(labels("timeout", "")...)), 1},
		{"retry applied", testutil.ToFloat64(m.count.WithLabelValues(labels("retry", "")...)), 1},
		{"breaker applied closed", testutil.ToFloat64(m.count.WithLabelValues(labels("circuitbreaker", "closed")...)), 1},
		{"timeouts fired", testutil.ToFloat64(m.activations.WithLabelValues(labels("timeout", "")...)), 3},
		{"retries made", testutil.ToFloat64(m.activations.WithLabelValues(labels("retry", "")...)), 2},
		{"breaker opened", testutil.ToFloat64(m.activations.WithLabelValues(labels("circuitbreaker", "open")...)), 1},
		{"cb_state open", testutil.ToFloat64(m.cbState.WithLabelValues(labels("circuitbreaker", "open")...)), 1},
		{"cb_state closed", testutil.ToFloat64(m.cbState.WithLabelValues(labels("circuitbreaker", "closed")...)), 0},
		{"loaded", testutil.ToFloat64(m.loaded.WithLabelValues("app", "store", "default")), 1},
	} {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.what, c.got, c.want)
		}
	}
	// A caller whose own deadline passes is not the policy's timeout.
	calm := p.For("calm", &outriggerv1alpha1.Resiliency{Source: "resiliency/store", Timeout: durationpb.New(time.Hour)})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	_ = calm.Do(ctx, func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }, nil)
	calmLabels := []string{"app", "store", "timeout", "default", "outbound", "Statestore_calm", ""}
	if v := testutil.ToFloat64(m.activations.WithLabelValues(calmLabels...)); v != 0 {
		t.Errorf("the caller's deadline counted as the policy's timeout: %v", v)
	}
	// No metrics: a runner works the same and records nothing.
	var none *Metrics
	none.Loaded("x")
	plain := (&Policies[string]{}).For("k", &outriggerv1alpha1.Resiliency{Retry: &outriggerv1alpha1.Retry{Name: "r", Duration: durationpb.New(time.Millisecond), MaxRetries: 1}})
	n := 0
	_ = plain.Do(context.Background(), func(context.Context) error { n++; return errors.New("x") }, nil)
	if n != 2 {
		t.Errorf("without metrics: %d attempts, want 2", n)
	}
}
