package resiliency

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/cel-go/cel"

	outriggerv1alpha1 "github.com/outrigger/outrigger/xds/api/v1alpha1"
)

// State is a circuit breaker's state.
type State int

// The states, as Dapr (and sony/gobreaker, which Dapr uses) names them.
const (
	Closed State = iota
	HalfOpen
	Open
)

func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case HalfOpen:
		return "half-open"
	case Open:
		return "open"
	}
	return "unknown"
}

// ErrOpen is the answer of an open breaker, or of a half-open one that let
// its maxRequests through already.
var ErrOpen = errors.New("circuit breaker is open")

// Counts are what a breaker's trip expression sees.
type Counts struct {
	Requests             int64
	TotalSuccesses       int64
	TotalFailures        int64
	ConsecutiveSuccesses int64
	ConsecutiveFailures  int64
}

// breakerEnv declares Dapr's variables of a trip expression.
var breakerEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("requests", cel.IntType),
		cel.Variable("totalSuccesses", cel.IntType),
		cel.Variable("totalFailures", cel.IntType),
		cel.Variable("consecutiveSuccesses", cel.IntType),
		cel.Variable("consecutiveFailures", cel.IntType),
	)
})

// CompileTrip compiles a trip expression; the error says what is wrong
// with it.
func CompileTrip(expr string) (cel.Program, error) {
	env, err := breakerEnv()
	if err != nil {
		return nil, err
	}
	ast, iss := env.Compile(expr)
	if iss != nil && iss.Err() != nil {
		return nil, fmt.Errorf("trip %q: %w", expr, iss.Err())
	}
	if ast.OutputType() != cel.BoolType {
		return nil, fmt.Errorf("trip %q: not a boolean expression", expr)
	}
	return env.Program(ast)
}

// Breaker is one circuit breaker: closed, it counts outcomes and opens when
// its trip expression holds; open, it refuses calls for its timeout; then
// half-open, it lets maxRequests through and closes after that many
// successes in a row, or opens again at the first failure.
type Breaker struct {
	name        string
	maxRequests int64
	interval    time.Duration
	timeout     time.Duration
	trip        cel.Program
	onChange    func(name string, from, to State)
	now         func() time.Time

	mu     sync.Mutex
	state  State
	counts Counts
	// expiry: when a closed breaker clears its counts, or an open one
	// half-opens; zero for never.
	expiry time.Time
	// halfOpenInFlight counts calls let through while half open.
	halfOpenInFlight int64
}

// NewBreaker reads a policy; onChange, when not nil, hears every state
// change (for logs and metrics).
func NewBreaker(p *outriggerv1alpha1.CircuitBreaker, onChange func(name string, from, to State)) (*Breaker, error) {
	trip := p.GetTrip()
	if trip == "" {
		trip = "consecutiveFailures > 5"
	}
	prg, err := CompileTrip(trip)
	if err != nil {
		return nil, fmt.Errorf("circuit breaker %s: %w", p.GetName(), err)
	}
	b := &Breaker{
		name: p.GetName(), maxRequests: int64(max(p.GetMaxRequests(), 1)), interval: p.GetInterval().AsDuration(),
		timeout: p.GetTimeout().AsDuration(), trip: prg, onChange: onChange, now: time.Now,
	}
	if b.timeout <= 0 {
		b.timeout = 60 * time.Second
	}
	b.toClosedLocked(b.now())
	return b, nil
}

// State is the breaker's state now.
func (b *Breaker) State() State {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refreshLocked(b.now())
	return b.state
}

// Allow asks to make a call: ErrOpen, or a done func that must be called
// once with the call's outcome.
func (b *Breaker) Allow() (done func(success bool), err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	b.refreshLocked(now)
	switch b.state {
	case Open:
		return nil, ErrOpen
	case HalfOpen:
		if b.halfOpenInFlight+b.counts.ConsecutiveSuccesses >= b.maxRequests {
			return nil, ErrOpen
		}
		b.halfOpenInFlight++
	}
	b.counts.Requests++
	state := b.state
	return func(success bool) { b.done(state, success) }, nil
}

func (b *Breaker) done(was State, success bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	b.refreshLocked(now)
	if was == HalfOpen && b.halfOpenInFlight > 0 {
		b.halfOpenInFlight--
	}
	if b.state != was {
		return // an outcome from before the last change counts for nothing
	}
	c := &b.counts
	if success {
		c.TotalSuccesses++
		c.ConsecutiveSuccesses++
		c.ConsecutiveFailures = 0
		if b.state == HalfOpen && c.ConsecutiveSuccesses >= b.maxRequests {
			b.setLocked(Closed, now)
		}
		return
	}
	c.TotalFailures++
	c.ConsecutiveFailures++
	c.ConsecutiveSuccesses = 0
	switch b.state {
	case HalfOpen:
		b.setLocked(Open, now)
	case Closed:
		out, _, err := b.trip.Eval(map[string]any{
			"requests": c.Requests, "totalSuccesses": c.TotalSuccesses, "totalFailures": c.TotalFailures,
			"consecutiveSuccesses": c.ConsecutiveSuccesses, "consecutiveFailures": c.ConsecutiveFailures,
		})
		if err == nil && out.Value() == true {
			b.setLocked(Open, now)
		}
	}
}

// refreshLocked moves time forward: a closed breaker's counts clear each
// interval, an open one half-opens after its timeout.
func (b *Breaker) refreshLocked(now time.Time) {
	if b.expiry.IsZero() || now.Before(b.expiry) {
		return
	}
	switch b.state {
	case Closed:
		b.toClosedLocked(now)
	case Open:
		b.setLocked(HalfOpen, now)
	}
}

func (b *Breaker) toClosedLocked(now time.Time) {
	b.counts = Counts{}
	b.expiry = time.Time{}
	if b.interval > 0 {
		b.expiry = now.Add(b.interval)
	}
}

func (b *Breaker) setLocked(to State, now time.Time) {
	from := b.state
	if from == to {
		return
	}
	b.state = to
	b.counts = Counts{}
	b.halfOpenInFlight = 0
	switch to {
	case Closed:
		b.toClosedLocked(now)
	case Open:
		b.expiry = now.Add(b.timeout)
	case HalfOpen:
		b.expiry = time.Time{}
	}
	if b.onChange != nil {
		b.onChange(b.name, from, to)
	}
}
