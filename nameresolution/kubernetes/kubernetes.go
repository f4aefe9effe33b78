// Package kubernetes finds the instances of an app through the cluster's DNS,
// as Dapr's kubernetes name resolver does: an app-id resolves through the
// service <app-id>-dapr.<namespace>.svc.<clusterDomain> that Dapr's sidecar
// injector makes for every app.
//
// Where Dapr hands that name to its gRPC dialer, the Watcher here follows
// every instance behind it, for package balance to spread calls over:
//
//  1. SRV records of _dapr-internal._tcp.<app-id>-dapr.<namespace>.svc.<domain>
//     (a headless service's named port): one instance per target address,
//     on the record's port; the targets' A and AAAA records come from the
//     answer's additional section, or are asked for.
//  2. Otherwise the A and AAAA records of <app-id>-dapr.<namespace>.svc.<domain>,
//     on the configured port (daprd's internal gRPC port, 50002, by default).
//
// Answers are kept for the smallest TTL of the records used (at least 1 s,
// at most 30 s) and asked again when it runs out; the Watcher reports a set
// only when it changed. A name that does not exist, or has no records, means
// the app has no instance. A failed exchange (timeout, SERVFAIL, an answer
// that does not parse or answers another question) keeps the last set and
// is retried with a growing pause. A record whose owner name is not the name
// asked is ignored, so a stale or foreign answer never routes to another
// app. A truncated UDP answer is asked again over TCP.
//
// With a template (Dapr's "template" field) the rendered host is looked up
// with A and AAAA records alone, as Dapr does.
package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"text/template"
	"time"

	"github.com/miekg/dns"

	"github.com/outrigger/outrigger/nameresolution"
)

// Bounds of how long an answer is kept, whatever its TTL says.
const (
	MinRefresh = time.Second
	MaxRefresh = 30 * time.Second
)

// Bounds of the pause before a failed resolution is tried again; it doubles
// from the first to the second with each failure in a row.
const (
	minBackoff = 500 * time.Millisecond
	maxBackoff = 30 * time.Second
)

// noTTLRefresh is how long an answer that gives no TTL at all (a negative
// answer without SOA) is kept.
const noTTLRefresh = 5 * time.Second

// maxAliases bounds the CNAME chain followed across queries.
const maxAliases = 8

// targetQueries bounds the A/AAAA queries for SRV targets in flight at once.
const targetQueries = 8

// ednsSize is the UDP payload size offered (the DNS flag day 2020 value).
const ednsSize = 1232

// Option configures a Watcher.
type Option func(*Watcher)

// WithLogger sets the logger. The default discards.
func WithLogger(l *slog.Logger) Option {
	return func(w *Watcher) { w.log = l }
}

// Watcher follows the instances of apps through DNS. It is safe for
// concurrent use; every Watch runs its own lookups.
type Watcher struct {
	m      Metadata
	server string
	tmpl   *template.Template
	log    *slog.Logger
	udp    *dns.Client
	tcp    *dns.Client

	// Refresh and backoff bounds; tests shorten them.
	minRefresh, maxRefresh time.Duration
	minBackoff, maxBackoff time.Duration

	queries   atomic.Int64
	failures  atomic.Int64
	truncated atomic.Int64
	foreign   atomic.Int64
	updates   atomic.Int64
}

var _ nameresolution.Watcher = (*Watcher)(nil)

// New returns a Watcher configured by m, which it validates (ParseMetadata
// returns a valid m; a Metadata built in Go needs its DNSServer set).
func New(m Metadata, opts ...Option) (*Watcher, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	server, _ := serverAddr(m.DNSServer)
	w := &Watcher{
		m:          m,
		server:     server,
		udp:        &dns.Client{Net: "udp", Timeout: m.Timeout, UDPSize: ednsSize},
		tcp:        &dns.Client{Net: "tcp", Timeout: m.Timeout},
		minRefresh: MinRefresh,
		maxRefresh: MaxRefresh,
		minBackoff: minBackoff,
		maxBackoff: maxBackoff,
	}
	if m.Template != "" {
		w.tmpl, _ = m.parseTemplate()
	}
	for _, o := range opts {
		o(w)
	}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	w.log = w.log.With("resolver", "kubernetes")
	return w, nil
}

// Stats are a Watcher's counters since it was made.
type Stats struct {
	// Queries counts the DNS exchanges made, UDP and TCP.
	Queries int64
	// Failures counts the resolutions that failed (a timeout, a SERVFAIL,
	// an answer that did not parse or answered another question); each
	// kept the last set and was retried.
	Failures int64
	// Truncated counts the UDP answers that came truncated and were asked
	// again over TCP.
	Truncated int64
	// Foreign counts the records ignored because their owner name was not
	// the name asked.
	Foreign int64
	// Updates counts the sets reported to Watch's callers.
	Updates int64
}

