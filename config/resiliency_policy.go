package config

import (
	"sort"
	"strings"
	"time"
)

// Direction is which calls of a component a policy governs.
type Direction string

const (
	// Outbound is the sidecar's calls to a component.
	Outbound Direction = "Outbound"
	// Inbound is a component's deliveries to the app.
	Inbound Direction = "Inbound"
)

// The names of Dapr's default policies: "%s" is a level, most specific
// first, then "" (daprd's pkg/resiliency DefaultRetryTemplate and the
// like).
const (
	defaultTimeoutTemplate        = "Default%sTimeoutPolicy"
	defaultRetryTemplate          = "Default%sRetryPolicy"
	defaultCircuitBreakerTemplate = "Default%sCircuitBreakerPolicy"
)

// componentKinds are the levels of Dapr's component defaults
// ("Default<Kind>ComponentOutboundRetryPolicy"), by the component type's
// prefix.
var componentKinds = map[string]string{
	"state":         "Statestore",
	"pubsub":        "Pubsub",
	"secretstores":  "Secretstore",
	"bindings":      "Binding",
	"configuration": "Configuration",
	"lock":          "Lock",
	"crypto":        "Crypto",
	"conversation":  "Conversation",
}

// ComponentKind is daprd's name of the kind of a component of
// componentType ("state.redis": Statestore), as its default policies and
// resiliency metrics spell it; "" for a type of no known building block.
func ComponentKind(componentType string) string {
	prefix, _, _ := strings.Cut(componentType, ".")
	return componentKinds[prefix]
}

// Policy is what applies to one target once the documents are read: the
// policies themselves rather than their names, which are their document's
// own. A zero or nil field is no policy of that kind.
type Policy struct {
	Timeout        time.Duration
	Retry          *RetryPolicy
	CircuitBreaker *CircuitBreakerPolicy
	// CircuitBreakerCacheSize is the target's; zero for default policies.
	CircuitBreakerCacheSize int
	// Sources are the names of the documents the policies come from, in
	// name order: the one that names the target, or those that hold the
	// default policies found (up to three).
	Sources []string
	// Default is whether these are Dapr's default policies, applied because
	// no document names the target.
	Default bool
}

// AppTarget is appID's target in r, when r names it.
func (r *Resiliency) AppTarget(appID string) (TargetPolicy, bool) {
	t, ok := r.Apps[appID]
	return t, ok
}

// ComponentTarget is component name's target in r, when r names it (with
// outbound policies, inbound ones, or neither).
func (r *Resiliency) ComponentTarget(name string) (ComponentTarget, bool) {
	t, ok := r.Components[name]
	return t, ok
}

// policy is the policies t names in r.
func (r *Resiliency) policy(t TargetPolicy) Policy {
	p := Policy{Timeout: r.Timeouts[t.Timeout], CircuitBreakerCacheSize: t.CircuitBreakerCacheSize, Sources: []string{r.Name}}
	if rp, ok := r.Retries[t.Retry]; ok && t.Retry != "" {
		p.Retry = &rp
	}
	if cb, ok := r.CircuitBreakers[t.CircuitBreaker]; ok && t.CircuitBreaker != "" {
		p.CircuitBreaker = &cb
	}
	return p
}

// Resiliencies are the Resiliency documents that apply to one sidecar, in
// name order (Sort). A target takes its policies from the first document
// that names it; Dapr's default policies (DefaultRetryPolicy and the like,
// from any document) apply only to a target that no document names, as in
// daprd, where an app or component with an entry gets no defaults.
type Resiliencies []*Resiliency

// Sort puts rs in name order, keeping the order of equal names.
func (rs Resiliencies) Sort() {
	sort.SliceStable(rs, func(i, j int) bool { return rs[i].Name < rs[j].Name })
}

// App is the policies of service invocation to appID: its target in the
// first document that names it, else the default app policies. False when
// there are none.
func (rs Resiliencies) App(appID string) (Policy, bool) {
	for _, r := range rs {
		if t, ok := r.AppTarget(appID); ok {
			return r.policy(t), true
		}
	}
	return rs.AppDefaults()
}

