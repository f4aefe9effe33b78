// Package components is the pipeline every building block plugs into: a
// building block registers its component types (the type name, its
// versions, and a factory that decodes and validates the typed metadata
// and builds the component), and a Set turns Component documents into
// live components. The Set resolves metadata values (value, envRef,
// secretKeyRef through the component's secret store), applies scopes,
// builds what is new or changed, closes what is gone, and keeps a
// component's last good version when a change to it fails. Registration
// happens in cmd/, never in init().
package components

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
)

// Type is one component type, e.g. secretstores.local.file v1.
type Type struct {
	// Name is the spec.type, e.g. "secretstores.local.file".
	Name string
	// Versions are the spec.version values accepted ("v1" when empty).
	Versions []string
	// New decodes and validates meta (values already resolved) and builds
	// the component. It returns the metadata keys it does not know, which
	// the Set logs as warnings so existing Dapr files load unchanged.
	New func(ctx context.Context, meta map[string]string) (component io.Closer, unknown []string, err error)
}

// Block is the building block a type belongs to: the part of its name
// before the first dot ("secretstores", "state", "pubsub").
func (t Type) Block() string {
	b, _, _ := strings.Cut(t.Name, ".")
	return b
}

// Registry holds the component types the binary was built with.
type Registry struct {
	mu    sync.RWMutex
	types map[string]Type
}

// NewRegistry makes an empty registry.
func NewRegistry() *Registry { return &Registry{types: map[string]Type{}} }

// Register adds t; a name registered twice is an error.
func (r *Registry) Register(t Type) error {
	if t.Name == "" || !strings.Contains(t.Name, ".") || t.New == nil {
		return fmt.Errorf("components: type %q needs a dotted name (block.kind) and a factory", t.Name)
	}
	if len(t.Versions) == 0 {
		t.Versions = []string{"v1"}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.types[t.Name]; dup {
		return fmt.Errorf("components: type %q registered twice", t.Name)
	}
	r.types[t.Name] = t
	return nil
}

// ErrUnknownType marks a component whose type or version is not registered.
var ErrUnknownType = errors.New("unknown component type")

// Lookup finds the type of name at version.
func (r *Registry) Lookup(name, version string) (Type, error) {
	r.mu.RLock()
	t, ok := r.types[name]
	r.mu.RUnlock()
	if !ok {
		return Type{}, fmt.Errorf("%w %q (this build knows %s)", ErrUnknownType, name, strings.Join(r.Names(), ", "))
	}
	for _, v := range t.Versions {
		if v == version {
			return t, nil
		}
	}
	return Type{}, fmt.Errorf("%w: %q has no version %q (it has %s)", ErrUnknownType, name, version, strings.Join(t.Versions, ", "))
}

// Names lists the registered type names, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.types))
	for n := range r.types {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
