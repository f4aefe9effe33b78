package mdns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/outrigger/outrigger/nameresolution"
)

// errClosed is returned by Resolve, for an app not in the cache, and by
// Watch after Close.
var errClosed = errors.New("nameresolution/mdns: resolver is closed")

const (
	// reopenEvery is how often the Resolver tries again to open the
	// sockets of an IP version it could not open (a host without IPv6,
	// an interface without an IPv4 address yet).
	reopenEvery = time.Minute
	// minQueryGap is the least time between two queries that Resolve or
	// Watch ask for; one query finds every app.
	minQueryGap = 100 * time.Millisecond
	// tombstone is how long answers about an instance that said goodbye
	// are ignored: an answer sent just before the goodbye may come after.
	tombstone = 5 * time.Second
	// maxTombstones bounds the goodbyes remembered.
	maxTombstones = 1024
)

// Resolver resolves app-ids from what Announcers on the link say. It is safe
// for concurrent use. Resolve of an app in the cache takes no lock and does
// not allocate.
type Resolver struct {
	cfg    config
	log    *slog.Logger
	drops  *quietLog // answers dropped
	events *quietLog // instances found and gone
	query  []byte    // the packed query for ServiceType

	table atomic.Pointer[table]

	mu        sync.Mutex
	instances map[string]*instance         // by instance name, canonical
	apps      map[key]map[string]*instance // the instances of each app
	byAddr    map[netip.AddrPort]*instance // who announced each address and port
	tombs     map[string]time.Time         // instance name: ignore answers until
	counters  map[key]*atomic.Uint64       // round-robin position per app, kept across tables
	changed   chan struct{}                // closed, and replaced, when table changes

	zoneMu sync.Mutex
	zones  map[int]string // interface names by index

	kick      chan struct{} // asks for a query now; capacity 1
	closed    <-chan struct{}
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once

	queries, responses, added, goodbyes, expired, replaced atomic.Int64
	unparsable, oversized, malformed, foreign, over, stale atomic.Int64
}

type key struct{ appID, namespace string }

// instance is one instance in the cache.
type instance struct {
	name    string
	key     key
	port    int
	addrs   []netip.Addr // sorted
	expires time.Time
}

type table struct {
	apps map[key]*app
}

// app is what Resolve and Watch read about one app: immutable once
// published, but for the shared round-robin counter.
type app struct {
	addrs []string                  // sorted
	insts []nameresolution.Instance // in the order of addrs
	next  *atomic.Uint64
}

func (a *app) pick() string {
	n := a.next.Add(1) - 1
	return a.addrs[n%uint64(len(a.addrs))]
}

// NewResolver returns a Resolver that listens on the mDNS groups and queries
// at once, and then every refresh interval, until Close. It honours every
// Option. Not being able to use the network is not an error: it is logged
// and tried again.
func NewResolver(opts ...Option) (*Resolver, error) {
	c := newConfig(opts)
	if err := c.validateResolver(); err != nil {
		return nil, fmt.Errorf("nameresolution/mdns: %v", err)
	}
	r := newResolver(c)
	ctx, cancel := context.WithCancel(context.Background())
	r.closed, r.cancel = ctx.Done(), cancel
	r.wg.Add(1)
	go r.run(ctx)
	return r, nil
}

// newResolver returns a Resolver that does not touch the network: the
// tests of its cache feed it responses.
func newResolver(c config) *Resolver {
	q := new(dns.Msg)
	q.SetQuestion(serviceName, dns.TypePTR)
	q.Id, q.RecursionDesired = 0, false
	buf, err := q.Pack()
	if err != nil {
		panic("nameresolution/mdns: packing the query: " + err.Error()) // a constant message
	}
	log := c.logger.With("resolver", "mdns")
	r := &Resolver{
		cfg:       c,
		log:       log,
		drops:     newQuietLog(log, dropLogEvery, dropLogBurst),
		events:    newQuietLog(log, eventLogEvery, eventLogBurst),
		query:     buf,
		instances: map[string]*instance{},
		apps:      map[key]map[string]*instance{},
		byAddr:    map[netip.AddrPort]*instance{},
		tombs:     map[string]time.Time{},
		counters:  map[key]*atomic.Uint64{},
		changed:   make(chan struct{}),
		zones:     map[int]string{},
		kick:      make(chan struct{}, 1),
		closed:    make(chan struct{}),
		cancel:    func() {},
	}
	r.table.Store(&table{})
	return r
}

