package resiliency

import (
	"context"
	"time"
)

// Runner runs an operation under one target's policies: a timeout on each
// attempt, retries with back-off, and a circuit breaker. The zero Runner
// (and a nil one) runs the operation once, as it is.
type Runner struct {
	Timeout time.Duration
	Retry   *Retry
	Breaker *Breaker

	obs *observer // nil: no metrics
}

// Do runs op. An error for which permanent reports true (a conflict, bad
// input: something a retry cannot change) ends the retries at once and does
// not count against the breaker.
func (r *Runner) Do(ctx context.Context, op func(context.Context) error, permanent func(error) bool) error {
	if r == nil || (r.Timeout <= 0 && r.Retry == nil && r.Breaker == nil) {
		return op(ctx)
	}
	r.Applied()
	for retries := 0; ; retries++ {
		var done func(bool)
		if r.Breaker != nil {
			var err error
			if done, err = r.Breaker.Allow(); err != nil {
				return err
			}
		}
		actx, cancel := ctx, context.CancelFunc(func() {})
		if r.Timeout > 0 {
			actx, cancel = context.WithTimeout(ctx, r.Timeout)
		}
		err := op(actx)
		if r.Timeout > 0 && timedOut(actx, ctx, err) {
			r.TimedOut()
		}
		cancel()
		stop := err == nil || (permanent != nil && permanent(err))
		if done != nil {
			done(stop)
		}
		if stop || !r.Retry.Allowed(retries) || ctx.Err() != nil {
			return err
		}
		r.Retrying()
		t := time.NewTimer(r.Retry.Backoff(retries + 1))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
	}
}
