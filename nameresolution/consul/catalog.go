package consul

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/outrigger/outrigger/nameresolution"
)

// Catalog follows the whole Consul catalog: every service, with blocking
// queries, and the passing instances of each that a sidecar registered
// (those with the mesh port in their meta), in every namespace. It is how a
// control plane serves the sidecars Consul knows as EDS.
type Catalog struct {
	w *Watcher
}

// NewCatalog returns a catalog follower for the agent md.Client describes.
func NewCatalog(md Metadata, opts ...Option) (*Catalog, error) {
	w, err := NewWatcher(md, opts...)
	if err != nil {
		return nil, err
	}
	return &Catalog{w: w}, nil
}

// Run calls update with every instance of every service, once the catalog
// was first read and after each change, until ctx is done; it then returns
// nil. While the agent cannot be reached the last instances stay.
func (c *Catalog) Run(ctx context.Context, update func([]nameresolution.Instance)) error {
	w := c.w
	log := w.log.With("catalog", true)
	var (
		mu      sync.Mutex
		byApp   = map[string][]nameresolution.Instance{}
		watches = map[string]context.CancelFunc{}
		wg      sync.WaitGroup
		index   uint64
		backoff time.Duration
		failing int
	)
	defer func() {
		for _, cancel := range watches {
			cancel()
		}
		wg.Wait()
	}()
	publish := func() {
		var all []nameresolution.Instance
		for _, insts := range byApp {
			all = append(all, insts...)
		}
		slices.SortFunc(all, func(a, b nameresolution.Instance) int {
			return cmp.Or(cmp.Compare(a.AppID, b.AppID), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Host, b.Host), cmp.Compare(a.Port, b.Port))
		})
		update(all)
	}
	first := true
	for ctx.Err() == nil {
		q := w.query
		// The agent's cache answers the service list at once and stale
		// instead of blocking: ask the servers.
		q.UseCache = false
		q.WaitIndex = index
		q.WaitTime = w.wait
		rctx, cancel := context.WithTimeout(ctx, w.wait+w.wait/16+requestSlack)
		w.queries.Add(1)
		start := time.Now()
		services, meta, err := w.client.Catalog().Services(q.WithContext(rctx))
		cancel()
		if ctx.Err() != nil {
			break
		}
		if err != nil || meta == nil {
			w.failures.Add(1)
			failing++
			index = 0
			backoff = nextBackoff(backoff, w.o.maxBackoff)
			if failing == 1 {
				log.Warn("consul catalog query failed; keeping the last instances and retrying", "err", err, "retry_in", backoff)
			}
			if !sleep(ctx, backoff) {
				break
			}
			continue
		}
		if failing > 0 {
			log.Info("consul catalog answers again", "failures", failing)
		}
		failing, backoff = 0, 0
		if q.WaitIndex > 0 && meta.LastIndex == q.WaitIndex && time.Since(start) < spinGuard && !sleep(ctx, spinGuard) {
			break
		}
		index = nextIndex(index, meta.LastIndex)
		mu.Lock()
		changed := false
		for name, stop := range watches {
			if _, ok := services[name]; !ok {
				stop()
				delete(watches, name)
				if _, had := byApp[name]; had {
					delete(byApp, name)
					changed = true
				}
			}
		}
		for name := range services {
			if _, ok := watches[name]; ok || name == "consul" {
				continue
			}
			wctx, stop := context.WithCancel(ctx)
			watches[name] = stop
			wg.Go(func() {
				_ = w.follow(wctx, name, anyNamespace, func(insts []nameresolution.Instance) {
					mu.Lock()
					defer mu.Unlock()
					if wctx.Err() != nil {
						return
					}
					if len(insts) == 0 {
						if _, had := byApp[name]; !had {
							return
						}
						delete(byApp, name)
					} else {
						byApp[name] = insts
					}
					publish()
				})
			})
		}
		if changed || first {
			publish()
			first = false
		}
		mu.Unlock()
	}
	return nil
}