// Stats returns the counters.
func (w *Watcher) Stats() Stats {
	return Stats{
		Queries:   w.queries.Load(),
		Failures:  w.failures.Load(),
		Truncated: w.truncated.Load(),
		Foreign:   w.foreign.Load(),
		Updates:   w.updates.Load(),
	}
}

// lookup is what to ask DNS about one app.
type lookup struct {
	srvName string     // SRV name asked first; empty with a template
	host    string     // name asked for A and AAAA records
	literal netip.Addr // the template rendered an IP address: no DNS at all
	port    int        // the port of instances found by A/AAAA records
}

// lookupFor returns what to ask about appID in namespace, or an error when
// they cannot make a DNS name.
func (w *Watcher) lookupFor(appID, namespace string) (lookup, error) {
	if w.tmpl != nil {
		host, port, err := w.m.render(w.tmpl, appID, namespace)
		if err != nil {
			return lookup{}, fmt.Errorf("nameresolution/kubernetes: app %s in namespace %s: template: %w", appID, namespace, err)
		}
		if a, err := netip.ParseAddr(host); err == nil {
			return lookup{literal: a, port: port}, nil
		}
		return lookup{host: dns.Fqdn(host), port: port}, nil
	}
	if err := checkLabel(appID + "-dapr"); err != nil {
		return lookup{}, fmt.Errorf("nameresolution/kubernetes: app-id %q cannot name a service: %w", appID, err)
	}
	if err := checkLabel(namespace); err != nil {
		return lookup{}, fmt.Errorf("nameresolution/kubernetes: namespace %q cannot name a service: %w", namespace, err)
	}
	host := dns.Fqdn(appID + "-dapr." + namespace + ".svc." + w.m.ClusterDomain)
	return lookup{srvName: "_dapr-internal._tcp." + host, host: host, port: w.m.Port}, nil
}

// Watch follows the instances of appID in namespace (empty: the default
// namespace) until ctx is done, calling update with the whole set at the
// first answer and after every change. It returns an error only when the
// app-id or the namespace cannot make a DNS name; DNS failures are logged,
// counted and retried, the last set kept.
func (w *Watcher) Watch(ctx context.Context, appID, namespace string, update func([]nameresolution.Instance)) error {
	namespace = nameresolution.NamespaceOrDefault(namespace)
	lk, err := w.lookupFor(appID, namespace)
	if err != nil {
		return err
	}
	log := w.log.With("app_id", appID, "namespace", namespace)
	if lk.literal.IsValid() {
		w.updates.Add(1)
		update([]nameresolution.Instance{{AppID: appID, Namespace: namespace, Host: lk.literal.String(), Port: lk.port}})
		<-ctx.Done()
		return nil
	}
	name := lk.host
	if lk.srvName != "" {
		name = lk.srvName
	}
	log = log.With("name", name)

	var (
		last    []nameresolution.Instance
		known   bool
		backoff = w.minBackoff
	)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		eps, ttl, err := w.resolve(ctx, lk, log)
		var wait time.Duration
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			w.failures.Add(1)
			wait = jitter(backoff)
			backoff = min(2*backoff, w.maxBackoff)
			log.Warn("cannot resolve the app's instances; keeping the last set", "err", err,
				"instances", len(last), "known", known, "retry_in", wait.Round(time.Millisecond))
		} else {
			backoff = w.minBackoff
			wait = w.refresh(ttl)
			insts := make([]nameresolution.Instance, 0, len(eps))
			for _, ep := range eps {
				insts = append(insts, nameresolution.Instance{AppID: appID, Namespace: namespace, Host: ep.Addr().String(), Port: int(ep.Port())})
			}
			if !known || !slices.Equal(insts, last) {
				if len(insts) == 0 {
					log.Info("the app has no instance in DNS")
				} else {
					log.Info("the app's instances changed", "instances", len(insts), "first", insts[0].Address())
				}
				last, known = insts, true
				w.updates.Add(1)
				update(slices.Clone(insts))
			}
		}
		timer.Reset(wait)
	}
}

// refresh turns an answer's TTL into how long to keep it.
func (w *Watcher) refresh(ttl uint32) time.Duration {
	d := noTTLRefresh
	if ttl != noTTL {
		d = time.Duration(ttl) * time.Second
	}
	return min(max(d, w.minRefresh), w.maxRefresh)
}

// jitter spreads a pause over [d/2, d), so watchers that failed together do
// not retry together.
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

