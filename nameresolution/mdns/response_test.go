package mdns

// Tests of how responses are read, on messages built in memory: the
// records of a real announcement come from hashicorp/mdns's MDNSService,
// as the Announcer's do, so these tests hold the two ends of the wire
// together. Nothing here opens a socket.

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	hmdns "github.com/hashicorp/mdns"
	"github.com/miekg/dns"
)

// testName is an instance name an Announcer of app "orders" could make.
const testName = "orders-0123456789ab"

// records returns what an Announcer of an instance named name (a label)
// sends in answer to a query for the service: PTR, SRV, A, AAAA and TXT.
func records(t testing.TB, name string, port int, txt []string, ips ...string) []dns.RR {
	t.Helper()
	var addrs []net.IP
	for _, ip := range ips {
		addrs = append(addrs, net.ParseIP(ip))
	}
	svc, err := hmdns.NewMDNSService(name, ServiceType, domain, name+"."+domain, port, addrs, txt)
	if err != nil {
		t.Fatal(err)
	}
	return svc.Records(dns.Question{Name: serviceName, Qtype: dns.TypePTR, Qclass: dns.ClassINET})
}

func stdTXT(appID, ns string) []string {
	return []string{txtVersion, txtAppID + appID, txtNamespace + ns}
}

// message packs records into a response and unpacks it, as it would come
// off the wire.
func message(t testing.TB, rrs ...dns.RR) *dns.Msg {
	t.Helper()
	m := &dns.Msg{MsgHdr: dns.MsgHdr{Response: true, Authoritative: true}, Compress: true, Answer: rrs}
	buf, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	var got dns.Msg
	if err := got.Unpack(buf); err != nil {
		t.Fatal(err)
	}
	return &got
}

func withTTL(rrs []dns.RR, ttl uint32, types ...uint16) []dns.RR {
	for _, rr := range rrs {
		if len(types) == 0 || slices.Contains(types, rr.Header().Rrtype) {
			rr.Header().Ttl = ttl
		}
	}
	return rrs
}

// withPort sets the port of the SRV records: NewMDNSService refuses 0.
func withPort(rrs []dns.RR, port uint16) []dns.RR {
	for _, rr := range rrs {
		if srv, ok := rr.(*dns.SRV); ok {
			srv.Port = port
		}
	}
	return rrs
}

func without(rrs []dns.RR, types ...uint16) []dns.RR {
	return slices.DeleteFunc(rrs, func(rr dns.RR) bool { return slices.Contains(types, rr.Header().Rrtype) })
}

func fullName(label string) string { return label + "." + serviceName }

// describe prints announcements for comparisons and failures.
func describe(as []announced) string {
	var b strings.Builder
	for _, a := range as {
		if a.goodbye {
			fmt.Fprintf(&b, "{%s goodbye}", a.name)
			continue
		}
		fmt.Fprintf(&b, "{%s %+v port %d addrs %v ttl %d}", a.name, a.key, a.port, a.addrs, a.ttl)
	}
	return "[" + b.String() + "]"
}

