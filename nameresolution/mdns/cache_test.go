package mdns

// Tests of the Resolver's cache, fed responses in memory by a Resolver that
// never touches the network (newResolver): limits, goodbyes, TTLs,
// addresses claimed twice, and Watch. Nothing here opens a socket.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/outrigger/outrigger/nameresolution"
)

// feed gives r the response made of rrs, as if it came in on eth0 at now.
func feed(t *testing.T, r *Resolver, now time.Time, rrs ...dns.RR) {
	t.Helper()
	buf, err := (&dns.Msg{MsgHdr: dns.MsgHdr{Response: true}, Answer: rrs}).Pack()
	if err != nil {
		t.Fatal(err)
	}
	r.handle(buf, "eth0", "test", now)
}

// cached returns the addresses the table holds for an app, sorted.
func cached(r *Resolver, appID, ns string) []string {
	a := r.table.Load().apps[key{appID, ns}]
	if a == nil {
		return nil
	}
	return slices.Clone(a.addrs)
}

func wantCached(t *testing.T, r *Resolver, appID, ns string, want ...string) {
	t.Helper()
	if got := cached(r, appID, ns); !slices.Equal(got, want) {
		t.Errorf("cache of %s.%s = %v; want %v", appID, ns, got, want)
	}
}

func testResolver(opts ...Option) *Resolver {
	opts = append([]Option{WithRefreshInterval(time.Second), WithTTL(10 * time.Second)}, opts...)
	return newResolver(newConfig(opts))
}

func TestCacheLearnsAndRefreshes(t *testing.T) {
	r := testResolver()
	now := time.Now()
	feed(t, r, now, records(t, testName, 50002, stdTXT("orders", "shop"), "10.0.0.1", "fd00::1")...)
	wantCached(t, r, "orders", "shop", "10.0.0.1:50002")
	first := r.table.Load()

	// The same answer again: nothing to publish, the TTL starts over.
	feed(t, r, now.Add(5*time.Second), records(t, testName, 50002, stdTXT("orders", "shop"), "10.0.0.1", "fd00::1")...)
	if r.table.Load() != first {
		t.Error("an answer that changes nothing published a new table")
	}
	r.expire(now.Add(12 * time.Second))
	wantCached(t, r, "orders", "shop", "10.0.0.1:50002")
	r.expire(now.Add(16 * time.Second))
	wantCached(t, r, "orders", "shop")
	if s := r.Stats(); s.Added != 1 || s.Expired != 1 || s.Instances != 0 {
		t.Errorf("Stats() = %+v; want 1 added, 1 expired, none left", s)
	}
}

func TestCacheKeepsTheRecordTTL(t *testing.T) {
	r := testResolver() // refresh 1s, TTL 10s
	now := time.Now()
	rrs := withTTL(records(t, testName, 50002, stdTXT("orders", "shop"), "10.0.0.1"), 4)
	feed(t, r, now, rrs...)
	r.expire(now.Add(3 * time.Second))
	wantCached(t, r, "orders", "shop", "10.0.0.1:50002")
	r.expire(now.Add(5 * time.Second))
	wantCached(t, r, "orders", "shop")

	// A TTL shorter than two refresh intervals counts as two.
	feed(t, r, now, withTTL(records(t, "orders-00000000000a", 50003, stdTXT("orders", "shop"), "10.0.0.1"), 1)...)
	r.expire(now.Add(1500 * time.Millisecond))
	wantCached(t, r, "orders", "shop", "10.0.0.1:50003")
}

func TestCacheGoodbye(t *testing.T) {
	r := testResolver()
	now := time.Now()
	rrs := records(t, testName, 50002, stdTXT("orders", "shop"), "10.0.0.1")
	feed(t, r, now, rrs...)
	wantCached(t, r, "orders", "shop", "10.0.0.1:50002")
	feed(t, r, now, withTTL(records(t, testName, 50002, stdTXT("orders", "shop"), "10.0.0.1"), 0)...)
	wantCached(t, r, "orders", "shop")

	// An answer sent before the goodbye that comes after it is stale.
	feed(t, r, now.Add(time.Second), rrs...)
	wantCached(t, r, "orders", "shop")
	// Long after, it is news again (a goodbye that was a lie).
	feed(t, r, now.Add(tombstone+time.Second), rrs...)
	wantCached(t, r, "orders", "shop", "10.0.0.1:50002")
	if s := r.Stats(); s.Goodbyes != 1 || s.Stale != 1 || s.Added != 2 {
		t.Errorf("Stats() = %+v; want 1 goodbye, 1 stale, 2 added", s)
	}

	// Goodbyes of instances never seen take bounded memory.
	for i := range 3 * maxTombstones {
		feed(t, r, now, withTTL(records(t, fmt.Sprintf("orders-%012x", i), 1, stdTXT("orders", "shop"), "10.0.0.1"), 0)...)
	}
	if n := len(r.tombs); n > maxTombstones {
		t.Errorf("%d goodbyes remembered; want at most %d", n, maxTombstones)
	}
}

