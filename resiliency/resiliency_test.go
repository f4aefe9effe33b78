package resiliency

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	outriggerv1alpha1 "github.com/outrigger/outrigger/xds/api/v1alpha1"
)

func TestRetryBackoffAndMatching(t *testing.T) {
	r, err := NewRetry(&outriggerv1alpha1.Retry{Name: "exp", Backoff: outriggerv1alpha1.Retry_EXPONENTIAL,
		Duration: durationpb.New(100 * time.Millisecond), MaxInterval: durationpb.New(350 * time.Millisecond), MaxRetries: 3})
	if err != nil {
		t.Fatal(err)
	}
	for n, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 350 * time.Millisecond, 9: 350 * time.Millisecond} {
		if got := r.Backoff(n); got != want {
			t.Errorf("Backoff(%d) = %v, want %v", n, got, want)
		}
	}
	if !r.Allowed(2) || r.Allowed(3) {
		t.Error("maxRetries 3: a third retry allowed, a fourth not")
	}
	if !r.RetriesHTTP(503) || r.RetriesHTTP(404) || r.RetriesHTTP(200) {
		t.Error("without matching codes: every 5xx and no 4xx")
	}
	m, err := NewRetry(&outriggerv1alpha1.Retry{Name: "m", Duration: durationpb.New(time.Second), MaxRetries: -1, HttpStatusCodes: "429,500-502", GrpcStatusCodes: "14"})
	if err != nil {
		t.Fatal(err)
	}
	if !m.RetriesHTTP(429) || !m.RetriesHTTP(501) || m.RetriesHTTP(503) || !m.Allowed(1000) {
		t.Error("matching 429,500-502, no retry limit")
	}
	if !m.RetriesGRPC(14) || m.RetriesGRPC(2) {
		t.Error("matching gRPC 14 only")
	}
	if m.Backoff(5) != time.Second {
		t.Error("a constant policy waits its duration")
	}
	if _, err := NewRetry(&outriggerv1alpha1.Retry{Name: "bad", HttpStatusCodes: "5xx"}); err == nil {
		t.Error("a bad code list was accepted")
	}
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func call(t *testing.T, b *Breaker, ok bool) error {
	t.Helper()
	done, err := b.Allow()
	if err != nil {
		return err
	}
	done(ok)
	return nil
}

func TestBreakerOpensHalfOpensCloses(t *testing.T) {
	var changes []string
	b, err := NewBreaker(&outriggerv1alpha1.CircuitBreaker{Name: "cb", MaxRequests: 2, Timeout: durationpb.New(10 * time.Second), Trip: "consecutiveFailures >= 3"},
		func(name string, from, to State) { changes = append(changes, from.String()+">"+to.String()) })
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Unix(1000, 0)}
	b.now = clk.now
	for range 2 {
		_ = call(t, b, false)
	}
	if b.State() != Closed {
		t.Fatal("opened before the trip held")
	}
	_ = call(t, b, false)
	if b.State() != Open {
		t.Fatal("three failures in a row did not open it")
	}
	if err := call(t, b, true); err != ErrOpen {
		t.Fatalf("an open breaker let a call through: %v", err)
	}
	clk.add(11 * time.Second)
	if b.State() != HalfOpen {
		t.Fatal("not half open after the timeout")
	}
	// Half open: two let through; a third waits.
	d1, err1 := b.Allow()
	d2, err2 := b.Allow()
	_, err3 := b.Allow()
	if err1 != nil || err2 != nil || err3 != ErrOpen {
		t.Fatalf("half open with maxRequests 2: %v %v %v", err1, err2, err3)
	}
	d1(true)
	d2(true)
	if b.State() != Closed {
		t.Fatal("two successes half open did not close it")
	}
	// Open again, then a failure half open opens it again.
	for range 3 {
		_ = call(t, b, false)
	}
	clk.add(11 * time.Second)
	_ = call(t, b, false)
	if b.State() != Open {
		t.Fatal("a failure half open did not open it")
	}
	want := []string{"closed>open", "open>half-open", "half-open>closed", "closed>open", "open>half-open", "half-open>open"}
	if len(changes) != len(want) {
		t.Fatalf("changes %v, want %v", changes, want)
	}
	for i := range want {
		if changes[i] != want[i] {
			t.Fatalf("changes %v, want %v", changes, want)
		}
	}
}