// Resolve returns the address of an instance of appID in namespace (empty
// means DefaultNamespace), rotating through the app's instances. An app in
// the cache is answered from it at once. For any other app Resolve queries
// the link and waits for the first matching answer, at most the resolve
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

// await waits for k to appear in the table. It asks for a query at once,
// and again every askEvery, so a lost packet or an instance that starts
// while Resolve waits is found.
func (r *Resolver) await(ctx context.Context, k key) (string, error) {
	select {
	case <-r.closed:
		return "", errClosed
	default:
	}
	deadline := time.NewTimer(r.cfg.resolveTimeout)
	defer deadline.Stop()
	again := time.NewTicker(r.askEvery())
	defer again.Stop()
	r.askQuery()
	for {
		changed := r.changedCh()
		if a := r.table.Load().apps[k]; a != nil {
			return a.pick(), nil
		}
		select {
		case <-changed:
		case <-again.C:
			r.askQuery()
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

// Watch reports the live instances of appID in namespace (empty means
// DefaultNamespace) until ctx is done, then returns nil: the mDNS cache as a
// nameresolution.Watcher, for a balancer. The first report comes as soon as
// an instance is known, or, for an app no instance answers for, after the
// resolve timeout, empty; the next after every change. Each instance is
// reported once, at its preferred address (see WithPreferIPv6). Watch
// returns an error only when the Resolver is closed.
func (r *Resolver) Watch(ctx context.Context, appID, namespace string, update func([]nameresolution.Instance)) error {
	k := key{appID, nameresolution.NamespaceOrDefault(namespace)}
	select {
	case <-r.closed:
		return errClosed
	default:
	}
	wait := time.NewTimer(r.cfg.resolveTimeout)
	defer wait.Stop()
	again := time.NewTicker(r.askEvery())
	defer again.Stop()
	waitC, againC := wait.C, again.C
	if r.table.Load().apps[k] == nil {
		r.askQuery()
	}
	var (
		last     *app
		reported bool
	)
	for {
		changed := r.changedCh()
		a := r.table.Load().apps[k]
		if a != nil && waitC != nil {
			waitC, againC = nil, nil
			wait.Stop()
			again.Stop()
		}
		if waitC == nil && (!reported || !sameInstances(a, last)) {
			var insts []nameresolution.Instance
			if a != nil {
				insts = slices.Clone(a.insts)
			}
			update(insts)
			reported = true
		}
		last = a
		select {
		case <-ctx.Done():
			return nil
		case <-r.closed:
			return errClosed
		case <-changed:
		case <-waitC:
			waitC, againC = nil, nil
			again.Stop()
		case <-againC:
			r.askQuery()
		}
	}
}

func sameInstances(a, b *app) bool {
	switch {
	case a == b:
		return true
	case a == nil || b == nil:
		return false
	}
	return slices.Equal(a.insts, b.insts)
}

// askEvery is how often a Resolve or a Watch that waits for an app asks
// for a query again.
func (r *Resolver) askEvery() time.Duration {
	return min(max(r.cfg.resolveTimeout/4, 50*time.Millisecond), time.Second)
}

// askQuery asks the run loop for a query; asks made while one is pending
// are one ask.
func (r *Resolver) askQuery() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

func (r *Resolver) changedCh() chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

// Close stops listening and querying and waits for that to end. Resolve
// keeps answering apps in the cache. Close is idempotent.
func (r *Resolver) Close() error {
	r.closeOnce.Do(func() {
		r.cancel()
		r.wg.Wait()
	})
	return nil
}

// Stats are a Resolver's counters since it was made, and the size of its
// cache. Every answer dropped is counted once, under the first reason found.
type Stats struct {
	// Queries counts the queries sent.
	Queries int64
	// Responses counts the mDNS responses received.
	Responses int64
	// Added counts the instances learned.
	Added int64
	// Goodbyes counts the instances dropped because they said goodbye
	// (records with TTL 0).
	Goodbyes int64
	// Expired counts the instances dropped because their TTL ran out.
	Expired int64
	// Replaced counts the instances dropped because another instance
	// announced the same address and port.
	Replaced int64
	// Unparsable counts the packets that were not DNS messages.
	Unparsable int64
	// Oversized counts the responses dropped whole for carrying more
	// records than an announcement ever does: a flood.
	Oversized int64
	// Malformed counts the announcements dropped for what they said: a
	// malformed TXT record, a port of 0, no usable address, an instance
	// name its app-id could not have made, missing or clashing records.
	Malformed int64
	// Foreign counts the records ignored because they were about another
	// service.
	Foreign int64
	// OverLimit counts the instances not learned because the app or the
	// cache had as many as WithLimits allows.
	OverLimit int64
	// Stale counts the answers ignored because they came just after the
	// instance's goodbye.
	Stale int64
	// Instances is the number of instances in the cache now.
	Instances int
}

// Stats returns the counters.
func (r *Resolver) Stats() Stats {
	r.mu.Lock()
	n := len(r.instances)
	r.mu.Unlock()
	return Stats{
		Queries:    r.queries.Load(),
		Responses:  r.responses.Load(),
		Added:      r.added.Load(),
		Goodbyes:   r.goodbyes.Load(),
		Expired:    r.expired.Load(),
		Replaced:   r.replaced.Load(),
		Unparsable: r.unparsable.Load(),
		Oversized:  r.oversized.Load(),
		Malformed:  r.malformed.Load(),
		Foreign:    r.foreign.Load(),
		OverLimit:  r.over.Load(),
		Stale:      r.stale.Load(),
		Instances:  n,
	}
}

// family is the sockets of one IP version.
type family struct {
	g     group
	mconn *net.UDPConn // on the group's port, joined: announcements, goodbyes
	qconn *net.UDPConn // on a port of its own: queries out, their answers in
}

// run owns the sockets: it opens them, queries every refresh interval and
// when asked, ages the cache out, and closes the sockets when ctx is done.
// Each socket has a goroutine reading it.
func (r *Resolver) run(ctx context.Context) {
	defer r.wg.Done()
	var fams [len(groups)]*family
	defer func() {
		for _, f := range fams {
			if f != nil {
				f.mconn.Close()
				f.qconn.Close()
			}
		}
	}()
	openErr, sendErr := "", ""
	open := func() {
		var errs []string
		for i, g := range groups {
			if fams[i] != nil {
				continue
			}
			f, err := r.open(g)
			if err != nil {
				errs = append(errs, err.Error())
				continue
			}
			fams[i] = f
			r.wg.Add(2)
			go r.read(f.mconn, g.v6)
			go r.read(f.qconn, g.v6)
		}
		msg := strings.Join(errs, "; ")
		switch {
		case len(errs) == len(groups) && msg != openErr:
			r.log.Warn("cannot listen for mDNS; trying again", "err", msg, "in", reopenEvery)
		case len(errs) > 0 && msg != openErr:
			r.log.Debug("mDNS over one IP version only; trying the other again", "err", msg, "in", reopenEvery)
		case len(errs) == 0 && openErr != "":
			r.log.Info("listening for mDNS over IPv4 and IPv6")
		}
		openErr = msg
	}
	var lastQuery time.Time
	query := func() {
		lastQuery = time.Now()
		var errs []string
		sent := 0
		for _, f := range fams {
			if f == nil {
				continue
			}
			if _, err := f.qconn.WriteToUDP(r.query, f.g.addr); err != nil {
				errs = append(errs, f.g.name+": "+err.Error())
				continue
			}
			sent++
		}
		if sent > 0 {
			r.queries.Add(1)
		}
		msg := strings.Join(errs, "; ")
		switch {
		case sent == 0 && len(errs) > 0 && msg != sendErr:
			r.log.Warn("cannot send mDNS queries", "err", msg)
		case len(errs) > 0 && msg != sendErr:
			r.log.Debug("mDNS queries over one IP version only", "err", msg)
		}
		sendErr = msg
	}

	open()
	nextOpen := time.Now().Add(reopenEvery)
	query()
	refresh := time.NewTicker(r.cfg.refresh)
	defer refresh.Stop()
	tick := time.NewTicker(min(time.Second, r.cfg.refresh))
	defer tick.Stop()
	later := time.NewTimer(time.Hour) // a query asked for too soon after the last
	later.Stop()
	defer later.Stop()
	pending := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-refresh.C:
			query()
		case <-r.kick:
			if gap := time.Since(lastQuery); gap < minQueryGap {
				if !pending {
					pending = true
					later.Reset(minQueryGap - gap)
				}
				continue
			}
			query()
		case <-later.C:
			pending = false
			query()
		case now := <-tick.C:
			r.expire(now)
			r.drops.flush(now)
			r.events.flush(now)
			if now.After(nextOpen) && slices.Contains(fams[:], nil) {
				nextOpen = now.Add(reopenEvery)
				open()
			}
		}
	}
}

// open opens the sockets of one IP version.
func (r *Resolver) open(g group) (*family, error) {
	mconn, err := net.ListenMulticastUDP(g.network, r.cfg.iface, g.addr)
	if err != nil {
		return nil, fmt.Errorf("%s: joining the group: %v", g.name, err)
	}
	qconn, err := net.ListenUDP(g.network, nil)
	if err == nil {
		err = setMulticast(qconn, g.v6, r.cfg.iface)
		if err != nil {
			qconn.Close()
		}
	}
	if err != nil {
		mconn.Close()
		return nil, fmt.Errorf("%s: query socket: %v", g.name, err)
	}
	return &family{g: g, mconn: mconn, qconn: qconn}, nil
}

// read handles the packets that come in on c until c is closed.
func (r *Resolver) read(c *net.UDPConn, v6 bool) {
	defer r.wg.Done()
	read := newReader(c, v6)
	buf := make([]byte, maxPacket)
	for {
		n, ifIndex, src, err := read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			r.log.Debug("reading an mDNS packet", "err", err)
			time.Sleep(10 * time.Millisecond) // no busy loop on a failing socket
			continue
		}
		from := ""
		if src != nil {
			from = src.String()
		}
		r.handle(buf[:n], r.zone(ifIndex, src), from, time.Now())
	}
}

