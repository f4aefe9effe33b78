// Package static resolves app-ids from a YAML file that lists the addresses
// of every app's instances. Successive calls balance round-robin across an
// app's addresses. The file is watched and re-read when it changes; a new
// file that does not parse is logged and the last good table stays in use.
//
// The file looks like this:
//
//	apps:
//	  - appID: orders
//	    namespace: default        # optional, default "default"
//	    addresses: ["127.0.0.1:50002", "127.0.0.1:50012"]
package static

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/outrigger/outrigger/nameresolution"
)

// DefaultPollInterval is how often the file is checked when it is polled
// rather than watched (see WithPollInterval).
const DefaultPollInterval = 2 * time.Second

// debounce is how long the watcher waits after a change before re-reading
// the file, so that an editor's several writes are read once.
const debounce = 50 * time.Millisecond

// Option configures a Resolver.
type Option func(*config)

type config struct {
	logger *slog.Logger
	poll   time.Duration
}

// WithLogger sets the logger for reloads and reload errors. The default
// discards them.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.logger = l }
}

// WithPollInterval makes the resolver check the file's modification time,
// size and identity every d instead of watching its directory with inotify,
// for file systems where inotify sees nothing (NFS, some FUSE mounts).
// d <= 0 keeps watching. When inotify cannot be used the resolver polls
// every DefaultPollInterval on its own.
func WithPollInterval(d time.Duration) Option {
	return func(c *config) { c.poll = d }
}

// Resolver resolves app-ids from a static file. It is safe for concurrent
// use; Resolve takes no lock and does not allocate.
type Resolver struct {
	path string
	log  *slog.Logger

	table atomic.Pointer[table]

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once

	// Owned by the watching goroutine after New returns.
	last    []byte // content of the last file read, parsed or not
	lastErr string // last read error logged, to log each error once
	stat    os.FileInfo
}

type key struct{ appID, namespace string }

type table struct {
	apps map[key]*app
	// changed is closed when a newer table replaces this one.
	changed chan struct{}
}

type app struct {
	addrs []string
	next  atomic.Uint64
}

// New reads the file at path and returns a resolver that serves it and
// follows its changes until Close. An error reading the file wraps the
// os error (errors.Is(err, fs.ErrNotExist) for a missing file); a file
// that does not parse is an error naming the file and the problem.
func New(path string, opts ...Option) (*Resolver, error) {
	c := config{}
	for _, o := range opts {
		o(&c)
	}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("nameresolution/static: %w", err)
	}
	r := &Resolver{
		path: abs,
		log:  c.logger.With("resolver", "static", "file", abs),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	data, err := os.ReadFile(abs)
	if err != nil {
		return nil, fmt.Errorf("nameresolution/static: %w", err)
	}
	t, err := load(data)
	if err != nil {
		return nil, fmt.Errorf("nameresolution/static: %s: %v", abs, err)
	}
	r.table.Store(t)
	r.last = data
	r.stat, _ = os.Stat(abs)

	if c.poll > 0 {
		go r.poll(c.poll)
		return r, nil
	}
	w, err := r.newWatcher()
	if err != nil {
		r.log.Warn("cannot watch the file; polling it instead", "interval", DefaultPollInterval, "err", err)
		go r.poll(DefaultPollInterval)
		return r, nil
	}
	go r.watch(w)
	return r, nil
}

// load parses data into a table.
func load(data []byte) (*table, error) {
	f, err := Parse(data)
	if err != nil {
		return nil, err
	}
	t := &table{apps: make(map[key]*app, len(f.Apps)), changed: make(chan struct{})}
	for _, a := range f.Apps {
		t.apps[key{a.AppID, a.Namespace}] = &app{addrs: a.Addresses}
	}
	return t, nil
}

