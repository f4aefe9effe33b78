// Package balance spreads a sidecar's calls over the instances of an app
// that a nameresolution.Watcher reports: round robin, least request (the
// better of two random choices) or consistent hashing on a key, with outlier
// detection that ejects an instance after consecutive failures and lets it
// back after a cool-down that grows with each ejection.
//
// The request path reads immutable snapshots through atomic pointers: a pick
// for an app already watched takes no lock and allocates nothing. Watching
// starts at an app's first pick, which waits for the watcher's first answer.
package balance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/outrigger/outrigger/nameresolution"
)

// Policy is how a pick chooses among an app's instances.
type Policy string

// The policies.
const (
	// RoundRobin takes the instances in turn (the default).
	RoundRobin Policy = "round_robin"
	// LeastRequest takes the one with fewer calls in flight of two picked
	// at random.
	LeastRequest Policy = "least_request"
	// RingHash maps a key (a header's value) to the same instance for as
	// long as the set allows: consistent hashing on a ring.
	RingHash Policy = "ring_hash"
)

// ParsePolicy reads a policy name; "" is RoundRobin.
func ParsePolicy(s string) (Policy, error) {
	switch Policy(s) {
	case "", RoundRobin:
		return RoundRobin, nil
	case LeastRequest, RingHash:
		return Policy(s), nil
	}
	return "", fmt.Errorf("load balancing policy %q: want %s, %s or %s", s, RoundRobin, LeastRequest, RingHash)
}

// Outlier is outlier detection, as Envoy's cluster setting of that name:
// an instance whose calls failed ConsecutiveFailures times in a row is left
// out for BaseEjection times the number of times it was ejected (at most
// MaxEjection), then tried again.
type Outlier struct {
	// ConsecutiveFailures ejects (default 5; negative turns detection off).
	ConsecutiveFailures int
	// BaseEjection is the first ejection's length (default 30s).
	BaseEjection time.Duration
	// MaxEjection caps an ejection's length (default 300s).
	MaxEjection time.Duration
	// MaxEjectionPercent caps the share of an app's instances ejected at
	// once (default 10); one instance may always be ejected.
	MaxEjectionPercent int
}

// Options configure a Balancer.
type Options struct {
	Policy  Policy
	Outlier Outlier
	// FirstAnswer bounds how long an app's first pick waits for the
	// watcher's first answer (default 5s; the pick's context may cut it
	// shorter).
	FirstAnswer time.Duration
	// RingPoints is the number of points each instance has on a hash ring
	// (default 128). It does not depend on the number of instances, so an
	// instance that comes or goes moves only the keys next to its own points.
	RingPoints int
	Logger     *slog.Logger
	// ForApp, when set, gives an app's own policy and outlier detection
	// (the control plane's cluster of the app, over xDS); it is asked when
	// the app's instances change. Zero fields keep the defaults above.
	ForApp func(appID, namespace string) (AppOptions, bool)
}

// AppOptions are the settings one app may have of its own.
type AppOptions struct {
	Policy  Policy
	Outlier Outlier
	// HashHeader is the request header (gRPC metadata key) whose value
	// RingHash hashes. The balancer does not read it: the caller hashes
	// the value and passes it to Pick. Over xDS it travels as the app's
	// route hash_policy, as Envoy carries it, not on the cluster.
	HashHeader string
}

// Defaults fills the zero fields of o with the defaults.
func (o *Outlier) Defaults() {
	if o.ConsecutiveFailures == 0 {
		o.ConsecutiveFailures = 5
	}
	if o.BaseEjection <= 0 {
		o.BaseEjection = 30 * time.Second
	}
	if o.MaxEjection <= 0 {
		o.MaxEjection = 300 * time.Second
	}
	if o.MaxEjectionPercent <= 0 {
		o.MaxEjectionPercent = 10
	}
}

