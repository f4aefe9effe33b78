package mdns_test

// Tests across several hosts, each a network namespace the test makes
// (netns_test.go): instances on several hosts of one LAN, instances that
// leave or crash, a link that carries IPv6 alone, and a flood of bogus mDNS
// answers. The parent makes the namespaces and starts children in them;
// children print marker lines (SAW-ALL, ...) that the parent waits for, and
// stop when the parent closes their stdin.

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	hmdns "github.com/hashicorp/mdns"
	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"

	"github.com/outrigger/outrigger/nameresolution"
	"github.com/outrigger/outrigger/nameresolution/balance"
	"github.com/outrigger/outrigger/nameresolution/mdns"
)

// childIface returns the interface named by OR_MDNS_IFACE (or lanIface).
func childIface(t *testing.T) *net.Interface {
	t.Helper()
	name := os.Getenv("OR_MDNS_IFACE")
	if name == "" {
		name = lanIface
	}
	iface, err := net.InterfaceByName(name)
	if err != nil {
		t.Fatalf("interface %q: %v", name, err)
	}
	return iface
}

// runAnnouncers is the "announce" part: it announces the instances listed
// in OR_MDNS_ANNOUNCE ("app/namespace/port[/host],..."), on the interface
// childIface names, and with OR_MDNS_LISTEN=1 accepts TCP connections on
// their ports; it prints ANNOUNCING, and withdraws them when stdin closes.
func runAnnouncers(t *testing.T) {
	iface := childIface(t)
	var stops []func()
	for _, spec := range strings.Split(os.Getenv("OR_MDNS_ANNOUNCE"), ",") {
		f := strings.Split(spec, "/")
		if len(f) < 3 {
			t.Fatalf("OR_MDNS_ANNOUNCE entry %q: want app/namespace/port[/host]", spec)
		}
		port, err := strconv.Atoi(f[2])
		if err != nil {
			t.Fatal(err)
		}
		inst := nameresolution.Instance{AppID: f[0], Namespace: f[1], Port: port}
		if len(f) > 3 {
			inst.Host = f[3]
		}
		if os.Getenv("OR_MDNS_LISTEN") == "1" {
			ln, err := net.Listen("tcp", ":"+f[2])
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
			defer ln.Close()
		}
		stops = append(stops, announce(t, inst, mdns.WithInterface(iface)))
	}
	fmt.Println("ANNOUNCING")
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, stop := range stops {
		stop()
	}
}

// watched follows what a Watch reports.
type watched struct {
	what string
	mu   sync.Mutex
	set  []string // the addresses last reported, sorted; nil before a report
	bad  []string // instances reported for another app
}

// watch starts w.Watch(appID, ns) for the rest of the test; the resolver
// must be closed after the test's cleanups (t.Cleanup before watch).
func watch(t *testing.T, w nameresolution.Watcher, what, appID, ns string) *watched {
	t.Helper()
	wd := &watched{what: what}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- w.Watch(ctx, appID, ns, func(insts []nameresolution.Instance) {
			set := []string{}
			var bad []string
			for _, in := range insts {
				if in.AppID != appID || in.Namespace != nameresolution.NamespaceOrDefault(ns) {
					bad = append(bad, fmt.Sprintf("%+v", in))
				}
				set = append(set, in.Address())
			}
			slices.Sort(set)
			wd.mu.Lock()
			wd.set = set
			wd.bad = append(wd.bad, bad...)
			wd.mu.Unlock()
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: Watch returned %v; want nil after its context ended", what, err)
		}
		wd.mu.Lock()
		defer wd.mu.Unlock()
		if len(wd.bad) > 0 {
			t.Errorf("%s: Watch reported instances of another app: %v", what, wd.bad)
		}
	})
	return wd
}

func (w *watched) get() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.set
}

