package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/outrigger/outrigger/resiliency"
	outriggerv1alpha1 "github.com/outrigger/outrigger/xds/api/v1alpha1"
)

// maxReplayBody is the largest request body an invocation buffers so that
// a retry can send it again; a larger or streamed body is sent once.
const maxReplayBody = 1 << 20

// invokePolicy is the retry and circuit breaker of calls to one app.
type invokePolicy struct {
	src     *outriggerv1alpha1.Resiliency // what it was built from
	retry   *resiliency.Retry
	breaker *resiliency.Breaker
}

// policies caches each app's invokePolicy; a breaker keeps its state for
// as long as its policy is unchanged.
type policies struct {
	mu sync.Mutex
	by map[peerKey]*invokePolicy
}

// errRetry marks an answer the retry policy asks to send again.
var errRetry = errors.New("retrying per the resiliency policy")

// policyFor is the policy of calls to appID in namespace; nil without one.
func (s *Sidecar) policyFor(appID, namespace string) *invokePolicy {
	if s.cfg.Routes == nil {
		return nil
	}
	src := s.cfg.Routes.InvokeResiliency(appID, namespace)
	if src == nil || (src.GetRetry() == nil && src.GetCircuitBreaker() == nil) {
		return nil
	}
	k := peerKey{appID, namespace}
	s.policies.mu.Lock()
	defer s.policies.mu.Unlock()
	if p := s.policies.by[k]; p != nil && (p.src == src || proto.Equal(p.src, src)) {
		return p
	}
	p := &invokePolicy{src: src}
	var err error
	if p.retry, err = resiliency.NewRetry(src.GetRetry()); err != nil {
		s.log.Error("resiliency: the retry policy of an app cannot be used", "app_id", appID, "err", err)
		p.retry = nil
	}
	if cb := src.GetCircuitBreaker(); cb != nil {
		if old := s.policies.by[k]; old != nil && proto.Equal(old.src.GetCircuitBreaker(), cb) {
			p.breaker = old.breaker // a change elsewhere keeps the breaker's state
		} else if p.breaker, err = resiliency.NewBreaker(cb, func(name string, from, to resiliency.State) {
			s.log.Warn("circuit breaker changed state", "app_id", appID, "namespace", namespace, "policy", name, "from", from.String(), "to", to.String())
			s.stats.breaker.WithLabelValues(appID, name).Set(float64(to))
		}); err != nil {
			s.log.Error("resiliency: the circuit breaker of an app cannot be used", "app_id", appID, "err", err)
		}
	}
	if s.policies.by == nil {
		s.policies.by = map[peerKey]*invokePolicy{}
	}
	s.policies.by[k] = p
	return p
}

// invokeWithPolicy is invokeHTTP under a retry policy and a circuit
// breaker: the body is buffered (within maxReplayBody) so that an attempt
// can be sent again; an answer the policy retries is not written, and the
// next attempt follows its back-off.
func (s *Sidecar) invokeWithPolicy(w http.ResponseWriter, r *http.Request, pol *invokePolicy, send func(*http.Request, *invocation)) {
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
		if pol.breaker != nil {
			var err error
			if done, err = pol.breaker.Allow(); err != nil {
				writeError(w, apiError{http.StatusInternalServerError, errCodeDirectInvoke, "failed to invoke: " + err.Error()})
				return
			}
		}
		if replayable && body != nil {
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
		}
		out := &invocation{retry: pol.retry, mayRetry: replayable && pol.retry.Allowed(retries)}
		send(r, out)
		if done != nil {
			done(out.reached && out.status < 500)
		}
		if !out.retryWanted {
			return
		}
		s.stats.retries.WithLabelValues(out.appID).Inc()
		t := time.NewTimer(pol.retry.Backoff(retries + 1))
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			writeError(w, directInvokeError(out.appID, context.Cause(r.Context())))
			return
		}
	}
}
