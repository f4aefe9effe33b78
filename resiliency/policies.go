package resiliency

import (
	"log/slog"
	"sync"

	"google.golang.org/protobuf/proto"

	outriggerv1alpha1 "github.com/outrigger/outrigger/xds/api/v1alpha1"
)

// Policies keeps a Runner per target (an app, a component), built from the
// Resiliency its routes carry. A runner is rebuilt when its policy changes;
// the breaker in it keeps its state for as long as the breaker's own policy
// is unchanged. It is safe for concurrent use; a lookup whose policy did not
// change takes only a read lock.
type Policies[K comparable] struct {
	// OnChange hears every breaker's state changes (logs, metrics).
	OnChange func(target K, policy string, from, to State)
	Logger   *slog.Logger
	// Metrics, when set, records the runners' use of their policies under
	// daprd's names, each target labelled Target(target) in Direction
	// (Outbound or Inbound).
	Metrics   *Metrics
	Direction string
	Target    func(K) string

	mu sync.RWMutex
	by map[K]*built
}

type built struct {
	src *outriggerv1alpha1.Resiliency
	run *Runner
}

// For is target's runner for src; nil for a nil src. A part of the policy
// that cannot be used (it passed the load-time checks, so this is rare) is
// logged and left out.
func (p *Policies[K]) For(target K, src *outriggerv1alpha1.Resiliency) *Runner {
	if src == nil {
		return nil
	}
	p.mu.RLock()
	cur := p.by[target]
	p.mu.RUnlock()
	if cur != nil && cur.src == src {
		return cur.run
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	cur = p.by[target]
	if cur != nil && (cur.src == src || proto.Equal(cur.src, src)) {
		cur.src = src // the next lookup of these routes takes the fast path
		return cur.run
	}
	run := &Runner{Timeout: src.GetTimeout().AsDuration()}
	if p.Metrics != nil && p.Target != nil {
		run.obs = p.Metrics.observer(src.GetSource(), p.Direction, p.Target(target), run.Timeout > 0, src.GetRetry() != nil, src.GetCircuitBreaker() != nil)
	}
	var err error
	if run.Retry, err = NewRetry(src.GetRetry()); err != nil {
		p.log().Error("resiliency: a retry policy cannot be used", "target", target, "err", err)
	}
	if cb := src.GetCircuitBreaker(); cb != nil {
		if cur != nil && cur.run.Breaker != nil && proto.Equal(cur.src.GetCircuitBreaker(), cb) {
			run.Breaker = cur.run.Breaker
		} else {
			obs := run.obs
			onChange := func(policy string, from, to State) {
				obs.breakerChanged(to)
				if p.OnChange != nil {
					p.OnChange(target, policy, from, to)
				}
			}
			if run.Breaker, err = NewBreaker(cb, onChange); err != nil {
				p.log().Error("resiliency: a circuit breaker cannot be used", "target", target, "err", err)
			}
		}
	}
	if p.by == nil {
		p.by = map[K]*built{}
	}
	p.by[target] = &built{src: src, run: run}
	return run
}

func (p *Policies[K]) log() *slog.Logger {
	if p.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return p.Logger
}
