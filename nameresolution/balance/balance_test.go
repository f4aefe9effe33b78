package balance

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/outrigger/outrigger/nameresolution"
)

// setWatcher reports sets the test gives it: a unit test's stand-in for a
// backend (every backend proves itself against its real server in its own
// package).
type setWatcher struct {
	mu      sync.Mutex
	sets    map[string][]nameresolution.Instance
	updates map[string]func([]nameresolution.Instance)
}

func newSetWatcher() *setWatcher {
	return &setWatcher{sets: map[string][]nameresolution.Instance{}, updates: map[string]func([]nameresolution.Instance){}}
}

func (w *setWatcher) Watch(ctx context.Context, appID, ns string, update func([]nameresolution.Instance)) error {
	w.mu.Lock()
	k := appID + "." + ns
	w.updates[k] = update
	set, ok := w.sets[k]
	w.mu.Unlock()
	if ok {
		update(set)
	}
	<-ctx.Done()
	return nil
}

// set gives app appID in the default namespace instances on ports.
func (w *setWatcher) set(appID string, ports ...int) {
	var insts []nameresolution.Instance
	for _, p := range ports {
		insts = append(insts, nameresolution.Instance{AppID: appID, Host: "127.0.0.1", Port: p})
	}
	w.setInstances(appID, insts)
}

func (w *setWatcher) setInstances(appID string, insts []nameresolution.Instance) {
	w.mu.Lock()
	k := appID + ".default"
	w.sets[k] = insts
	up := w.updates[k]
	w.mu.Unlock()
	if up != nil {
		up(insts)
	}
}

func newTest(t *testing.T, w nameresolution.Watcher, o Options) (*Balancer, *fakeClock) {
	t.Helper()
	b := New(w, o)
	clk := &fakeClock{t: time.Unix(1_000_000, 0)}
	b.now = clk.now
	t.Cleanup(func() { _ = b.Close() })
	return b, clk
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func pickN(t *testing.T, b *Balancer, app, key string, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		e, err := b.Pick(t.Context(), app, "", key)
		if err != nil {
			t.Fatal(err)
		}
		got[e.Address()]++
		e.Done(nil)
	}
	return got
}

func TestRoundRobinSpreadsEvenly(t *testing.T) {
	w := newSetWatcher()
	w.set("a", 1, 2, 3)
	b, _ := newTest(t, w, Options{})
	got := pickN(t, b, "a", "", 300)
	for _, p := range []int{1, 2, 3} {
		if n := got[fmt.Sprintf("127.0.0.1:%d", p)]; n != 100 {
			t.Errorf("port %d got %d of 300 picks, want 100: %v", p, n, got)
		}
	}
}

func TestUnknownAppIsNotFound(t *testing.T) {
	w := newSetWatcher()
	w.set("a") // known, no instances
	b, _ := newTest(t, w, Options{FirstAnswer: 200 * time.Millisecond})
	if _, err := b.Pick(t.Context(), "a", "", ""); !errors.Is(err, nameresolution.ErrNotFound) {
		t.Errorf("an app without instances: %v, want ErrNotFound", err)
	}
	// Never answered: the first pick gives up after FirstAnswer.
	if _, err := b.Pick(t.Context(), "silent", "", ""); !errors.Is(err, nameresolution.ErrNotFound) {
		t.Errorf("an app never answered: %v, want ErrNotFound", err)
	}
}

func TestForeignInstancesDropped(t *testing.T) {
	w := newSetWatcher()
	w.setInstances("a", []nameresolution.Instance{
		{AppID: "a", Host: "127.0.0.1", Port: 1},
		{AppID: "b", Host: "127.0.0.1", Port: 2},
		{AppID: "a", Namespace: "other", Host: "127.0.0.1", Port: 3},
	})
	b, _ := newTest(t, w, Options{})
	got := pickN(t, b, "a", "", 20)
	if len(got) != 1 || got["127.0.0.1:1"] != 20 {
		t.Errorf("picks %v, want only 127.0.0.1:1", got)
	}
	if s := b.Stats(); s.ForeignDropped != 2 {
		t.Errorf("ForeignDropped = %d, want 2", s.ForeignDropped)
	}
}

