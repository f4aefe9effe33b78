package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/outrigger/outrigger/resiliency"
	outriggerv1alpha1 "github.com/outrigger/outrigger/xds/api/v1alpha1"
)

// maxReplayBody is the largest request body an invocation buffers so that
// a retry can send it again; a larger or streamed body is sent once.
const maxReplayBody = 1 << 20

// errRetry marks an answer the retry policy asks to send again.
var errRetry = errors.New("retrying per the resiliency policy")

// policyFor is the retry and circuit breaker of calls to appID in
// namespace; nil without either. (The route's timeout bounds the whole
// call, retries included: invokeContext.)
func (s *Sidecar) policyFor(appID, namespace string) *resiliency.Runner {
	if run := s.appRunner(appID, namespace); run != nil && (run.Retry != nil || run.Breaker != nil) {
		return run
	}
	return nil
}

// appRunner is the runner of every policy of calls to appID in namespace,
// its timeout included; nil without a policy.
func (s *Sidecar) appRunner(appID, namespace string) *resiliency.Runner {
	if s.cfg.Routes == nil {
		return nil
	}
	src := s.cfg.Routes.InvokeResiliency(appID, namespace)
	if src == nil {
		return nil
	}
	return s.policies.For(peerKey{appID, namespace}, src)
}

// timedOut records, on run, a call the route's timeout cut: ctx is the
// call's, bounded by the timeout, and caller the caller's own.
func timedOut(run *resiliency.Runner, ctx, caller context.Context) {
	if run != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) && caller.Err() == nil {
		run.TimedOut()
	}
}

// newPolicies is the sidecar's cache of the apps' policies; breaker state
// changes are logged and exported.
func (s *Sidecar) newPolicies() *resiliency.Policies[peerKey] {
	return &resiliency.Policies[peerKey]{
		Logger:    s.log,
		Metrics:   s.cfg.ResiliencyMetrics,
		Direction: resiliency.Outbound,
		Target:    func(app peerKey) string { return resiliency.AppTarget(app.appID) },
		OnChange: func(app peerKey, policy string, from, to resiliency.State) {
			s.log.Warn("circuit breaker changed state", "app_id", app.appID, "namespace", app.namespace, "policy", policy, "from", from.String(), "to", to.String())
			s.stats.breaker.WithLabelValues(app.appID, policy).Set(float64(to))
		},
	}
}

// invokeWithPolicy is invokeHTTP under a retry policy and a circuit
// breaker: the body is buffered (within maxReplayBody) so that an attempt
// can be sent again; an answer the policy retries is not written, and the
// next attempt follows its back-off.
func (s *Sidecar) invokeWithPolicy(w http.ResponseWriter, r *http.Request, pol *resiliency.Runner, send func(*http.Request, *invocation)) {
	var body []byte
	replayable := true
	if r.Body != nil && r.Body != http.NoBody {
		if r.ContentLength > maxReplayBody {
			replayable = false
		} else {
			b, err := io.ReadAll(io.LimitReader(r.Body, maxReplayBody+1))
			if err != nil {
				writeError(w, directInvokeError("", err))
				return
			}
			if len(b) > maxReplayBody {
				replayable = false
				r.Body = struct {
					io.Reader
					io.Closer
				}{io.MultiReader(bytes.NewReader(b), r.Body), r.Body}
			} else {
				body = b
			}
		}
	}
	for retries := 0; ; retries++ {
		var done func(bool)
		if pol.Breaker != nil {
			var err error
			if done, err = pol.Breaker.Allow(); err != nil {
				writeError(w, apiError{http.StatusInternalServerError, errCodeDirectInvoke, "failed to invoke: " + err.Error()})
				return
			}
		}
		if replayable && body != nil {
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
		}
		out := &invocation{retry: pol.Retry, mayRetry: replayable && pol.Retry.Allowed(retries)}
		send(r, out)
		if done != nil {
			done(out.reached && out.status < 500)
		}
		if !out.retryWanted {
			return
		}
		s.stats.retries.WithLabelValues(out.appID).Inc()
		pol.Retrying()
		t := time.NewTimer(pol.Retry.Backoff(retries + 1))
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			writeError(w, directInvokeError(out.appID, context.Cause(r.Context())))
			return
		}
	}
}

// builtInRetry is the retry of calls to an app without a policy: daprd's
// DaprBuiltInServiceRetries, as a Resiliency document redefines it (the
// routes carry it) or else Dapr's own (three retries a second apart).
func (s *Sidecar) builtInRetry() *resiliency.Retry {
	var p *outriggerv1alpha1.Retry
	if s.cfg.Routes != nil {
		p = s.cfg.Routes.BuiltInServiceRetry()
	}
	if c := s.builtIn.Load(); c != nil && c.src == p {
		return c.run
	}
	run, err := resiliency.NewRetry(p)
	if p == nil || err != nil {
		if err != nil {
			s.log.Warn("ignoring the routes' DaprBuiltInServiceRetries", "err", err)
		}
		run = resiliency.BuiltInServiceRetry()
	}
	s.builtIn.Store(&builtInRetry{src: p, run: run})
	return run
}

// builtInRetry is the last built-in retry read from the routes.
type builtInRetry struct {
	src *outriggerv1alpha1.Retry
	run *resiliency.Retry
}

// builtInRetries reports whether the built-in retry sends inv again after
// its attempt r failed with err: the call got no answer, its caller still
// waits and its body can be sent whole again.
func (s *Sidecar) builtInRetries(r *http.Request, inv *invocation, err error) bool {
	if r.Context().Err() != nil || errors.Is(err, errBodyTooLarge) || errors.Is(err, errSuperseded) {
		return false
	}
	if inv.body != nil && inv.body.exceeded.Load() {
		return false
	}
	return inv.replay.replayable()
}

// pause waits d, or until ctx ends: false then.
func (s *Sidecar) pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