func TestCacheAddressClaimedAgain(t *testing.T) {
	r := testResolver()
	now := time.Now()
	feed(t, r, now, records(t, testName, 50002, stdTXT("orders", "shop"), "10.0.0.1")...)
	// The sidecar restarted on the same port, as another app: the old
	// instance is gone, whatever its TTL.
	feed(t, r, now, records(t, "payments-0123456789ab", 50002, stdTXT("payments", "shop"), "10.0.0.1")...)
	wantCached(t, r, "orders", "shop")
	wantCached(t, r, "payments", "shop", "10.0.0.1:50002")
	// Another port of the same host is another sidecar.
	feed(t, r, now, records(t, testName, 50003, stdTXT("orders", "shop"), "10.0.0.1")...)
	wantCached(t, r, "orders", "shop", "10.0.0.1:50003")
	wantCached(t, r, "payments", "shop", "10.0.0.1:50002")
	if s := r.Stats(); s.Replaced != 1 {
		t.Errorf("Stats().Replaced = %d; want 1", s.Replaced)
	}
}

func TestCacheLimits(t *testing.T) {
	r := testResolver(WithLimits(3, 5))
	now := time.Now()
	for i := range 10 {
		feed(t, r, now, records(t, fmt.Sprintf("orders-%012x", i), 50000+i, stdTXT("orders", "shop"), "10.0.0.1")...)
	}
	if n := len(cached(r, "orders", "shop")); n != 3 {
		t.Errorf("%d instances of orders; want the limit, 3", n)
	}
	for i := range 10 {
		feed(t, r, now, records(t, fmt.Sprintf("app%d-%012x", i, i), 40000+i, stdTXT(fmt.Sprintf("app%d", i), "shop"), "10.0.0.2")...)
	}
	s := r.Stats()
	if s.Instances != 5 || s.OverLimit != 7+8 {
		t.Errorf("Stats() = %+v; want 5 instances and 15 over the limit", s)
	}
	// Those known are still refreshed.
	feed(t, r, now.Add(9*time.Second), records(t, fmt.Sprintf("orders-%012x", 0), 50000, stdTXT("orders", "shop"), "10.0.0.1")...)
	r.expire(now.Add(11 * time.Second))
	wantCached(t, r, "orders", "shop", "10.0.0.1:50000")
}

func TestCacheAddressPreference(t *testing.T) {
	for _, tt := range []struct {
		prefer6 bool
		ips     []string
		want    string
	}{
		{false, []string{"fd00::1", "10.0.0.1"}, "10.0.0.1:1"},
		{false, []string{"fd00::1"}, "[fd00::1]:1"},
		{false, []string{"fe80::1", "fd00::1"}, "[fd00::1]:1"},
		{false, []string{"fe80::1"}, "[fe80::1%eth0]:1"},
		{false, []string{"169.254.0.1", "10.0.0.1"}, "10.0.0.1:1"},
		{true, []string{"fd00::1", "10.0.0.1"}, "[fd00::1]:1"},
		{true, []string{"10.0.0.1"}, "10.0.0.1:1"},
	} {
		r := testResolver(WithPreferIPv6(tt.prefer6))
		feed(t, r, time.Now(), records(t, testName, 1, stdTXT("orders", "shop"), tt.ips...)...)
		if got := cached(r, "orders", "shop"); len(got) != 1 || got[0] != tt.want {
			t.Errorf("prefer IPv6 %v, addresses %v: cache holds %v; want %s", tt.prefer6, tt.ips, got, tt.want)
		}
	}
}

func TestCacheBogusAnswersCounted(t *testing.T) {
	r := testResolver()
	now := time.Now()
	feed(t, r, now, withPort(records(t, testName, 1, stdTXT("orders", "shop"), "10.0.0.1"), 0)...)
	feed(t, r, now, records(t, testName, 1, []string{"namespace=x"}, "10.0.0.1")...)
	feed(t, r, now, records(t, testName, 1, stdTXT("payments", "shop"), "10.0.0.1")...)
	feed(t, r, now, &dns.PTR{Hdr: dns.RR_Header{Name: "_ipp._tcp.local.", Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: 1}, Ptr: "p._ipp._tcp.local."})
	r.handle([]byte("\x00\x00\x84\x00\x00\x00\x00\x01\x00\x00\x00\x00: one answer, which is not there"), "", "test", now)
	var flood []dns.RR
	for range maxRecords + 1 {
		flood = append(flood, records(t, testName, 1, stdTXT("orders", "shop"), "10.0.0.1")[0])
	}
	feed(t, r, now, flood...)
	s := r.Stats()
	if s.Malformed != 3 || s.Unparsable != 1 || s.Oversized != 1 || s.Foreign != 1 || s.Instances != 0 {
		t.Errorf("Stats() = %+v; want 3 malformed, 1 unparsable, 1 oversized, 1 foreign, no instance", s)
	}
}

