package kubernetes_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outrigger/outrigger/nameresolution"
	"github.com/outrigger/outrigger/nameresolution/balance"
	"github.com/outrigger/outrigger/nameresolution/kubernetes"
	"github.com/outrigger/outrigger/nameresolution/nameresolutiontest"
)

// zone is the cluster domain the tests serve.
const zone = "cluster.local"

// newWatcher makes a watcher that asks the test's DNS server, logging into
// the test's output.
func newWatcher(t *testing.T, server string, raw map[string]any) *kubernetes.Watcher {
	t.Helper()
	cfg := map[string]any{"dnsServer": server, "timeout": "1s"}
	for k, v := range raw {
		cfg[k] = v
	}
	m, unknown, err := kubernetes.ParseMetadata(cfg)
	if err != nil || len(unknown) > 0 {
		t.Fatalf("ParseMetadata(%v) = %v, unknown %v", cfg, err, unknown)
	}
	w, err := kubernetes.New(m, kubernetes.WithLogger(slog.New(slog.NewTextHandler(testWriter{t}, nil))))
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// harness drives the conformance suite: each instance is an SRV record of
// its app's service, targeting a name of its own with an A record, as a
// headless service's pods are.
type harness struct {
	dns   *coreDNS
	w     *kubernetes.Watcher
	insts []nameresolution.Instance
}

func (h *harness) NewResolver(t *testing.T) nameresolution.Resolver {
	return balance.New(h.w, balance.Options{})
}

func (h *harness) Add(t *testing.T, inst nameresolution.Instance) {
	h.insts = append(h.insts, inst)
	h.write(t)
}

func (h *harness) Remove(t *testing.T, inst nameresolution.Instance) {
	h.insts = slices.DeleteFunc(h.insts, func(in nameresolution.Instance) bool { return in == inst })
	h.write(t)
}

func (h *harness) write(t *testing.T) {
	t.Helper()
	var rrs []string
	for _, in := range h.insts {
		svc := fmt.Sprintf("%s-dapr.%s.svc", in.AppID, nameresolution.NamespaceOrDefault(in.Namespace))
		pod := fmt.Sprintf("p%d.%s", in.Port, svc)
		rrs = append(rrs,
			fmt.Sprintf("_dapr-internal._tcp.%s IN SRV 0 50 %d %s", svc, in.Port, pod),
			fmt.Sprintf("%s IN A %s", pod, in.Host),
			fmt.Sprintf("%s IN A %s", svc, in.Host))
	}
	h.dns.set(t, zone, rrs...)
}

func TestConformance(t *testing.T) {
	d := startCoreDNS(t, zone)
	nameresolutiontest.Run(t, &harness{dns: d, w: newWatcher(t, d.addr, nil)})
}

// watchLog runs one Watch and records what it reports.
type watchLog struct {
	mu      sync.Mutex
	sets    [][]string // addresses, sorted
	at      []time.Time
	changed chan struct{}
}

// watch runs w.Watch for the app until the test ends.
func watch(t *testing.T, w *kubernetes.Watcher, appID, namespace string) *watchLog {
	t.Helper()
	l := &watchLog{changed: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- w.Watch(ctx, appID, namespace, func(insts []nameresolution.Instance) {
			var addrs []string
			for _, in := range insts {
				if in.AppID != appID || in.Namespace != nameresolution.NamespaceOrDefault(namespace) {
					t.Errorf("update for %s/%s got instance %+v", appID, namespace, in)
				}
				addrs = append(addrs, in.Address())
			}
			slices.Sort(addrs)
			l.mu.Lock()
			l.sets = append(l.sets, addrs)
			l.at = append(l.at, time.Now())
			l.mu.Unlock()
			select {
			case l.changed <- struct{}{}:
			default:
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Watch returned %v; want nil when its context is done", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Watch did not return within 10s of its context's end")
		}
	})
	return l
}

// last returns the latest set reported, its index and its time; -1 before any.
func (l *watchLog) last() ([]string, int, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.sets) == 0 {
		return nil, -1, time.Time{}
	}
	return l.sets[len(l.sets)-1], len(l.sets) - 1, l.at[len(l.at)-1]
}

// count is the number of sets reported.
func (l *watchLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.sets)
}

