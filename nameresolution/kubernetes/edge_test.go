package kubernetes_test

// Edge cases a real DNS server does not produce on demand (answers about the
// wrong names, garbage, truncation), from a tiny in-process miekg/dns server.
// The behaviour with a real server is proven against CoreDNS in
// kubernetes_test.go.

import (
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

const (
	ordersSRV  = "_dapr-internal._tcp.orders-dapr.default.svc.cluster.local."
	ordersHost = "orders-dapr.default.svc.cluster.local."
)

// fakeDNS answers with whatever its answer function writes; it serves UDP
// and TCP on one loopback port.
type fakeDNS struct {
	addr   string
	mu     sync.Mutex
	answer func(w dns.ResponseWriter, q *dns.Msg, tcp bool)
	tcpHit atomic.Int64
}

func startFakeDNS(t *testing.T) *fakeDNS {
	t.Helper()
	f := &fakeDNS{}
	var pc net.PacketConn
	var l net.Listener
	for range 20 {
		port := freePort(t)
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		var err error
		if pc, err = net.ListenPacket("udp", addr); err != nil {
			continue
		}
		if l, err = net.Listen("tcp", addr); err != nil {
			pc.Close()
			continue
		}
		f.addr = addr
		break
	}
	if f.addr == "" {
		t.Fatal("no loopback port for the fake DNS server")
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		tcp := w.LocalAddr().Network() == "tcp"
		if tcp {
			f.tcpHit.Add(1)
		}
		f.mu.Lock()
		answer := f.answer
		f.mu.Unlock()
		answer(w, q, tcp)
	})
	udp := &dns.Server{PacketConn: pc, Handler: h}
	tcp := &dns.Server{Listener: l, Handler: h}
	var wg sync.WaitGroup
	for _, s := range []*dns.Server{udp, tcp} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = s.ActivateAndServe()
		}()
		<-started
	}
	t.Cleanup(func() {
		_ = udp.Shutdown()
		_ = tcp.Shutdown()
		wg.Wait()
	})
	return f
}

func (f *fakeDNS) set(answer func(w dns.ResponseWriter, q *dns.Msg, tcp bool)) {
	f.mu.Lock()
	f.answer = answer
	f.mu.Unlock()
}

func rr(t *testing.T, s string) dns.RR {
	t.Helper()
	r, err := dns.NewRR(s)
	if err != nil {
		t.Fatalf("dns.NewRR(%q): %v", s, err)
	}
	return r
}

// records answers every question with the records of its name and type, or
// its CNAME, among rrs (answer section) and the extra records (additional section); a name
// with no records is NXDOMAIN.
func records(t *testing.T, rrs []string, extra ...string) func(dns.ResponseWriter, *dns.Msg, bool) {
	var ans, ext []dns.RR
	for _, s := range rrs {
		ans = append(ans, rr(t, s))
	}
	for _, s := range extra {
		ext = append(ext, rr(t, s))
	}
	return func(w dns.ResponseWriter, q *dns.Msg, _ bool) {
		m := new(dns.Msg)
		m.SetReply(q)
		m.Authoritative = true
		for _, r := range ans {
			h := r.Header()
			if dns.CanonicalName(h.Name) == dns.CanonicalName(q.Question[0].Name) && (h.Rrtype == q.Question[0].Qtype || h.Rrtype == dns.TypeCNAME) {
				m.Answer = append(m.Answer, r)
			}
		}
		if len(m.Answer) == 0 {
			m.Rcode = dns.RcodeNameError
		} else {
			m.Extra = ext
		}
		_ = w.WriteMsg(m)
	}
}

// always answers every question with the same sections, whatever it asked.
func always(t *testing.T, answer []string, extra ...string) func(dns.ResponseWriter, *dns.Msg, bool) {
	var ans, ext []dns.RR
	for _, s := range answer {
		ans = append(ans, rr(t, s))
	}
	for _, s := range extra {
		ext = append(ext, rr(t, s))
	}
	return func(w dns.ResponseWriter, q *dns.Msg, _ bool) {
		m := new(dns.Msg)
		m.SetReply(q)
		m.Answer, m.Extra = ans, ext
		_ = w.WriteMsg(m)
	}
}