func TestSetChangesKeepState(t *testing.T) {
	w := newSetWatcher()
	w.set("a", 1, 2)
	b, _ := newTest(t, w, Options{})
	pickN(t, b, "a", "", 2)
	w.set("a", 2, 3)
	got := pickN(t, b, "a", "", 40)
	if got["127.0.0.1:1"] != 0 || got["127.0.0.1:2"] != 20 || got["127.0.0.1:3"] != 20 {
		t.Errorf("after the change: %v", got)
	}
}

func TestOutlierEjectionAndReturn(t *testing.T) {
	w := newSetWatcher()
	w.set("a", 1, 2, 3)
	b, clk := newTest(t, w, Options{Outlier: Outlier{ConsecutiveFailures: 5, BaseEjection: 10 * time.Second, MaxEjectionPercent: 34}})
	bad := "127.0.0.1:2"
	// Fail every call to the bad instance until it is ejected.
	fails := 0
	for i := 0; i < 100 && b.Stats().Ejections == 0; i++ {
		e, err := b.Pick(t.Context(), "a", "", "")
		if err != nil {
			t.Fatal(err)
		}
		if e.Address() == bad {
			fails++
			e.Done(errors.New("connection refused"))
		} else {
			e.Done(nil)
		}
	}
	if fails != 5 {
		t.Errorf("ejected after %d failures, want 5", fails)
	}
	if got := pickN(t, b, "a", "", 100); got[bad] != 0 {
		t.Errorf("the ejected instance was picked %d times", got[bad])
	}
	clk.advance(11 * time.Second)
	if got := pickN(t, b, "a", "", 30); got[bad] != 10 {
		t.Errorf("after the cool-down the instance got %d of 30 picks, want 10", got[bad])
	}
}

func TestEjectionCapAndPanicMode(t *testing.T) {
	w := newSetWatcher()
	w.set("a", 1, 2)
	b, _ := newTest(t, w, Options{Outlier: Outlier{ConsecutiveFailures: 1}}) // 10%: one at a time
	for range 20 {
		e, err := b.Pick(t.Context(), "a", "", "")
		if err != nil {
			t.Fatal(err)
		}
		e.Done(errors.New("down"))
	}
	if n := b.Stats().Ejections; n != 1 {
		t.Errorf("%d ejections with both failing, want 1 (the cap)", n)
	}
	// Every instance failing: still picks, never an empty answer.
	w.set("a", 1)
	if _, err := b.Pick(t.Context(), "a", "", ""); err != nil {
		t.Errorf("one ejected instance left: %v", err)
	}
}

func TestLeastRequestAvoidsBusy(t *testing.T) {
	w := newSetWatcher()
	w.set("a", 1, 2)
	b, _ := newTest(t, w, Options{Policy: LeastRequest})
	// Hold 50 calls on whichever instances are picked, then see new picks
	// go to the less busy one.
	var held []nameresolution.Endpoint
	for range 50 {
		e, err := b.Pick(t.Context(), "a", "", "")
		if err != nil {
			t.Fatal(err)
		}
		if e.Address() == "127.0.0.1:1" {
			held = append(held, e)
		} else {
			e.Done(nil)
		}
	}
	if len(held) == 0 {
		t.Fatal("no pick reached instance 1")
	}
	got := pickN(t, b, "a", "", 100)
	if got["127.0.0.1:1"] > 40 {
		t.Errorf("the busy instance (%d in flight) got %d of 100 picks", len(held), got["127.0.0.1:1"])
	}
	for _, e := range held {
		e.Done(nil)
	}
}

func TestRingHashIsStickyAndConsistent(t *testing.T) {
	w := newSetWatcher()
	w.set("a", 1, 2, 3, 4)
	b, _ := newTest(t, w, Options{Policy: RingHash})
	owner := map[string]string{}
	for i := range 200 {
		key := fmt.Sprintf("user-%d", i)
		got := pickN(t, b, "a", key, 3)
		if len(got) != 1 {
			t.Fatalf("key %s went to %v", key, got)
		}
		for addr := range got {
			owner[key] = addr
		}
	}
	per := map[string]int{}
	for _, a := range owner {
		per[a]++
	}
	for addr, n := range per {
		if n < 20 {
			t.Errorf("%s owns %d of 200 keys: a lopsided ring %v", addr, n, per)
		}
	}
	// Removing one instance moves only its keys.
	w.set("a", 1, 2, 3)
	moved := 0
	for key, was := range owner {
		got := pickN(t, b, "a", key, 1)
		if _, ok := got[was]; !ok && was != "127.0.0.1:4" {
			moved++
		}
	}
	if moved != 0 {
		t.Errorf("%d keys of the remaining instances moved", moved)
	}
	// Another balancer builds the same ring: the same key, the same instance.
	b2, _ := newTest(t, w, Options{Policy: RingHash})
	for key := range owner {
		a1 := pickN(t, b, "a", key, 1)
		a2 := pickN(t, b2, "a", key, 1)
		if fmt.Sprint(a1) != fmt.Sprint(a2) {
			t.Fatalf("key %s: %v and %v", key, a1, a2)
		}
	}
}

