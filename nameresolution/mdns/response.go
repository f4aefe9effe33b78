package mdns

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/miekg/dns"

	"github.com/outrigger/outrigger/nameresolution"
)

// maxRecords is the most records one response may carry; an Announcer's
// carries about six. A response with more is a flood and is dropped whole,
// before it is unpacked.
const maxRecords = 64

// maxAddrs is the most addresses the Resolver keeps for one instance.
const maxAddrs = 8

// maxPacket is the largest mDNS message (RFC 6762, section 17).
const maxPacket = 9000

// Why an answer was dropped; each is a Stats counter and a log line.
const (
	reasonUnparsable = "not a DNS message"
	reasonOversized  = "too many records (a flood?)"
	reasonHeader     = "opcode or rcode not zero"
	reasonIncomplete = "no SRV or TXT record for the instance"
	reasonAmbiguous  = "several SRV or TXT records for one instance"
	reasonTXT        = "malformed TXT record"
	reasonPort       = "port 0"
	reasonName       = "instance name does not match the app-id"
	reasonAddress    = "no usable address"
	reasonForeign    = "records about another service"
	reasonLimit      = "instance limit reached"
	reasonStale      = "answer about an instance that said goodbye"
)

// announced is what one response says about one Outrigger instance.
type announced struct {
	name    string // instance name, canonical
	goodbye bool   // the instance is withdrawn; nothing else is set
	key     key
	port    int
	addrs   []netip.Addr // unicast, sorted, with the zone of a link-local IPv6 address
	ttl     uint32       // the smallest TTL of the records used, in seconds
}

// problem is one thing wrong in a response.
type problem struct {
	reason string
	detail string
}

// response is what the Resolver takes from one mDNS response.
type response struct {
	instances []announced
	problems  []problem
	// foreign counts records about other names than Outrigger's; a LAN
	// carries many, so they are not problems.
	foreign int
}

// headerCheck looks at a packet's header before it is unpacked: it returns
// false for a query (nothing to learn), and a problem for a packet that is
// no DNS message or that carries more than maxRecords records.
func headerCheck(p []byte) (isResponse bool, pr *problem) {
	if len(p) < 12 {
		return false, &problem{reasonUnparsable, fmt.Sprintf("%d bytes", len(p))}
	}
	if p[2]&0x80 == 0 {
		return false, nil
	}
	n := int(binary.BigEndian.Uint16(p[6:])) + int(binary.BigEndian.Uint16(p[8:])) + int(binary.BigEndian.Uint16(p[10:]))
	if n > maxRecords {
		return true, &problem{reasonOversized, fmt.Sprintf("%d records", n)}
	}
	return true, nil
}

