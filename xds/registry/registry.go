// Package registry is the control plane's registry of connected sidecars.
//
// A sidecar announces itself by putting its instance (app-id, namespace,
// host and mesh port) under an id of its own choosing; the put both registers
// the instance and renews its lease, so a sidecar that keeps putting stays
// registered, one that stops is expired after its lease's time-to-live, and
// one that stops cleanly deletes itself. Because a put is an upsert, sidecars
// re-register on their own after the control plane restarts: the registry
// keeps nothing on disk.
//
// Readers list the instances and then long-poll for changes: a list carries
// the registry's epoch (random, per process) and index (bumped on every
// change of membership or address, never by a mere renewal), and a list
// request that names the current epoch and index blocks until either moves.
//
// The registry is served over HTTP/JSON under /registry/v1/ by Handler;
// nameresolution/registry is its client. Later the control plane also serves
// it as xDS EDS.
package registry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode"
)

// Defaults for Options fields left zero.
const (
	DefaultTTL           = 15 * time.Second
	DefaultMinTTL        = time.Second
	DefaultMaxTTL        = 5 * time.Minute
	DefaultMaxWait       = 5 * time.Minute
	DefaultSweepInterval = 500 * time.Millisecond
)

// Limits on what an instance may carry.
const (
	maxIDLen   = 128
	maxNameLen = 253
)

// ErrInvalid is returned (wrapped) by Register for an instance it refuses.
var ErrInvalid = errors.New("registry: invalid instance")

// Instance is one registered sidecar.
type Instance struct {
	// ID names the registration; the announcing sidecar chooses it and uses
	// it to renew and to deregister.
	ID string `json:"id"`
	// AppID is the app's id (daprd's --app-id).
	AppID string `json:"appID"`
	// Namespace is the app's namespace ("default" when registered empty).
	Namespace string `json:"namespace"`
	// Host is the address other sidecars dial.
	Host string `json:"host"`
	// Port is the sidecar's mesh port.
	Port int `json:"port"`
}

// Snapshot is the registry's content at one index.
type Snapshot struct {
	// Epoch identifies the registry process; a reader that sees it change
	// knows the index started over.
	Epoch string `json:"epoch"`
	// Index is bumped by every change of membership or address.
	Index uint64 `json:"index"`
	// Instances are sorted by namespace, app-id, then id.
	Instances []Instance `json:"instances"`
}

// Options configure a Registry; zero fields take the defaults above.
type Options struct {
	// DefaultTTL is the lease of a registration that asks for none.
	DefaultTTL time.Duration
	// MinTTL and MaxTTL bound the lease a registration may ask for.
	MinTTL, MaxTTL time.Duration
	// MaxWait bounds one long-poll.
	MaxWait time.Duration
	// SweepInterval is how often Run expires leases.
	SweepInterval time.Duration
	// Logger receives registrations, deregistrations and expiries.
	Logger *slog.Logger
	// Now is the clock (time.Now by default); tests replace it.
	Now func() time.Time
}

type entry struct {
	inst    Instance
	expires time.Time
}

// Registry holds the registered instances. It is safe for concurrent use;
// create it with New, expire leases with Run and serve it with Handler.
type Registry struct {
	opts  Options
	log   *slog.Logger
	epoch string

	mu      sync.Mutex
	index   uint64
	entries map[string]*entry
	changed chan struct{} // closed and replaced on every change
	stopped chan struct{} // closed when Run returns: waiters answer at once
	stop    sync.Once
}

// New returns an empty registry.
func New(opts Options) *Registry {
	if opts.DefaultTTL <= 0 {
		opts.DefaultTTL = DefaultTTL
	}
	if opts.MinTTL <= 0 {
		opts.MinTTL = DefaultMinTTL
	}
	if opts.MaxTTL <= 0 {
		opts.MaxTTL = DefaultMaxTTL
	}
	if opts.MaxTTL < opts.MinTTL {
		opts.MaxTTL = opts.MinTTL
	}
	if opts.MaxWait <= 0 {
		opts.MaxWait = DefaultMaxWait
	}
	if opts.SweepInterval <= 0 {
		opts.SweepInterval = DefaultSweepInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Registry{
		opts:    opts,
		log:     opts.Logger,
		epoch:   newEpoch(),
		index:   1,
		entries: map[string]*entry{},
		changed: make(chan struct{}),
		stopped: make(chan struct{}),
	}
}

func newEpoch() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Epoch identifies this registry; it differs in every process.
func (r *Registry) Epoch() string { return r.epoch }

// Run expires the leases of instances that stopped renewing, every
// SweepInterval, until ctx is done; it then wakes every waiting reader and
// returns nil.
func (r *Registry) Run(ctx context.Context) error {
	defer r.stop.Do(func() { close(r.stopped) })
	t := time.NewTicker(r.opts.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			r.Expire()
		}
	}
}

// Expire removes the instances whose lease has run out and reports how many.
// Run calls it; tests with their own clock call it directly.
func (r *Registry) Expire() int {
	now := r.opts.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for id, e := range r.entries {
		if now.After(e.expires) {
			delete(r.entries, id)
			n++
			r.log.Info("registry: lease expired", "id", id, "app_id", e.inst.AppID, "namespace", e.inst.Namespace, "address", address(e.inst))
		}
	}
	if n > 0 {
		r.changedLocked()
	}
	return n
}