// handle reads one packet, from the peer from, and updates the cache with
// it. zone is the zone of the link-local IPv6 addresses it carries.
func (r *Resolver) handle(p []byte, zone, from string, now time.Time) {
	defer func() {
		// readResponse is fuzzed; this is the last line of defence of a
		// sidecar against a packet from the network.
		if v := recover(); v != nil {
			r.unparsable.Add(1)
			r.drops.note(now, "panic", slog.LevelError, "a packet made the mDNS resolver panic (a bug)", "panic", fmt.Sprint(v), "from", from)
		}
	}()
	isResponse, pr := headerCheck(p)
	if isResponse {
		r.responses.Add(1)
	}
	if pr != nil {
		r.dropped(now, *pr, from)
		return
	}
	if !isResponse {
		return // another resolver's query
	}
	var m dns.Msg
	if err := m.Unpack(p); err != nil {
		r.dropped(now, problem{reasonUnparsable, err.Error()}, from)
		return
	}
	r.apply(readResponse(&m, zone), from, now)
}

// dropped counts and logs one problem.
func (r *Resolver) dropped(now time.Time, pr problem, from string) {
	level := slog.LevelWarn
	switch pr.reason {
	case reasonUnparsable:
		r.unparsable.Add(1)
	case reasonOversized:
		r.oversized.Add(1)
	case reasonLimit:
		r.over.Add(1)
	case reasonStale:
		r.stale.Add(1)
		level = slog.LevelDebug
	case reasonForeign:
		level = slog.LevelDebug // counted by record, in apply
	default:
		r.malformed.Add(1)
	}
	r.drops.note(now, pr.reason, level, "dropped an mDNS answer", "reason", pr.reason, "detail", pr.detail, "from", from)
}

