// Package nameresolutiontest is the conformance suite every name resolution
// backend passes. A backend's test supplies a Harness that makes resolvers and
// adds and removes app instances the backend's own way (rewriting a file,
// starting and stopping announcers, ...); Run checks the behaviour the
// nameresolution contract promises.
package nameresolutiontest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outrigger/outrigger/nameresolution"
)

// Harness connects the suite to one backend. Its methods are called from the
// test goroutine only, one at a time.
type Harness interface {
	// NewResolver returns a new resolver that sees the instances added
	// through the harness, before and after it was made. The suite closes it.
	NewResolver(t *testing.T) nameresolution.Resolver
	// Add makes inst findable. It may return before resolvers see it; the
	// suite waits for that.
	Add(t *testing.T, inst nameresolution.Instance)
	// Remove withdraws an instance given earlier to Add. It may return
	// before resolvers stop returning it; the suite waits for that.
	Remove(t *testing.T, inst nameresolution.Instance)
}

// Timeout bounds how long the suite waits for a resolver to see an instance
// appear or disappear. It is generous: a failure means the change never
// showed, not that it was slow.
const Timeout = 20 * time.Second

// callTimeout bounds one Resolve call.
const callTimeout = 10 * time.Second

// pollEvery is the pause between two checks while the suite waits.
const pollEvery = 20 * time.Millisecond

// Host is the address of every instance the suite makes; instances differ by port.
const Host = "127.0.0.1"

// Run runs the conformance suite against the backend h drives. Every case uses
// app-ids of its own, so instances left over from one case do not disturb
// another, and removes the instances it added when it ends.
func Run(t *testing.T, h Harness) {
	t.Helper()
	s := &suite{h: h, prefix: fmt.Sprintf("nrt%d", os.Getpid()%100000), port: 41000, live: map[nameresolution.Instance]bool{}}
	t.Run("UnknownAppNotFound", s.unknownApp)
	t.Run("OneInstance", s.oneInstance)
	t.Run("TwoInstancesRoundRobin", s.twoInstances)
	t.Run("NamespacesAreDistinct", s.namespaces)
	t.Run("InstanceAddedLater", s.addedLater)
	t.Run("InstanceRemoved", s.removed)
	t.Run("ConcurrentResolve", s.concurrent)
}

type suite struct {
	h      Harness
	prefix string
	n      int
	port   int
	live   map[nameresolution.Instance]bool
}

// appID returns an app-id no other case uses.
func (s *suite) appID(name string) string {
	s.n++
	return fmt.Sprintf("%s-%s-%d", s.prefix, name, s.n)
}

// instance returns an instance of appID in ns on a port no other instance uses.
func (s *suite) instance(appID, ns string) nameresolution.Instance {
	s.port++
	return nameresolution.Instance{AppID: appID, Namespace: ns, Host: Host, Port: s.port}
}

func (s *suite) resolver(t *testing.T) nameresolution.Resolver {
	t.Helper()
	r := s.h.NewResolver(t)
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return r
}

// add adds inst through the harness and removes it when the test ends,
// unless the test removed it itself.
func (s *suite) add(t *testing.T, inst nameresolution.Instance) {
	t.Helper()
	s.h.Add(t, inst)
	s.live[inst] = true
	t.Cleanup(func() {
		if s.live[inst] {
			s.remove(t, inst)
		}
	})
}

func (s *suite) remove(t *testing.T, inst nameresolution.Instance) {
	t.Helper()
	delete(s.live, inst)
	s.h.Remove(t, inst)
}

func resolve(r nameresolution.Resolver, appID, ns string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	return r.Resolve(ctx, appID, ns)
}

// eventually calls check until it reports done, failing the test when
// Timeout passes first; check's last note goes into the failure message.
func eventually(t *testing.T, what string, check func() (done bool, note string)) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	note := ""
	for range int(Timeout/pollEvery) + 1 {
		if !time.Now().Before(deadline) {
			break
		}
		var done bool
		if done, note = check(); done {
			return
		}
		time.Sleep(pollEvery)
	}
	t.Fatalf("%s: not done after %v; last: %s", what, Timeout, note)
}

// waitForSet resolves until every address in want has been returned and
// nothing outside want was returned by the latest len(want) calls.
func waitForSet(t *testing.T, r nameresolution.Resolver, appID, ns string, want ...string) {
	t.Helper()
	wanted := map[string]bool{}
	for _, w := range want {
		wanted[w] = true
	}
	eventually(t, fmt.Sprintf("Resolve(%q, %q) returning %v", appID, ns, want), func() (bool, string) {
		seen := map[string]bool{}
		for range 2 * len(want) {
			got, err := resolve(r, appID, ns)
			if err != nil {
				return false, err.Error()
			}
			if !wanted[got] {
				return false, "got " + got
			}
			seen[got] = true
		}
		return len(seen) == len(want), fmt.Sprintf("saw %v", keys(seen))
	})
}

// waitNotFound resolves until the resolver reports ErrNotFound.
func waitNotFound(t *testing.T, r nameresolution.Resolver, appID, ns string) {
	t.Helper()
	eventually(t, fmt.Sprintf("Resolve(%q, %q) failing with ErrNotFound", appID, ns), func() (bool, string) {
		got, err := resolve(r, appID, ns)
		if err == nil {
			return false, "got " + got
		}
		return errors.Is(err, nameresolution.ErrNotFound), err.Error()
	})
}

