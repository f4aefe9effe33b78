// Package resiliency runs Dapr's resiliency policies: retries with a
// constant or exponential back-off that match status codes, and circuit
// breakers tripped by a CEL expression over their counts. It works on the
// policies as the routes carry them (xds/api/v1alpha1), so a sidecar
// applies what its control plane or its own resources folder set; it knows
// nothing of HTTP or gRPC beyond status codes.
package resiliency

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	outriggerv1alpha1 "github.com/outrigger/outrigger/xds/api/v1alpha1"
)

// Retry is a retry policy ready to run.
type Retry struct {
	exponential bool
	duration    time.Duration
	maxInterval time.Duration
	maxRetries  int // -1: until the timeout
	http, grpc  CodeSet
}

// NewRetry reads a policy; nil gives nil.
func NewRetry(p *outriggerv1alpha1.Retry) (*Retry, error) {
	if p == nil {
		return nil, nil
	}
	r := &Retry{
		exponential: p.GetBackoff() == outriggerv1alpha1.Retry_EXPONENTIAL,
		duration:    p.GetDuration().AsDuration(),
		maxInterval: p.GetMaxInterval().AsDuration(),
		maxRetries:  int(p.GetMaxRetries()),
	}
	var err error
	if r.http, err = ParseCodes(p.GetHttpStatusCodes()); err != nil {
		return nil, fmt.Errorf("retry %s: matching.httpStatusCodes: %w", p.GetName(), err)
	}
	if r.grpc, err = ParseCodes(p.GetGrpcStatusCodes()); err != nil {
		return nil, fmt.Errorf("retry %s: matching.gRPCStatusCodes: %w", p.GetName(), err)
	}
	if r.exponential && r.duration <= 0 {
		r.duration = 500 * time.Millisecond // the first interval of Dapr's exponential back-off
	}
	return r, nil
}

// BuiltInServiceRetry is Dapr's DaprBuiltInServiceRetries: three retries a
// second apart, of service invocations that have no policy of their own
// and got no answer from the callee's sidecar.
func BuiltInServiceRetry() *Retry {
	return &Retry{duration: time.Second, maxRetries: 3}
}

// Allowed reports whether a retry may follow the given number of retries
// already made.
func (r *Retry) Allowed(retries int) bool {
	return r != nil && (r.maxRetries < 0 || retries < r.maxRetries)
}

// Backoff is the pause before retry number n (1 for the first retry).
func (r *Retry) Backoff(n int) time.Duration {
	if !r.exponential {
		return r.duration
	}
	d := r.duration
	for i := 1; i < n && (r.maxInterval <= 0 || d < r.maxInterval); i++ {
		d *= 2
	}
	if r.maxInterval > 0 && d > r.maxInterval {
		d = r.maxInterval
	}
	return d
}

// RetriesHTTP reports whether an answer with status should be retried:
// when the policy lists codes, exactly those; else every 5xx, and never a
// 4xx (a client error does not heal by itself).
func (r *Retry) RetriesHTTP(status int) bool {
	if r == nil {
		return false
	}
	if len(r.http) > 0 {
		return r.http.Has(status)
	}
	return status >= 500
}

// RetriesGRPC is RetriesHTTP for gRPC codes: listed ones, else every code
// but OK and the caller's own mistakes.
func (r *Retry) RetriesGRPC(code int) bool {
	if r == nil {
		return false
	}
	if len(r.grpc) > 0 {
		return r.grpc.Has(code)
	}
	switch code {
	case 0, 3, 5, 6, 7, 9, 11, 12, 16: // OK, InvalidArgument, NotFound, AlreadyExists, PermissionDenied, FailedPrecondition, OutOfRange, Unimplemented, Unauthenticated
		return false
	}
	return true
}

// CodeSet is a list of codes and ranges, as a retry's matching writes it
// ("429,500-599").
type CodeSet [][2]int

// Has reports whether code is in the set.
func (c CodeSet) Has(code int) bool {
	for _, r := range c {
		if code >= r[0] && code <= r[1] {
			return true
		}
	}
	return false
}

// ParseCodes reads a list of codes and ranges; an empty list is a nil set.
func ParseCodes(s string) (CodeSet, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out CodeSet
	for _, part := range strings.Split(s, ",") {
		a, b, isRange := strings.Cut(strings.TrimSpace(part), "-")
		from, err := strconv.Atoi(strings.TrimSpace(a))
		to := from
		if err == nil && isRange {
			to, err = strconv.Atoi(strings.TrimSpace(b))
		}
		if err != nil || from > to {
			return nil, fmt.Errorf("%q: want a code or a range a-b", part)
		}
		out = append(out, [2]int{from, to})
	}
	return out, nil
}
