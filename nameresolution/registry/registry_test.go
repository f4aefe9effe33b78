package registry_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outrigger/outrigger/nameresolution"
	"github.com/outrigger/outrigger/nameresolution/balance"
	"github.com/outrigger/outrigger/nameresolution/nameresolutiontest"
	"github.com/outrigger/outrigger/nameresolution/registry"
	xdsregistry "github.com/outrigger/outrigger/xds/registry"
)

// controlPlane is a registry served as the control plane serves it, on a
// loopback port.
type controlPlane struct {
	reg  *xdsregistry.Registry
	addr string
	stop func()
}

// startControlPlane serves a fresh registry on addr ("127.0.0.1:0" for a
// free port) until the test ends or stop is called.
func startControlPlane(t *testing.T, addr string) *controlPlane {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	reg := xdsregistry.New(xdsregistry.Options{SweepInterval: 20 * time.Millisecond})
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: reg.Handler(), Protocols: &p, ReadHeaderTimeout: 5 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = reg.Run(ctx) })
	wg.Go(func() { _ = srv.Serve(ln) })
	var once sync.Once
	cp := &controlPlane{reg: reg, addr: ln.Addr().String()}
	cp.stop = func() {
		once.Do(func() {
			cancel()
			sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer scancel()
			_ = srv.Shutdown(sctx)
			wg.Wait()
		})
	}
	t.Cleanup(cp.stop)
	return cp
}

// harness drives the conformance suite: instances are added by starting an
// Announcer for them, and removed by stopping it.
type harness struct {
	addr     string
	live     map[nameresolution.Instance]func(t *testing.T)
	balanced bool // resolve through a balancer over the registry as a Watcher
}

func (h *harness) NewResolver(*testing.T) nameresolution.Resolver {
	r := registry.NewResolver(h.addr, registry.WithWait(5*time.Second))
	if h.balanced {
		return closeBoth{balance.New(r, balance.Options{}), r}
	}
	return r
}

// closeBoth is a balancer over a registry resolver; closing it closes both.
type closeBoth struct {
	*balance.Balancer
	r *registry.Resolver
}

func (c closeBoth) Close() error { _ = c.Balancer.Close(); return c.r.Close() }

func (h *harness) Add(t *testing.T, inst nameresolution.Instance) {
	t.Helper()
	h.live[inst] = announce(t, h.addr, inst)
}

func (h *harness) Remove(t *testing.T, inst nameresolution.Instance) {
	t.Helper()
	stop := h.live[inst]
	delete(h.live, inst)
	stop(t)
}

// announce runs an Announcer for inst until the returned stop is called
// (or the test ends); stop checks that Announce returned nil.
func announce(t *testing.T, addr string, inst nameresolution.Instance, opts ...registry.Option) func(t *testing.T) {
	t.Helper()
	a := registry.NewAnnouncer(addr, opts...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Announce(ctx, inst) }()
	var once sync.Once
	stop := func(t *testing.T) {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Announce(%+v) = %v; want nil", inst, err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("Announce(%+v) did not return after its context ended", inst)
			}
		})
	}
	t.Cleanup(func() { stop(t) })
	return stop
}

func TestConformance(t *testing.T) {
	t.Setenv("OUTRIGGER_HOME", t.TempDir())
	cp := startControlPlane(t, "127.0.0.1:0")
	t.Run("Resolve", func(t *testing.T) {
		nameresolutiontest.Run(t, &harness{addr: cp.addr, live: map[nameresolution.Instance]func(*testing.T){}})
	})
	t.Run("Balanced", func(t *testing.T) {
		nameresolutiontest.Run(t, &harness{addr: cp.addr, live: map[nameresolution.Instance]func(*testing.T){}, balanced: true})
	})
}

// resolveWithin resolves until it returns want or the deadline passes.
func resolveWithin(t *testing.T, r nameresolution.Resolver, appID, want string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	var (
		got string
		err error
	)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		got, err = r.Resolve(ctx, appID, "")
		cancel()
		if err == nil && got == want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("Resolve(%q) = %q, %v after %v; want %q", appID, got, err, d, want)
}