// zone names the interface a packet came in on, for the link-local IPv6
// addresses it carries.
func (r *Resolver) zone(ifIndex int, src net.Addr) string {
	if ifIndex > 0 {
		r.zoneMu.Lock()
		defer r.zoneMu.Unlock()
		name, ok := r.zones[ifIndex]
		if !ok {
			name = strconv.Itoa(ifIndex)
			if ifc, err := net.InterfaceByIndex(ifIndex); err == nil {
				name = ifc.Name
			}
			r.zones[ifIndex] = name
		}
		return name
	}
	if u, ok := src.(*net.UDPAddr); ok && u.Zone != "" {
		return u.Zone
	}
	if r.cfg.iface != nil {
		return r.cfg.iface.Name
	}
	return ""
}

// apply updates the cache with what one response says.
func (r *Resolver) apply(res response, from string, now time.Time) {
	if res.foreign > 0 {
		r.foreign.Add(int64(res.foreign))
		r.dropped(now, problem{reasonForeign, fmt.Sprintf("%d records", res.foreign)}, from)
	}
	for _, pr := range res.problems {
		r.dropped(now, pr, from)
	}
	if len(res.instances) == 0 {
		return
	}
	var problems []problem
	r.mu.Lock()
	dirty := map[key]bool{}
	for _, a := range res.instances {
		if a.goodbye {
			if in := r.instances[a.name]; in != nil {
				r.removeLocked(in, dirty)
				r.goodbyes.Add(1)
				r.events.note(now, "gone", slog.LevelInfo, "instance said goodbye", "instance", in.name, "appID", in.key.appID, "namespace", in.key.namespace)
			}
			r.tombLocked(a.name, now)
			continue
		}
		if until, ok := r.tombs[a.name]; ok && now.Before(until) {
			problems = append(problems, problem{reasonStale, a.name})
			continue
		}
		if pr := r.learnLocked(a, now, dirty); pr != nil {
			problems = append(problems, *pr)
		}
	}
	if len(dirty) > 0 {
		r.publishLocked(dirty)
	}
	r.mu.Unlock()
	for _, pr := range problems {
		r.dropped(now, pr, from)
	}
}