// resolve asks DNS for the instances of one app: the SRV records first, then
// the A and AAAA records. It returns the instances sorted and without
// duplicates, and the smallest TTL of the answers used.
func (w *Watcher) resolve(ctx context.Context, lk lookup, log *slog.Logger) ([]netip.AddrPort, uint32, error) {
	ttl := uint32(noTTL)
	if lk.srvName != "" {
		a, err := w.ask(ctx, lk.srvName, dns.TypeSRV)
		if err != nil {
			return nil, 0, err
		}
		ttl = min(ttl, a.ttl)
		if len(a.srvs) > 0 {
			eps, t, err := w.srvTargets(ctx, a, log)
			if err != nil {
				return nil, 0, err
			}
			return eps, min(ttl, t), nil
		}
	}
	var eps []netip.AddrPort
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		a, err := w.ask(ctx, lk.host, qtype)
		if err != nil {
			return nil, 0, err
		}
		ttl = min(ttl, a.ttl)
		for _, ip := range a.addrs {
			eps = append(eps, netip.AddrPortFrom(ip, uint16(lk.port)))
		}
	}
	return sortEndpoints(eps), ttl, nil
}

// srvTargets turns an SRV answer into endpoints: the records of the lowest
// priority, each target's addresses from the additional section or else
// asked for.
func (w *Watcher) srvTargets(ctx context.Context, a answer, log *slog.Logger) ([]netip.AddrPort, uint32, error) {
	best := a.srvs[0].priority
	for _, s := range a.srvs {
		best = min(best, s.priority)
	}
	ttl := uint32(noTTL)
	addrs := map[string][]netip.Addr{}
	var missing []string
	for _, s := range a.srvs {
		if s.priority != best {
			continue
		}
		if _, done := addrs[s.target]; done {
			continue
		}
		if ips, ok := a.extra[s.target]; ok {
			addrs[s.target] = ips
			ttl = min(ttl, a.extraTTL[s.target])
			continue
		}
		addrs[s.target] = nil
		missing = append(missing, s.target)
	}

	// Ask for the targets the additional section did not cover.
	type result struct {
		target string
		ips    []netip.Addr
		ttl    uint32
		err    error
	}
	results := make([]result, len(missing))
	var wg sync.WaitGroup
	sem := make(chan struct{}, targetQueries)
	for i, t := range missing {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r := result{target: t, ttl: noTTL}
			for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
				ta, err := w.ask(ctx, t, qtype)
				if err != nil {
					r.err = fmt.Errorf("SRV target %s: %w", t, err)
					break
				}
				r.ttl = min(r.ttl, ta.ttl)
				r.ips = append(r.ips, ta.addrs...)
			}
			results[i] = r
		}()
	}
	wg.Wait()
	var errs []error
	for _, r := range results {
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		if len(r.ips) == 0 {
			log.Info("an SRV target has no address", "target", r.target)
		}
		addrs[r.target] = r.ips
		ttl = min(ttl, r.ttl)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, 0, err
	}

	var eps []netip.AddrPort
	for _, s := range a.srvs {
		if s.priority != best {
			continue
		}
		for _, ip := range addrs[s.target] {
			eps = append(eps, netip.AddrPortFrom(ip, s.port))
		}
	}
	return sortEndpoints(eps), ttl, nil
}

// ask sends one query and interprets the answer, following a CNAME chain
// that leaves the answer by asking about its end.
func (w *Watcher) ask(ctx context.Context, name string, qtype uint16) (answer, error) {
	ttl := uint32(noTTL)
	asked := name
	for range maxAliases {
		m, err := w.exchange(ctx, name, qtype)
		if err != nil {
			return answer{}, err
		}
		a, err := interpret(m, name, qtype)
		if a.foreign > 0 {
			w.foreign.Add(int64(a.foreign))
			w.log.Warn("ignored records about other names in an answer", "asked", name, "type", typeString(qtype), "records", a.foreign)
		}
		if err != nil {
			return answer{}, fmt.Errorf("%s %s from %s: %w", name, typeString(qtype), w.server, err)
		}
		a.ttl = min(a.ttl, ttl)
		if a.alias == "" {
			return a, nil
		}
		ttl = a.ttl
		name = a.alias
	}
	return answer{}, fmt.Errorf("%s %s: CNAME chain longer than %d names (up to %s)", asked, typeString(qtype), maxAliases, name)
}

// exchange sends one query over UDP, and over TCP when the UDP answer comes
// truncated.
func (w *Watcher) exchange(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	q.SetEdns0(ednsSize, false)
	w.queries.Add(1)
	r, _, err := w.udp.ExchangeContext(ctx, q, w.server)
	if err != nil {
		return nil, fmt.Errorf("%s %s from %s: %w", name, typeString(qtype), w.server, err)
	}
	if !r.Truncated {
		return r, nil
	}
	w.truncated.Add(1)
	w.queries.Add(1)
	r, _, err = w.tcp.ExchangeContext(ctx, q, w.server)
	if err != nil {
		return nil, fmt.Errorf("%s %s from %s over TCP, after a truncated UDP answer: %w", name, typeString(qtype), w.server, err)
	}
	return r, nil
}

// sortEndpoints sorts eps and drops duplicates.
func sortEndpoints(eps []netip.AddrPort) []netip.AddrPort {
	slices.SortFunc(eps, func(x, y netip.AddrPort) int { return x.Compare(y) })
	return slices.Compact(eps)
}