// waitFor polls until the last report is want (sorted), failing the test
// after a generous deadline.
func (w *watched) waitFor(t *testing.T, want ...string) {
	t.Helper()
	slices.Sort(want)
	if want == nil {
		want = []string{}
	}
	const timeout = 30 * time.Second
	deadline := time.Now().Add(timeout)
	var got []string
	for range int(timeout/(20*time.Millisecond)) + 1 {
		if got = w.get(); slices.Equal(got, want) && got != nil {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: Watch reports %v; want %v within %v", w.what, got, want, timeout)
}

// resolveUntil polls Resolve until it returns want, failing the test after
// a generous deadline.
func resolveUntil(t *testing.T, r nameresolution.Resolver, appID, ns, want string) {
	t.Helper()
	const timeout = 30 * time.Second
	deadline := time.Now().Add(timeout)
	got, err := "", error(nil)
	for range int(timeout/(20*time.Millisecond)) + 1 {
		if got, err = r.Resolve(context.Background(), appID, ns); err == nil && got == want {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("Resolve(%q, %q) = %q, %v; want %q within %v", appID, ns, got, err, want, timeout)
}

func lanAddrs(v6 bool, port int, hosts ...int) []string {
	var out []string
	for _, h := range hosts {
		ip := lanV4(h)
		if v6 {
			ip = lanV6(h)
		}
		out = append(out, net.JoinHostPort(ip, strconv.Itoa(port)))
	}
	return out
}

// TestSeveralHosts puts four hosts on one LAN: three announce instances of
// orders (one of them payments too) and the fourth resolves them, over IPv4
// and over IPv6. Then one host withdraws its instances, and the resolvers
// drop them at the goodbye, well before any TTL; then one host crashes, and
// they drop its instance when its TTL runs out.
func TestSeveralHosts(t *testing.T) {
	switch role() {
	case "":
		hosts := newLAN(t, 4)
		var announcers []*child
		for i, list := range []string{"orders/shop/50002", "orders/shop/50002,payments/shop/50003", "orders/shop/50002"} {
			announcers = append(announcers, startChild(t, hosts[i], "TestSeveralHosts", "announce", "OR_MDNS_ANNOUNCE="+list))
		}
		for _, a := range announcers {
			a.waitFor(t, "ANNOUNCING", time.Minute)
		}
		res := startChild(t, hosts[3], "TestSeveralHosts", "resolve")
		res.waitFor(t, "SAW-ALL", 2*time.Minute)

		start := time.Now()
		announcers[1].stop(t, time.Minute)
		res.waitFor(t, "SAW-LEAVE", time.Minute)
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("the withdrawn instances were dropped %v after the withdrawal; want a few seconds", took)
		}
		announcers[2].kill(t)
		res.waitFor(t, "SAW-EXPIRY", time.Minute)
		res.stop(t, time.Minute)
		announcers[0].stop(t, time.Minute)

	case "announce":
		runAnnouncers(t)

	case "resolve":
		iface := childIface(t)
		// short ages instances out after 2s and reports IPv4 addresses;
		// long keeps them a minute and reports IPv6 addresses.
		short := newResolver(t, mdns.WithInterface(iface))
		t.Cleanup(func() { short.Close() })
		long := newResolver(t, mdns.WithInterface(iface), mdns.WithRefreshInterval(time.Second), mdns.WithTTL(time.Minute), mdns.WithPreferIPv6(true))
		t.Cleanup(func() { long.Close() })
		shortOrders := watch(t, short, "IPv4 orders", "orders", "shop")
		shortPayments := watch(t, short, "IPv4 payments", "payments", "shop")
		longOrders := watch(t, long, "IPv6 orders", "orders", "shop")
		longPayments := watch(t, long, "IPv6 payments", "payments", "shop")

		shortOrders.waitFor(t, lanAddrs(false, 50002, 0, 1, 2)...)
		shortPayments.waitFor(t, lanAddrs(false, 50003, 1)...)
		longOrders.waitFor(t, lanAddrs(true, 50002, 0, 1, 2)...)
		longPayments.waitFor(t, lanAddrs(true, 50003, 1)...)
		// Resolve, and a balancer over the Watcher, spread calls over the
		// three hosts.
		b := balance.New(short, balance.Options{})
		t.Cleanup(func() { b.Close() })
		for name, r := range map[string]nameresolution.Resolver{"Resolve": short, "balancer": b} {
			seen := map[string]bool{}
			for range 30 {
				addr, err := r.Resolve(context.Background(), "orders", "shop")
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				seen[addr] = true
			}
			if len(seen) != 3 {
				t.Errorf("%s: 30 calls reached %v; want the three hosts", name, seen)
			}
		}
		fmt.Println("SAW-ALL")

		// Host 1 withdrew its two instances: both resolvers drop them at
		// once, long well before its one-minute TTL.
		shortOrders.waitFor(t, lanAddrs(false, 50002, 0, 2)...)
		shortPayments.waitFor(t)
		longOrders.waitFor(t, lanAddrs(true, 50002, 0, 2)...)
		longPayments.waitFor(t)
		if s := long.Stats(); s.Goodbyes < 2 || s.Expired != 0 {
			t.Errorf("long.Stats() = %+v; want 2 goodbyes and nothing expired", s)
		}
		fmt.Println("SAW-LEAVE")

		// Host 2 crashed: no goodbye; short drops it when its 2s TTL runs
		// out, long keeps it (its TTL is a minute).
		shortOrders.waitFor(t, lanAddrs(false, 50002, 0)...)
		if s := short.Stats(); s.Expired < 1 {
			t.Errorf("short.Stats() = %+v; want an instance expired", s)
		}
		if got, want := longOrders.get(), lanAddrs(true, 50002, 0, 2); !slices.Equal(got, want) {
			t.Errorf("long reports %v once host 2 crashed; want %v until the TTL runs out", got, want)
		}
		if s := short.Stats(); s.Malformed+s.Unparsable+s.Oversized+s.OverLimit != 0 {
			t.Errorf("short.Stats() = %+v; want no answer dropped", s)
		}
		fmt.Println("SAW-EXPIRY")
		_, _ = io.Copy(io.Discard, os.Stdin)
	}
}

// TestIPv6Only announces and resolves over a link that carries no IPv4: an
// instance at the interface's address (the announcer picks its IPv6
// address) and one at a link-local address, which the resolver gives the
// zone of its own interface. Both are reachable at what Resolve returns.
func TestIPv6Only(t *testing.T) {
	switch role() {
	case "":
		a, b := newNetns(t), newNetns(t)
		ifA, ifB := connectIPv6(t, a, b)
		ann := startChild(t, a, "TestIPv6Only", "announce", "OR_MDNS_IFACE="+ifA, "OR_MDNS_LISTEN=1",
			"OR_MDNS_ANNOUNCE=v6app/default/50004,v6ll/default/50005/fe80::213:1")
		ann.waitFor(t, "ANNOUNCING", time.Minute)
		startChild(t, b, "TestIPv6Only", "resolve", "OR_MDNS_IFACE="+ifB).wait(t, 2*time.Minute)
		ann.stop(t, time.Minute)

	case "announce":
		runAnnouncers(t)

	case "resolve":
		iface := childIface(t)
		r := newResolver(t, mdns.WithInterface(iface))
		t.Cleanup(func() { r.Close() })
		want := map[string]string{
			"v6app": "[fd00:213::1]:50004",
			"v6ll":  "[fe80::213:1%" + iface.Name + "]:50005",
		}
		for app, addr := range want {
			resolveUntil(t, r, app, "", addr)
			c, err := net.DialTimeout("tcp", addr, 10*time.Second)
			if err != nil {
				t.Errorf("dialing %s, the address of %s: %v", addr, app, err)
				continue
			}
			c.Close()
		}
		if s := r.Stats(); s.Malformed != 0 || s.Added != 2 {
			t.Errorf("Stats() = %+v; want 2 instances added and none malformed", s)
		}
	}
}

// lineCounter counts the lines written to it that contain a string.
type lineCounter struct {
	match string
	mu    sync.Mutex
	n     int
}

func (c *lineCounter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n += strings.Count(string(p), c.match)
	return len(p), nil
}

func (c *lineCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// Bounds of the flood.
const (
	floodPackets  = 3000
	floodDuration = 10 * time.Second
)

// TestFlood sends a flood of bogus mDNS answers at a resolver that knows one
// instance of orders: garbage, floods of records, other services, malformed
// TXT records, port 0, an instance name of orders with the app-id of
// another app at orders' address, goodbyes of unknown instances, and valid
// answers for more instances than the resolver's limits. The resolver must
// keep answering orders with its one instance throughout, keep within its
// limits, count the drops and log them a few lines at a time.
func TestFlood(t *testing.T) {
	const ordersAddr = "10.213.0.1:50002"
	switch role() {
	case "":
		a, b := newNetns(t), newNetns(t)
		ifA, ifB := connect(t, a, b)
		ann := startChild(t, a, "TestFlood", "announce", "OR_MDNS_IFACE="+ifA, "OR_MDNS_ANNOUNCE=orders/default/50002")
		ann.waitFor(t, "ANNOUNCING", time.Minute)
		res := startChild(t, b, "TestFlood", "resolve", "OR_MDNS_IFACE="+ifB)
		res.waitFor(t, "READY", time.Minute)
		startChild(t, a, "TestFlood", "flood", "OR_MDNS_IFACE="+ifA).wait(t, time.Minute)
		res.stop(t, time.Minute)
		ann.stop(t, time.Minute)

	case "announce":
		runAnnouncers(t)

	case "flood":
		flood(t, childIface(t))

	case "resolve":
		drops := &lineCounter{match: "msg=\"dropped an mDNS answer"}
		logger := slog.New(slog.NewTextHandler(io.MultiWriter(os.Stderr, drops), &slog.HandlerOptions{Level: slog.LevelInfo}))
		r, err := mdns.NewResolver(mdns.WithInterface(childIface(t)), mdns.WithRefreshInterval(testRefresh), mdns.WithTTL(testTTL),
			mdns.WithLimits(8, 32), mdns.WithLogger(logger))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		resolveUntil(t, r, "orders", "", ordersAddr)
		orders := watch(t, r, "orders", "orders", "")
		orders.waitFor(t, ordersAddr)
		bogus := watch(t, r, "bogus", "bogus", "")
		fmt.Println("READY")

		eof := make(chan struct{})
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			close(eof)
		}()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		calls := 0
	flooded:
		for {
			select {
			case <-eof:
				break flooded
			case <-tick.C:
			}
			calls++
			if got, err := r.Resolve(context.Background(), "orders", ""); err != nil || got != ordersAddr {
				t.Fatalf("call %d during the flood: Resolve(orders) = %q, %v; want %q", calls, got, err, ordersAddr)
			}
			if got := orders.get(); !slices.Equal(got, []string{ordersAddr}) {
				t.Fatalf("during the flood, Watch(orders) reports %v; want [%s]", got, ordersAddr)
			}
			if _, err := r.Resolve(context.Background(), "payments", ""); !errors.Is(err, nameresolution.ErrNotFound) {
				t.Fatalf("during the flood, Resolve(payments) = %v; want ErrNotFound", err)
			}
		}
		s := r.Stats()
		t.Logf("after the flood: %+v; %d log lines about drops", s, drops.count())
		if s.Responses < floodPackets/10 {
			t.Errorf("Stats().Responses = %d; want most of the %d packets of the flood", s.Responses, floodPackets)
		}
		if s.Unparsable == 0 || s.Oversized == 0 || s.Malformed == 0 || s.Foreign == 0 || s.OverLimit == 0 {
			t.Errorf("Stats() = %+v; want unparsable, oversized, malformed, foreign and over-limit answers counted", s)
		}
		if s.Instances > 32 {
			t.Errorf("Stats().Instances = %d; want at most the limit, 32", s.Instances)
		}
		if n := len(bogus.get()); n > 8 {
			t.Errorf("the cache holds %d instances of bogus; want at most the limit, 8", n)
		}
		if n := drops.count(); n == 0 || n > 20 {
			t.Errorf("%d log lines about dropped answers; want a few (rate limited), not one per packet", n)
		}
		orders.waitFor(t, ordersAddr)
	}
}

// flood sends floodPackets bogus mDNS packets, for at most floodDuration,
// to the IPv4 mDNS group on iface.
func flood(t *testing.T, iface *net.Interface) {
	c, err := net.ListenUDP("udp4", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := ipv4.NewPacketConn(c)
	if err := p.SetMulticastInterface(iface); err != nil {
		t.Fatal(err)
	}
	group := &net.UDPAddr{IP: net.IPv4(224, 0, 0, 251), Port: 5353}
	pack := func(rrs ...dns.RR) []byte {
		b, err := (&dns.Msg{MsgHdr: dns.MsgHdr{Response: true, Authoritative: true}, Answer: rrs}).Pack()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	instance := func(name, service string, port int, ip string, txt ...string) []dns.RR {
		svc, err := hmdns.NewMDNSService(name, service, "local.", name+".local.", max(port, 1), []net.IP{net.ParseIP(ip)}, txt)
		if err != nil {
			t.Fatal(err)
		}
		rrs := svc.Records(dns.Question{Name: service + ".local.", Qtype: dns.TypePTR, Qclass: dns.ClassINET})
		for _, rr := range rrs {
			if srv, ok := rr.(*dns.SRV); ok {
				srv.Port = uint16(port)
			}
		}
		return rrs
	}
	kinds := []func(i int) []byte{
		func(i int) []byte { // garbage with the response bit
			b := make([]byte, 40+i%200)
			_, _ = rand.Read(b)
			b[2] |= 0x80
			b[6], b[7], b[8], b[9], b[10], b[11] = 0, 3, 0, 0, 0, 0
			return b
		},
		func(i int) []byte { // a flood of records in one packet
			var rrs []dns.RR
			for j := range 200 {
				rrs = append(rrs, &dns.A{Hdr: dns.RR_Header{Name: fmt.Sprintf("h%d.local.", j), Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 120}, A: net.IPv4(10, 213, 0, byte(j))})
			}
			return pack(rrs...)
		},
		func(i int) []byte { // another service
			return pack(instance(fmt.Sprintf("printer%d", i), "_ipp._tcp", 631, "10.213.0.50", "appid=orders")...)
		},
		func(i int) []byte { // no app-id
			return pack(instance(fmt.Sprintf("orders-%012x", i), mdns.ServiceType, 50002, "10.213.0.51", "txtvers=1", "namespace=default")...)
		},
		func(i int) []byte { // port 0
			return pack(instance(fmt.Sprintf("orders-%012x", i), mdns.ServiceType, 0, "10.213.0.52", "appid=orders")...)
		},
		func(i int) []byte { // a name of orders, the app-id of payments, orders' address
			return pack(instance(fmt.Sprintf("orders-%012x", i), mdns.ServiceType, 50002, "10.213.0.1", "appid=payments")...)
		},
		func(i int) []byte { // more instances of one app than the limit
			return pack(instance(fmt.Sprintf("bogus-%012x", i), mdns.ServiceType, 1000+i%20000, "10.213.0.99", "appid=bogus", "txtvers=1")...)
		},
		func(i int) []byte { // more apps than the limit
			app := fmt.Sprintf("bogus%d", i)
			return pack(instance(fmt.Sprintf("%s-%012x", app, i), mdns.ServiceType, 1000+i%20000, "10.213.0.98", "appid="+app)...)
		},
		func(i int) []byte { // goodbyes of instances nobody announced
			rrs := instance(fmt.Sprintf("ghost-%012x", i), mdns.ServiceType, 1, "10.213.0.97", "appid=ghost")
			for _, rr := range rrs {
				rr.Header().Ttl = 0
			}
			return pack(rrs...)
		},
	}
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(floodDuration)
	sent := 0
	for i := 0; i < floodPackets && time.Now().Before(deadline); i++ {
		<-tick.C
		if _, err := c.WriteToUDP(kinds[i%len(kinds)](i), group); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		sent++
	}
	t.Logf("sent %d bogus packets", sent)
}
