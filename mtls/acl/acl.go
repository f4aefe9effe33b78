// Package acl enforces Dapr's service-invocation access control: the
// accessControl section of a Dapr Configuration document. The callee's
// sidecar compiles the section once with Compile and asks Policy.Decide, for
// every incoming call, whether the caller's proven SPIFFE identity may invoke
// the operation. Decisions are the ones Dapr 1.18 makes, quirks included;
// each quirk is marked "Dapr quirk" where it is kept.
package acl

import (
	"errors"
	"fmt"
	"strings"
)

// Actions and scopes, spelled as Dapr spells them.
const (
	allowAccess = "allow"
	denyAccess  = "deny"

	scopeGlobal = "global"
	scopeApp    = "app"
)

// Spec is the accessControl section of a Dapr Configuration, as written in
// YAML or JSON.
type Spec struct {
	// DefaultAction is "allow" or "deny" (any case) for callers that no policy
	// decides. Empty means deny when policies is absent or non-empty, and
	// allow when policies is present but empty.
	DefaultAction string `json:"defaultAction,omitempty" yaml:"defaultAction,omitempty"`
	// TrustDomain is the trust domain of the apps this configuration applies
	// to; Dapr reads empty as "public". Dapr never compares it with a caller
	// (only a policy's own trustDomain is checked), so it plays no part in
	// decisions beyond making the section non-empty.
	TrustDomain string `json:"trustDomain,omitempty" yaml:"trustDomain,omitempty"`
	// Policies are the per-caller rules.
	Policies []AppPolicy `json:"policies,omitempty" yaml:"policies,omitempty"`
}

// AppPolicy holds the rules for calls from one app.
type AppPolicy struct {
	// AppID, Namespace and TrustDomain name the calling app. All three are
	// required.
	AppID     string `json:"appId,omitempty" yaml:"appId,omitempty"`
	Namespace string `json:"namespace,omitempty" yaml:"namespace,omitempty"`
	// TrustDomain must equal the caller's trust domain exactly, or the policy
	// is ignored and the global default action applies.
	TrustDomain string `json:"trustDomain,omitempty" yaml:"trustDomain,omitempty"`
	// DefaultAction is "allow" or "deny" (any case) for this app's calls that
	// no operation decides. Empty leaves the global default action in force.
	DefaultAction string `json:"defaultAction,omitempty" yaml:"defaultAction,omitempty"`
	// Operations are rules for individual methods.
	Operations []Operation `json:"operations,omitempty" yaml:"operations,omitempty"`
}

// Operation is one rule of an AppPolicy.
type Operation struct {
	// Name is the method path pattern, such as "/orders/*" or
	// "/pkg.Svc/Method". A missing leading slash is added. A segment "*"
	// matches one segment, "**" any number, and "*" inside a segment any
	// characters.
	Name string `json:"name,omitempty" yaml:"name,omitempty"`
	// HTTPVerb lists the HTTP methods (upper case) the action applies to
	// when the callee app speaks HTTP; "*" stands for every method.
	HTTPVerb []string `json:"httpVerb,omitempty" yaml:"httpVerb,omitempty"`
	// Action is "allow" or "deny" (any case).
	Action string `json:"action,omitempty" yaml:"action,omitempty"`
}

// Caller is the proven identity of the calling sidecar, taken from its
// SPIFFE ID spiffe://<TrustDomain>/ns/<Namespace>/<AppID>.
type Caller struct {
	TrustDomain string
	Namespace   string
	AppID       string
}

// Decision is the answer of Policy.Decide.
type Decision struct {
	// Allowed says whether the call may proceed.
	Allowed bool
	// Scope is "global" when the global default action decided (or was still
	// in force when an operation rule decided), "app" when the caller's
	// policy has its own default action, and "" when there is no policy.
	// These are the labels of Dapr's ACL metrics.
	Scope string
	// Reason says which rule decided, for logs and error messages.
	Reason string
}

// Policy is a compiled Spec. It is immutable and safe for concurrent use. A
// nil *Policy allows every call.
type Policy struct {
	defaultAction string                // "allow" or "deny"
	apps          map[string]*appPolicy // by appKey
}