// waitStats polls the watcher's counters until cond holds.
func waitStats(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 20s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var good = []string{
	ordersSRV + " 1 IN SRV 0 50 6001 p1.orders-dapr.default.svc.cluster.local.",
	"p1.orders-dapr.default.svc.cluster.local. 1 IN A 127.0.0.1",
}

// TestForeignOwner: records whose owner name is not the name asked never
// reach the set, whether mixed with the right ones or alone.
func TestForeignOwner(t *testing.T) {
	f := startFakeDNS(t)
	t.Run("Mixed", func(t *testing.T) {
		f.set(always(t, []string{
			ordersSRV + " 1 IN SRV 0 50 6001 p1.orders-dapr.default.svc.cluster.local.",
			// Another app's SRV record in the same answer.
			"_dapr-internal._tcp.payments-dapr.default.svc.cluster.local. 1 IN SRV 0 50 6666 p9.payments-dapr.default.svc.cluster.local.",
		},
			"p1.orders-dapr.default.svc.cluster.local. 1 IN A 127.0.0.1",
			// An address for a name no SRV record targets.
			"p9.payments-dapr.default.svc.cluster.local. 1 IN A 127.0.0.66",
		))
		w := newWatcher(t, f.addr, nil)
		watch(t, w, "orders", "").waitFor(t, "127.0.0.1:6001")
		if s := w.Stats(); s.Foreign < 2 {
			t.Errorf("Stats = %+v; want at least 2 foreign records counted", s)
		}
	})
	t.Run("CaseAndFinalDot", func(t *testing.T) {
		// Owner names differ from the question in case only: they are the
		// name asked.
		f.set(always(t, []string{
			"_DAPR-internal._tcp.ORDERS-dapr.default.svc.cluster.local. 1 IN SRV 0 50 6001 P1.orders-dapr.default.svc.cluster.local.",
		}, "p1.Orders-Dapr.default.svc.cluster.local. 1 IN A 127.0.0.1"))
		w := newWatcher(t, f.addr, map[string]any{"clusterDomain": "Cluster.Local."})
		watch(t, w, "orders", "").waitFor(t, "127.0.0.1:6001")
		if s := w.Stats(); s.Foreign != 0 {
			t.Errorf("Stats = %+v; want no foreign records", s)
		}
	})
	t.Run("OnlyForeign", func(t *testing.T) {
		f.set(always(t, good[:1], good[1]))
		w := newWatcher(t, f.addr, nil)
		l := watch(t, w, "orders", "")
		l.waitFor(t, "127.0.0.1:6001")
		// Now every answer is about another app: a stale cache's, say.
		f.set(always(t, []string{
			"_dapr-internal._tcp.payments-dapr.default.svc.cluster.local. 1 IN SRV 0 50 6666 p9.payments-dapr.default.svc.cluster.local.",
			"payments-dapr.default.svc.cluster.local. 1 IN A 127.0.0.66",
		}))
		waitStats(t, "a failure counted", func() bool { return w.Stats().Failures >= 2 })
		if got, _, _ := l.last(); len(got) != 1 || got[0] != "127.0.0.1:6001" || l.count() != 1 {
			t.Errorf("after foreign answers the watch reports %q in %d updates; want the last set, 127.0.0.1:6001, once", got, l.count())
		}
	})
}

// TestBadAnswersKeepLastSet: a failed exchange keeps the last set, is counted
// and retried; the next good answer is taken.
func TestBadAnswersKeepLastSet(t *testing.T) {
	bad := map[string]func(dns.ResponseWriter, *dns.Msg, bool){
		"Garbage": func(w dns.ResponseWriter, _ *dns.Msg, _ bool) {
			_, _ = w.Write([]byte("\x12\x34 this is not DNS"))
		},
		"GarbageWithRightID": func(w dns.ResponseWriter, q *dns.Msg, _ bool) {
			// The header parses (the ID matches), the rest does not: a
			// question count the message does not hold.
			_, _ = w.Write([]byte{byte(q.Id >> 8), byte(q.Id), 0x81, 0x80, 0, 5, 0, 9, 0, 0, 0, 0, 3, 'a', 'b'})
		},
		"ServFail": func(w dns.ResponseWriter, q *dns.Msg, _ bool) {
			m := new(dns.Msg)
			m.SetRcode(q, dns.RcodeServerFailure)
			_ = w.WriteMsg(m)
		},
		"Refused": func(w dns.ResponseWriter, q *dns.Msg, _ bool) {
			m := new(dns.Msg)
			m.SetRcode(q, dns.RcodeRefused)
			_ = w.WriteMsg(m)
		},
		"Timeout": func(dns.ResponseWriter, *dns.Msg, bool) {},
		"OtherQuestion": func(w dns.ResponseWriter, q *dns.Msg, _ bool) {
			m := new(dns.Msg)
			m.SetReply(q)
			m.Question[0].Name = "_dapr-internal._tcp.payments-dapr.default.svc.cluster.local."
			m.Answer = []dns.RR{rr(t, "_dapr-internal._tcp.payments-dapr.default.svc.cluster.local. 1 IN SRV 0 50 6666 p9.payments-dapr.default.svc.cluster.local.")}
			_ = w.WriteMsg(m)
		},
		"TruncatedOverTCPToo": func(w dns.ResponseWriter, q *dns.Msg, _ bool) {
			m := new(dns.Msg)
			m.SetReply(q)
			m.Truncated = true
			_ = w.WriteMsg(m)
		},
	}
	for name, answer := range bad {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := startFakeDNS(t)
			f.set(records(t, good))
			w := newWatcher(t, f.addr, map[string]any{"timeout": "300ms"})
			l := watch(t, w, "orders", "")
			l.waitFor(t, "127.0.0.1:6001")

			f.set(answer)
			waitStats(t, "two failures counted", func() bool { return w.Stats().Failures >= 2 })
			if got, _, _ := l.last(); l.count() != 1 || len(got) != 1 {
				t.Errorf("after bad answers the watch reports %q in %d updates; want the last set, once", got, l.count())
			}

			f.set(records(t, []string{
				ordersSRV + " 1 IN SRV 0 50 6002 p1.orders-dapr.default.svc.cluster.local.",
				"p1.orders-dapr.default.svc.cluster.local. 1 IN A 127.0.0.1",
			}))
			l.waitFor(t, "127.0.0.1:6002")
		})
	}
}