func TestReadResponse(t *testing.T) {
	addrs := func(s ...string) []netip.Addr {
		var out []netip.Addr
		for _, a := range s {
			out = append(out, netip.MustParseAddr(a))
		}
		return out
	}
	orders := key{"orders", "shop"}
	tests := []struct {
		name         string
		rrs          []dns.RR
		zone         string
		want         []announced
		wantProblems []string // reasons
		wantForeign  int
	}{
		{
			name: "announcement with both address families",
			rrs:  records(t, testName, 50002, stdTXT("orders", "shop"), "10.0.0.1", "fd00::1"),
			want: []announced{{name: fullName(testName), key: orders, port: 50002, addrs: addrs("10.0.0.1", "fd00::1"), ttl: 120}},
		},
		{
			name: "IPv6 only",
			rrs:  records(t, testName, 50002, stdTXT("orders", "shop"), "fd00::1"),
			want: []announced{{name: fullName(testName), key: orders, port: 50002, addrs: addrs("fd00::1"), ttl: 120}},
		},
		{
			name: "link-local IPv6 takes the zone of the interface",
			rrs:  records(t, testName, 50002, stdTXT("orders", "shop"), "fe80::1"),
			zone: "eth0",
			want: []announced{{name: fullName(testName), key: orders, port: 50002, addrs: addrs("fe80::1%eth0"), ttl: 120}},
		},
		{
			name:         "link-local IPv6 without a zone is no address",
			rrs:          records(t, testName, 50002, stdTXT("orders", "shop"), "fe80::1"),
			wantProblems: []string{reasonAddress},
		},
		{
			name: "default namespace, upper-case name, smallest TTL",
			rrs: func() []dns.RR {
				rrs := records(t, "ORDERS-0123456789AB", 1, []string{"appid=orders"}, "10.0.0.1")
				withTTL(rrs, 30, dns.TypeA)
				return rrs
			}(),
			want: []announced{{name: fullName(testName), key: key{"orders", "default"}, port: 1, addrs: addrs("10.0.0.1"), ttl: 30}},
		},
		{
			name: "unicode app-id, escaped by miekg/dns",
			rrs:  records(t, "n-code-0123456789ab", 80, stdTXT("ünïcode", "défaut"), "10.0.0.1"),
			want: []announced{{name: fullName("n-code-0123456789ab"), key: key{"ünïcode", "défaut"}, port: 80, addrs: addrs("10.0.0.1"), ttl: 120}},
		},
		{
			name: "goodbye",
			rrs:  withTTL(records(t, testName, 50002, stdTXT("orders", "shop"), "10.0.0.1"), 0),
			want: []announced{{name: fullName(testName), goodbye: true}},
		},
		{
			name: "goodbye of the PTR record alone",
			rrs:  withTTL(without(records(t, testName, 50002, stdTXT("orders", "shop"), "10.0.0.1"), dns.TypeSRV, dns.TypeTXT, dns.TypeA), 0),
			want: []announced{{name: fullName(testName), goodbye: true}},
		},
		{
			name: "every address withdrawn",
			rrs:  withTTL(records(t, testName, 50002, stdTXT("orders", "shop"), "10.0.0.1", "fd00::1"), 0, dns.TypeA, dns.TypeAAAA),
			want: []announced{{name: fullName(testName), goodbye: true}},
		},
		{
			name: "one address withdrawn",
			rrs:  withTTL(records(t, testName, 50002, stdTXT("orders", "shop"), "10.0.0.1", "fd00::1"), 0, dns.TypeA),
			want: []announced{{name: fullName(testName), key: orders, port: 50002, addrs: addrs("fd00::1"), ttl: 120}},
		},
		{
			name: "records of another service are foreign",
			rrs: func() []dns.RR {
				svc, err := hmdns.NewMDNSService("printer", "_ipp._tcp", domain, "printer.local.", 631, []net.IP{net.ParseIP("10.0.0.9")}, []string{"appid=orders"})
				if err != nil {
					t.Fatal(err)
				}
				return svc.Records(dns.Question{Name: "_ipp._tcp.local.", Qtype: dns.TypePTR, Qclass: dns.ClassINET})
			}(),
			wantForeign: 4, // PTR, SRV, A, TXT
		},
		{
			name:         "port 0",
			rrs:          withPort(records(t, testName, 1, stdTXT("orders", "shop"), "10.0.0.1"), 0),
			wantProblems: []string{reasonPort},
		},
		{
			name:         "no app-id",
			rrs:          records(t, testName, 50002, []string{txtVersion, "namespace=shop"}, "10.0.0.1"),
			wantProblems: []string{reasonTXT},
		},
		{
			name:         "empty app-id",
			rrs:          records(t, testName, 50002, []string{"appid="}, "10.0.0.1"),
			wantProblems: []string{reasonTXT},
		},
		{
			name:         "two app-ids",
			rrs:          records(t, testName, 50002, []string{"appid=orders", "AppID=payments"}, "10.0.0.1"),
			wantProblems: []string{reasonTXT},
		},
		{
			name:         "unknown TXT version",
			rrs:          records(t, testName, 50002, []string{"txtvers=2", "appid=orders"}, "10.0.0.1"),
			wantProblems: []string{reasonTXT},
		},
		{
			name:         "control character in the app-id",
			rrs:          records(t, testName, 50002, []string{`appid=ord\010ers`}, "10.0.0.1"),
			wantProblems: []string{reasonTXT},
		},
		{
			name:         "name of another app",
			rrs:          records(t, testName, 50002, stdTXT("payments", "shop"), "10.0.0.1"),
			wantProblems: []string{reasonName},
		},
		{
			name:         "name without the random suffix",
			rrs:          records(t, "orders", 50002, stdTXT("orders", "shop"), "10.0.0.1"),
			wantProblems: []string{reasonName},
		},
		{
			name:         "no address",
			rrs:          without(records(t, testName, 50002, stdTXT("orders", "shop"), "10.0.0.1"), dns.TypeA),
			wantProblems: []string{reasonAddress},
		},
		{
			name:         "only unusable addresses",
			rrs:          records(t, testName, 50002, stdTXT("orders", "shop"), "0.0.0.0", "224.0.0.251", "255.255.255.255", "::"),
			wantProblems: []string{reasonAddress},
		},
		{
			name:         "no TXT",
			rrs:          without(records(t, testName, 50002, stdTXT("orders", "shop"), "10.0.0.1"), dns.TypeTXT),
			wantProblems: []string{reasonIncomplete},
		},
		{
			name: "two different SRV records",
			rrs: func() []dns.RR {
				rrs := records(t, testName, 50002, stdTXT("orders", "shop"), "10.0.0.1")
				other := records(t, testName, 50003, stdTXT("orders", "shop"), "10.0.0.1")
				return append(rrs, without(other, dns.TypePTR, dns.TypeTXT, dns.TypeA)...)
			}(),
			wantProblems: []string{reasonAmbiguous},
		},
		{
			name: "the same records twice",
			rrs: func() []dns.RR {
				rrs := records(t, testName, 50002, stdTXT("orders", "shop"), "10.0.0.1")
				return append(rrs, records(t, testName, 50002, stdTXT("orders", "shop"), "10.0.0.1")...)
			}(),
			want: []announced{{name: fullName(testName), key: orders, port: 50002, addrs: addrs("10.0.0.1"), ttl: 120}},
		},
		{
			name: "two instances, one bad",
			rrs: append(records(t, testName, 50002, stdTXT("orders", "shop"), "10.0.0.1"),
				records(t, "orders-ba9876543210", 50003, stdTXT("payments", "shop"), "10.0.0.2")...),
			want:         []announced{{name: fullName(testName), key: orders, port: 50002, addrs: addrs("10.0.0.1"), ttl: 120}},
			wantProblems: []string{reasonName},
		},
		{
			name:        "address records of another host",
			rrs:         []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "printer.local.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 120}, A: net.IPv4(10, 0, 0, 9)}},
			wantForeign: 1,
		},
		{
			name:        "PTR of the service to a name outside it",
			rrs:         []dns.RR{&dns.PTR{Hdr: dns.RR_Header{Name: serviceName, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: 120}, Ptr: "x._ipp._tcp.local."}},
			wantForeign: 1,
		},
		{
			name: "cache-flush bit",
			rrs: func() []dns.RR {
				rrs := records(t, testName, 50002, stdTXT("orders", "shop"), "10.0.0.1")
				for _, rr := range rrs {
					rr.Header().Class |= 0x8000
				}
				return rrs
			}(),
			want: []announced{{name: fullName(testName), key: orders, port: 50002, addrs: addrs("10.0.0.1"), ttl: 120}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := readResponse(message(t, tt.rrs...), tt.zone)
			var reasons []string
			for _, p := range res.problems {
				reasons = append(reasons, p.reason)
			}
			if describe(res.instances) != describe(tt.want) || !slices.Equal(reasons, tt.wantProblems) || res.foreign != tt.wantForeign {
				t.Errorf("readResponse() = %+v, problems %q, %d foreign;\nwant %+v, problems %q, %d foreign",
					describe(res.instances), res.problems, res.foreign, describe(tt.want), tt.wantProblems, tt.wantForeign)
			}
		})
	}
}

