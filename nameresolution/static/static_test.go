package static_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outrigger/outrigger/nameresolution"
	"github.com/outrigger/outrigger/nameresolution/balance"
	"github.com/outrigger/outrigger/nameresolution/nameresolutiontest"
	"github.com/outrigger/outrigger/nameresolution/static"
)

// harness drives the static backend for the conformance suite: the
// instances live in a file it rewrites atomically on every change.
type harness struct {
	path     string
	opts     []static.Option
	insts    []nameresolution.Instance
	balanced bool // resolve through a balancer over the file as a Watcher
}

func newHarness(t *testing.T, opts ...static.Option) *harness {
	h := &harness{path: filepath.Join(t.TempDir(), "apps.yaml"), opts: opts}
	h.write(t)
	return h
}

func (h *harness) NewResolver(t *testing.T) nameresolution.Resolver {
	r, err := static.New(h.path, h.opts...)
	if err != nil {
		t.Fatalf("static.New: %v", err)
	}
	if h.balanced {
		return closeBoth{balance.New(r, balance.Options{}), r}
	}
	return r
}

// closeBoth is a balancer over a static resolver; closing it closes both.
type closeBoth struct {
	*balance.Balancer
	r *static.Resolver
}

func (c closeBoth) Close() error { _ = c.Balancer.Close(); return c.r.Close() }

func (h *harness) Add(t *testing.T, inst nameresolution.Instance) {
	h.insts = append(h.insts, inst)
	h.write(t)
}

func (h *harness) Remove(t *testing.T, inst nameresolution.Instance) {
	for i, in := range h.insts {
		if in == inst {
			h.insts = append(h.insts[:i], h.insts[i+1:]...)
			break
		}
	}
	h.write(t)
}

// write renders the instances, grouped by app, and replaces the file.
func (h *harness) write(t *testing.T) {
	t.Helper()
	type key struct{ app, ns string }
	groups := map[key][]string{}
	var order []key
	for _, in := range h.insts {
		k := key{in.AppID, nameresolution.NamespaceOrDefault(in.Namespace)}
		if groups[k] == nil {
			order = append(order, k)
		}
		groups[k] = append(groups[k], fmt.Sprintf("%q", in.Address()))
	}
	var b bytes.Buffer
	if len(order) == 0 {
		b.WriteString("apps: []\n")
	} else {
		b.WriteString("apps:\n")
	}
	for _, k := range order {
		fmt.Fprintf(&b, "  - appID: %s\n    namespace: %s\n    addresses: [%s]\n", k.app, k.ns, strings.Join(groups[k], ", "))
	}
	writeAtomic(t, h.path, b.String())
}

// writeAtomic replaces path with content by renaming a temporary file over it.
func writeAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp, err := os.CreateTemp(filepath.Dir(path), ".apps-*.tmp")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tmp.WriteString(content); err != nil {
		t.Fatal(err)
	}
	if err := tmp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		t.Fatal(err)
	}
}

func TestConformance(t *testing.T) {
	t.Run("Watch", func(t *testing.T) {
		nameresolutiontest.Run(t, newHarness(t))
	})
	t.Run("Poll", func(t *testing.T) {
		nameresolutiontest.Run(t, newHarness(t, static.WithPollInterval(10*time.Millisecond)))
	})
	t.Run("Balanced", func(t *testing.T) {
		h := newHarness(t)
		h.balanced = true
		nameresolutiontest.Run(t, h)
	})
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.yaml")
	if _, err := static.New(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("New(missing file) error = %v; want one wrapping fs.ErrNotExist", err)
	}

	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, "apps:\n  - appID: a\n    port: 80\n")
	_, err := static.New(bad)
	for _, want := range []string{bad, "field port not found"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New(bad file) error = %v; want one containing %q", err, want)
		}
	}
}

func TestNotFoundError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "apps.yaml")
	writeFile(t, path, "apps: []\n")
	r, err := static.New(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	_, err = r.Resolve(context.Background(), "orders", "shop")
	if !errors.Is(err, nameresolution.ErrNotFound) {
		t.Fatalf("Resolve error = %v; want ErrNotFound", err)
	}
	want := `nameresolution/static: app "orders" in namespace "shop" is not in ` + path + ": " + nameresolution.ErrNotFound.Error()
	if err.Error() != want {
		t.Errorf("Resolve error = %q; want %q", err, want)
	}
}

// syncBuffer is a log sink safe to write from the watcher and read from the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for range 1000 {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: still not true after 10s", what)
}

