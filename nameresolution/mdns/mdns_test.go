package mdns_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/outrigger/outrigger/nameresolution"
	"github.com/outrigger/outrigger/nameresolution/balance"
	"github.com/outrigger/outrigger/nameresolution/mdns"
	"github.com/outrigger/outrigger/nameresolution/nameresolutiontest"
)

// Every test below that opens a socket starts with
//
//	if role() == "" { runInNetns(t, "TestName"); return }
//
// so that its body runs only inside a namespace the test made (netns_test.go).

// Short intervals for tests: a refresh every 250ms and a TTL of 2s, so an
// instance must miss eight browses in a row to age out by accident.
const (
	testRefresh = 250 * time.Millisecond
	testTTL     = 2 * time.Second
)

func testLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func newResolver(t *testing.T, opts ...mdns.Option) *mdns.Resolver {
	t.Helper()
	opts = append([]mdns.Option{mdns.WithRefreshInterval(testRefresh), mdns.WithTTL(testTTL), mdns.WithLogger(testLogger())}, opts...)
	r, err := mdns.NewResolver(opts...)
	if err != nil {
		t.Fatalf("NewResolver: %v", err)
	}
	return r
}

// announce announces inst until the returned function is called; that
// function waits for Announce to return and fails the test on an error.
func announce(t *testing.T, inst nameresolution.Instance, opts ...mdns.Option) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	a := mdns.NewAnnouncer(append([]mdns.Option{mdns.WithLogger(testLogger())}, opts...)...)
	go func() { done <- a.Announce(ctx, inst) }()
	return func() {
		t.Helper()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Announce(%+v): %v", inst, err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Announce(%+v) did not return 10s after its context ended", inst)
		}
	}
}

// harness drives the mDNS backend for the conformance suite: an instance is
// an Announcer running until Remove. With balanced, the resolver under test
// is a balancer over the mDNS Resolver as a Watcher.
type harness struct {
	stops    map[nameresolution.Instance]func()
	balanced bool
}

func (h *harness) NewResolver(t *testing.T) nameresolution.Resolver {
	r := newResolver(t)
	if !h.balanced {
		return r
	}
	return balanced{balance.New(r, balance.Options{Logger: testLogger()}), r}
}

// balanced is a balancer over a Resolver; closing it closes both.
type balanced struct {
	*balance.Balancer
	r *mdns.Resolver
}

func (b balanced) Close() error {
	return errors.Join(b.Balancer.Close(), b.r.Close())
}

func (h *harness) Add(t *testing.T, inst nameresolution.Instance) {
	h.stops[inst] = announce(t, inst)
}

func (h *harness) Remove(t *testing.T, inst nameresolution.Instance) {
	stop := h.stops[inst]
	delete(h.stops, inst)
	stop()
}

