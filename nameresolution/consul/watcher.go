package consul

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/outrigger/outrigger/nameresolution"
)

// Watcher follows the passing instances of apps through a Consul agent. It
// is a nameresolution.Watcher; balance.New makes it a Resolver. It is safe
// for concurrent use, one Watch per app.
type Watcher struct {
	client  *api.Client
	query   api.QueryOptions
	portKey string
	wait    time.Duration
	o       options
	log     *slog.Logger

	queries  atomic.Int64
	failures atomic.Int64
	updates  atomic.Int64
	skipped  atomic.Int64
	foreign  atomic.Int64
}

var _ nameresolution.Watcher = (*Watcher)(nil)

// NewWatcher returns a watcher that asks the agent md.Client describes.
// Nothing is sent before the first Watch. The error is md's validation
// error or the consul client's.
func NewWatcher(md Metadata, opts ...Option) (*Watcher, error) {
	md = md.withDefaults()
	c, err := newClient(md)
	if err != nil {
		return nil, err
	}
	o := newOptions(opts)
	wait := DefaultWaitTime
	switch {
	case md.QueryOptions.WaitTime > 0:
		wait = md.QueryOptions.WaitTime
	case md.Client.WaitTime > 0:
		wait = md.Client.WaitTime
	}
	return &Watcher{
		client:  c,
		query:   md.QueryOptions.api(),
		portKey: md.DaprPortMetaKey,
		wait:    wait,
		o:       o,
		log:     o.logger.With("resolver", "consul"),
	}, nil
}

// WatcherStats are a watcher's counters since it was made, over all apps.
type WatcherStats struct {
	// Queries counts the health queries sent.
	Queries int64
	// Failures counts the queries that failed: the agent unreachable, an
	// error status, an answer that does not decode.
	Failures int64
	// Updates counts the sets passed to update.
	Updates int64
	// Skipped counts instances left out for want of a valid mesh port or
	// address, once per answer they were in.
	Skipped int64
	// Foreign counts instances left out for belonging to another namespace
	// (or, in a wrong answer, another service), once per answer.
	Foreign int64
}

// Stats returns the counters.
func (w *Watcher) Stats() WatcherStats {
	return WatcherStats{
		Queries:  w.queries.Load(),
		Failures: w.failures.Load(),
		Updates:  w.updates.Load(),
		Skipped:  w.skipped.Load(),
		Foreign:  w.foreign.Load(),
	}
}

// Watch follows the passing instances of appID in namespace (empty: the
// default namespace) with blocking queries, calling update with the whole
// set at the first answer and after every change, until ctx is done; it
// then returns nil. While the agent cannot be reached the last set stays,
// failures are logged and counted, and the query is retried with a backoff
// capped at the max backoff. It returns an error only for an app-id that
// cannot name a Consul service (empty, or with a slash).
func (w *Watcher) Watch(ctx context.Context, appID, namespace string, update func([]nameresolution.Instance)) error {
	return w.follow(ctx, appID, nameresolution.NamespaceOrDefault(namespace), update)
}

// anyNamespace asks follow for the instances of every namespace.
const anyNamespace = "\x00any"