// AppDefaults is the default policies of service invocation, each kind
// looked up on its own: Default{App,}{Timeout,Retry,CircuitBreaker}Policy,
// the most specific first.
func (rs Resiliencies) AppDefaults() (Policy, bool) {
	return rs.defaults([]string{"App", ""})
}

// BuiltInServiceRetries names the retry policy that, defined in a
// document, replaces Dapr's built-in retry of service invocations to apps
// without a policy.
const BuiltInServiceRetries = "DaprBuiltInServiceRetries"

// BuiltInServiceRetry is the retry named BuiltInServiceRetries in the first
// document (by name) that defines one; false when none does.
func (rs Resiliencies) BuiltInServiceRetry() (RetryPolicy, bool) {
	for _, r := range rs {
		if rp, ok := r.Retries[BuiltInServiceRetries]; ok {
			return rp, true
		}
	}
	return RetryPolicy{}, false
}

// ComponentOutbound is the policies of the sidecar's calls to component
// name, of type componentType (e.g. "state.redis").
func (rs Resiliencies) ComponentOutbound(name, componentType string) (Policy, bool) {
	return rs.component(name, componentType, Outbound)
}

// ComponentInbound is the policies of component name's deliveries to the
// app.
func (rs Resiliencies) ComponentInbound(name, componentType string) (Policy, bool) {
	return rs.component(name, componentType, Inbound)
}

// component is name's target in dir in the first document that gives it
// policies there. A component that documents name without policies in dir
// has none: it has an entry, so defaults do not apply (as in daprd).
func (rs Resiliencies) component(name, componentType string, dir Direction) (Policy, bool) {
	named := false
	for _, r := range rs {
		ct, ok := r.ComponentTarget(name)
		if !ok {
			continue
		}
		named = true
		t := ct.Outbound
		if dir == Inbound {
			t = ct.Inbound
		}
		if t != (TargetPolicy{}) {
			return r.policy(t), true
		}
	}
	if named {
		return Policy{}, false
	}
	return rs.ComponentDefaults(componentType, dir)
}

// ComponentDefaults is the default policies of a component of
// componentType ("state.redis", or just "state") in dir, each kind looked
// up on its own, most specific first: Default<Kind>Component<Dir>…Policy,
// DefaultComponent<Dir>…, DefaultComponent…, Default…Policy, where Kind is
// Statestore, Pubsub, Secretstore, Binding, Configuration, Lock, Crypto or
// Conversation.
func (rs Resiliencies) ComponentDefaults(componentType string, dir Direction) (Policy, bool) {
	levels := []string{"Component" + string(dir), "Component", ""}
	if kind := ComponentKind(componentType); kind != "" {
		levels = append([]string{kind + "Component" + string(dir)}, levels...)
	}
	return rs.defaults(levels)
}

// defaults finds each kind of policy on its own: the first level that any
// document has a default policy for, from the first document (by name)
// that has it.
func (rs Resiliencies) defaults(levels []string) (Policy, bool) {
	used := map[*Resiliency]bool{}
	find := func(template string, has func(*Resiliency, string) bool) (*Resiliency, string) {
		for _, level := range levels {
			name := strings.Replace(template, "%s", level, 1)
			for _, r := range rs {
				if has(r, name) {
					used[r] = true
					return r, name
				}
			}
		}
		return nil, ""
	}
	p := Policy{Default: true}
	if r, name := find(defaultTimeoutTemplate, func(r *Resiliency, n string) bool { _, ok := r.Timeouts[n]; return ok }); r != nil {
		p.Timeout = r.Timeouts[name]
	}
	if r, name := find(defaultRetryTemplate, func(r *Resiliency, n string) bool { _, ok := r.Retries[n]; return ok }); r != nil {
		rp := r.Retries[name]
		p.Retry = &rp
	}
	if r, name := find(defaultCircuitBreakerTemplate, func(r *Resiliency, n string) bool { _, ok := r.CircuitBreakers[n]; return ok }); r != nil {
		cb := r.CircuitBreakers[name]
		p.CircuitBreaker = &cb
	}
	if len(used) == 0 {
		return Policy{}, false
	}
	for _, r := range rs {
		if used[r] {
			p.Sources = append(p.Sources, r.Name)
			delete(used, r) // a document listed twice is named once
		}
	}
	return p, true
}