// changedLocked bumps the index and wakes the waiters; r.mu is held.
func (r *Registry) changedLocked() {
	r.index++
	close(r.changed)
	r.changed = make(chan struct{})
}

// Register adds inst or, when its id is registered already, renews its lease
// (and updates it, if it changed). ttl is the lease asked for: zero takes the
// default and other values are clamped to [MinTTL, MaxTTL]. It returns the
// instance as stored and the lease granted; an instance it refuses gives an
// error wrapping ErrInvalid.
func (r *Registry) Register(inst Instance, ttl time.Duration) (Instance, time.Duration, error) {
	inst.Namespace = strings.TrimSpace(inst.Namespace)
	if inst.Namespace == "" {
		inst.Namespace = "default"
	}
	if err := validate(inst); err != nil {
		return inst, 0, err
	}
	switch {
	case ttl == 0:
		ttl = r.opts.DefaultTTL
	case ttl < r.opts.MinTTL:
		ttl = r.opts.MinTTL
	case ttl > r.opts.MaxTTL:
		ttl = r.opts.MaxTTL
	}
	expires := r.opts.Now().Add(ttl)
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.entries[inst.ID]; ok {
		e.expires = expires
		if e.inst != inst {
			r.log.Info("registry: instance updated", "id", inst.ID, "app_id", inst.AppID, "namespace", inst.Namespace, "address", address(inst))
			e.inst = inst
			r.changedLocked()
		}
		return inst, ttl, nil
	}
	r.entries[inst.ID] = &entry{inst: inst, expires: expires}
	r.log.Info("registry: instance registered", "id", inst.ID, "app_id", inst.AppID, "namespace", inst.Namespace, "address", address(inst), "ttl", ttl.String())
	r.changedLocked()
	return inst, ttl, nil
}

// Deregister removes the instance registered under id and reports whether
// there was one.
func (r *Registry) Deregister(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.entries[id]
	if !ok {
		return false
	}
	delete(r.entries, id)
	r.log.Info("registry: instance deregistered", "id", id, "app_id", e.inst.AppID, "namespace", e.inst.Namespace, "address", address(e.inst))
	r.changedLocked()
	return true
}

// Snapshot returns the registry's current content.
func (r *Registry) Snapshot() Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.snapshotLocked()
}

func (r *Registry) snapshotLocked() Snapshot {
	s := Snapshot{Epoch: r.epoch, Index: r.index, Instances: make([]Instance, 0, len(r.entries))}
	for _, e := range r.entries {
		s.Instances = append(s.Instances, e.inst)
	}
	sort.Slice(s.Instances, func(i, j int) bool {
		a, b := s.Instances[i], s.Instances[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.AppID != b.AppID {
			return a.AppID < b.AppID
		}
		return a.ID < b.ID
	})
	return s
}

// Wait returns the registry's content once it differs from the one a reader
// saw at epoch and index: at once when it differs already, else at the next
// change. When ctx is done, or the registry stops, it returns the unchanged
// content.
func (r *Registry) Wait(ctx context.Context, epoch string, index uint64) Snapshot {
	for {
		r.mu.Lock()
		if epoch != r.epoch || index != r.index {
			s := r.snapshotLocked()
			r.mu.Unlock()
			return s
		}
		ch := r.changed
		r.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return r.Snapshot()
		case <-r.stopped:
			return r.Snapshot()
		}
	}
}

func address(inst Instance) string {
	return net.JoinHostPort(inst.Host, fmt.Sprint(inst.Port))
}

// validate checks an instance whose namespace is filled in.
func validate(inst Instance) error {
	if inst.ID == "" || len(inst.ID) > maxIDLen {
		return fmt.Errorf("id %q: want 1 to %d characters: %w", inst.ID, maxIDLen, ErrInvalid)
	}
	for _, c := range inst.ID {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return fmt.Errorf("id %q: want letters, digits, '-', '_', '.' or ':': %w", inst.ID, ErrInvalid)
		}
	}
	if err := validName("appID", inst.AppID); err != nil {
		return err
	}
	if err := validName("namespace", inst.Namespace); err != nil {
		return err
	}
	if inst.Host == "" {
		return fmt.Errorf("host is required: %w", ErrInvalid)
	}
	if err := validHost(inst.Host); err != nil {
		return err
	}
	if inst.Port < 1 || inst.Port > 65535 {
		return fmt.Errorf("port %d: want 1 to 65535: %w", inst.Port, ErrInvalid)
	}
	return nil
}

func validName(field, s string) error {
	if s == "" {
		return fmt.Errorf("%s is required: %w", field, ErrInvalid)
	}
	if len(s) > maxNameLen {
		return fmt.Errorf("%s: longer than %d characters: %w", field, maxNameLen, ErrInvalid)
	}
	for _, c := range s {
		if unicode.IsSpace(c) || unicode.IsControl(c) || c == '/' || c == unicode.ReplacementChar {
			return fmt.Errorf("%s %q: must not hold spaces, control characters or '/': %w", field, s, ErrInvalid)
		}
	}
	return nil
}

func validHost(h string) error {
	if _, err := netip.ParseAddr(h); err == nil {
		return nil
	}
	if len(h) > maxNameLen {
		return fmt.Errorf("host: longer than %d characters: %w", maxNameLen, ErrInvalid)
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return fmt.Errorf("host %q: want an IP address or a DNS name: %w", h, ErrInvalid)
		}
	}
	return nil
}