// follow is Watch; namespace anyNamespace reports the instances of every
// namespace, and leaves out quietly those registered without a mesh port
// (services that are not sidecars).
func (w *Watcher) follow(ctx context.Context, appID, namespace string, update func([]nameresolution.Instance)) error {
	if appID == "" || strings.ContainsAny(appID, "/\x00") {
		return fmt.Errorf("nameresolution/consul: watch: app-id %q: want a non-empty name without slashes", appID)
	}
	log := w.log.With("app_id", appID, "namespace", namespace)
	if namespace == anyNamespace {
		log = w.log.With("app_id", appID)
	}
	var (
		index    uint64
		last     []nameresolution.Instance
		sent     bool
		backoff  time.Duration
		failing  int // consecutive failures
		lastErr  string
		reported = map[string]bool{} // problems with instances already logged
	)
	for ctx.Err() == nil {
		q := w.query
		q.WaitIndex = index
		q.WaitTime = w.wait
		rctx, cancel := context.WithTimeout(ctx, w.wait+w.wait/16+requestSlack)
		w.queries.Add(1)
		start := time.Now()
		entries, meta, err := w.client.Health().Service(appID, "", true, q.WithContext(rctx))
		cancel()
		if ctx.Err() != nil {
			break
		}
		if err == nil && meta == nil {
			err = errors.New("answer without query metadata")
		}
		if err != nil {
			w.failures.Add(1)
			failing++
			// The agent may come back as a new one (a restart of a dev
			// agent) whose index starts again below ours: ask without
			// blocking first.
			index = 0
			backoff = nextBackoff(backoff, w.o.maxBackoff)
			switch msg := err.Error(); {
			case failing == 1:
				log.Warn("consul agent query failed; keeping the last set of instances and retrying", "err", err, "instances", len(last), "retry_in", backoff)
			case msg != lastErr:
				log.Warn("consul agent query still failing", "err", err, "failures", failing, "retry_in", backoff)
			default:
				log.Debug("consul agent query still failing", "err", err, "failures", failing, "retry_in", backoff)
			}
			lastErr = err.Error()
			if !sleep(ctx, backoff) {
				break
			}
			continue
		}
		if failing > 0 {
			log.Info("consul agent answers again; watching resumed", "failures", failing)
		}
		failing, backoff, lastErr = 0, 0, ""

		// A blocking query that returns at once with the index it was
		// given has nothing new; pause rather than spin.
		if q.WaitIndex > 0 && meta.LastIndex == q.WaitIndex && time.Since(start) < spinGuard {
			if !sleep(ctx, spinGuard) {
				break
			}
		}
		index = nextIndex(index, meta.LastIndex)

		set := w.instances(log, entries, appID, namespace, reported)
		if !sent || !slices.Equal(set, last) {
			sent, last = true, set
			w.updates.Add(1)
			update(slices.Clone(set))
		}
	}
	log.Debug("watch ended")
	return nil
}

// nextIndex is the index of the next blocking query after an answer at
// last, by Consul's rules: an index that went backwards (a new agent or a
// restored snapshot) starts again from 0; 0 itself would not block.
func nextIndex(index, last uint64) uint64 {
	switch {
	case last < index:
		return 0
	case last == 0:
		return 1
	}
	return last
}

// spinGuard is the pause after a blocking query that returned at once
// without a new index.
const spinGuard = 50 * time.Millisecond

// instances turns an answer into the sorted, deduplicated set of instances
// of appID in namespace; anything else, or anything it cannot read, is left
// out (and logged once per watch).
func (w *Watcher) instances(log *slog.Logger, entries []*api.ServiceEntry, appID, namespace string, reported map[string]bool) []nameresolution.Instance {
	set := make([]nameresolution.Instance, 0, len(entries))
	note := func(id, problem string, args ...any) {
		key := id + "\x00" + problem
		if reported[key] {
			return
		}
		if len(reported) > 1000 {
			clear(reported)
		}
		reported[key] = true
		log.Warn("leaving out a consul instance: "+problem, append([]any{"service_id", id}, args...)...)
	}
	for _, e := range entries {
		if e == nil || e.Service == nil {
			w.skipped.Add(1)
			note("", "an entry without a service")
			continue
		}
		s := e.Service
		if s.Service != appID {
			w.foreign.Add(1)
			note(s.ID, "the answer names another service", "service", s.Service)
			continue
		}
		ns := nameresolution.NamespaceOrDefault(s.Meta[MetaNamespace])
		if ns != namespace && namespace != anyNamespace {
			w.foreign.Add(1)
			continue
		}
		raw, ok := s.Meta[w.portKey]
		if !ok {
			w.skipped.Add(1)
			if namespace != anyNamespace {
				note(s.ID, "no mesh port in the service meta", "meta_key", w.portKey)
			}
			continue
		}
		port, err := strconv.Atoi(strings.TrimSpace(raw))
		if err != nil || port < 1 || port > 65535 {
			w.skipped.Add(1)
			note(s.ID, "the mesh port in the service meta is not a port", "meta_key", w.portKey, "value", raw)
			continue
		}
		host := s.Address
		if host == "" && e.Node != nil {
			host = e.Node.Address
		}
		host = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(host), "["), "]")
		if host == "" || strings.ContainsAny(host, " /[]") {
			w.skipped.Add(1)
			note(s.ID, "no usable address", "address", host)
			continue
		}
		set = append(set, nameresolution.Instance{AppID: appID, Namespace: ns, Host: host, Port: port})
	}
	slices.SortFunc(set, func(a, b nameresolution.Instance) int {
		return cmp.Or(cmp.Compare(a.Host, b.Host), cmp.Compare(a.Port, b.Port))
	})
	return slices.Compact(set)
}

// sleep waits d or until ctx is done; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