func TestResolveIsAResolver(t *testing.T) {
	w := newSetWatcher()
	w.set("a", 7)
	var r nameresolution.Resolver = New(w, Options{})
	defer r.Close()
	addr, err := r.Resolve(t.Context(), "a", "default")
	if err != nil || addr != "127.0.0.1:7" {
		t.Errorf("Resolve: %q %v", addr, err)
	}
}

func TestPolicyNames(t *testing.T) {
	for in, want := range map[string]Policy{"": RoundRobin, "round_robin": RoundRobin, "least_request": LeastRequest, "ring_hash": RingHash} {
		if got, err := ParsePolicy(in); err != nil || got != want {
			t.Errorf("ParsePolicy(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParsePolicy("random"); err == nil {
		t.Error("ParsePolicy accepted random")
	}
}

// BenchmarkPickWarm is the cost of resolving an app-id on the request path
// once its instances are known: the target is under 1 µs and no allocation.
func BenchmarkPickWarm(b *testing.B) {
	for _, c := range []struct {
		policy Policy
		n      int
	}{{RoundRobin, 1}, {RoundRobin, 100}, {LeastRequest, 100}, {RingHash, 100}} {
		b.Run(fmt.Sprintf("%s/%d", c.policy, c.n), func(b *testing.B) {
			w := newSetWatcher()
			ports := make([]int, c.n)
			for i := range ports {
				ports[i] = 10000 + i
			}
			w.set("a", ports...)
			bal := New(w, Options{Policy: c.policy})
			defer bal.Close()
			ctx := context.Background()
			if _, err := bal.Pick(ctx, "a", "default", "k"); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				e, err := bal.Pick(ctx, "a", "default", "user-42")
				if err != nil {
					b.Fatal(err)
				}
				e.Done(nil)
			}
		})
	}
}

func TestForAppOverrides(t *testing.T) {
	w := newSetWatcher()
	w.set("own", 1, 2, 3)
	w.set("plain", 1, 2, 3)
	b, _ := newTest(t, w, Options{ForApp: func(appID, _ string) (AppOptions, bool) {
		if appID != "own" {
			return AppOptions{}, false
		}
		return AppOptions{Policy: RingHash, Outlier: Outlier{ConsecutiveFailures: 1, MaxEjectionPercent: 100}}, true
	}})
	// The app's own policy: a key sticks to one instance.
	if got := pickN(t, b, "own", "user-1", 9); len(got) != 1 {
		t.Errorf("ring hash from ForApp: %v", got)
	}
	if got := pickN(t, b, "plain", "user-1", 9); len(got) != 3 {
		t.Errorf("the default policy for another app: %v", got)
	}
	// The app's own outlier detection: one failure ejects.
	e, err := b.Pick(t.Context(), "own", "", "user-1")
	if err != nil {
		t.Fatal(err)
	}
	e.Done(errors.New("refused"))
	if n := b.Stats().Ejections; n != 1 {
		t.Errorf("%d ejections after one failure with consecutiveFailures 1", n)
	}
}

// TestMadeUpAppsAreNotKept: app-ids without instances do not pile up in
// the balancer (each would hold a watch).
func TestMadeUpAppsAreNotKept(t *testing.T) {
	w := newSetWatcher()
	w.set("real", 1)
	for i := range 1000 {
		w.set(fmt.Sprintf("ghost-%d", i))
	}
	b, _ := newTest(t, w, Options{})
	pickN(t, b, "real", "", 1)
	for i := range 1000 {
		if _, err := b.Pick(t.Context(), fmt.Sprintf("ghost-%d", i), "", ""); !errors.Is(err, nameresolution.ErrNotFound) {
			t.Fatalf("ghost-%d: %v", i, err)
		}
	}
	if n := len(*b.apps.Load()); n != 1 {
		t.Errorf("%d apps kept, want 1 (the real one)", n)
	}
}
