package components

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/outrigger/outrigger/config"
)

// DefaultInitTimeout bounds a component's construction when its document
// sets no spec.initTimeout (daprd's default).
const DefaultInitTimeout = 5 * time.Second

// SecretGetter reads one value of a secret from a live secret store; the
// Set uses it to resolve secretKeyRef. The secrets building block provides it.
type SecretGetter func(ctx context.Context, store io.Closer, name, key string) (string, error)

// Options configure a Set.
type Options struct {
	AppID     string
	Namespace string
	Registry  *Registry
	// Secret resolves secretKeyRefs through secret stores of this Set;
	// without it a secretKeyRef is an error.
	Secret SecretGetter
	Logger *slog.Logger
	// Getenv reads envRef variables (default os.Getenv).
	Getenv func(string) string
	// Metrics, when set, count the components built and those that failed.
	Metrics *Metrics
}

// Component is a live component.
type Component struct {
	Doc      config.Component
	Type     Type
	Instance io.Closer
}

// Set is the live components of one sidecar. It is safe for concurrent use.
type Set struct {
	opts Options

	mu      sync.RWMutex
	live    map[string]*Component
	prints  map[string]string
	started bool
}

// NewSet makes an empty set.
func NewSet(opts Options) *Set {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	return &Set{opts: opts, live: map[string]*Component{}, prints: map[string]string{}}
}

// Get returns the live component called name.
func (s *Set) Get(name string) (*Component, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.live[name]
	return c, ok
}

// List returns the live components of one block ("" for all), by name.
func (s *Set) List(block string) []*Component {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*Component
	for _, c := range s.live {
		if block == "" || c.Type.Block() == block {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Doc.Name < out[j].Doc.Name })
	return out
}

// Apply makes the live components match docs: those that do not apply to
// this app (scopes, namespace) are left out; new and changed ones are built
// (secret stores first, so others can resolve secretKeyRefs through them);
// removed ones are closed. A component that fails keeps its last good
// version. On the first Apply (start-up), a failure of a component without
// spec.ignoreErrors is returned as an error, as daprd fails to start;
// afterwards every failure is returned and nothing stops.
func (s *Set) Apply(ctx context.Context, docs []config.Component) error {
	want := map[string]config.Component{}
	var errs []error
	for _, d := range docs {
		if !config.Applies(d.Scopes, s.opts.AppID) || (d.Namespace != "" && s.opts.Namespace != "" && d.Namespace != s.opts.Namespace) {
			continue
		}
		if prev, dup := want[d.Name]; dup {
			errs = append(errs, fmt.Errorf("%s: component %q is also defined at %s; keeping the first", d.Source, d.Name, prev.Source))
			continue
		}
		want[d.Name] = d
	}
	s.mu.Lock()
	cold := !s.started
	s.started = true
	s.mu.Unlock()

	// Removed components first.
	s.mu.Lock()
	var gone []*Component
	for name, c := range s.live {
		if _, ok := want[name]; !ok {
			gone = append(gone, c)
			delete(s.live, name)
			delete(s.prints, name)
		}
	}
	s.mu.Unlock()
	for _, c := range gone {
		s.opts.Logger.Info("component removed", "name", c.Doc.Name, "type", c.Doc.Type)
		s.closeLater(c)
	}

	// Then new and changed ones, secret stores first.
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		si, sj := isSecretStore(want[names[i]]), isSecretStore(want[names[j]])
		if si != sj {
			return si
		}
		return names[i] < names[j]
	})
	var fatal []error
	for _, n := range names {
		d := want[n]
		print := fingerprint(d)
		s.mu.RLock()
		same := s.prints[n] == print
		s.mu.RUnlock()
		if same {
			continue
		}
		c, err := s.build(ctx, d)
		if err != nil {
			err = fmt.Errorf("%s: component %q (%s/%s): %w", d.Source, d.Name, d.Type, d.Version, err)
			errs = append(errs, err)
			if cold && !d.IgnoreErrors {
				fatal = append(fatal, err)
			} else {
				s.opts.Logger.Error("component not loaded; keeping its last good version if any", "err", err)
			}
			continue
		}
		s.mu.Lock()
		old := s.live[n]
		s.live[n] = c
		s.prints[n] = print
		s.mu.Unlock()
		if old != nil {
			s.opts.Logger.Info("component updated", "name", n, "type", d.Type)
			s.closeLater(old)
		} else {
			s.opts.Logger.Info("component loaded", "name", n, "type", d.Type, "version", d.Version)
		}
	}
	if len(fatal) > 0 {
		return errors.Join(fatal...)
	}
	if !cold && len(errs) > 0 {
		return errors.Join(errs...)
	}
	for _, e := range errs {
		s.opts.Logger.Warn("component ignored (spec.ignoreErrors)", "err", e)
	}
	return nil
}