type appPolicy struct {
	trustDomain   string
	namespace     string
	defaultAction string // "allow", "deny" or "" when unset
	// exact matches operations as written (gRPC apps); folded matches
	// lower-cased operations against lower-cased names (HTTP apps). Dapr
	// builds only the one its app protocol needs; Decide is told per call.
	exact, folded *node
}

// rule is a compiled Operation.
type rule struct {
	name   string            // the pattern as stored, with its leading slash
	action string            // "allow" or "deny"
	verbs  map[string]string // HTTP method or "*" → action
}

// httpVerbs are the methods Dapr's HTTPExtension knows.
var httpVerbs = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}

// Compile validates spec and compiles it. A nil spec, or one with no default
// action, no trust domain and no policies, compiles to a nil *Policy, which
// allows everything. Every problem found is reported, each prefixed with its
// field path.
func Compile(spec *Spec) (*Policy, error) {
	if spec == nil || (spec.DefaultAction == "" && spec.TrustDomain == "" && len(spec.Policies) == 0) {
		return nil, nil
	}
	var errs []error
	p := &Policy{apps: make(map[string]*appPolicy, len(spec.Policies))}

	switch {
	case spec.DefaultAction != "":
		p.defaultAction = checkAction(&errs, "accessControl.defaultAction", spec.DefaultAction)
	case spec.Policies != nil && len(spec.Policies) == 0:
		// Dapr quirk: "policies: []" counts as an empty ACL and defaults to
		// allow, while leaving policies out defaults to deny.
		p.defaultAction = allowAccess
	default:
		p.defaultAction = denyAccess
	}

	for i, ps := range spec.Policies {
		path := fmt.Sprintf("accessControl.policies[%d]", i)
		if ps.AppID == "" {
			errs = append(errs, fmt.Errorf("%s.appId: required", path))
		}
		if ps.TrustDomain == "" {
			errs = append(errs, fmt.Errorf("%s.trustDomain: required for appId %q", path, ps.AppID))
		}
		if ps.Namespace == "" {
			errs = append(errs, fmt.Errorf("%s.namespace: required for appId %q", path, ps.AppID))
		}
		ap := &appPolicy{
			trustDomain: ps.TrustDomain,
			namespace:   ps.Namespace,
			exact:       &node{},
			folded:      &node{},
		}
		if ps.DefaultAction != "" {
			ap.defaultAction = checkAction(&errs, path+".defaultAction", ps.DefaultAction)
		}
		for j, op := range ps.Operations {
			opPath := fmt.Sprintf("%s.operations[%d]", path, j)
			name := op.Name
			if !strings.HasPrefix(name, "/") {
				name = "/" + name
			}
			r := &rule{
				name:   name,
				action: checkAction(&errs, opPath+".action", op.Action),
				verbs:  make(map[string]string, len(op.HTTPVerb)),
			}
			for k, v := range op.HTTPVerb {
				if v != "*" && !knownVerb(v) {
					errs = append(errs, fmt.Errorf("%s.httpVerb[%d]: %q: want one of %s or \"*\" (upper case)",
						opPath, k, v, strings.Join(httpVerbs, ", ")))
				}
				r.verbs[v] = r.action
			}
			ap.exact.insert(name, r)
			lower := *r
			lower.name = strings.ToLower(name)
			ap.folded.insert(lower.name, &lower)
		}
		// Dapr quirk: a later policy for the same appId and namespace replaces
		// an earlier one.
		p.apps[appKey(ps.AppID, ps.Namespace)] = ap
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

// checkAction returns the lower-cased action, or records an error when it is
// neither allow nor deny. Dapr itself accepts any string and treats all but
// "allow" as deny; Compile rejects them instead.
func checkAction(errs *[]error, path, action string) string {
	a := strings.ToLower(action)
	if a != allowAccess && a != denyAccess {
		*errs = append(*errs, fmt.Errorf("%s: %q: want allow or deny", path, action))
	}
	return a
}

func knownVerb(v string) bool {
	for _, k := range httpVerbs {
		if v == k {
			return true
		}
	}
	return false
}

// appKey is Dapr's lookup key. Dapr quirk: an appId or namespace containing
// "||" can collide with another pair; the namespace check in Decide then
// sends the caller to the global default action.
func appKey(appID, namespace string) string {
	return appID + "||" + namespace
}

// Decide reports whether caller may invoke operation with the HTTP method
// verb. caller is nil when the call carries no proven identity; the global
// default action then applies. operation is the method path ("orders/new",
// "/orders/new", or the full gRPC method "/pkg.Svc/Method" when proxying
// gRPC). verb is "" when the call has none (a gRPC call). isHTTP says whether
// the callee app speaks HTTP: operations are then matched case-insensitively
// and the verb picks the action; otherwise matching is case-sensitive and a
// matched operation's action applies whatever the verb.
//
// Like Dapr's sidecar, which turns the request method into its HTTPExtension
// verb before the callee sees it, Decide upper-cases verb, treats "NONE" as no
// verb and treats a method Dapr does not know as POST.
func (p *Policy) Decide(caller *Caller, operation, verb string, isHTTP bool) Decision {
	if p == nil {
		return Decision{Allowed: true, Reason: "no access control policy"}
	}
	action, scope := p.defaultAction, scopeGlobal
	if caller == nil {
		return decision(action, scope, "caller has no proven identity: global default action %s", action)
	}
	ap := p.apps[appKey(caller.AppID, caller.Namespace)]
	if ap == nil {
		return decision(action, scope, "no policy for app %q in namespace %q: global default action %s",
			caller.AppID, caller.Namespace, action)
	}
	if ap.trustDomain != caller.TrustDomain {
		return decision(action, scope, "trust domain %q of app %q is not the policy's %q: global default action %s",
			caller.TrustDomain, caller.AppID, ap.trustDomain, action)
	}
	if ap.namespace != caller.Namespace {
		return decision(action, scope, "namespace %q of app %q is not the policy's %q: global default action %s",
			caller.Namespace, caller.AppID, ap.namespace, action)
	}
	what := "global default action"
	if ap.defaultAction != "" {
		action, scope, what = ap.defaultAction, scopeApp, "app default action"
	}

	if !strings.HasPrefix(operation, "/") {
		operation = "/" + operation
	}
	root := ap.exact
	if isHTTP {
		operation = strings.ToLower(operation)
		root = ap.folded
	}
	r := root.lookup(operation)
	switch {
	case r == nil:
		return decision(action, scope, "operation %q matches no rule of app %q: %s %s",
			operation, caller.AppID, what, action)
	case !isHTTP:
		return decision(r.action, scope, "operation %q matches rule %q: %s", operation, r.name, r.action)
	}
	v := canonicalVerb(verb)
	if v == "" {
		// Dapr quirk: an HTTP call without a verb takes the app's default
		// action even when the app has none, and "" means deny, whatever the
		// global default action; the scope stays as it was.
		return decision(ap.defaultAction, scope, "operation %q matches rule %q but the call has no HTTP verb: app default action %q",
			operation, r.name, ap.defaultAction)
	}
	if a, ok := r.verbs[v]; ok {
		return decision(a, scope, "%s %q matches rule %q: %s", v, operation, r.name, a)
	}
	if a, ok := r.verbs["*"]; ok {
		return decision(a, scope, "%s %q matches rule %q (verb *): %s", v, operation, r.name, a)
	}
	return decision(action, scope, "operation %q matches rule %q, which does not list %s: %s %s",
		operation, r.name, v, what, action)
}

func decision(action, scope, format string, args ...any) Decision {
	return Decision{
		Allowed: strings.EqualFold(action, allowAccess),
		Scope:   scope,
		Reason:  fmt.Sprintf(format, args...),
	}
}

// canonicalVerb maps a request method to the verb Dapr's HTTPExtension
// carries: upper case, "" for none, POST for a method Dapr does not know.
func canonicalVerb(verb string) string {
	if verb == "" {
		return ""
	}
	v := strings.ToUpper(verb)
	switch {
	case v == "NONE":
		return ""
	case knownVerb(v):
		return v
	default:
		return "POST"
	}
}