// learnLocked records an instance's answer; it returns a problem when the
// instance is over a limit. The caller holds r.mu.
func (r *Resolver) learnLocked(a announced, now time.Time, dirty map[key]bool) *problem {
	in := r.instances[a.name]
	if in == nil || in.key != a.key {
		switch {
		case in == nil && len(r.instances) >= r.cfg.maxTotal:
			return &problem{reasonLimit, fmt.Sprintf("%s: %d instances in all", a.name, len(r.instances))}
		case len(r.apps[a.key]) >= r.cfg.maxPerApp:
			return &problem{reasonLimit, fmt.Sprintf("%s: %d instances of app %q in namespace %q", a.name, len(r.apps[a.key]), a.key.appID, a.key.namespace)}
		}
	}
	// An address and port is one sidecar: an instance that claims those
	// of another is its successor (a restart not aged out yet, the port
	// taken by another app), so the other is gone.
	for _, addr := range a.addrs {
		other := r.byAddr[netip.AddrPortFrom(addr, uint16(a.port))]
		if other != nil && other != in {
			r.removeLocked(other, dirty)
			r.replaced.Add(1)
			r.events.note(now, "gone", slog.LevelInfo, "instance replaced: another announced its address", "instance", other.name,
				"appID", other.key.appID, "namespace", other.key.namespace, "by", a.name, "byAppID", a.key.appID)
		}
	}
	expires := now.Add(r.keep(a.ttl))
	if in != nil && in.key == a.key && in.port == a.port && slices.Equal(in.addrs, a.addrs) {
		in.expires = expires
		return nil
	}
	if in != nil {
		r.removeLocked(in, dirty)
	} else {
		r.added.Add(1)
	}
	in = &instance{name: a.name, key: a.key, port: a.port, addrs: a.addrs, expires: expires}
	r.instances[in.name] = in
	set := r.apps[in.key]
	if set == nil {
		set = map[string]*instance{}
		r.apps[in.key] = set
	}
	set[in.name] = in
	for _, addr := range in.addrs {
		r.byAddr[netip.AddrPortFrom(addr, uint16(in.port))] = in
	}
	dirty[in.key] = true
	r.events.note(now, "found", slog.LevelInfo, "instance found", "instance", in.name, "appID", in.key.appID, "namespace", in.key.namespace,
		"address", r.host(in), "addresses", in.addrs, "port", in.port)
	return nil
}

