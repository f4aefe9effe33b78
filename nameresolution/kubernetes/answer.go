package kubernetes

import (
	"errors"
	"fmt"
	"math"
	"net/netip"

	"github.com/miekg/dns"
)

// answer is what one DNS response says about the name asked.
type answer struct {
	// none: the name does not exist (NXDOMAIN) or has no record of the
	// type asked (NODATA). addrs and srvs are then empty.
	none bool
	// addrs are the addresses of an A or AAAA answer.
	addrs []netip.Addr
	// srvs are the records of an SRV answer.
	srvs []srv
	// alias is the end of a CNAME chain from the name asked that the
	// answer gives no record for: the name to ask about next.
	alias string
	// extra are the addresses the additional section gives for SRV
	// targets, by target name (canonical).
	extra map[string][]netip.Addr
	// extraTTL is the smallest TTL of the records in extra, by target.
	extraTTL map[string]uint32
	// ttl is the smallest TTL of the records used, or the negative-caching
	// TTL of a none answer; noTTL when the answer gives none.
	ttl uint32
	// foreign counts records ignored because their owner name is not the
	// name asked (nor the target of a CNAME chain from it).
	foreign int
}

// srv is one usable SRV record.
type srv struct {
	target   string // canonical: lower case, final dot
	port     uint16
	priority uint16
}

// noTTL marks an answer that said nothing about how long to keep it.
const noTTL = math.MaxUint32

// errForeign is the error of an answer whose records are all about other names.
var errForeign = errors.New("every record of the answer is about another name")

// parseResponse unpacks a raw DNS response to a query for qname and qtype and
// interprets it; the fuzz tests call it.
func parseResponse(raw []byte, qname string, qtype uint16) (answer, error) {
	var m dns.Msg
	if err := m.Unpack(raw); err != nil {
		return answer{}, fmt.Errorf("malformed answer: %w", err)
	}
	return interpret(&m, qname, qtype)
}