// Resolve returns the next address of appID in namespace (an empty namespace
// is DefaultNamespace), rotating through the app's addresses. An unknown app
// is an error wrapping nameresolution.ErrNotFound.
func (r *Resolver) Resolve(_ context.Context, appID, namespace string) (string, error) {
	ns := nameresolution.NamespaceOrDefault(namespace)
	a := r.table.Load().apps[key{appID, ns}]
	if a == nil {
		return "", fmt.Errorf("nameresolution/static: app %q in namespace %q is not in %s: %w", appID, ns, r.path, nameresolution.ErrNotFound)
	}
	n := a.next.Add(1) - 1
	return a.addrs[n%uint64(len(a.addrs))], nil
}

// Close stops following the file and waits for that to end. Resolve keeps
// answering from the last table. Close is idempotent.
func (r *Resolver) Close() error {
	r.closeOnce.Do(func() {
		close(r.stop)
		<-r.done
	})
	return nil
}

// newWatcher watches the file's directory, which sees the file replaced by
// rename (editors, atomic writers, Kubernetes ConfigMap symlink swaps) as
// well as written in place.
func (r *Resolver) newWatcher() (*fsnotify.Watcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	if err := w.Add(filepath.Dir(r.path)); err != nil {
		return nil, errors.Join(err, w.Close())
	}
	return w, nil
}

func (r *Resolver) watch(w *fsnotify.Watcher) {
	defer close(r.done)
	defer w.Close()
	timer := time.NewTimer(debounce)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-r.stop:
			return
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			// Any change in the directory may be the file's: its name
			// can be a symlink whose target was swapped. reload compares
			// contents, so a change elsewhere costs one small read.
			if ev.Op != fsnotify.Chmod {
				timer.Reset(debounce)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			r.log.Warn("watching the file", "err", err)
		case <-timer.C:
			r.reload()
		}
	}
}

func (r *Resolver) poll(every time.Duration) {
	defer close(r.done)
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-ticker.C:
			st, err := os.Stat(r.path)
			if err == nil && r.stat != nil && os.SameFile(st, r.stat) &&
				st.ModTime().Equal(r.stat.ModTime()) && st.Size() == r.stat.Size() {
				continue
			}
			r.stat = st
			r.reload()
		}
	}
}

// reload reads the file and, when its content changed and parses, swaps the
// table. Errors are logged and leave the last good table in use.
func (r *Resolver) reload() {
	data, err := os.ReadFile(r.path)
	if err != nil {
		if err.Error() != r.lastErr {
			r.lastErr = err.Error()
			r.log.Warn("cannot read the file; keeping the last good table", "err", err)
		}
		return
	}
	r.lastErr = ""
	if bytes.Equal(data, r.last) {
		return
	}
	r.last = data
	t, err := load(data)
	if err != nil {
		r.log.Error("the file does not parse; keeping the last good table", "err", err)
		return
	}
	close(r.table.Swap(t).changed)
	r.log.Info("reloaded the file", "apps", len(t.apps))
}

// Watch reports the addresses of appID in namespace now and after every
// reload of the file, until ctx is done: the static file as a
// nameresolution.Watcher, for a balancer.
func (r *Resolver) Watch(ctx context.Context, appID, namespace string, update func([]nameresolution.Instance)) error {
	ns := nameresolution.NamespaceOrDefault(namespace)
	for {
		t := r.table.Load()
		var insts []nameresolution.Instance
		if a := t.apps[key{appID, ns}]; a != nil {
			for _, addr := range a.addrs {
				host, port, err := net.SplitHostPort(addr)
				if err != nil {
					continue // Parse checked every address
				}
				p, _ := strconv.Atoi(port)
				insts = append(insts, nameresolution.Instance{AppID: appID, Namespace: ns, Host: host, Port: p})
			}
		}
		update(insts)
		select {
		case <-ctx.Done():
			return nil
		case <-t.changed:
		}
	}
}

var (
	_ nameresolution.Resolver = (*Resolver)(nil)
	_ nameresolution.Watcher  = (*Resolver)(nil)
)
