package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/outrigger/outrigger/resiliency"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Resiliency is a Dapr Resiliency document, typed: its named policies and
// the targets that use them. The xDS translation puts a target's policies
// on its routes; the checks here are the ones every reader needs (values
// that parse, targets that name policies that exist). The trip expressions
// of circuit breakers are kept as written.
type Resiliency struct {
	Name      string
	Namespace string
	Scopes    []string
	Source    Source

	Timeouts        map[string]time.Duration
	Retries         map[string]RetryPolicy
	CircuitBreakers map[string]CircuitBreakerPolicy

	// Targets, by app-id, by component name and by actor type.
	Apps       map[string]TargetPolicy
	Components map[string]ComponentTarget
	Actors     map[string]TargetPolicy
}

// TargetPolicy names the policies of one target; an empty name is no policy.
type TargetPolicy struct {
	Timeout        string
	Retry          string
	CircuitBreaker string
	// CircuitBreakerCacheSize bounds the breakers of an app's instances or
	// of an actor type's actors.
	CircuitBreakerCacheSize int
	// CircuitBreakerScope is an actor target's "type", "id" or "both".
	CircuitBreakerScope string
}

// ComponentTarget is a component's policies, for calls the sidecar makes to
// it (outbound) and for the deliveries it makes to the app (inbound).
type ComponentTarget struct {
	Outbound TargetPolicy
	Inbound  TargetPolicy
}

// RetryPolicy is a named retry policy.
type RetryPolicy struct {
	Name string
	// Policy is "constant" or "exponential".
	Policy      string
	Duration    time.Duration
	MaxInterval time.Duration
	// MaxRetries is the number of retries after the first attempt; -1 is
	// no limit.
	MaxRetries int
	// HTTPStatusCodes and GRPCStatusCodes are matching's lists as written
	// ("429,500-599"); empty retries every error.
	HTTPStatusCodes string
	GRPCStatusCodes string
}

// CircuitBreakerPolicy is a named circuit breaker.
type CircuitBreakerPolicy struct {
	Name        string
	MaxRequests uint32
	Interval    time.Duration
	Timeout     time.Duration
	// Trip is the CEL expression that opens the breaker.
	Trip string
}

// Dapr's defaults for fields a policy leaves out.
const (
	DefaultRetryDuration     = 5 * time.Second
	DefaultRetryMaxInterval  = 60 * time.Second
	DefaultBreakerTimeout    = 60 * time.Second
	DefaultBreakerTrip       = "consecutiveFailures > 5"
	DefaultBreakerMaxRequest = 1
)

// PathError is a problem at a path of fields in a document; ParseResources
// turns it into a FieldError with the line of that path.
type PathError struct {
	Path []string
	Err  error
}

func (e *PathError) Error() string { return strings.Join(e.Path, ".") + ": " + e.Err.Error() }
func (e *PathError) Unwrap() error { return e.Err }

type resiliencyJSON struct {
	Metadata struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	Scopes []string `json:"scopes"`
	Spec   struct {
		Policies struct {
			Timeouts        map[string]json.RawMessage            `json:"timeouts"`
			Retries         map[string]map[string]json.RawMessage `json:"retries"`
			CircuitBreakers map[string]map[string]json.RawMessage `json:"circuitBreakers"`
		} `json:"policies"`
		Targets struct {
			Apps       map[string]map[string]json.RawMessage `json:"apps"`
			Actors     map[string]map[string]json.RawMessage `json:"actors"`
			Components map[string]struct {
				Outbound map[string]json.RawMessage `json:"outbound"`
				Inbound  map[string]json.RawMessage `json:"inbound"`
			} `json:"components"`
		} `json:"targets"`
	} `json:"spec"`
}