// waitFor waits until the latest set reported is want, and returns when it
// was reported.
func (l *watchLog) waitFor(t *testing.T, want ...string) time.Time {
	t.Helper()
	slices.Sort(want)
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, i, at := l.last()
		if i >= 0 && slices.Equal(got, want) {
			return at
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 20s the watch reports %q (update %d); want %q", got, i, want)
		}
		select {
		case <-l.changed:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TestAddressRecords: without SRV records an app's instances are the A and
// AAAA records of its service, on the configured port.
func TestAddressRecords(t *testing.T) {
	d := startCoreDNS(t, zone)
	d.set(t, zone,
		"orders-dapr.shop.svc IN A 127.0.0.2",
		"orders-dapr.shop.svc IN A 127.0.0.3",
		"orders-dapr.shop.svc IN AAAA ::1",
		"orders-dapr.shop.svc IN AAAA fd00::7",
		// Another app, and another namespace: never in the set.
		"payments-dapr.shop.svc IN A 127.0.0.9",
		"orders-dapr.default.svc IN A 127.0.0.8",
	)
	t.Run("DefaultPort", func(t *testing.T) {
		l := watch(t, newWatcher(t, d.addr, nil), "orders", "shop")
		l.waitFor(t, "127.0.0.2:50002", "127.0.0.3:50002", "[::1]:50002", "[fd00::7]:50002")
	})
	t.Run("ConfiguredPort", func(t *testing.T) {
		l := watch(t, newWatcher(t, d.addr, map[string]any{"port": 7001}), "orders", "shop")
		l.waitFor(t, "127.0.0.2:7001", "127.0.0.3:7001", "[::1]:7001", "[fd00::7]:7001")
	})
	t.Run("DefaultNamespace", func(t *testing.T) {
		l := watch(t, newWatcher(t, d.addr, nil), "orders", "")
		l.waitFor(t, "127.0.0.8:50002")
	})
}

// TestSRV covers SRV records: ports from the records, IPv6 targets, the
// lowest priority only, targets whose addresses the additional section does
// not carry (another zone) asked for, and SRV preferred over A records.
func TestSRV(t *testing.T) {
	d := startCoreDNS(t, zone, "pods.example")
	d.set(t, "pods.example",
		"a IN AAAA fd00::a",
		"b IN A 127.0.0.11",
		"b IN AAAA fd00::b",
	)
	d.set(t, zone,
		// In-zone targets: CoreDNS puts their addresses in the additional section.
		// (A TTL of 30 s: no refresh during the test.)
		"_dapr-internal._tcp.orders-dapr.shop.svc 30 IN SRV 0 50 6001 p1.orders-dapr.shop.svc",
		"_dapr-internal._tcp.orders-dapr.shop.svc 30 IN SRV 0 50 6002 p2.orders-dapr.shop.svc",
		"_dapr-internal._tcp.orders-dapr.shop.svc 30 IN SRV 10 50 6003 p3.orders-dapr.shop.svc",
		"p1.orders-dapr.shop.svc 30 IN AAAA fd00::1",
		"p2.orders-dapr.shop.svc 30 IN A 127.0.0.2",
		"p3.orders-dapr.shop.svc 30 IN A 127.0.0.3",
		"orders-dapr.shop.svc 30 IN A 127.0.0.99",
		// Targets in another zone: asked for one by one.
		"_dapr-internal._tcp.remote-dapr.shop.svc IN SRV 0 50 7000 a.pods.example.",
		"_dapr-internal._tcp.remote-dapr.shop.svc IN SRV 0 50 7001 b.pods.example.",
		"_dapr-internal._tcp.remote-dapr.shop.svc IN SRV 0 50 7002 missing.pods.example.",
	)
	w := newWatcher(t, d.addr, nil)
	t.Run("InZone", func(t *testing.T) {
		watch(t, w, "orders", "shop").waitFor(t, "[fd00::1]:6001", "127.0.0.2:6002")
		if q := w.Stats().Queries; q != 1 {
			t.Errorf("%d queries; want 1, the targets' addresses taken from the additional section", q)
		}
	})
	t.Run("TargetsAskedFor", func(t *testing.T) {
		watch(t, w, "remote", "shop").waitFor(t, "[fd00::a]:7000", "127.0.0.11:7001", "[fd00::b]:7001")
	})
	if s := w.Stats(); s.Failures != 0 || s.Foreign != 0 {
		t.Errorf("Stats = %+v; want no failures and no foreign records", s)
	}
}

// TestTTL: an answer is kept for its TTL, then asked again, so a change shows
// after the TTL and not before.
func TestTTL(t *testing.T) {
	d := startCoreDNS(t, zone)
	const ttl = 3 * time.Second
	d.set(t, zone,
		"_dapr-internal._tcp.orders-dapr.default.svc 3 IN SRV 0 50 6001 p1.orders-dapr.default.svc",
		"p1.orders-dapr.default.svc 3 IN A 127.0.0.1",
	)
	w := newWatcher(t, d.addr, nil)
	l := watch(t, w, "orders", "")
	first := l.waitFor(t, "127.0.0.1:6001")
	queries := w.Stats().Queries

	d.set(t, zone,
		"_dapr-internal._tcp.orders-dapr.default.svc 3 IN SRV 0 50 6002 p1.orders-dapr.default.svc",
		"p1.orders-dapr.default.svc 3 IN A 127.0.0.1",
	)
	changed := l.waitFor(t, "127.0.0.1:6002")
	// The first set came from an answer asked just before it was reported;
	// the next question waits for the TTL.
	if got := changed.Sub(first); got < ttl-200*time.Millisecond {
		t.Errorf("the change showed %v after the first set; want no sooner than the TTL, %v", got, ttl)
	}
	if n := w.Stats().Queries - queries; n > 4 {
		t.Errorf("%d queries between the two sets; want one refresh (at most 4: SRV, and A and AAAA of a target when needed)", n)
	}
	if s := w.Stats(); s.Updates != 2 || s.Failures != 0 {
		t.Errorf("Stats = %+v; want 2 updates, no failures", s)
	}
}

// TestNXDOMAIN: an app whose name does not exist has no instance, which is
// not a failure; it is found once it appears and gone once it goes.
func TestNXDOMAIN(t *testing.T) {
	d := startCoreDNS(t, zone)
	w := newWatcher(t, d.addr, nil)
	l := watch(t, w, "orders", "shop")
	l.waitFor(t)

	d.set(t, zone, "orders-dapr.shop.svc IN A 127.0.0.5")
	l.waitFor(t, "127.0.0.5:50002")
	d.set(t, zone)
	l.waitFor(t)
	if s := w.Stats(); s.Failures != 0 {
		t.Errorf("Stats = %+v; want no failures", s)
	}
	if got := l.count(); got != 3 {
		t.Errorf("%d updates; want 3 (none, one, none)", got)
	}
}

// TestCNAME: a service that is an alias (an ExternalName service) resolves
// through its chain, here into another zone the server asks itself.
func TestCNAME(t *testing.T) {
	d := startCoreDNS(t, zone, "pods.example")
	d.set(t, "pods.example", "db IN A 127.0.0.44")
	d.set(t, zone,
		"orders-dapr.shop.svc IN CNAME alias.shop.svc",
		"alias.shop.svc IN CNAME db.pods.example.",
	)
	watch(t, newWatcher(t, d.addr, nil), "orders", "shop").waitFor(t, "127.0.0.44:50002")
}

// TestTemplate: Dapr's template names the host and port; a host that is an
// IP address needs no DNS at all.
func TestTemplate(t *testing.T) {
	d := startCoreDNS(t, zone)
	d.set(t, zone, "orders.shop.apps IN A 127.0.0.6", "orders.shop.apps IN AAAA ::1",
		"_dapr-internal._tcp.orders.shop.apps IN SRV 0 50 9 orders.shop.apps")
	t.Run("Name", func(t *testing.T) {
		w := newWatcher(t, d.addr, map[string]any{"template": "{{.ID}}.{{.Namespace}}.apps.cluster.local:7000"})
		// A and AAAA only, as Dapr: the SRV record is not asked for.
		watch(t, w, "orders", "shop").waitFor(t, "127.0.0.6:7000", "[::1]:7000")
	})
	t.Run("PortField", func(t *testing.T) {
		w := newWatcher(t, d.addr, map[string]any{"template": "{{.ID}}.{{.Namespace}}.apps.cluster.local", "port": "7100"})
		watch(t, w, "orders", "shop").waitFor(t, "127.0.0.6:7100", "[::1]:7100")
	})
	t.Run("Literal", func(t *testing.T) {
		w := newWatcher(t, d.addr, map[string]any{"template": "127.0.0.7:{{.Port}}"})
		watch(t, w, "orders", "shop").waitFor(t, "127.0.0.7:50002")
		if q := w.Stats().Queries; q != 0 {
			t.Errorf("%d DNS queries for a literal address; want 0", q)
		}
	})
}

// TestBadAppID: an app-id that cannot make a DNS name is an error of Watch,
// which balance reports as not found.
func TestBadAppID(t *testing.T) {
	w, err := kubernetes.New(kubernetes.Metadata{ClusterDomain: zone, DNSServer: "127.0.0.1:1", Port: 1, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"has space", "dot.ted", strings.Repeat("x", 60), "-lead", ""} {
		err := w.Watch(context.Background(), id, "", func([]nameresolution.Instance) { t.Error("update called") })
		if err == nil || !strings.Contains(err.Error(), "cannot name a service") {
			t.Errorf("Watch(%q) = %v; want an error saying it cannot name a service", id, err)
		}
	}
	if err := w.Watch(context.Background(), "ok", "bad ns", nil); err == nil {
		t.Error("Watch with namespace \"bad ns\" = nil; want an error")
	}
}