// TestTruncatedAnswerOverTCP: a truncated UDP answer is asked again over TCP.
func TestTruncatedAnswerOverTCP(t *testing.T) {
	f := startFakeDNS(t)
	full := records(t, good)
	f.set(func(w dns.ResponseWriter, q *dns.Msg, tcp bool) {
		if tcp {
			full(w, q, tcp)
			return
		}
		m := new(dns.Msg)
		m.SetReply(q)
		m.Truncated = true
		_ = w.WriteMsg(m)
	})
	w := newWatcher(t, f.addr, nil)
	watch(t, w, "orders", "").waitFor(t, "127.0.0.1:6001")
	if s := w.Stats(); s.Truncated == 0 || f.tcpHit.Load() == 0 || s.Failures != 0 {
		t.Errorf("Stats = %+v, TCP queries %d; want truncated answers counted, asked over TCP, no failures", s, f.tcpHit.Load())
	}
}

// TestCNAMEAcrossAnswers: a CNAME chain whose end the answer does not
// resolve is followed by asking about its end; a chain longer than the
// watcher follows is a failure, not an empty set.
func TestCNAMEAcrossAnswers(t *testing.T) {
	f := startFakeDNS(t)
	f.set(records(t, []string{
		ordersHost + " 1 IN CNAME db.example.",
		"db.example. 1 IN CNAME db2.example.",
		"db2.example. 1 IN A 127.0.0.44",
	}))
	w := newWatcher(t, f.addr, nil)
	watch(t, w, "orders", "").waitFor(t, "127.0.0.44:50002")

	// A loop spread over answers: each answer holds one link.
	f.set(records(t, []string{
		ordersHost + " 1 IN CNAME a.example.",
		"a.example. 1 IN CNAME b.example.",
		"b.example. 1 IN CNAME a.example.",
	}))
	w = newWatcher(t, f.addr, nil)
	l := watch(t, w, "orders", "")
	waitStats(t, "a failure counted", func() bool { return w.Stats().Failures >= 1 })
	if n := l.count(); n != 0 {
		t.Errorf("%d updates from a CNAME loop; want none", n)
	}
}