// ParseResiliency types a Resiliency document. Its errors are PathErrors,
// joined.
func ParseResiliency(d Document) (*Resiliency, error) {
	var j resiliencyJSON
	if err := json.Unmarshal(d.JSON, &j); err != nil {
		return nil, &PathError{Path: []string{"spec"}, Err: err}
	}
	r := &Resiliency{
		Name: j.Metadata.Name, Namespace: j.Metadata.Namespace, Scopes: j.Scopes, Source: d.Source,
		Timeouts: map[string]time.Duration{}, Retries: map[string]RetryPolicy{}, CircuitBreakers: map[string]CircuitBreakerPolicy{},
		Apps: map[string]TargetPolicy{}, Components: map[string]ComponentTarget{}, Actors: map[string]TargetPolicy{},
	}
	var errs []error
	fail := func(err error, path ...string) {
		errs = append(errs, &PathError{Path: path, Err: err})
	}
	for _, name := range sortedKeys(j.Spec.Policies.Timeouts) {
		d, err := durationField(j.Spec.Policies.Timeouts[name])
		if err != nil {
			fail(err, "spec", "policies", "timeouts", name)
			continue
		}
		r.Timeouts[name] = d
	}
	for _, name := range sortedKeys(j.Spec.Policies.Retries) {
		p, perr := parseRetry(name, j.Spec.Policies.Retries[name])
		for _, e := range perr {
			fail(e.Err, append([]string{"spec", "policies", "retries", name}, e.Path...)...)
		}
		// Kept even when invalid: the document fails anyway, and targets
		// that name it should not add errors of their own.
		r.Retries[name] = p
	}
	for _, name := range sortedKeys(j.Spec.Policies.CircuitBreakers) {
		p, perr := parseBreaker(name, j.Spec.Policies.CircuitBreakers[name])
		for _, e := range perr {
			fail(e.Err, append([]string{"spec", "policies", "circuitBreakers", name}, e.Path...)...)
		}
		// Kept even when invalid: the document fails anyway, and targets
		// that name it should not add errors of their own.
		r.CircuitBreakers[name] = p
	}
	target := func(fields map[string]json.RawMessage, actor bool, path ...string) TargetPolicy {
		var t TargetPolicy
		for _, k := range sortedKeys(fields) {
			at := append(append([]string{}, path...), k)
			var err error
			switch k {
			case "timeout":
				if t.Timeout, err = stringField(fields[k]); err == nil {
					if _, ok := r.Timeouts[t.Timeout]; !ok {
						// Dapr also takes a duration written in place.
						if d, derr := time.ParseDuration(t.Timeout); derr == nil && d > 0 {
							r.Timeouts[t.Timeout] = d
						} else {
							err = fmt.Errorf("%q is neither a timeout policy nor a duration", t.Timeout)
						}
					}
				}
			case "retry":
				if t.Retry, err = stringField(fields[k]); err == nil {
					if _, ok := r.Retries[t.Retry]; !ok {
						err = fmt.Errorf("no retry policy %q", t.Retry)
					}
				}
			case "circuitBreaker":
				if t.CircuitBreaker, err = stringField(fields[k]); err == nil {
					if _, ok := r.CircuitBreakers[t.CircuitBreaker]; !ok {
						err = fmt.Errorf("no circuit breaker %q", t.CircuitBreaker)
					}
				}
			case "circuitBreakerCacheSize":
				t.CircuitBreakerCacheSize, err = intField(fields[k])
				if err == nil && t.CircuitBreakerCacheSize < 0 {
					err = errors.New("must not be negative")
				}
			case "circuitBreakerScope":
				if !actor {
					err = errors.New("only actor targets have a circuit breaker scope")
					break
				}
				t.CircuitBreakerScope, err = stringField(fields[k])
				if err == nil && t.CircuitBreakerScope != "type" && t.CircuitBreakerScope != "id" && t.CircuitBreakerScope != "both" {
					err = fmt.Errorf("%q: want type, id or both", t.CircuitBreakerScope)
				}
			default:
				err = errors.New("unknown field")
			}
			if err != nil {
				fail(err, at...)
			}
		}
		return t
	}
	for _, app := range sortedKeys(j.Spec.Targets.Apps) {
		r.Apps[app] = target(j.Spec.Targets.Apps[app], false, "spec", "targets", "apps", app)
	}
	for _, a := range sortedKeys(j.Spec.Targets.Actors) {
		r.Actors[a] = target(j.Spec.Targets.Actors[a], true, "spec", "targets", "actors", a)
	}
	for _, c := range sortedKeys(j.Spec.Targets.Components) {
		ct := j.Spec.Targets.Components[c]
		r.Components[c] = ComponentTarget{
			Outbound: target(ct.Outbound, false, "spec", "targets", "components", c, "outbound"),
			Inbound:  target(ct.Inbound, false, "spec", "targets", "components", c, "inbound"),
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return r, nil
}

func parseRetry(name string, fields map[string]json.RawMessage) (RetryPolicy, []*PathError) {
	p := RetryPolicy{Name: name, Policy: "constant", Duration: DefaultRetryDuration, MaxInterval: DefaultRetryMaxInterval, MaxRetries: -1}
	var errs []*PathError
	for _, k := range sortedKeys(fields) {
		var err error
		switch k {
		case "policy":
			if p.Policy, err = stringField(fields[k]); err == nil && p.Policy != "constant" && p.Policy != "exponential" {
				err = fmt.Errorf("%q: want constant or exponential", p.Policy)
			}
		case "duration":
			p.Duration, err = durationField(fields[k])
		case "maxInterval":
			p.MaxInterval, err = durationField(fields[k])
		case "maxRetries":
			if p.MaxRetries, err = intField(fields[k]); err == nil && p.MaxRetries < -1 {
				err = errors.New("want -1 (no limit) or more")
			}
		case "matching":
			var m map[string]json.RawMessage
			if err = json.Unmarshal(fields[k], &m); err != nil {
				break
			}
			for _, mk := range sortedKeys(m) {
				var merr error
				switch mk {
				case "httpStatusCodes":
					if p.HTTPStatusCodes, merr = stringField(m[mk]); merr == nil {
						merr = checkCodeRanges(p.HTTPStatusCodes, 100, 599)
					}
				case "gRPCStatusCodes":
					if p.GRPCStatusCodes, merr = stringField(m[mk]); merr == nil {
						merr = checkCodeRanges(p.GRPCStatusCodes, 0, 16)
					}
				default:
					merr = errors.New("unknown field")
				}
				if merr != nil {
					errs = append(errs, &PathError{Path: []string{k, mk}, Err: merr})
				}
			}
		default:
			err = errors.New("unknown field")
		}
		if err != nil {
			errs = append(errs, &PathError{Path: []string{k}, Err: err})
		}
	}
	return p, errs
}

func parseBreaker(name string, fields map[string]json.RawMessage) (CircuitBreakerPolicy, []*PathError) {
	p := CircuitBreakerPolicy{Name: name, MaxRequests: DefaultBreakerMaxRequest, Timeout: DefaultBreakerTimeout, Trip: DefaultBreakerTrip}
	var errs []*PathError
	for _, k := range sortedKeys(fields) {
		var err error
		switch k {
		case "maxRequests":
			var n int
			if n, err = intField(fields[k]); err == nil {
				if n < 0 {
					err = errors.New("must not be negative")
				}
				p.MaxRequests = uint32(n)
			}
		case "interval":
			p.Interval, err = durationField(fields[k])
		case "timeout":
			p.Timeout, err = durationField(fields[k])
		case "trip":
			if p.Trip, err = stringField(fields[k]); err == nil && strings.TrimSpace(p.Trip) == "" {
				err = errors.New("empty: want a CEL expression such as consecutiveFailures > 5")
			}
			if err == nil {
				// Compiled now, so a broken expression is an error at load
				// naming the file and the field, not a breaker that never trips.
				_, err = resiliency.CompileTrip(p.Trip)
			}
		default:
			err = errors.New("unknown field")
		}
		if err != nil {
			errs = append(errs, &PathError{Path: []string{k}, Err: err})
		}
	}
	return p, errs
}

// checkCodeRanges checks a list such as "429,500-599" against [lo, hi].
func checkCodeRanges(s string, lo, hi int) error {
	set, err := resiliency.ParseCodes(s)
	if err != nil {
		return fmt.Errorf("%w within %d-%d, separated by commas", err, lo, hi)
	}
	for _, r := range set {
		if r[0] < lo || r[1] > hi {
			return fmt.Errorf("%q: want codes or ranges (a-b) within %d-%d, separated by commas", codeRange(r), lo, hi)
		}
	}
	return nil
}

// codeRange writes a range back as a list has it.
func codeRange(r [2]int) string {
	if r[0] == r[1] {
		return strconv.Itoa(r[0])
	}
	return strconv.Itoa(r[0]) + "-" + strconv.Itoa(r[1])
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// stringField reads a JSON string, or a number as written.
func stringField(raw json.RawMessage) (string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err == nil {
		return n.String(), nil
	}
	return "", fmt.Errorf("%s: want a string", bytes.TrimSpace(raw))
}

func intField(raw json.RawMessage) (int, error) {
	s, err := stringField(raw)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%q: want a whole number", s)
	}
	return n, nil
}

func durationField(raw json.RawMessage) (time.Duration, error) {
	s, err := stringField(raw)
	if err != nil {
		return 0, err
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q: want a duration such as 5s", s)
	}
	return d, nil
}