// interpret reads a response to a query for qname and qtype (A, AAAA or SRV).
// A response that does not answer that question, that is truncated, or whose
// rcode is neither NOERROR nor NXDOMAIN is an error. Records whose owner name
// is neither qname nor reached from it by a CNAME chain within the answer are
// ignored and counted; when the answer holds only such records it is an error.
func interpret(m *dns.Msg, qname string, qtype uint16) (answer, error) {
	qname = dns.CanonicalName(qname)
	switch {
	case !m.Response:
		return answer{}, errors.New("the message is a query, not an answer")
	case m.Opcode != dns.OpcodeQuery:
		return answer{}, fmt.Errorf("answer with opcode %s", opcodeString(m.Opcode))
	case len(m.Question) != 1:
		return answer{}, fmt.Errorf("answer with %d questions, want 1", len(m.Question))
	case dns.CanonicalName(m.Question[0].Name) != qname || m.Question[0].Qtype != qtype || m.Question[0].Qclass != dns.ClassINET:
		return answer{}, fmt.Errorf("answer to another question (%s %s), not %s %s",
			m.Question[0].Name, typeString(m.Question[0].Qtype), qname, typeString(qtype))
	case m.Truncated:
		return answer{}, errors.New("truncated answer")
	}
	switch m.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return answer{none: true, ttl: negativeTTL(m, qname)}, nil
	default:
		return answer{}, fmt.Errorf("the server answered %s", rcodeString(m.Rcode))
	}

	a := answer{ttl: noTTL}
	// The names that stand for qname: qname and the names of the CNAME
	// chain that starts at it, at most as many links as the answer has
	// records.
	cnames := map[string]*dns.CNAME{}
	for _, rr := range m.Answer {
		if c, ok := rr.(*dns.CNAME); ok && c.Hdr.Class == dns.ClassINET {
			if o := dns.CanonicalName(c.Hdr.Name); cnames[o] == nil {
				cnames[o] = c
			}
		}
	}
	names := map[string]bool{qname: true}
	end := qname
	for range len(cnames) {
		c := cnames[end]
		if c == nil {
			break
		}
		t := dns.CanonicalName(c.Target)
		if names[t] {
			return answer{}, fmt.Errorf("the answer's CNAME chain from %s loops at %s", qname, t)
		}
		names[t] = true
		a.ttl = min(a.ttl, c.Hdr.Ttl)
		end = t
	}

	used := 0
	for _, rr := range m.Answer {
		h := rr.Header()
		if !names[dns.CanonicalName(h.Name)] {
			a.foreign++
			continue
		}
		if h.Class != dns.ClassINET || h.Rrtype != qtype {
			continue // the CNAMEs of the chain, signatures, ...
		}
		switch r := rr.(type) {
		case *dns.A:
			if ip, ok := usableAddr(r.A); ok && ip.Is4() {
				a.addrs = append(a.addrs, ip)
				a.ttl = min(a.ttl, h.Ttl)
				used++
			}
		case *dns.AAAA:
			if ip, ok := usableAddr(r.AAAA); ok {
				a.addrs = append(a.addrs, ip)
				a.ttl = min(a.ttl, h.Ttl)
				used++
			}
		case *dns.SRV:
			t := dns.CanonicalName(r.Target)
			if r.Port == 0 || t == "." {
				// "." says the service is decidedly not available here.
				continue
			}
			a.srvs = append(a.srvs, srv{target: t, port: r.Port, priority: r.Priority})
			a.ttl = min(a.ttl, h.Ttl)
			used++
		}
	}

	if len(a.srvs) > 0 {
		targets := map[string]bool{}
		for _, s := range a.srvs {
			targets[s.target] = true
		}
		for _, rr := range m.Extra {
			h := rr.Header()
			if h.Class != dns.ClassINET || (h.Rrtype != dns.TypeA && h.Rrtype != dns.TypeAAAA) {
				continue // OPT, and whatever else
			}
			owner := dns.CanonicalName(h.Name)
			if !targets[owner] {
				a.foreign++
				continue
			}
			var ip netip.Addr
			var ok bool
			switch r := rr.(type) {
			case *dns.A:
				ip, ok = usableAddr(r.A)
				ok = ok && ip.Is4()
			case *dns.AAAA:
				ip, ok = usableAddr(r.AAAA)
			}
			if !ok {
				continue
			}
			if a.extra == nil {
				a.extra = map[string][]netip.Addr{}
				a.extraTTL = map[string]uint32{}
			}
			a.extra[owner] = append(a.extra[owner], ip)
			if t, seen := a.extraTTL[owner]; !seen || h.Ttl < t {
				a.extraTTL[owner] = h.Ttl
			}
		}
	}

	if used == 0 {
		if a.foreign > 0 {
			return a, errForeign
		}
		if end != qname {
			// The chain leads out of what this server answered: the
			// caller asks about its end.
			return answer{alias: end, ttl: a.ttl}, nil
		}
		return answer{none: true, ttl: negativeTTL(m, qname)}, nil
	}
	return a, nil
}

// usableAddr converts a record's address, refusing what no instance can
// listen on.
func usableAddr(b []byte) (netip.Addr, bool) {
	ip, ok := netip.AddrFromSlice(b)
	if !ok {
		return netip.Addr{}, false
	}
	ip = ip.Unmap()
	if ip.IsUnspecified() || ip.IsMulticast() {
		return netip.Addr{}, false
	}
	return ip, true
}

// negativeTTL is how long a negative answer may be cached (RFC 2308): the
// smaller of the SOA record's TTL and its MINIMUM field, for a SOA of a zone
// that holds qname; noTTL when the answer has none.
func negativeTTL(m *dns.Msg, qname string) uint32 {
	ttl := uint32(noTTL)
	for _, rr := range m.Ns {
		soa, ok := rr.(*dns.SOA)
		if !ok || soa.Hdr.Class != dns.ClassINET || !dns.IsSubDomain(dns.CanonicalName(soa.Hdr.Name), qname) {
			continue
		}
		ttl = min(ttl, soa.Hdr.Ttl, soa.Minttl)
	}
	return ttl
}

func rcodeString(c int) string {
	if s, ok := dns.RcodeToString[c]; ok {
		return s
	}
	return fmt.Sprintf("rcode %d", c)
}

func opcodeString(c int) string {
	if s, ok := dns.OpcodeToString[c]; ok {
		return s
	}
	return fmt.Sprintf("%d", c)
}

func typeString(t uint16) string {
	if s, ok := dns.TypeToString[t]; ok {
		return s
	}
	return fmt.Sprintf("TYPE%d", t)
}