// readResponse reads what m, an mDNS response, says about Outrigger
// instances. zone is the zone given to link-local IPv6 addresses: the
// interface the response came in on. It never fails as a whole: every
// record it cannot use is a problem or counted as foreign.
func readResponse(m *dns.Msg, zone string) response {
	var res response
	if m.Opcode != dns.OpcodeQuery || m.Rcode != dns.RcodeSuccess {
		res.problems = append(res.problems, problem{reasonHeader, fmt.Sprintf("opcode %d, rcode %d", m.Opcode, m.Rcode)})
		return res
	}
	type addrRR struct {
		addr netip.Addr
		ttl  uint32
	}
	var (
		names = map[string]bool{} // instance names, in the order first seen
		order []string
		ptrs  = map[string]uint32{}
		srvs  = map[string][]*dns.SRV{}
		txts  = map[string][]*dns.TXT{}
		hosts = map[string][]addrRR{}
	)
	seen := func(name string) {
		if !names[name] {
			names[name] = true
			order = append(order, name)
		}
	}
	// The authority section carries records only in probes, which are
	// queries; answers and additional records are read alike.
	for _, rrs := range [][]dns.RR{m.Answer, m.Extra} {
		for _, rr := range rrs {
			h := rr.Header()
			if h.Class&0x7fff != dns.ClassINET {
				res.foreign++
				continue
			}
			owner := dns.CanonicalName(h.Name)
			switch rr := rr.(type) {
			case *dns.PTR:
				target := dns.CanonicalName(rr.Ptr)
				if owner != serviceName || !isInstanceName(target) {
					res.foreign++
					continue
				}
				if ttl, ok := ptrs[target]; !ok || rr.Hdr.Ttl < ttl {
					ptrs[target] = rr.Hdr.Ttl
				}
				seen(target)
			case *dns.SRV:
				if !isInstanceName(owner) {
					res.foreign++
					continue
				}
				srvs[owner] = append(srvs[owner], rr)
				seen(owner)
			case *dns.TXT:
				if !isInstanceName(owner) {
					res.foreign++
					continue
				}
				txts[owner] = append(txts[owner], rr)
				seen(owner)
			case *dns.A:
				if a, ok := netip.AddrFromSlice(rr.A); ok {
					hosts[owner] = append(hosts[owner], addrRR{a.Unmap(), rr.Hdr.Ttl})
				}
			case *dns.AAAA:
				if a, ok := netip.AddrFromSlice(rr.AAAA); ok {
					hosts[owner] = append(hosts[owner], addrRR{a.Unmap(), rr.Hdr.Ttl})
				}
			default:
				// NSEC and the like about an instance are no news;
				// anything else is someone else's.
				if !isInstanceName(owner) {
					res.foreign++
				}
			}
		}
	}

	usedHosts := map[string]bool{}
	for _, rrs := range srvs {
		for _, srv := range rrs {
			usedHosts[dns.CanonicalName(srv.Target)] = true
		}
	}
	for _, name := range order {
		pr := func(reason, format string, args ...any) {
			res.problems = append(res.problems, problem{reason, name + ": " + fmt.Sprintf(format, args...)})
		}
		ptrTTL, hasPTR := ptrs[name]
		s, t := srvs[name], txts[name]
		if hasPTR && ptrTTL == 0 || slices.ContainsFunc(s, func(r *dns.SRV) bool { return r.Hdr.Ttl == 0 }) ||
			slices.ContainsFunc(t, func(r *dns.TXT) bool { return r.Hdr.Ttl == 0 }) {
			res.instances = append(res.instances, announced{name: name, goodbye: true})
			continue
		}
		if len(s) == 0 || len(t) == 0 {
			pr(reasonIncomplete, "%d SRV, %d TXT", len(s), len(t))
			continue
		}
		if !allSame(s, sameSRV) || !allSame(t, sameTXT) {
			pr(reasonAmbiguous, "%d SRV, %d TXT", len(s), len(t))
			continue
		}
		srv, txt := s[0], t[0]
		k, err := parseTXT(txt.Txt)
		if err != nil {
			pr(reasonTXT, "%v", err)
			continue
		}
		if !nameMatches(name, k.appID) {
			pr(reasonName, "app-id %q", k.appID)
			continue
		}
		if srv.Port == 0 {
			pr(reasonPort, "app-id %q", k.appID)
			continue
		}
		target := dns.CanonicalName(srv.Target)
		ttl := min(srv.Hdr.Ttl, txt.Hdr.Ttl)
		if hasPTR {
			ttl = min(ttl, ptrTTL)
		}
		var addrs []netip.Addr
		withdrawn := 0
		for _, a := range hosts[target] {
			addr, ok := usable(a.addr, zone)
			switch {
			case !ok:
			case a.ttl == 0:
				withdrawn++
			case !slices.Contains(addrs, addr):
				addrs = append(addrs, addr)
				ttl = min(ttl, a.ttl)
			}
		}
		if len(addrs) == 0 {
			if withdrawn > 0 {
				// Every address said goodbye: so did the instance.
				res.instances = append(res.instances, announced{name: name, goodbye: true})
				continue
			}
			pr(reasonAddress, "app-id %q, %d address records for %s", k.appID, len(hosts[target]), target)
			continue
		}
		slices.SortFunc(addrs, func(a, b netip.Addr) int { return a.Compare(b) })
		if len(addrs) > maxAddrs {
			addrs = addrs[:maxAddrs]
		}
		res.instances = append(res.instances, announced{name: name, key: k, port: int(srv.Port), addrs: addrs, ttl: ttl})
	}
	for h, rrs := range hosts {
		if !usedHosts[h] {
			res.foreign += len(rrs)
		}
	}
	return res
}

func sameSRV(a, b *dns.SRV) bool {
	return a.Port == b.Port && dns.CanonicalName(a.Target) == dns.CanonicalName(b.Target)
}

func sameTXT(a, b *dns.TXT) bool { return slices.Equal(a.Txt, b.Txt) }

// allSame reports whether every element of s, which is not empty, is the
// same as the first.
func allSame[T any](s []T, eq func(a, b T) bool) bool {
	for _, x := range s[1:] {
		if !eq(s[0], x) {
			return false
		}
	}
	return true
}

