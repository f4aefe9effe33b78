package secrets

import (
	"errors"
	"fmt"
	"strings"
)

// Access values of Scope.DefaultAccess, as Dapr spells them.
const (
	AllowAccess = "allow"
	DenyAccess  = "deny"
)

// Scopes is spec.secrets.scopes of a Dapr Configuration document: which
// secrets of which store the app may read.
type Scopes []Scope

// Scope limits access to one secret store.
type Scope struct {
	// StoreName is the name of the secret store component. Required, and
	// unique among the scopes.
	StoreName string `json:"storeName,omitempty" yaml:"storeName,omitempty"`
	// DefaultAccess is "allow" (the default when empty) or "deny", in any
	// case: the answer for keys neither list names.
	DefaultAccess string `json:"defaultAccess,omitempty" yaml:"defaultAccess,omitempty"`
	// AllowedSecrets, when not empty, are the only keys that may be read;
	// DefaultAccess and DeniedSecrets are then ignored (Dapr does the same, so
	// a key in both lists is allowed).
	AllowedSecrets []string `json:"allowedSecrets,omitempty" yaml:"allowedSecrets,omitempty"`
	// DeniedSecrets are keys that may not be read when AllowedSecrets is
	// empty.
	DeniedSecrets []string `json:"deniedSecrets,omitempty" yaml:"deniedSecrets,omitempty"`
}

// Policy is compiled Scopes. It is immutable and safe for concurrent use. A
// nil *Policy allows every secret, as daprd does with no scopes.
type Policy struct {
	stores map[string]storePolicy
}

type storePolicy struct {
	deny    bool                // default access
	allowed map[string]struct{} // nil when AllowedSecrets is empty
	denied  map[string]struct{}
}

// Compile validates the scopes and compiles them. Empty scopes compile to a
// nil *Policy. Every problem is reported, each prefixed with its field path
// (secrets.scopes[i].field). Where Dapr accepts a scope with no storeName,
// Compile rejects it: it could never apply to a store.
func (s Scopes) Compile() (*Policy, error) {
	if len(s) == 0 {
		return nil, nil
	}
	p := &Policy{stores: make(map[string]storePolicy, len(s))}
	first := make(map[string]int, len(s))
	var errs []error
	for i, sc := range s {
		path := fmt.Sprintf("secrets.scopes[%d]", i)
		switch j, dup := first[sc.StoreName]; {
		case sc.StoreName == "":
			errs = append(errs, fmt.Errorf("%s.storeName: required", path))
		case dup:
			errs = append(errs, fmt.Errorf("%s.storeName: %q is already scoped by secrets.scopes[%d]", path, sc.StoreName, j))
		default:
			first[sc.StoreName] = i
		}
		var sp storePolicy
		switch {
		case sc.DefaultAccess == "" || strings.EqualFold(sc.DefaultAccess, AllowAccess):
		case strings.EqualFold(sc.DefaultAccess, DenyAccess):
			sp.deny = true
		default:
			errs = append(errs, fmt.Errorf("%s.defaultAccess: %q: want allow or deny", path, sc.DefaultAccess))
		}
		if len(sc.AllowedSecrets) > 0 {
			sp.allowed = set(sc.AllowedSecrets)
		}
		sp.denied = set(sc.DeniedSecrets)
		if _, dup := p.stores[sc.StoreName]; !dup {
			p.stores[sc.StoreName] = sp
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

// Allowed reports whether the app may read key from store, deciding as
// daprd does: a store with no scope allows every key; otherwise a non-empty
// allowedSecrets list decides alone, then deniedSecrets denies, then
// defaultAccess answers. Keys compare exactly (case-sensitively).
func (p *Policy) Allowed(store, key string) bool {
	if p == nil {
		return true
	}
	sp, ok := p.stores[store]
	if !ok {
		return true
	}
	if sp.allowed != nil {
		_, ok := sp.allowed[key]
		return ok
	}
	if _, ok := sp.denied[key]; ok {
		return false
	}
	return !sp.deny
}

func set(keys []string) map[string]struct{} {
	m := make(map[string]struct{}, len(keys))
	for _, k := range keys {
		m[k] = struct{}{}
	}
	return m
}
