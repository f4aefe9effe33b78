package mdns

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	hmdns "github.com/hashicorp/mdns"

	"github.com/outrigger/outrigger/nameresolution"
)

// errClosed is returned by Resolve, for an app not in the cache, after Close.
var errClosed = errors.New("nameresolution/mdns: resolver is closed")

// entryBuffer is the capacity of the channel a browse's answers arrive on;
// hashicorp/mdns drops an answer rather than wait for a full channel.
const entryBuffer = 256

// v6Backoff is how long browses keep to IPv4 after a query over IPv6 failed.
const v6Backoff = time.Minute

// Resolver resolves app-ids from the answers of Announcers on the link.
// It is safe for concurrent use. Resolve of an app in the cache takes no
// lock and does not allocate.
type Resolver struct {
	cfg    config
	log    *slog.Logger
	stdlog *log.Logger // hashicorp/mdns's logger
	suffix string      // "._outrigger._tcp.local.", lower case

	table atomic.Pointer[table]

	mu        sync.Mutex
	instances map[string]instance    // by instance name
	counters  map[key]*atomic.Uint64 // round-robin position per app, kept across tables
	changed   chan struct{}          // closed, and replaced, when table changes
	lastErr   string                 // last browse error logged, to log each once

	kick      chan struct{} // asks for a browse now; capacity 1
	v6RetryAt atomic.Int64  // unix nanoseconds before which browses use IPv4 alone

	closed    <-chan struct{} // closed by Close
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

type key struct{ appID, namespace string }

type instance struct {
	key  key
	addr string
	seen time.Time
}

type table struct {
	apps map[key]*app
}

type app struct {
	addrs []string
	next  *atomic.Uint64
}

func (a *app) pick() string {
	n := a.next.Add(1) - 1
	return a.addrs[n%uint64(len(a.addrs))]
}

// NewResolver returns a Resolver that browses at once, and then every
// refresh interval, until Close. It honours every Option.
func NewResolver(opts ...Option) (*Resolver, error) {
	c := newConfig(opts)
	if err := c.validateResolver(); err != nil {
		return nil, fmt.Errorf("nameresolution/mdns: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Resolver{
		cfg:       c,
		log:       c.logger.With("resolver", "mdns"),
		stdlog:    c.stdLogger(),
		suffix:    strings.ToLower("." + ServiceType + "." + domain),
		instances: map[string]instance{},
		counters:  map[key]*atomic.Uint64{},
		changed:   make(chan struct{}),
		kick:      make(chan struct{}, 1),
		closed:    ctx.Done(),
		cancel:    cancel,
	}
	r.table.Store(&table{})
	r.wg.Add(2)
	go r.refreshLoop(ctx)
	go r.onDemandLoop(ctx)
	return r, nil
}

// Resolve returns the address of an instance of appID in namespace (empty
// means DefaultNamespace), rotating through the app's instances. An app in
// the cache is answered from it at once. For any other app Resolve starts a
// browse and waits for the first matching answer, at most the resolve
// timeout, after which it returns an error wrapping
// nameresolution.ErrNotFound; it returns early with ctx's error when ctx is
// done.
func (r *Resolver) Resolve(ctx context.Context, appID, namespace string) (string, error) {
	k := key{appID, nameresolution.NamespaceOrDefault(namespace)}
	if a := r.table.Load().apps[k]; a != nil {
		return a.pick(), nil
	}
	return r.await(ctx, k)
}

// await waits for k to appear in the table. It asks for a browse at once,
// and again each time one may have ended, so an instance that starts
// answering while Resolve waits is found.
func (r *Resolver) await(ctx context.Context, k key) (string, error) {
	select {
	case <-r.closed:
		return "", errClosed
	default:
	}
	deadline := time.NewTimer(r.cfg.resolveTimeout)
	defer deadline.Stop()
	again := time.NewTicker(r.window(true))
	defer again.Stop()
	r.askBrowse()
	for {
		r.mu.Lock()
		changed := r.changed
		r.mu.Unlock()
		if a := r.table.Load().apps[k]; a != nil {
			return a.pick(), nil
		}
		select {
		case <-changed:
		case <-again.C:
			r.askBrowse()
		case <-deadline.C:
			return "", fmt.Errorf("nameresolution/mdns: no instance of app %q in namespace %q answered within %v: %w",
				k.appID, k.namespace, r.cfg.resolveTimeout, nameresolution.ErrNotFound)
		case <-ctx.Done():
			return "", fmt.Errorf("nameresolution/mdns: resolving app %q in namespace %q: %w", k.appID, k.namespace, ctx.Err())
		case <-r.closed:
			return "", errClosed
		}
	}
}

// askBrowse asks the on-demand loop for a browse; asks made while one is
// already pending are one ask.
func (r *Resolver) askBrowse() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Close stops the background browsing and waits for it to end, which takes
// at most the end of the browse under way (one second). Resolve keeps
// answering apps in the cache. Close is idempotent.
func (r *Resolver) Close() error {
	r.closeOnce.Do(func() {
		r.cancel()
		r.wg.Wait()
	})
	return nil
}

// window returns how long a browse listens for answers.
func (r *Resolver) window(onDemand bool) time.Duration {
	w := min(maxBrowseWindow, r.cfg.refresh)
	if onDemand {
		// Short enough that an app asked for while such a browse runs is
		// still found, by the next one, within the resolve timeout.
		w = min(w, r.cfg.resolveTimeout/2)
	}
	return max(w, 10*time.Millisecond)
}

// refreshLoop browses every refresh interval and ages instances out.
func (r *Resolver) refreshLoop(ctx context.Context) {
	defer r.wg.Done()
	ticker := time.NewTicker(r.cfg.refresh)
	defer ticker.Stop()
	for {
		r.browse(ctx, r.window(false))
		r.expire(time.Now())
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// onDemandLoop browses when Resolve asks for an app not in the cache.
func (r *Resolver) onDemandLoop(ctx context.Context) {
	defer r.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
			r.browse(ctx, r.window(true))
		}
	}
}

// browse queries ServiceType once and records the answers that arrive
// within window. When the query fails over IPv4 and IPv6 (a host or link
// without IPv6 multicast, an address still tentative) it retries over IPv4
// alone, and keeps to IPv4 for v6Backoff before it tries IPv6 again.
func (r *Resolver) browse(ctx context.Context, window time.Duration) {
	v6 := time.Now().UnixNano() >= r.v6RetryAt.Load()
	err := r.query(ctx, window, !v6)
	if err != nil && v6 && ctx.Err() == nil {
		r.log.Debug("browsing over IPv4 and IPv6 failed; trying IPv4 alone", "err", err, "for", v6Backoff)
		r.v6RetryAt.Store(time.Now().Add(v6Backoff).UnixNano())
		err = r.query(ctx, window, true)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case err == nil:
		r.lastErr = ""
	case ctx.Err() != nil:
	case err.Error() != r.lastErr:
		r.lastErr = err.Error()
		r.log.Warn("browsing failed", "err", err)
	}
}

func (r *Resolver) query(ctx context.Context, window time.Duration, v4Only bool) error {
	entries := make(chan *hmdns.ServiceEntry, entryBuffer)
	params := &hmdns.QueryParam{
		Service:     ServiceType,
		Domain:      domain,
		Timeout:     window,
		Interface:   r.cfg.iface,
		Entries:     entries,
		DisableIPv6: v4Only,
		Logger:      r.stdlog,
	}
	done := make(chan error, 1)
	go func() { done <- hmdns.QueryContext(ctx, params) }()
	for {
		select {
		case e := <-entries:
			r.observe(e)
		case err := <-done:
			// QueryContext has returned: nothing sends any more.
			for len(entries) > 0 {
				r.observe(<-entries)
			}
			return err
		}
	}
}

// observe records one answer, publishing a new table when it adds an
// instance or changes one.
func (r *Resolver) observe(e *hmdns.ServiceEntry) {
	k, addr, ok := r.parseEntry(e)
	if !ok {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old, had := r.instances[e.Name]
	r.instances[e.Name] = instance{key: k, addr: addr, seen: time.Now()}
	if !had || old.key != k || old.addr != addr {
		r.publishLocked()
	}
}

// parseEntry returns the app and address an answer carries; ok is false for
// answers that are not an Outrigger instance's.
func (r *Resolver) parseEntry(e *hmdns.ServiceEntry) (key, string, bool) {
	if e == nil || !strings.HasSuffix(strings.ToLower(e.Name), r.suffix) || e.Port < 1 || e.Port > 65535 {
		return key{}, "", false
	}
	var k key
	for _, f := range e.InfoFields {
		switch {
		case strings.HasPrefix(f, txtAppID):
			k.appID = f[len(txtAppID):]
		case strings.HasPrefix(f, txtNamespace):
			k.namespace = f[len(txtNamespace):]
		}
	}
	if k.appID == "" {
		return key{}, "", false
	}
	k.namespace = nameresolution.NamespaceOrDefault(k.namespace)
	var host string
	switch {
	case e.AddrV4 != nil:
		host = e.AddrV4.String()
	case e.AddrV6IPAddr != nil:
		host = e.AddrV6IPAddr.String() // with the zone of a link-local address
	default:
		return key{}, "", false
	}
	return k, net.JoinHostPort(host, strconv.Itoa(e.Port)), true
}

// expire drops instances not seen for a TTL.
func (r *Resolver) expire(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	dropped := false
	for name, in := range r.instances {
		if now.Sub(in.seen) > r.cfg.ttl {
			delete(r.instances, name)
			r.log.Info("instance stopped answering", "instance", name, "appID", in.key.appID, "namespace", in.key.namespace, "address", in.addr)
			dropped = true
		}
	}
	if dropped {
		r.publishLocked()
	}
}

// publishLocked builds the table from the instances, swaps it in and wakes
// the Resolve calls waiting for a change. The caller holds r.mu.
func (r *Resolver) publishLocked() {
	byApp := map[key][]string{}
	for _, in := range r.instances {
		byApp[in.key] = append(byApp[in.key], in.addr)
	}
	t := &table{apps: make(map[key]*app, len(byApp))}
	for k, addrs := range byApp {
		// Sorted, so the rotation order survives a rebuild; two instances
		// behind one address (a restart not yet aged out) count once.
		slices.Sort(addrs)
		addrs = slices.Compact(addrs)
		next := r.counters[k]
		if next == nil {
			next = new(atomic.Uint64)
			r.counters[k] = next
		}
		t.apps[k] = &app{addrs: addrs, next: next}
	}
	for k := range r.counters {
		if t.apps[k] == nil {
			delete(r.counters, k)
		}
	}
	r.table.Store(t)
	close(r.changed)
	r.changed = make(chan struct{})
}

var _ nameresolution.Resolver = (*Resolver)(nil)