// usable returns the address a resolver can dial, or false for one it
// cannot: unspecified, multicast, broadcast, or link-local IPv6 with no
// zone to put on it.
func usable(a netip.Addr, zone string) (netip.Addr, bool) {
	switch {
	case !a.IsValid(), a.IsUnspecified(), a.IsMulticast(), a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return netip.Addr{}, false
	case a.Is6() && a.IsLinkLocalUnicast():
		if zone == "" {
			return netip.Addr{}, false
		}
		return a.WithZone(zone), true
	}
	return a, true
}

// isInstanceName reports whether name, canonical, is one label under
// serviceName whose characters an Announcer may use.
func isInstanceName(name string) bool {
	label, ok := strings.CutSuffix(name, "."+serviceName)
	if !ok || label == "" {
		return false
	}
	for i := range len(label) {
		if c := label[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// nameMatches reports whether name, an instance name in canonical form, is
// one instanceName could have made for appID: its label reduced to a DNS
// label, a dash and 12 hex digits.
func nameMatches(name, appID string) bool {
	label, ok := strings.CutSuffix(name, "."+serviceName)
	if !ok || len(label) < 13 {
		return false
	}
	base, hex := label[:len(label)-13], label[len(label)-13:]
	if hex[0] != '-' {
		return false
	}
	for i := 1; i < len(hex); i++ {
		if c := hex[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return base == strings.ToLower(nameLabel(appID))
}

// parseTXT reads an instance's TXT strings, as miekg/dns unpacks them
// (presentation format, with \DDD escapes): exactly one non-empty appid,
// at most one namespace, and txtvers=1 when it is there. Keys are case
// insensitive (RFC 6763, section 6.4); other keys are ignored.
func parseTXT(fields []string) (key, error) {
	var (
		k                    key
		hasApp, hasNS, hasVx bool
	)
	for _, f := range fields {
		f, err := unescapeTXT(f)
		if err != nil {
			return key{}, err
		}
		name, value, _ := strings.Cut(f, "=")
		switch strings.ToLower(name) {
		case "txtvers":
			if hasVx || value != "1" {
				return key{}, fmt.Errorf("txtvers %q: want one txtvers=1", value)
			}
			hasVx = true
		case "appid":
			if hasApp {
				return key{}, errors.New("two app-ids")
			}
			hasApp, k.appID = true, value
		case "namespace":
			if hasNS {
				return key{}, errors.New("two namespaces")
			}
			hasNS, k.namespace = true, value
		}
	}
	if k.appID == "" {
		return key{}, errors.New("no app-id")
	}
	if err := checkText("app-id", k.appID, txtMax-len(txtAppID)); err != nil {
		return key{}, err
	}
	if hasNS {
		if k.namespace == "" {
			return key{}, errors.New("empty namespace")
		}
		if err := checkText("namespace", k.namespace, txtMax-len(txtNamespace)); err != nil {
			return key{}, err
		}
	}
	k.namespace = nameresolution.NamespaceOrDefault(k.namespace)
	return k, nil
}

// checkText checks an app-id or a namespace: at most max bytes of UTF-8
// without control characters or backslashes.
func checkText(what, s string, max int) error {
	switch {
	case len(s) > max:
		return fmt.Errorf("%s of %d bytes, longer than %d", what, len(s), max)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s %q is not UTF-8", what, s)
	case strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) || r == '\\' }):
		return fmt.Errorf("%s %q holds a control character or a backslash", what, s)
	}
	return nil
}

// unescapeTXT turns a TXT string from miekg/dns's presentation format
// (\DDD for a byte, \X for X) back to its bytes.
func unescapeTXT(s string) (string, error) {
	i := strings.IndexByte(s, '\\')
	if i < 0 {
		return s, nil
	}
	b := make([]byte, 0, len(s))
	b = append(b, s[:i]...)
	for ; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			b = append(b, c)
			continue
		}
		switch {
		case i+3 < len(s) && isDigits(s[i+1:i+4]):
			n, _ := strconv.Atoi(s[i+1 : i+4])
			if n > 255 {
				return "", fmt.Errorf("bad escape \\%s in a TXT string", s[i+1:i+4])
			}
			b = append(b, byte(n))
			i += 3
		case i+1 < len(s):
			b = append(b, s[i+1])
			i++
		default:
			return "", errors.New("a TXT string ends in a backslash")
		}
	}
	return string(b), nil
}

func isDigits(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