// lineWriter keeps what a slog.TextHandler writes, a line per Write.
type lineWriter struct {
	mu    sync.Mutex
	lines []string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lines = append(w.lines, string(p))
	return len(p), nil
}

func (w *lineWriter) get() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.lines)
}

func TestQuietLog(t *testing.T) {
	w := &lineWriter{}
	q := newQuietLog(slog.New(slog.NewTextHandler(w, nil)), time.Minute, 2)
	now := time.Now()
	for i := range 1000 {
		at := now.Add(time.Duration(i) * time.Millisecond)
		q.note(at, reasonPort, slog.LevelWarn, "dropped", "detail", i)
		q.note(at, reasonTXT, slog.LevelWarn, "dropped", "detail", i)
	}
	lines := w.get()
	if len(lines) != 4 {
		t.Fatalf("1000 lines of each of two kinds, two a minute, logged %d lines; want 4:\n%s", len(lines), strings.Join(lines, ""))
	}
	q.flush(now.Add(30 * time.Second))
	if lines = w.get(); len(lines) != 4 {
		t.Fatalf("flush before the window ended logged: %v", lines[4:])
	}
	q.flush(now.Add(2 * time.Minute))
	lines = w.get()
	if len(lines) != 6 || !strings.Contains(lines[4], "count=998") || !strings.Contains(lines[4], "detail=999") || !strings.Contains(lines[5], "count=998") {
		t.Fatalf("flush after the window logged %q; want two lines counting 998, with the last details", lines[4:])
	}
	q.flush(now.Add(10 * time.Minute))
	if lines = w.get(); len(lines) != 6 {
		t.Fatalf("a flush with nothing held back logged %q", lines[6:])
	}
	// A new window logs again, after the summary of the last.
	q.note(now.Add(11*time.Minute), reasonPort, slog.LevelWarn, "dropped", "detail", "again")
	q.note(now.Add(11*time.Minute), reasonPort, slog.LevelWarn, "dropped", "detail", "again")
	q.note(now.Add(11*time.Minute), reasonPort, slog.LevelWarn, "dropped", "detail", "held")
	q.note(now.Add(13*time.Minute), reasonPort, slog.LevelWarn, "dropped", "detail", "new window")
	lines = w.get()
	if len(lines) != 10 || !strings.Contains(lines[8], "count=1 ") || !strings.Contains(lines[9], "new window") {
		t.Fatalf("lines %q; want two, then a summary of one held back, then the new one", lines[6:])
	}
}

func TestWatchInMemory(t *testing.T) {
	r := testResolver(WithResolveTimeout(200 * time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	type report struct{ insts []nameresolution.Instance }
	updates := make(chan report, 100)
	done := make(chan error, 1)
	go func() {
		done <- r.Watch(ctx, "orders", "", func(insts []nameresolution.Instance) { updates <- report{insts} })
	}()
	next := func(what string) []nameresolution.Instance {
		t.Helper()
		select {
		case u := <-updates:
			return u.insts
		case <-time.After(10 * time.Second):
			t.Fatalf("no update %s within 10s", what)
			return nil
		}
	}
	// No instance answers: an empty set after the resolve timeout.
	if got := next("for an unknown app"); len(got) != 0 {
		t.Fatalf("first update = %v; want none", got)
	}
	now := time.Now()
	feed(t, r, now, records(t, testName, 50002, stdTXT("orders", "default"), "10.0.0.1", "fd00::1")...)
	feed(t, r, now, records(t, "other-0123456789ab", 50002, stdTXT("other", "default"), "10.0.0.2")...)
	want := []nameresolution.Instance{{AppID: "orders", Namespace: "default", Host: "10.0.0.1", Port: 50002}}
	if got := next("after an announcement"); !slices.Equal(got, want) {
		t.Fatalf("update = %v; want %v", got, want)
	}
	feed(t, r, now, records(t, "orders-00000000000b", 50003, stdTXT("orders", "default"), "fe80::2")...)
	want = append(want, nameresolution.Instance{AppID: "orders", Namespace: "default", Host: "fe80::2%eth0", Port: 50003})
	if got := next("after a second instance"); !slices.Equal(got, want) {
		t.Fatalf("update = %v; want %v", got, want)
	}
	feed(t, r, now, withTTL(records(t, testName, 50002, stdTXT("orders", "default"), "10.0.0.1", "fd00::1"), 0)...)
	if got := next("after a goodbye"); !slices.Equal(got, want[1:]) {
		t.Fatalf("update = %v; want %v", got, want[1:])
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Watch returned %v after its context ended; want nil", err)
	}
	select {
	case u := <-updates:
		t.Errorf("update %v after another app changed or the watch ended", u.insts)
	default:
	}

	// After Close, Watch cannot watch.
	r2 := testResolver()
	r2.cancel = func() {}
	closed := make(chan struct{})
	close(closed)
	r2.closed = closed
	if err := r2.Watch(context.Background(), "orders", "", func([]nameresolution.Instance) {}); !errors.Is(err, errClosed) {
		t.Errorf("Watch after Close = %v; want %v", err, errClosed)
	}
}