// waitGoroutines waits until no more goroutines run than before, failing
// the test after 10s.
func waitGoroutines(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for range 1000 {
		if runtime.NumGoroutine() <= before {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	buf := make([]byte, 1<<20)
	t.Fatalf("%d goroutines run, %d before the test:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
}

func TestConformance(t *testing.T) {
	if role() == "" {
		runInNetns(t, "TestConformance")
		return
	}
	before := runtime.NumGoroutine()
	h := &harness{stops: map[nameresolution.Instance]func(){}}
	nameresolutiontest.Run(t, h)
	if len(h.stops) != 0 {
		t.Errorf("%d announcers left running", len(h.stops))
	}
	waitGoroutines(t, before)
}

// TestConformanceBalanced runs the suite against package balance over the
// Resolver as a nameresolution.Watcher.
func TestConformanceBalanced(t *testing.T) {
	if role() == "" {
		runInNetns(t, "TestConformanceBalanced")
		return
	}
	before := runtime.NumGoroutine()
	h := &harness{stops: map[nameresolution.Instance]func(){}, balanced: true}
	nameresolutiontest.Run(t, h)
	if len(h.stops) != 0 {
		t.Errorf("%d announcers left running", len(h.stops))
	}
	waitGoroutines(t, before)
}

// TestTwoHosts announces in one namespace and resolves in another, the two
// joined by a veth pair: the announcer advertises its interface's address
// (the instance has no host) and the resolver finds it over the link.
func TestTwoHosts(t *testing.T) {
	const appID, ns, port, want = "orders", "shop", 50002, "10.213.0.1:50002"
	switch role() {
	case "":
		a, b := newNetns(t), newNetns(t)
		_, ifB := connect(t, a, b)
		announcer := startChild(t, a, "TestTwoHosts", "announce")
		startChild(t, b, "TestTwoHosts", "resolve", "OR_MDNS_IFACE="+ifB).wait(t, 2*time.Minute)
		announcer.stop(t, time.Minute)

	case "announce":
		stop := announce(t, nameresolution.Instance{AppID: appID, Namespace: ns, Port: port})
		// Until the parent closes stdin.
		_, _ = io.Copy(io.Discard, os.Stdin)
		stop()

	case "resolve":
		iface, err := net.InterfaceByName(os.Getenv("OR_MDNS_IFACE"))
		if err != nil {
			t.Fatal(err)
		}
		r := newResolver(t, mdns.WithInterface(iface))
		defer r.Close()
		ctx := context.Background()
		deadline := time.Now().Add(30 * time.Second)
		got, err := "", error(nil)
		for range 1000 {
			if got, err = r.Resolve(ctx, appID, ns); err == nil || time.Now().After(deadline) {
				break
			}
		}
		if err != nil || got != want {
			t.Fatalf("Resolve(%q, %q) = %q, %v; want %q", appID, ns, got, err, want)
		}
		// Seen once, the app is answered from the cache: no call waits.
		for i := range 1000 {
			start := time.Now()
			got, err := r.Resolve(ctx, appID, ns)
			if took := time.Since(start); took > 50*time.Millisecond {
				t.Fatalf("call %d: cached Resolve took %v", i, took)
			}
			if err != nil || got != want {
				t.Fatalf("call %d: Resolve = %q, %v; want %q", i, got, err, want)
			}
		}
		if _, err := r.Resolve(ctx, appID, "default"); !errors.Is(err, nameresolution.ErrNotFound) {
			t.Errorf("Resolve(%q, default) error = %v; want ErrNotFound", appID, err)
		}
	}
}

// TestFirstAnswerEndsWait checks that a Resolve waiting on a browse returns
// when the first answer arrives, not when the browse ends.
func TestFirstAnswerEndsWait(t *testing.T) {
	if role() == "" {
		runInNetns(t, "TestFirstAnswerEndsWait")
		return
	}
	inst := nameresolution.Instance{AppID: "first", Host: "127.0.0.1", Port: 50002}
	stop := announce(t, inst)
	defer stop()
	// Wait until the announcer answers, with a resolver of its own.
	warm := newResolver(t, mdns.WithResolveTimeout(10*time.Second))
	if _, err := warm.Resolve(context.Background(), inst.AppID, ""); err != nil {
		t.Fatal(err)
	}
	warm.Close()

	// A browse listens for a second; with hourly refreshes, the only one
	// under way is the one NewResolver starts.
	start := time.Now()
	r := newResolver(t, mdns.WithRefreshInterval(time.Hour), mdns.WithTTL(2*time.Hour), mdns.WithResolveTimeout(10*time.Second))
	defer r.Close()
	got, err := r.Resolve(context.Background(), inst.AppID, "")
	took := time.Since(start)
	if err != nil || got != inst.Address() {
		t.Fatalf("Resolve = %q, %v; want %q", got, err, inst.Address())
	}
	if took >= 900*time.Millisecond {
		t.Errorf("first Resolve took %v; want it to return on the first answer, well before the 1s browse ends", took)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = r.Resolve(context.Background(), inst.AppID, "") }); n != 0 {
		t.Errorf("cached Resolve allocates %v times per call; want 0", n)
	}
}

// TestResolveIsBounded checks the two bounds on a Resolve of an app nobody
// announces: the resolve timeout and the caller's context.
func TestResolveIsBounded(t *testing.T) {
	if role() == "" {
		runInNetns(t, "TestResolveIsBounded")
		return
	}
	r := newResolver(t, mdns.WithResolveTimeout(300*time.Millisecond))
	defer r.Close()
	start := time.Now()
	_, err := r.Resolve(context.Background(), "nobody", "")
	if took := time.Since(start); !errors.Is(err, nameresolution.ErrNotFound) || took < 300*time.Millisecond || took > 3*time.Second {
		t.Errorf("Resolve of an unknown app = %v after %v; want ErrNotFound after 300ms", err, took)
	}

	slow := newResolver(t, mdns.WithResolveTimeout(time.Minute))
	defer slow.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err = slow.Resolve(ctx, "nobody", "")
	if took := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || took > 5*time.Second {
		t.Errorf("Resolve with a 100ms context = %v after %v; want context.DeadlineExceeded soon", err, took)
	}

	slow.Close()
	if _, err := slow.Resolve(context.Background(), "nobody", ""); err == nil || errors.Is(err, nameresolution.ErrNotFound) {
		t.Errorf("Resolve after Close = %v; want the closed error", err)
	}
}

// TestCloseStopsGoroutines checks that closed resolvers and withdrawn
// announcements leave no goroutine behind.
func TestCloseStopsGoroutines(t *testing.T) {
	if role() == "" {
		runInNetns(t, "TestCloseStopsGoroutines")
		return
	}
	before := runtime.NumGoroutine()
	inst := nameresolution.Instance{AppID: "leak", Host: "127.0.0.1", Port: 50002}
	stop := announce(t, inst)
	var rs []*mdns.Resolver
	for range 3 {
		r := newResolver(t)
		rs = append(rs, r)
		if _, err := r.Resolve(context.Background(), inst.AppID, ""); err != nil {
			t.Fatal(err)
		}
		// A Resolve that is waiting when Close comes.
		go func() { _, _ = r.Resolve(context.Background(), "nobody", "") }()
	}
	stop()
	for _, r := range rs {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := r.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	}
	waitGoroutines(t, before)
}