func keys(m map[string]bool) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// wantNotFound checks that resolving appID in ns fails now with an error that
// wraps ErrNotFound and names the app and the namespace.
func wantNotFound(t *testing.T, r nameresolution.Resolver, appID, ns string) {
	t.Helper()
	got, err := resolve(r, appID, ns)
	if !errors.Is(err, nameresolution.ErrNotFound) {
		t.Fatalf("Resolve(%q, %q) = %q, %v; want an error wrapping ErrNotFound", appID, ns, got, err)
	}
	for _, want := range []string{appID, nameresolution.NamespaceOrDefault(ns)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Resolve(%q, %q) error %q does not name %q", appID, ns, err, want)
		}
	}
}

func (s *suite) unknownApp(t *testing.T) {
	r := s.resolver(t)
	wantNotFound(t, r, s.appID("unknown"), "")
	wantNotFound(t, r, s.appID("unknown"), "elsewhere")
}

func (s *suite) oneInstance(t *testing.T) {
	app := s.appID("one")
	inst := s.instance(app, "")
	s.add(t, inst)
	r := s.resolver(t)
	waitForSet(t, r, app, "", inst.Address())
	for i := range 5 {
		for _, ns := range []string{"", nameresolution.DefaultNamespace} {
			got, err := resolve(r, app, ns)
			if err != nil || got != inst.Address() {
				t.Fatalf("call %d: Resolve(%q, %q) = %q, %v; want %q, nil", i, app, ns, got, err, inst.Address())
			}
		}
	}
}

func (s *suite) twoInstances(t *testing.T) {
	app := s.appID("two")
	a, b := s.instance(app, ""), s.instance(app, "")
	s.add(t, a)
	s.add(t, b)
	r := s.resolver(t)
	waitForSet(t, r, app, "", a.Address(), b.Address())

	const calls = 20
	counts := map[string]int{}
	prev := ""
	for i := range calls {
		got, err := resolve(r, app, "")
		if err != nil {
			t.Fatalf("call %d: Resolve: %v", i, err)
		}
		if got == prev {
			t.Errorf("call %d: got %q twice in a row; want round-robin", i, got)
		}
		prev = got
		counts[got]++
	}
	want := map[string]int{a.Address(): calls / 2, b.Address(): calls / 2}
	if fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Errorf("%d calls returned %v; want %v", calls, counts, want)
	}
}

func (s *suite) namespaces(t *testing.T) {
	app := s.appID("ns")
	alpha := s.instance(app, "alpha")
	s.add(t, alpha)
	r := s.resolver(t)
	waitForSet(t, r, app, "alpha", alpha.Address())
	wantNotFound(t, r, app, "beta")
	wantNotFound(t, r, app, "")

	beta := s.instance(app, "beta")
	s.add(t, beta)
	waitForSet(t, r, app, "beta", beta.Address())
	for range 4 {
		if got, err := resolve(r, app, "alpha"); err != nil || got != alpha.Address() {
			t.Fatalf("Resolve(%q, alpha) = %q, %v; want %q, nil", app, got, err, alpha.Address())
		}
	}
	wantNotFound(t, r, app, nameresolution.DefaultNamespace)
}

func (s *suite) addedLater(t *testing.T) {
	app := s.appID("later")
	r := s.resolver(t)
	wantNotFound(t, r, app, "")
	inst := s.instance(app, "")
	s.add(t, inst)
	waitForSet(t, r, app, "", inst.Address())

	second := s.instance(app, "")
	s.add(t, second)
	waitForSet(t, r, app, "", inst.Address(), second.Address())
}

func (s *suite) removed(t *testing.T) {
	app := s.appID("removed")
	a, b := s.instance(app, ""), s.instance(app, "")
	s.add(t, a)
	s.add(t, b)
	r := s.resolver(t)
	waitForSet(t, r, app, "", a.Address(), b.Address())

	s.remove(t, b)
	waitForSet(t, r, app, "", a.Address())
	s.remove(t, a)
	waitNotFound(t, r, app, "")
}

func (s *suite) concurrent(t *testing.T) {
	app := s.appID("concurrent")
	a, b, c := s.instance(app, ""), s.instance(app, ""), s.instance(app, "")
	s.add(t, a)
	s.add(t, b)
	r := s.resolver(t)
	waitForSet(t, r, app, "", a.Address(), b.Address())

	const goroutines, calls = 16, 200
	valid := map[string]bool{a.Address(): true, b.Address(): true, c.Address(): true}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		seen  = map[string]int{}
		fails []string
	)
	start := make(chan struct{})
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			local := map[string]int{}
			for i := range calls {
				got, err := resolve(r, app, "")
				if err != nil || !valid[got] {
					mu.Lock()
					fails = append(fails, fmt.Sprintf("goroutine %d call %d: %q, %v", g, i, got, err))
					mu.Unlock()
					return
				}
				local[got]++
			}
			mu.Lock()
			for k, v := range local {
				seen[k] += v
			}
			mu.Unlock()
		}()
	}
	close(start)
	// Change the instances while the calls run: a backend must swap its
	// table without racing its readers.
	s.add(t, c)
	wg.Wait()
	for _, f := range fails {
		t.Error(f)
	}
	if seen[a.Address()] == 0 || seen[b.Address()] == 0 {
		t.Errorf("calls returned %v; want both %s and %s", seen, a.Address(), b.Address())
	}
}