func (o *Options) defaults() {
	if o.Policy == "" {
		o.Policy = RoundRobin
	}
	o.Outlier.Defaults()
	if o.FirstAnswer <= 0 {
		o.FirstAnswer = 5 * time.Second
	}
	if o.RingPoints <= 0 {
		o.RingPoints = 128
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Balancer picks instances of apps. It is safe for concurrent use.
type Balancer struct {
	w   nameresolution.Watcher
	o   Options
	now func() time.Time

	mu   sync.Mutex // writers of apps
	apps atomic.Pointer[map[appKey]*app]

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	foreign  atomic.Int64
	ejected  atomic.Int64
	failures atomic.Int64
}

type appKey struct{ id, ns string }

// app is one app being watched.
type app struct {
	key   appKey
	ready chan struct{} // closed at the first answer
	once  sync.Once
	set   atomic.Pointer[endpointSet]
	err   atomic.Pointer[error] // the watch failed for good
	next  atomic.Uint64         // round robin
	opts  atomic.Pointer[AppOptions]
	// hadInstances is set once the app had an instance.
	hadInstances atomic.Bool
	// ctx ends the app's watch (Close, or the app dropped for having no
	// instance at its first answer).
	ctx    context.Context
	cancel context.CancelFunc
}

// endpointSet is an immutable snapshot of an app's instances.
type endpointSet struct {
	eps  []*Endpoint
	ring []ringPoint // sorted by hash; RingHash only
}

type ringPoint struct {
	hash uint64
	ep   *Endpoint
}

// Endpoint is one instance of an app as the balancer tracks it.
type Endpoint struct {
	addr string
	inst nameresolution.Instance
	b    *Balancer
	app  *app

	active       atomic.Int64
	fails        atomic.Int32
	ejections    atomic.Int32
	ejectedUntil atomic.Int64 // unix nanoseconds; 0: never ejected
}

// Address is the instance's mesh address, host:port.
func (e *Endpoint) Address() string { return e.addr }

// Instance is the instance as the watcher reported it.
func (e *Endpoint) Instance() nameresolution.Instance { return e.inst }

// Done reports how a call to the endpoint went: nil for a call that
// reached the instance, an error for one that did not (the connection
// failed or timed out, or the sidecar there answered that it could not
// serve). Every pick must be followed by one Done.
func (e *Endpoint) Done(err error) {
	e.active.Add(-1)
	if err == nil {
		if e.fails.Load() != 0 {
			e.fails.Store(0)
		}
		return
	}
	e.b.failures.Add(1)
	o := e.app.opts.Load().Outlier
	if o.ConsecutiveFailures < 0 {
		return
	}
	if n := e.fails.Add(1); int(n) < o.ConsecutiveFailures {
		return
	}
	e.b.eject(e)
}

// eject leaves e out for a while, if the app's ejection cap allows.
func (b *Balancer) eject(e *Endpoint) {
	now := b.now().UnixNano()
	if e.ejectedUntil.Load() > now {
		return // already out
	}
	set := e.app.set.Load()
	if set == nil {
		return
	}
	out := 0
	for _, x := range set.eps {
		if x.ejectedUntil.Load() > now {
			out++
		}
	}
	o := e.app.opts.Load().Outlier
	if out > 0 && (out+1)*100 > o.MaxEjectionPercent*len(set.eps) {
		return
	}
	n := e.ejections.Add(1)
	d := min(time.Duration(n)*o.BaseEjection, o.MaxEjection)
	e.ejectedUntil.Store(now + int64(d))
	e.fails.Store(0)
	b.ejected.Add(1)
	b.o.Logger.Warn("instance ejected after consecutive failures", "app_id", e.inst.AppID, "namespace", e.inst.Namespace,
		"address", e.addr, "failures", o.ConsecutiveFailures, "for", d)
}

// New returns a balancer over what w reports. Close stops its watches.
func New(w nameresolution.Watcher, o Options) *Balancer {
	o.defaults()
	ctx, cancel := context.WithCancel(context.Background())
	b := &Balancer{w: w, o: o, now: time.Now, ctx: ctx, cancel: cancel}
	b.apps.Store(&map[appKey]*app{})
	return b
}

// Close stops watching.
func (b *Balancer) Close() error {
	b.cancel()
	b.wg.Wait()
	return nil
}

// Stats are the balancer's counters since it was made.
type Stats struct {
	// ForeignDropped counts instances a watcher reported for another app
	// or namespace than it was asked about.
	ForeignDropped int64
	// Ejections counts outlier ejections.
	Ejections int64
	// Failures counts calls reported failed.
	Failures int64
}

// Stats returns the counters.
func (b *Balancer) Stats() Stats {
	return Stats{ForeignDropped: b.foreign.Load(), Ejections: b.ejected.Load(), Failures: b.failures.Load()}
}

// ErrClosed is returned by a pick after Close.
var ErrClosed = errors.New("balance: closed")

// Resolve picks an instance of the app and returns its address; it is the
// nameresolution.Resolver view of the balancer, for callers that do not
// report how calls went.
func (b *Balancer) Resolve(ctx context.Context, appID, namespace string) (string, error) {
	e, err := b.pick(ctx, appID, namespace, "")
	if err != nil {
		return "", err
	}
	e.active.Add(-1)
	return e.addr, nil
}

// Pick chooses an instance of the app for one call; key is the value the
// RingHash policy hashes (other policies ignore it, as RingHash does an
// empty one). The caller reports the call's outcome with Done.
func (b *Balancer) Pick(ctx context.Context, appID, namespace, key string) (nameresolution.Endpoint, error) {
	e, err := b.pick(ctx, appID, namespace, key)
	if err != nil {
		return nil, err
	}
	return e, nil
}

func (b *Balancer) pick(ctx context.Context, appID, namespace, key string) (*Endpoint, error) {
	if namespace == "" {
		namespace = nameresolution.DefaultNamespace
	}
	a := (*b.apps.Load())[appKey{appID, namespace}]
	if a == nil {
		var err error
		if a, err = b.watch(appKey{appID, namespace}); err != nil {
			return nil, err
		}
	}
	set := a.set.Load()
	if set == nil {
		t := time.NewTimer(b.o.FirstAnswer)
		select {
		case <-a.ready:
			t.Stop()
		case <-t.C:
			b.drop(a) // not kept waiting: the next pick asks again
			return nil, fmt.Errorf("%w: no answer about app %s in namespace %s within %s", nameresolution.ErrNotFound, appID, namespace, b.o.FirstAnswer)
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
		set = a.set.Load()
	}
	if set == nil || len(set.eps) == 0 {
		if !a.hadInstances.Load() {
			// An app-id that never had an instance is not kept (nor
			// watched): made-up app-ids must not pile up.
			b.drop(a)
		}
		if p := a.err.Load(); p != nil {
			return nil, fmt.Errorf("%w: app %s in namespace %s: %w", nameresolution.ErrNotFound, appID, namespace, *p)
		}
		return nil, fmt.Errorf("%w: app %s in namespace %s has no live instance", nameresolution.ErrNotFound, appID, namespace)
	}
	e := b.choose(a, set, key)
	e.active.Add(1)
	return e, nil
}

// choose applies the policy to the instances not ejected; when every one
// is ejected it chooses among them all, as Envoy's panic mode does.
func (b *Balancer) choose(a *app, set *endpointSet, key string) *Endpoint {
	eps := set.eps
	if len(eps) == 1 {
		return eps[0]
	}
	now := b.now().UnixNano()
	in := func(e *Endpoint) bool { return e.ejectedUntil.Load() <= now }
	policy := a.opts.Load().Policy
	switch {
	case policy == RingHash && key != "" && len(set.ring) > 0:
		h := xxhash.Sum64String(key)
		i, _ := slices.BinarySearchFunc(set.ring, h, func(p ringPoint, h uint64) int {
			switch {
			case p.hash < h:
				return -1
			case p.hash > h:
				return 1
			}
			return 0
		})
		for j := range len(set.ring) {
			p := set.ring[(i+j)%len(set.ring)]
			if in(p.ep) {
				return p.ep
			}
		}
		return set.ring[i%len(set.ring)].ep
	case policy == LeastRequest:
		x, y := eps[rand.IntN(len(eps))], eps[rand.IntN(len(eps))]
		if !in(x) || !in(y) {
			// Fall back to the next instance in turn that is in.
			break
		}
		if y.active.Load() < x.active.Load() {
			return y
		}
		return x
	}
	start := a.next.Add(1)
	for j := range uint64(len(eps)) {
		e := eps[(start+j)%uint64(len(eps))]
		if in(e) {
			return e
		}
	}
	return eps[start%uint64(len(eps))]
}

// watch starts watching an app, once.
func (b *Balancer) watch(k appKey) (*app, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ctx.Err() != nil {
		return nil, ErrClosed
	}
	old := *b.apps.Load()
	if a := old[k]; a != nil {
		return a, nil
	}
	a := &app{key: k, ready: make(chan struct{})}
	a.ctx, a.cancel = context.WithCancel(b.ctx)
	b.setAppOptions(a)
	apps := make(map[appKey]*app, len(old)+1)
	for kk, v := range old {
		apps[kk] = v
	}
	apps[k] = a
	b.apps.Store(&apps)
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		b.run(a)
	}()
	return a, nil
}

// drop forgets app a and ends its watch; the next pick of its app-id
// starts a new one.
func (b *Balancer) drop(a *app) {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := *b.apps.Load()
	if old[a.key] != a {
		return
	}
	apps := make(map[appKey]*app, len(old))
	for k, v := range old {
		if v != a {
			apps[k] = v
		}
	}
	b.apps.Store(&apps)
	a.cancel()
}

// run keeps the watch of a going until Close; a watch that fails for good
// is started again after a pause.
func (b *Balancer) run(a *app) {
	backoff := 500 * time.Millisecond
	for {
		err := b.w.Watch(a.ctx, a.key.id, a.key.ns, func(insts []nameresolution.Instance) { b.update(a, insts) })
		if a.ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("the watch ended")
		}
		a.err.Store(&err)
		a.once.Do(func() { close(a.ready) })
		b.o.Logger.Error("cannot watch the app's instances; retrying", "app_id", a.key.id, "namespace", a.key.ns, "err", err, "in", backoff)
		select {
		case <-a.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// update installs a new set of instances, keeping the state of those that
// stay.
func (b *Balancer) update(a *app, insts []nameresolution.Instance) {
	old := a.set.Load()
	byAddr := map[string]*Endpoint{}
	if old != nil {
		for _, e := range old.eps {
			byAddr[e.addr] = e
		}
	}
	set := &endpointSet{}
	seen := map[string]bool{}
	for _, in := range insts {
		if in.AppID != a.key.id || nameresolution.NamespaceOrDefault(in.Namespace) != a.key.ns {
			b.foreign.Add(1)
			b.o.Logger.Warn("dropping an instance reported for another app", "asked", a.key.id+"."+a.key.ns,
				"got", in.AppID+"."+nameresolution.NamespaceOrDefault(in.Namespace), "address", in.Address())
			continue
		}
		addr := in.Address()
		if in.Host == "" || in.Port <= 0 || seen[addr] {
			continue
		}
		seen[addr] = true
		e := byAddr[addr]
		if e == nil {
			e = &Endpoint{addr: addr, inst: in, b: b, app: a}
		}
		set.eps = append(set.eps, e)
	}
	slices.SortFunc(set.eps, func(x, y *Endpoint) int {
		switch {
		case x.addr < y.addr:
			return -1
		case x.addr > y.addr:
			return 1
		}
		return 0
	})
	b.setAppOptions(a)
	if a.opts.Load().Policy == RingHash && len(set.eps) > 1 {
		set.ring = buildRing(set.eps, b.o.RingPoints)
	}
	a.err.Store(nil)
	if len(set.eps) > 0 && !a.hadInstances.Load() {
		a.hadInstances.Store(true)
	}
	a.set.Store(set)
	a.once.Do(func() { close(a.ready) })
}

// setAppOptions settles a's policy and outlier detection: the app's own
// where ForApp gives them, the balancer's otherwise.
func (b *Balancer) setAppOptions(a *app) {
	o := AppOptions{Policy: b.o.Policy, Outlier: b.o.Outlier}
	if b.o.ForApp != nil {
		if own, ok := b.o.ForApp(a.key.id, a.key.ns); ok {
			if own.Policy != "" {
				o.Policy = own.Policy
			}
			if own.Outlier != (Outlier{}) {
				o.Outlier = own.Outlier
				o.Outlier.Defaults()
			}
		}
	}
	if cur := a.opts.Load(); cur == nil || *cur != o {
		a.opts.Store(&o)
	}
}

// buildRing places every endpoint on the ring at points derived from its
// address alone, so every sidecar builds the same ring from the same set.
func buildRing(eps []*Endpoint, per int) []ringPoint {
	ring := make([]ringPoint, 0, per*len(eps))
	buf := make([]byte, 0, 64)
	for _, e := range eps {
		for i := range per {
			buf = fmt.Appendf(buf[:0], "%s_%d", e.addr, i)
			ring = append(ring, ringPoint{hash: xxhash.Sum64(buf), ep: e})
		}
	}
	slices.SortFunc(ring, func(x, y ringPoint) int {
		switch {
		case x.hash < y.hash:
			return -1
		case x.hash > y.hash:
			return 1
		}
		return 0
	})
	return ring
}