func TestReadResponseHeader(t *testing.T) {
	m := message(t, records(t, testName, 50002, stdTXT("orders", "shop"), "10.0.0.1")...)
	m.Rcode = dns.RcodeNameError
	res := readResponse(m, "")
	if len(res.instances) != 0 || len(res.problems) != 1 || res.problems[0].reason != reasonHeader {
		t.Errorf("readResponse(NXDOMAIN) = %+v; want one %q problem", res, reasonHeader)
	}
}

func TestHeaderCheck(t *testing.T) {
	pack := func(m *dns.Msg) []byte {
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	query := new(dns.Msg)
	query.SetQuestion(serviceName, dns.TypePTR)
	answer := &dns.Msg{MsgHdr: dns.MsgHdr{Response: true}, Answer: records(t, testName, 50002, stdTXT("orders", "shop"), "10.0.0.1")}
	flood := &dns.Msg{MsgHdr: dns.MsgHdr{Response: true}}
	for i := range maxRecords + 1 {
		flood.Answer = append(flood.Answer, &dns.A{Hdr: dns.RR_Header{Name: "x.local.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1}, A: net.IPv4(10, 0, byte(i>>8), byte(i))})
	}
	tests := []struct {
		name       string
		p          []byte
		isResponse bool
		reason     string
	}{
		{"query", pack(query), false, ""},
		{"answer", pack(answer), true, ""},
		{"flood", pack(flood), true, reasonOversized},
		{"short", []byte{1, 2, 3}, false, reasonUnparsable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isResponse, pr := headerCheck(tt.p)
			reason := ""
			if pr != nil {
				reason = pr.reason
			}
			if isResponse != tt.isResponse || reason != tt.reason {
				t.Errorf("headerCheck() = %v, %q; want %v, %q", isResponse, reason, tt.isResponse, tt.reason)
			}
		})
	}
}

func TestParseTXT(t *testing.T) {
	tests := []struct {
		fields  []string
		want    key
		wantErr string
	}{
		{[]string{"txtvers=1", "appid=orders", "namespace=shop"}, key{"orders", "shop"}, ""},
		{[]string{"APPID=orders", "other=x", "flag"}, key{"orders", "default"}, ""},
		{[]string{`appid=a\"b\\c`}, key{}, "backslash"},
		{[]string{`appid=caf\195\169`}, key{"café", "default"}, ""},
		{[]string{"appid=" + strings.Repeat("a", 250)}, key{}, "longer than 249"},
		{[]string{"appid=a", "namespace="}, key{}, "empty namespace"},
		{[]string{"appid=a", "namespace=x", "namespace=y"}, key{}, "two namespaces"},
		{[]string{"appid=a", "txtvers=1", "txtvers=1"}, key{}, "txtvers"},
		{[]string{`appid=a\`}, key{}, "ends in a backslash"},
		{[]string{`appid=a\999`}, key{}, "bad escape"},
		{[]string{`appid=\255`}, key{}, "not UTF-8"},
		{nil, key{}, "no app-id"},
	}
	for _, tt := range tests {
		got, err := parseTXT(tt.fields)
		if got != tt.want || tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("parseTXT(%q) = %+v, %v; want %+v, %q", tt.fields, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestNameMatches(t *testing.T) {
	tests := []struct {
		label, appID string
		want         bool
	}{
		{testName, "orders", true},
		{"orders-v2-api-0123456789ab", "Orders.v2_api", true},
		{"app-0123456789ab", "...", true},
		{"orders-0123456789ab", "payments", false},
		{"orders-0123456789xy", "orders", false},
		{"orders0123456789ab", "orders", false},
		{"0123456789ab", "orders", false},
		{"orders-x-0123456789ab", "orders", false},
	}
	for _, tt := range tests {
		if got := nameMatches(fullName(tt.label), tt.appID); got != tt.want {
			t.Errorf("nameMatches(%q, %q) = %v; want %v", tt.label, tt.appID, got, tt.want)
		}
	}
	// Whatever instanceName makes matches.
	for _, appID := range []string{"orders", "ünïcode", strings.Repeat("x", 100), "a.b.c", "-"} {
		name, err := instanceName(appID)
		if err != nil {
			t.Fatal(err)
		}
		if !nameMatches(dns.CanonicalName(fullName(name)), appID) || !isInstanceName(dns.CanonicalName(fullName(name))) {
			t.Errorf("instanceName(%q) = %q, which the resolver does not take for the app's", appID, name)
		}
	}
}

// FuzzReadResponse feeds arbitrary packets through the whole reading path
// of a resolver: it must never panic, and an instance it learns must carry
// what the rules ask.
func FuzzReadResponse(f *testing.F) {
	pack := func(rrs ...dns.RR) []byte {
		b, err := (&dns.Msg{MsgHdr: dns.MsgHdr{Response: true}, Answer: rrs}).Pack()
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	f.Add(pack(records(f, testName, 50002, stdTXT("orders", "shop"), "10.0.0.1", "fe80::1")...))
	f.Add(pack(withTTL(records(f, testName, 50002, stdTXT("orders", "shop"), "10.0.0.1"), 0)...))
	f.Add(pack(records(f, "printer", 631, []string{"appid=x"}, "10.0.0.9")...))
	f.Add([]byte{0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, p []byte) {
		// The steps of Resolver.handle, without its recover: a panic
		// must fail the fuzz test, not be counted.
		r := newResolver(newConfig([]Option{WithLimits(4, 8)}))
		isResponse, pr := headerCheck(p)
		if pr != nil || !isResponse {
			return
		}
		var m dns.Msg
		if m.Unpack(p) != nil {
			return
		}
		r.apply(readResponse(&m, "eth0"), "fuzz", time.Now())
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, in := range r.instances {
			if in.port < 1 || len(in.addrs) == 0 || len(in.addrs) > maxAddrs || in.key.appID == "" || !nameMatches(in.name, in.key.appID) {
				t.Fatalf("learned %+v", in)
			}
		}
		if len(r.instances) > 8 {
			t.Fatalf("learned %d instances; the limit is 8", len(r.instances))
		}
	})
}