func TestDeregisterOnStop(t *testing.T) {
	t.Setenv("OUTRIGGER_HOME", t.TempDir())
	cp := startControlPlane(t, "127.0.0.1:0")
	stop := announce(t, cp.addr, nameresolution.Instance{AppID: "callee", Port: 4100})
	r := registry.NewResolver(cp.addr)
	defer r.Close()
	// An empty Host is announced as 127.0.0.1.
	resolveWithin(t, r, "callee", "127.0.0.1:4100", 5*time.Second)
	stop(t)
	// A clean stop deletes the registration at once: no lease to wait for.
	if n := len(cp.reg.Snapshot().Instances); n != 0 {
		t.Errorf("registered instances after Announce returned = %d; want 0", n)
	}
}

func TestLeaseExpiresWithoutRenewal(t *testing.T) {
	t.Setenv("OUTRIGGER_HOME", t.TempDir())
	cp := startControlPlane(t, "127.0.0.1:0")
	// A sidecar that registered and then vanished (killed, no deregister).
	if _, _, err := cp.reg.Register(xdsregistry.Instance{ID: "gone", AppID: "ghost", Host: "127.0.0.1", Port: 4200}, time.Second); err != nil {
		t.Fatal(err)
	}
	r := registry.NewResolver(cp.addr)
	defer r.Close()
	resolveWithin(t, r, "ghost", "127.0.0.1:4200", 5*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := r.Resolve(context.Background(), "ghost", "")
		if errors.Is(err, nameresolution.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Resolve(ghost) = %v 10s after its 1s lease; want ErrNotFound", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRenewalKeepsInstance(t *testing.T) {
	t.Setenv("OUTRIGGER_HOME", t.TempDir())
	cp := startControlPlane(t, "127.0.0.1:0")
	announce(t, cp.addr, nameresolution.Instance{AppID: "steady", Port: 4300}, registry.WithTTL(time.Second))
	r := registry.NewResolver(cp.addr)
	defer r.Close()
	resolveWithin(t, r, "steady", "127.0.0.1:4300", 5*time.Second)
	// Three leases long: renewals must keep it registered throughout.
	end := time.Now().Add(3 * time.Second)
	for time.Now().Before(end) {
		if got, err := r.Resolve(context.Background(), "steady", ""); err != nil || got != "127.0.0.1:4300" {
			t.Fatalf("Resolve(steady) = %q, %v while the announcer renews", got, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestControlPlaneRestart checks both halves of surviving a control-plane
// restart: the resolver keeps answering from its copy while the control
// plane is down, and the announcer registers again with the new one.
func TestControlPlaneRestart(t *testing.T) {
	t.Setenv("OUTRIGGER_HOME", t.TempDir())
	cp := startControlPlane(t, "127.0.0.1:0")
	addr := cp.addr
	announce(t, addr, nameresolution.Instance{AppID: "durable", Port: 4400}, registry.WithTTL(time.Second))
	r := registry.NewResolver(addr, registry.WithWait(2*time.Second))
	defer r.Close()
	resolveWithin(t, r, "durable", "127.0.0.1:4400", 5*time.Second)

	cp.stop()
	for range 20 {
		start := time.Now()
		got, err := r.Resolve(context.Background(), "durable", "")
		if err != nil || got != "127.0.0.1:4400" {
			t.Fatalf("Resolve while the control plane is down = %q, %v; want the cached address", got, err)
		}
		if d := time.Since(start); d > 100*time.Millisecond {
			t.Errorf("Resolve while the control plane is down took %v; want an answer from memory", d)
		}
		time.Sleep(20 * time.Millisecond)
	}

	cp2 := startControlPlane(t, addr) // same address, new registry, new epoch
	deadline := time.Now().Add(10 * time.Second)
	for len(cp2.reg.Snapshot().Instances) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the announcer did not register with the restarted control plane")
		}
		time.Sleep(20 * time.Millisecond)
	}
	resolveWithin(t, r, "durable", "127.0.0.1:4400", 10*time.Second)
	// The resolver follows the new registry: a new app shows.
	announce(t, addr, nameresolution.Instance{AppID: "newcomer", Port: 4401})
	resolveWithin(t, r, "newcomer", "127.0.0.1:4401", 10*time.Second)
}

func TestAnnounceRefused(t *testing.T) {
	t.Setenv("OUTRIGGER_HOME", t.TempDir())
	cp := startControlPlane(t, "127.0.0.1:0")
	a := registry.NewAnnouncer(cp.addr)
	for _, tt := range []struct {
		name string
		inst nameresolution.Instance
		want string
	}{
		{"no app-id", nameresolution.Instance{Port: 1}, "app-id is required"},
		{"no port", nameresolution.Instance{AppID: "a"}, "port 0"},
		{"refused by the registry", nameresolution.Instance{AppID: "has space", Port: 1}, "ERR_REGISTRY_INVALID_INSTANCE"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := a.Announce(ctx, tt.inst)
			if err == nil || !strings.Contains(err.Error(), tt.want) || ctx.Err() != nil {
				t.Errorf("Announce(%+v) = %v; want an error naming %q at once", tt.inst, err, tt.want)
			}
		})
	}
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestResolveUnreachable(t *testing.T) {
	t.Setenv("OUTRIGGER_HOME", t.TempDir())
	r := registry.NewResolver(freeAddr(t))
	defer r.Close()
	for i := range 2 {
		start := time.Now()
		_, err := r.Resolve(context.Background(), "callee", "")
		if err == nil || errors.Is(err, nameresolution.ErrNotFound) || !strings.Contains(err.Error(), "unreachable") {
			t.Errorf("call %d: Resolve with no control plane = %v; want an unreachable error, not ErrNotFound", i, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("call %d: Resolve with no control plane took %v", i, d)
		}
	}
}

func TestAnnouncerWaitsForControlPlane(t *testing.T) {
	t.Setenv("OUTRIGGER_HOME", t.TempDir())
	addr := freeAddr(t)
	// The sidecar starts before its control plane.
	announce(t, addr, nameresolution.Instance{AppID: "early", Port: 4500})
	time.Sleep(300 * time.Millisecond)
	cp := startControlPlane(t, addr)
	r := registry.NewResolver(cp.addr)
	defer r.Close()
	resolveWithin(t, r, "early", "127.0.0.1:4500", 10*time.Second)
}

func TestResolveAfterClose(t *testing.T) {
	t.Setenv("OUTRIGGER_HOME", t.TempDir())
	cp := startControlPlane(t, "127.0.0.1:0")
	r := registry.NewResolver(cp.addr)
	if _, err := r.Resolve(context.Background(), "x", ""); !errors.Is(err, nameresolution.ErrNotFound) {
		t.Fatalf("Resolve(x) = %v; want ErrNotFound", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if _, err := r.Resolve(context.Background(), "x", ""); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Resolve after Close = %v; want a closed error", err)
	}
	// Closing a resolver that never resolved does not block.
	if err := registry.NewResolver(cp.addr).Close(); err != nil {
		t.Error(err)
	}
}

func TestPing(t *testing.T) {
	t.Setenv("OUTRIGGER_HOME", t.TempDir())
	cp := startControlPlane(t, "127.0.0.1:0")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	epoch, err := registry.Ping(ctx, cp.addr)
	if err != nil || epoch != cp.reg.Epoch() {
		t.Errorf("Ping = %q, %v; want %q", epoch, err, cp.reg.Epoch())
	}
	if _, err := registry.Ping(ctx, freeAddr(t)); err == nil {
		t.Error("Ping of a free port = nil; want an error")
	}
}
