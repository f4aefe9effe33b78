package registry

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outrigger/outrigger/nameresolution"
	"github.com/outrigger/outrigger/xds/registry"
)

// requestSlack is added to the long-poll wait to bound one request.
const requestSlack = 10 * time.Second

type appKey struct{ namespace, appID string }

// appEntry is the set of addresses of one app. addrs never changes once
// published; next is shared by the entries of successive tables, so the
// round-robin goes on across updates.
type appEntry struct {
	addrs []string
	insts []nameresolution.Instance
	next  *atomic.Uint64
}

// Resolver is a nameresolution.Resolver over the control plane's registry.
// Create it with NewResolver; it is safe for concurrent use.
type Resolver struct {
	addr string
	base string
	o    options
	log  *slog.Logger

	startOnce sync.Once
	closeOnce sync.Once
	stop      chan struct{} // closed by Close
	done      chan struct{} // closed when the watch loop returns

	// firstTry is closed after the first attempt to load the registry,
	// successful or not.
	firstTry chan struct{}

	mu       sync.RWMutex
	changed  chan struct{} // closed and replaced when the table changes
	table    map[appKey]*appEntry
	loaded   bool
	lastErr  error
	counters map[appKey]*atomic.Uint64
}

var _ nameresolution.Resolver = (*Resolver)(nil)

// NewResolver returns a resolver that asks the control plane at addr
// ("host:port"). Nothing is sent before the first Resolve.
func NewResolver(addr string, opts ...Option) *Resolver {
	o := newOptions(opts)
	return &Resolver{
		addr:     addr,
		base:     baseURL(addr),
		o:        o,
		log:      o.logger,
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		firstTry: make(chan struct{}),
		table:    map[appKey]*appEntry{},
		counters: map[appKey]*atomic.Uint64{},
		changed:  make(chan struct{}),
	}
}

var _ nameresolution.Watcher = (*Resolver)(nil)

// Watch reports the instances of appID in namespace as the registry lists
// them, now (once the control plane answered) and after every change, until
// ctx is done: the registry as a nameresolution.Watcher, for a balancer.
func (r *Resolver) Watch(ctx context.Context, appID, namespace string, update func([]nameresolution.Instance)) error {
	namespace = nameresolution.NamespaceOrDefault(namespace)
	r.startOnce.Do(func() { go r.watch() })
	for {
		r.mu.RLock()
		e, loaded, changed := r.table[appKey{namespace, appID}], r.loaded, r.changed
		r.mu.RUnlock()
		if loaded {
			var insts []nameresolution.Instance
			if e != nil {
				insts = e.insts
			}
			update(insts)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-r.stop:
			return nil
		case <-changed:
		}
	}
}

// Resolve returns the mesh address of one instance of appID in namespace
// (empty: the default namespace), balancing round-robin across instances.
// Only the first call waits for the registry; later ones answer from the
// copy the watch keeps. An unknown app gives an error wrapping
// nameresolution.ErrNotFound.
func (r *Resolver) Resolve(ctx context.Context, appID, namespace string) (string, error) {
	namespace = nameresolution.NamespaceOrDefault(namespace)
	select {
	case <-r.stop:
		return "", fmt.Errorf("nameresolution/registry: resolver is closed")
	default:
	}
	r.startOnce.Do(func() { go r.watch() })
	select {
	case <-r.firstTry:
	case <-r.stop:
		return "", fmt.Errorf("nameresolution/registry: resolver is closed")
	case <-ctx.Done():
		return "", fmt.Errorf("nameresolution/registry: waiting for the control plane at %s: %w", r.addr, ctx.Err())
	}
	r.mu.RLock()
	e, ok := r.table[appKey{namespace, appID}]
	loaded, lastErr := r.loaded, r.lastErr
	r.mu.RUnlock()
	if !loaded {
		return "", fmt.Errorf("nameresolution/registry: control plane at %s unreachable: %w", r.addr, lastErr)
	}
	if !ok {
		return "", fmt.Errorf("nameresolution/registry: app %q in namespace %q: %w", appID, namespace, nameresolution.ErrNotFound)
	}
	i := e.next.Add(1) - 1
	return e.addrs[i%uint64(len(e.addrs))], nil
}

// Close stops the watch and waits for it to end.
func (r *Resolver) Close() error {
	r.closeOnce.Do(func() {
		close(r.stop)
		r.startOnce.Do(func() { close(r.done) }) // never started: nothing to wait for
		<-r.done
		r.o.client.CloseIdleConnections()
	})
	return nil
}

// watch keeps the table up to date with long-polls until Close.
func (r *Resolver) watch() {
	defer close(r.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-r.stop:
			cancel()
		case <-ctx.Done():
		}
	}()

	var (
		epoch   string
		index   uint64
		backoff time.Duration
		first   = true
		failing = false
	)
	for ctx.Err() == nil {
		q := url.Values{}
		if epoch != "" {
			q.Set("epoch", epoch)
			q.Set("index", strconv.FormatUint(index, 10))
			q.Set("wait", r.o.wait.String())
		}
		reqCtx, reqCancel := context.WithTimeout(ctx, r.o.wait+requestSlack)
		var snap registry.Snapshot
		err := do(reqCtx, r.o.client, "GET", instancesURL(r.base, q), nil, &snap)
		reqCancel()
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			r.mu.Lock()
			r.lastErr = err
			r.mu.Unlock()
			if !failing {
				r.log.Warn("nameresolution/registry: cannot reach the control plane; keeping the last known instances", "address", r.addr, "err", err)
				failing = true
			}
			if first {
				close(r.firstTry)
				first = false
			}
			backoff = nextBackoff(backoff)
			if !sleep(ctx, backoff) {
				break
			}
			continue
		}
		if failing {
			r.log.Info("nameresolution/registry: control plane reachable again", "address", r.addr)
			failing = false
		}
		backoff = 0
		if snap.Epoch != epoch || snap.Index != index {
			r.apply(snap)
		}
		epoch, index = snap.Epoch, snap.Index
		if first {
			close(r.firstTry)
			first = false
		}
	}
	if first {
		close(r.firstTry)
	}
}

// apply replaces the table with the instances of snap.
func (r *Resolver) apply(snap registry.Snapshot) {
	groups := map[appKey][]string{}
	insts := map[appKey][]nameresolution.Instance{}
	for _, inst := range snap.Instances {
		k := appKey{nameresolution.NamespaceOrDefault(inst.Namespace), inst.AppID}
		in := nameresolution.Instance{AppID: inst.AppID, Namespace: k.namespace, Host: inst.Host, Port: inst.Port}
		groups[k] = append(groups[k], in.Address())
		insts[k] = append(insts[k], in)
	}
	table := make(map[appKey]*appEntry, len(groups))
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, addrs := range groups {
		sort.Strings(addrs)
		addrs = compactSorted(addrs)
		c := r.counters[k]
		if c == nil {
			c = new(atomic.Uint64)
			r.counters[k] = c
		}
		table[k] = &appEntry{addrs: addrs, insts: insts[k], next: c}
	}
	for k := range r.counters {
		if _, ok := table[k]; !ok {
			delete(r.counters, k)
		}
	}
	r.table = table
	r.loaded = true
	r.lastErr = nil
	close(r.changed)
	r.changed = make(chan struct{})
	r.log.Debug("nameresolution/registry: instances updated", "epoch", snap.Epoch, "index", snap.Index, "instances", len(snap.Instances))
}

func compactSorted(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}