// closeLater closes a replaced or removed component after the calls that
// already hold it have had time to finish.
func (s *Set) closeLater(c *Component) {
	time.AfterFunc(5*time.Second, func() {
		if err := c.Instance.Close(); err != nil {
			s.opts.Logger.Warn("closing a component", "name", c.Doc.Name, "err", err)
		}
	})
}

func isSecretStore(d config.Component) bool { return Type{Name: d.Type}.Block() == "secretstores" }

func (s *Set) build(ctx context.Context, d config.Component) (*Component, error) {
	t, err := s.opts.Registry.Lookup(d.Type, d.Version)
	if err != nil {
		s.opts.Metrics.failed(d.Type, reasonCreation, d.Name)
		return nil, err
	}
	meta, err := s.resolve(ctx, d)
	if err != nil {
		s.opts.Metrics.failed(d.Type, reasonInit, d.Name)
		return nil, err
	}
	timeout := d.InitTimeout
	if timeout <= 0 {
		timeout = DefaultInitTimeout
	}
	ictx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	refs := map[string]config.SecretKeyRef{}
	for _, m := range d.Metadata {
		if m.SecretKeyRef != nil {
			refs[m.Name] = *m.SecretKeyRef
		}
	}
	inst, unknown, err := t.New(context.WithValue(ictx, secretRefsKey{}, refs), meta)
	if err != nil {
		s.opts.Metrics.failed(d.Type, reasonInit, d.Name)
		return nil, err
	}
	for _, k := range unknown {
		s.opts.Logger.Warn("component metadata key not known to its type; ignored", "component", d.Name, "type", d.Type, "key", k, "source", d.Source.String())
	}
	s.opts.Metrics.built(d.Type)
	return &Component{Doc: d, Type: t, Instance: inst}, nil
}

type secretRefsKey struct{}

// SecretRefs tells a component type's New which of its metadata values came
// from a secretKeyRef, and from which secret: by metadata name. Some types
// need the reference itself (a state store names its encryption keys by
// their secrets).
func SecretRefs(ctx context.Context) map[string]config.SecretKeyRef {
	refs, _ := ctx.Value(secretRefsKey{}).(map[string]config.SecretKeyRef)
	return refs
}

// resolve turns spec.metadata into values: value as written, envRef from
// the environment, secretKeyRef through the component's secret store.
func (s *Set) resolve(ctx context.Context, d config.Component) (map[string]string, error) {
	meta := make(map[string]string, len(d.Metadata))
	for _, m := range d.Metadata {
		switch {
		case m.SecretKeyRef != nil:
			if d.SecretStore == "" {
				return nil, fmt.Errorf("spec.metadata %q: secretKeyRef needs auth.secretStore", m.Name)
			}
			store, ok := s.Get(d.SecretStore)
			if !ok || store.Type.Block() != "secretstores" {
				return nil, fmt.Errorf("spec.metadata %q: secret store %q is not loaded", m.Name, d.SecretStore)
			}
			if s.opts.Secret == nil {
				return nil, fmt.Errorf("spec.metadata %q: this build resolves no secretKeyRef", m.Name)
			}
			v, err := s.opts.Secret(ctx, store.Instance, m.SecretKeyRef.Name, m.SecretKeyRef.Key)
			if err != nil {
				return nil, fmt.Errorf("spec.metadata %q: secret %q key %q from %q: %w", m.Name, m.SecretKeyRef.Name, m.SecretKeyRef.Key, d.SecretStore, err)
			}
			meta[m.Name] = v
		case m.EnvRef != "":
			meta[m.Name] = s.opts.Getenv(m.EnvRef)
		default:
			meta[m.Name] = m.Value
		}
	}
	return meta, nil
}

// fingerprint identifies a document's content, so an unchanged component is
// not rebuilt.
func fingerprint(d config.Component) string {
	d.Source = config.Source{}
	d.Metadata = append([]config.MetadataItem(nil), d.Metadata...)
	for i := range d.Metadata {
		d.Metadata[i].Line = 0
	}
	b, _ := json.Marshal(d) // plain data: it always encodes
	return string(b)
}

// Close closes every live component.
func (s *Set) Close() error {
	s.mu.Lock()
	live := s.live
	s.live = map[string]*Component{}
	s.prints = map[string]string{}
	s.mu.Unlock()
	var errs []error
	for _, c := range live {
		if err := c.Instance.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