func TestBadReloadKeepsLastGoodTable(t *testing.T) {
	for _, mode := range []struct {
		name string
		opts []static.Option
	}{
		{"Watch", nil},
		{"Poll", []static.Option{static.WithPollInterval(10 * time.Millisecond)}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "apps.yaml")
			writeFile(t, path, `apps: [{appID: a, addresses: ["127.0.0.1:1"]}]`)
			var logs syncBuffer
			logger := slog.New(slog.NewTextHandler(&logs, nil))
			r, err := static.New(path, append(mode.opts, static.WithLogger(logger))...)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			resolve := func() string {
				got, err := r.Resolve(context.Background(), "a", "")
				if err != nil {
					return err.Error()
				}
				return got
			}

			// Written in place, not renamed: the other way editors save.
			writeFile(t, path, `apps: [{appID: a, addresses: ["127.0.0.1:1"], weight: 3}]`)
			eventually(t, "the parse error logged", func() bool {
				return strings.Contains(logs.String(), "field weight not found")
			})
			if got := resolve(); got != "127.0.0.1:1" {
				t.Errorf("after a bad file, Resolve = %q; want the last good 127.0.0.1:1", got)
			}

			writeFile(t, path, `apps: [{appID: a, addresses: ["127.0.0.1:2"]}]`)
			eventually(t, "the fixed file served", func() bool { return resolve() == "127.0.0.1:2" })

			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			eventually(t, "the missing file logged", func() bool {
				return strings.Contains(logs.String(), "cannot read the file")
			})
			if got := resolve(); got != "127.0.0.1:2" {
				t.Errorf("after removing the file, Resolve = %q; want the last good 127.0.0.1:2", got)
			}
		})
	}
}

// TestSymlinkSwap follows a file reached through a symlink that is swapped
// to a new target, as Kubernetes updates a mounted ConfigMap.
func TestSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "v1.yaml"), `apps: [{appID: a, addresses: ["127.0.0.1:1"]}]`)
	writeFile(t, filepath.Join(dir, "v2.yaml"), `apps: [{appID: a, addresses: ["127.0.0.1:2"]}]`)
	path := filepath.Join(dir, "apps.yaml")
	if err := os.Symlink("v1.yaml", path); err != nil {
		t.Fatal(err)
	}
	r, err := static.New(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := os.Symlink("v2.yaml", path+".new"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new target served", func() bool {
		got, err := r.Resolve(context.Background(), "a", "")
		return err == nil && got == "127.0.0.1:2"
	})
}

func TestRoundRobinOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "apps.yaml")
	writeFile(t, path, `apps: [{appID: a, namespace: ns, addresses: ["10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1"]}]`)
	r, err := static.New(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var got []string
	for range 6 {
		addr, err := r.Resolve(context.Background(), "a", "ns")
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, addr)
	}
	want := []string{"10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1", "10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("successive Resolve = %v; want %v", got, want)
	}
}

// TestCloseStopsGoroutines checks that Close ends the watching goroutine,
// in both modes, and that Close may be called twice.
func TestCloseStopsGoroutines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "apps.yaml")
	writeFile(t, path, "apps: []\n")
	before := runtime.NumGoroutine()
	var rs []*static.Resolver
	for _, opts := range [][]static.Option{nil, {static.WithPollInterval(time.Millisecond)}} {
		for range 5 {
			r, err := static.New(path, opts...)
			if err != nil {
				t.Fatal(err)
			}
			rs = append(rs, r)
		}
	}
	for _, r := range rs {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := r.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	}
	eventually(t, "goroutines back to the count before New", func() bool {
		return runtime.NumGoroutine() <= before
	})
}

func BenchmarkResolve(b *testing.B) {
	path := filepath.Join(b.TempDir(), "apps.yaml")
	var apps []string
	for i := range 100 {
		apps = append(apps, fmt.Sprintf(`{appID: app%d, addresses: ["10.0.%d.1:50002", "10.0.%d.2:50002"]}`, i, i, i))
	}
	if err := os.WriteFile(path, []byte("apps: ["+strings.Join(apps, ", ")+"]"), 0o600); err != nil {
		b.Fatal(err)
	}
	r, err := static.New(path)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	b.Run("Serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.Resolve(ctx, "app42", ""); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := r.Resolve(ctx, "app42", "default"); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

func TestResolveAllocs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "apps.yaml")
	writeFile(t, path, `apps: [{appID: a, addresses: ["10.0.0.1:1", "10.0.0.2:1"]}]`)
	r, err := static.New(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	if n := testing.AllocsPerRun(100, func() { _, _ = r.Resolve(ctx, "a", "") }); n != 0 {
		t.Errorf("Resolve allocates %v times per call; want 0", n)
	}
}
