package kubernetes

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

const (
	srvName  = "_dapr-internal._tcp.orders-dapr.default.svc.cluster.local."
	hostName = "orders-dapr.default.svc.cluster.local."
)

// reply builds a response to a query for q of type qt.
func reply(t testing.TB, q string, qt uint16, rcode int, answer, ns, extra []string) *dns.Msg {
	t.Helper()
	query := new(dns.Msg)
	query.SetQuestion(q, qt)
	m := new(dns.Msg)
	m.SetRcode(query, rcode)
	for _, sec := range []struct {
		in  []string
		out *[]dns.RR
	}{{answer, &m.Answer}, {ns, &m.Ns}, {extra, &m.Extra}} {
		for _, s := range sec.in {
			r, err := dns.NewRR(s)
			if err != nil {
				t.Fatalf("dns.NewRR(%q): %v", s, err)
			}
			*sec.out = append(*sec.out, r)
		}
	}
	return m
}

var soa = "cluster.local. 30 IN SOA ns.cluster.local. hostmaster.cluster.local. 1 7200 3600 1209600 5"

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func TestInterpret(t *testing.T) {
	for _, tc := range []struct {
		name    string
		msg     *dns.Msg
		qname   string
		qtype   uint16
		want    answer
		wantErr string
	}{{
		name:  "A",
		msg:   reply(t, hostName, dns.TypeA, dns.RcodeSuccess, []string{hostName + " 9 IN A 10.0.0.1", hostName + " 4 IN A 10.0.0.2"}, nil, nil),
		qname: hostName, qtype: dns.TypeA,
		want: answer{addrs: addrs("10.0.0.1", "10.0.0.2"), ttl: 4},
	}, {
		name:  "AAAA",
		msg:   reply(t, hostName, dns.TypeAAAA, dns.RcodeSuccess, []string{hostName + " 9 IN AAAA fd00::1"}, nil, nil),
		qname: hostName, qtype: dns.TypeAAAA,
		want: answer{addrs: addrs("fd00::1"), ttl: 9},
	}, {
		name:  "OwnerCaseAndFinalDot",
		msg:   reply(t, "Orders-Dapr.default.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess, []string{"ORDERS-dapr.Default.svc.cluster.local. 9 IN A 10.0.0.1"}, nil, nil),
		qname: "orders-dapr.default.svc.cluster.local", qtype: dns.TypeA,
		want: answer{addrs: addrs("10.0.0.1"), ttl: 9},
	}, {
		name:  "UnusableAddressesSkipped",
		msg:   reply(t, hostName, dns.TypeA, dns.RcodeSuccess, []string{hostName + " 9 IN A 0.0.0.0", hostName + " 9 IN A 224.0.0.1", hostName + " 9 IN A 10.0.0.3"}, nil, nil),
		qname: hostName, qtype: dns.TypeA,
		want: answer{addrs: addrs("10.0.0.3"), ttl: 9},
	}, {
		name:  "OtherTypeOfTheNameIgnored",
		msg:   reply(t, hostName, dns.TypeA, dns.RcodeSuccess, []string{hostName + " 9 IN AAAA fd00::1"}, []string{soa}, nil),
		qname: hostName, qtype: dns.TypeA,
		want: answer{none: true, ttl: 5},
	}, {
		name:  "NXDOMAIN",
		msg:   reply(t, hostName, dns.TypeA, dns.RcodeNameError, nil, []string{soa}, nil),
		qname: hostName, qtype: dns.TypeA,
		want: answer{none: true, ttl: 5},
	}, {
		name:  "NXDOMAINWithoutSOA",
		msg:   reply(t, hostName, dns.TypeA, dns.RcodeNameError, nil, nil, nil),
		qname: hostName, qtype: dns.TypeA,
		want: answer{none: true, ttl: noTTL},
	}, {
		name:  "NXDOMAINWithAnotherZonesSOA",
		msg:   reply(t, hostName, dns.TypeA, dns.RcodeNameError, nil, []string{"example.org. 1 IN SOA ns.example.org. h.example.org. 1 1 1 1 1"}, nil),
		qname: hostName, qtype: dns.TypeA,
		want: answer{none: true, ttl: noTTL},
	}, {
		name:  "NODATA",
		msg:   reply(t, srvName, dns.TypeSRV, dns.RcodeSuccess, nil, []string{"cluster.local. 2 IN SOA ns.cluster.local. h.cluster.local. 1 1 1 1 60"}, nil),
		qname: srvName, qtype: dns.TypeSRV,
		want: answer{none: true, ttl: 2},
	}, {
		name: "SRV",
		msg: reply(t, srvName, dns.TypeSRV, dns.RcodeSuccess, []string{
			srvName + " 8 IN SRV 0 50 6001 P1.orders-dapr.default.svc.cluster.local.",
			srvName + " 8 IN SRV 1 50 6002 p2.orders-dapr.default.svc.cluster.local.",
			srvName + " 8 IN SRV 0 50 0 p3.orders-dapr.default.svc.cluster.local.",
			srvName + " 8 IN SRV 0 0 6003 .",
		}, nil, []string{
			"p1.orders-dapr.default.svc.cluster.local. 3 IN A 10.0.0.1",
			"p1.orders-dapr.default.svc.cluster.local. 7 IN AAAA fd00::1",
			"p9.payments-dapr.default.svc.cluster.local. 7 IN A 10.9.9.9",
		}),
		qname: srvName, qtype: dns.TypeSRV,
		want: answer{
			srvs: []srv{
				{target: "p1.orders-dapr.default.svc.cluster.local.", port: 6001},
				{target: "p2.orders-dapr.default.svc.cluster.local.", port: 6002, priority: 1},
			},
			extra:    map[string][]netip.Addr{"p1.orders-dapr.default.svc.cluster.local.": addrs("10.0.0.1", "fd00::1")},
			extraTTL: map[string]uint32{"p1.orders-dapr.default.svc.cluster.local.": 3},
			ttl:      8,
			foreign:  1,
		},
	}, {
		name:  "ForeignMixed",
		msg:   reply(t, hostName, dns.TypeA, dns.RcodeSuccess, []string{hostName + " 9 IN A 10.0.0.1", "payments-dapr.default.svc.cluster.local. 1 IN A 10.0.0.66"}, nil, nil),
		qname: hostName, qtype: dns.TypeA,
		want: answer{addrs: addrs("10.0.0.1"), ttl: 9, foreign: 1},
	}, {
		name:    "ForeignOnly",
		msg:     reply(t, hostName, dns.TypeA, dns.RcodeSuccess, []string{"payments-dapr.default.svc.cluster.local. 1 IN A 10.0.0.66"}, nil, nil),
		qname:   hostName,
		qtype:   dns.TypeA,
		wantErr: errForeign.Error(),
	}, {
		name: "CNAMEChain",
		msg: reply(t, hostName, dns.TypeA, dns.RcodeSuccess, []string{
			"alias.example. 6 IN A 10.0.0.5",
			"mid.example. 9 IN CNAME alias.example.",
			hostName + " 9 IN CNAME mid.example.",
		}, nil, nil),
		qname: hostName, qtype: dns.TypeA,
		want: answer{addrs: addrs("10.0.0.5"), ttl: 6},
	}, {
		name:  "CNAMEChainLeavesTheAnswer",
		msg:   reply(t, hostName, dns.TypeA, dns.RcodeSuccess, []string{hostName + " 4 IN CNAME db.example."}, nil, nil),
		qname: hostName, qtype: dns.TypeA,
		want: answer{alias: "db.example.", ttl: 4},
	}, {
		name:    "CNAMELoop",
		msg:     reply(t, hostName, dns.TypeA, dns.RcodeSuccess, []string{hostName + " 4 IN CNAME a.example.", "a.example. 4 IN CNAME " + hostName}, nil, nil),
		qname:   hostName,
		qtype:   dns.TypeA,
		wantErr: "loops",
	}, {
		name:    "ServFail",
		msg:     reply(t, hostName, dns.TypeA, dns.RcodeServerFailure, nil, nil, nil),
		qname:   hostName,
		qtype:   dns.TypeA,
		wantErr: "SERVFAIL",
	}, {
		name:    "OtherName",
		msg:     reply(t, "payments-dapr.default.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess, nil, nil, nil),
		qname:   hostName,
		qtype:   dns.TypeA,
		wantErr: "another question",
	}, {
		name:    "OtherType",
		msg:     reply(t, hostName, dns.TypeAAAA, dns.RcodeSuccess, nil, nil, nil),
		qname:   hostName,
		qtype:   dns.TypeA,
		wantErr: "another question",
	}, {
		name: "Query",
		msg: func() *dns.Msg {
			m := new(dns.Msg)
			m.SetQuestion(hostName, dns.TypeA)
			return m
		}(),
		qname:   hostName,
		qtype:   dns.TypeA,
		wantErr: "not an answer",
	}, {
		name: "Truncated",
		msg: func() *dns.Msg {
			m := reply(t, hostName, dns.TypeA, dns.RcodeSuccess, nil, nil, nil)
			m.Truncated = true
			return m
		}(),
		qname:   hostName,
		qtype:   dns.TypeA,
		wantErr: "truncated",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := interpret(tc.msg, tc.qname, tc.qtype)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("interpret = %+v, %v; want an error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("interpret: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("interpret =\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}

func TestRefresh(t *testing.T) {
	w := &Watcher{minRefresh: MinRefresh, maxRefresh: MaxRefresh}
	for _, tc := range []struct {
		ttl  uint32
		want time.Duration
	}{
		{0, MinRefresh},
		{1, time.Second},
		{7, 7 * time.Second},
		{30, 30 * time.Second},
		{3600, MaxRefresh},
		{noTTL, noTTLRefresh},
	} {
		if got := w.refresh(tc.ttl); got != tc.want {
			t.Errorf("refresh(%d) = %v; want %v", tc.ttl, got, tc.want)
		}
	}
}

func TestFirstNameserver(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	v4 := write("v4", "search default.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\nnameserver 10.96.0.11\noptions ndots:5\n")
	v6 := write("v6", "nameserver fd00::10\n")
	none := write("none", "search x\n")

	m, _, err := parseMetadata(map[string]any{}, v4)
	if err != nil || m.DNSServer != "10.96.0.10:53" {
		t.Errorf("with %s: DNSServer %q, %v; want 10.96.0.10:53", v4, m.DNSServer, err)
	}
	m, _, err = parseMetadata(map[string]any{}, v6)
	if err != nil || m.DNSServer != "[fd00::10]:53" {
		t.Errorf("with %s: DNSServer %q, %v; want [fd00::10]:53", v6, m.DNSServer, err)
	}
	m, _, err = parseMetadata(map[string]any{"dnsServer": "127.0.0.1:5353"}, none)
	if err != nil || m.DNSServer != "127.0.0.1:5353" {
		t.Errorf("dnsServer given: DNSServer %q, %v; want 127.0.0.1:5353", m.DNSServer, err)
	}
	for _, p := range []string{none, filepath.Join(dir, "missing")} {
		if _, _, err := parseMetadata(map[string]any{}, p); err == nil || !strings.Contains(err.Error(), "dnsServer") {
			t.Errorf("with %s: error %v; want one naming dnsServer", p, err)
		}
	}
}

// FuzzParseResponse feeds raw messages to the answer parser: it must never
// panic, and what it accepts must be usable, and read the same once packed
// again.
func FuzzParseResponse(f *testing.F) {
	seeds := []*dns.Msg{
		reply(f, hostName, dns.TypeA, dns.RcodeSuccess, []string{hostName + " 9 IN A 10.0.0.1", "payments-dapr.default.svc.cluster.local. 1 IN A 10.0.0.66"}, nil, nil),
		reply(f, hostName, dns.TypeAAAA, dns.RcodeSuccess, []string{hostName + " 9 IN AAAA fd00::1"}, nil, nil),
		reply(f, hostName, dns.TypeA, dns.RcodeNameError, nil, []string{soa}, nil),
		reply(f, hostName, dns.TypeA, dns.RcodeSuccess, []string{hostName + " 9 IN CNAME mid.example.", "mid.example. 9 IN CNAME alias.example.", "alias.example. 6 IN A 10.0.0.5"}, nil, nil),
		reply(f, srvName, dns.TypeSRV, dns.RcodeSuccess, []string{
			srvName + " 8 IN SRV 0 50 6001 p1.orders-dapr.default.svc.cluster.local.",
			srvName + " 8 IN SRV 1 50 6002 p2.orders-dapr.default.svc.cluster.local.",
		}, nil, []string{
			"p1.orders-dapr.default.svc.cluster.local. 3 IN A 10.0.0.1",
			"p1.orders-dapr.default.svc.cluster.local. 7 IN AAAA fd00::1",
		}),
	}
	for _, m := range seeds {
		m.SetEdns0(1232, false)
		raw, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		sel := map[uint16]uint8{dns.TypeA: 0, dns.TypeAAAA: 1, dns.TypeSRV: 2}[m.Question[0].Qtype]
		f.Add(raw, sel)
	}
	f.Fuzz(func(t *testing.T, raw []byte, sel uint8) {
		qname, qtype := hostName, []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeSRV}[sel%3]
		if qtype == dns.TypeSRV {
			qname = srvName
		}
		a, err := parseResponse(raw, qname, qtype)
		if err != nil {
			if errors.Is(err, errForeign) && a.foreign == 0 {
				t.Errorf("errForeign with no foreign record counted")
			}
			return
		}
		checkAnswer(t, a, qtype)

		// Packing the message again must not change what it says.
		var m dns.Msg
		if err := m.Unpack(raw); err != nil {
			t.Fatalf("parseResponse accepted a message Unpack refuses: %v", err)
		}
		again, err := m.Pack()
		if err != nil {
			return // miekg/dns cannot always pack what it unpacked
		}
		var m2 dns.Msg
		if err := m2.Unpack(again); err != nil {
			// Nor always unpack what it packed: an SOA record with
			// empty rdata (RFC 2136) is packed back with its numbers
			// but without its names, and no longer unpacks
			// (testdata/fuzz/FuzzParseResponse/06a6688291afe1e3).
			return
		}
		b, err := interpret(&m2, qname, qtype)
		if err != nil {
			t.Fatalf("the message packed again is refused: %v", err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("the message packed again reads\n%+v\nnot\n%+v", b, a)
		}
	})
}

// checkAnswer checks what any accepted answer must hold.
func checkAnswer(t *testing.T, a answer, qtype uint16) {
	t.Helper()
	if a.none && (len(a.addrs) > 0 || len(a.srvs) > 0 || a.alias != "") {
		t.Fatalf("a none answer with records: %+v", a)
	}
	if a.alias != "" && (len(a.addrs) > 0 || len(a.srvs) > 0) {
		t.Fatalf("an alias answer with records: %+v", a)
	}
	if qtype != dns.TypeSRV && (len(a.srvs) > 0 || len(a.extra) > 0) {
		t.Fatalf("SRV records in a %s answer: %+v", dns.TypeToString[qtype], a)
	}
	if qtype == dns.TypeSRV && len(a.addrs) > 0 {
		t.Fatalf("addresses in an SRV answer: %+v", a)
	}
	for _, ip := range a.addrs {
		if !ip.IsValid() || ip.IsUnspecified() || ip.IsMulticast() || ip.Zone() != "" || ip.Is4In6() {
			t.Fatalf("unusable address %v in %+v", ip, a)
		}
		if qtype == dns.TypeA && !ip.Is4() {
			t.Fatalf("IPv6 address %v in an A answer", ip)
		}
	}
	targets := map[string]bool{}
	for _, s := range a.srvs {
		if s.port == 0 || s.target == "." || s.target != dns.CanonicalName(s.target) {
			t.Fatalf("unusable SRV record %+v", s)
		}
		targets[s.target] = true
	}
	for target, ips := range a.extra {
		if !targets[target] {
			t.Fatalf("additional addresses for %s, which no SRV record targets", target)
		}
		for _, ip := range ips {
			if !ip.IsValid() || ip.IsUnspecified() {
				t.Fatalf("unusable additional address %v", ip)
			}
		}
	}
}