func TestBreakerIntervalClearsCounts(t *testing.T) {
	b, err := NewBreaker(&outriggerv1alpha1.CircuitBreaker{Name: "cb", Interval: durationpb.New(time.Second), Trip: "totalFailures >= 2"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Unix(1000, 0)}
	b.now = clk.now
	b.toClosedLocked(clk.now())
	_ = call(t, b, false)
	clk.add(2 * time.Second)
	_ = call(t, b, false)
	if b.State() != Closed {
		t.Error("failures of two intervals added up")
	}
}

func TestTripMustCompile(t *testing.T) {
	for _, bad := range []string{"consecutiveFailures >", "requests + 1", "nosuchvar > 1"} {
		if _, err := CompileTrip(bad); err == nil {
			t.Errorf("%q compiled", bad)
		}
	}
	if _, err := CompileTrip("consecutiveFailures > 5 || (requests > 10 && totalFailures * 2 > requests)"); err != nil {
		t.Error(err)
	}
}

func TestRunner(t *testing.T) {
	ctx := t.Context()
	retry, _ := NewRetry(&outriggerv1alpha1.Retry{Name: "r", Duration: durationpb.New(time.Millisecond), MaxRetries: 3})
	r := &Runner{Retry: retry}
	calls := 0
	err := r.Do(ctx, func(context.Context) error {
		calls++
		if calls < 3 {
			return errors.New("transient")
		}
		return nil
	}, nil)
	if err != nil || calls != 3 {
		t.Errorf("two failures then success: %v after %d calls", err, calls)
	}
	calls = 0
	conflict := errors.New("conflict")
	err = r.Do(ctx, func(context.Context) error { calls++; return conflict }, func(err error) bool { return errors.Is(err, conflict) })
	if !errors.Is(err, conflict) || calls != 1 {
		t.Errorf("a permanent error: %v after %d calls, want 1", err, calls)
	}
	// The timeout bounds each attempt.
	r = &Runner{Timeout: 10 * time.Millisecond}
	err = r.Do(ctx, func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a hung attempt: %v", err)
	}
	var nilRunner *Runner
	if err := nilRunner.Do(ctx, func(context.Context) error { return nil }, nil); err != nil {
		t.Error(err)
	}
}

// TestPoliciesKeepBreakerState: a target's breaker keeps its state when
// another part of its policy changes, and starts afresh when the breaker's
// own policy does.
func TestPoliciesKeepBreakerState(t *testing.T) {
	var p Policies[string]
	cb := &outriggerv1alpha1.CircuitBreaker{Name: "cb", Timeout: durationpb.New(time.Minute), Trip: "consecutiveFailures >= 1"}
	src := &outriggerv1alpha1.Resiliency{CircuitBreaker: cb}
	r := p.For("a", src)
	done, err := r.Breaker.Allow()
	if err != nil {
		t.Fatal(err)
	}
	done(false)
	if r.Breaker.State() != Open {
		t.Fatal("not open after the trip")
	}
	if p.For("a", src) != r {
		t.Error("the same routes built a new runner")
	}
	withRetry := &outriggerv1alpha1.Resiliency{CircuitBreaker: cb, Retry: &outriggerv1alpha1.Retry{Name: "r", MaxRetries: 1}}
	r2 := p.For("a", withRetry)
	if r2.Retry == nil || r2.Breaker != r.Breaker {
		t.Error("a new retry policy lost the breaker's state")
	}
	otherCB := &outriggerv1alpha1.Resiliency{CircuitBreaker: &outriggerv1alpha1.CircuitBreaker{Name: "cb", Trip: "consecutiveFailures >= 9"}}
	if r3 := p.For("a", otherCB); r3.Breaker == r.Breaker || r3.Breaker.State() != Closed {
		t.Error("a changed breaker policy kept the old breaker")
	}
	if p.For("b", nil) != nil {
		t.Error("no policy gave a runner")
	}
}