// keep is how long an answer with the given TTL is kept: its TTL, but at
// most the Resolver's TTL, and at least two refresh intervals (the next
// query may come that late).
func (r *Resolver) keep(ttl uint32) time.Duration {
	return min(r.cfg.ttl, max(time.Duration(ttl)*time.Second, 2*r.cfg.refresh))
}

// removeLocked drops an instance. The caller holds r.mu.
func (r *Resolver) removeLocked(in *instance, dirty map[key]bool) {
	delete(r.instances, in.name)
	if set := r.apps[in.key]; set != nil {
		delete(set, in.name)
		if len(set) == 0 {
			delete(r.apps, in.key)
		}
	}
	for _, addr := range in.addrs {
		ap := netip.AddrPortFrom(addr, uint16(in.port))
		if r.byAddr[ap] == in {
			delete(r.byAddr, ap)
		}
	}
	dirty[in.key] = true
}

// tombLocked remembers a goodbye. The caller holds r.mu.
func (r *Resolver) tombLocked(name string, now time.Time) {
	if len(r.tombs) >= maxTombstones {
		r.purgeTombsLocked(now)
		if len(r.tombs) >= maxTombstones {
			return
		}
	}
	r.tombs[name] = now.Add(tombstone)
}

func (r *Resolver) purgeTombsLocked(now time.Time) {
	for name, until := range r.tombs {
		if !now.Before(until) {
			delete(r.tombs, name)
		}
	}
}

// expire drops the instances whose TTL ran out.
func (r *Resolver) expire(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	dirty := map[key]bool{}
	for _, in := range r.instances {
		if now.After(in.expires) {
			r.removeLocked(in, dirty)
			r.expired.Add(1)
			r.events.note(now, "gone", slog.LevelInfo, "instance stopped answering", "instance", in.name, "appID", in.key.appID, "namespace", in.key.namespace, "address", r.host(in))
		}
	}
	if len(dirty) > 0 {
		r.publishLocked(dirty)
	}
	r.purgeTombsLocked(now)
}

// host returns the address at which an instance is reported: the first
// IPv4 one, or the first IPv6 one when there is none (the other way round
// with WithPreferIPv6); routable before link-local.
func (r *Resolver) host(in *instance) netip.Addr {
	best, bestRank := netip.Addr{}, 5
	for _, a := range in.addrs {
		rank := 0
		if a.Is6() != r.cfg.preferIPv6 {
			rank += 2
		}
		if a.IsLinkLocalUnicast() {
			rank++
		}
		if rank < bestRank {
			best, bestRank = a, rank
		}
	}
	return best
}

// publishLocked rebuilds the entries of the dirty apps, swaps the new table
// in and wakes the Resolve and Watch calls waiting for a change. The caller
// holds r.mu.
func (r *Resolver) publishLocked(dirty map[key]bool) {
	old := r.table.Load().apps
	apps := make(map[key]*app, len(old)+len(dirty))
	for k, a := range old {
		apps[k] = a
	}
	for k := range dirty {
		set := r.apps[k]
		if len(set) == 0 {
			delete(apps, k)
			delete(r.counters, k)
			continue
		}
		insts := make([]nameresolution.Instance, 0, len(set))
		for _, in := range set {
			insts = append(insts, nameresolution.Instance{AppID: k.appID, Namespace: k.namespace, Host: r.host(in).String(), Port: in.port})
		}
		// Sorted, so the rotation order survives a rebuild.
		slices.SortFunc(insts, func(a, b nameresolution.Instance) int { return strings.Compare(a.Address(), b.Address()) })
		addrs := make([]string, len(insts))
		for i, in := range insts {
			addrs[i] = in.Address()
		}
		next := r.counters[k]
		if next == nil {
			next = new(atomic.Uint64)
			r.counters[k] = next
		}
		apps[k] = &app{addrs: addrs, insts: insts, next: next}
	}
	r.table.Store(&table{apps: apps})
	close(r.changed)
	r.changed = make(chan struct{})
}

var (
	_ nameresolution.Resolver = (*Resolver)(nil)
	_ nameresolution.Watcher  = (*Resolver)(nil)
)
