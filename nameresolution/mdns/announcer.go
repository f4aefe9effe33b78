package mdns

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	hmdns "github.com/hashicorp/mdns"
	"github.com/miekg/dns"

	"github.com/outrigger/outrigger/nameresolution"
)

// Announcer answers mDNS queries for ServiceType with one instance per
// Announce call. It is safe for concurrent use; each Announce is separate.
type Announcer struct {
	cfg config
}

// NewAnnouncer returns an Announcer. It honours WithInterface and WithLogger.
func NewAnnouncer(opts ...Option) *Announcer {
	return &Announcer{cfg: newConfig(opts)}
}

// Announce makes inst findable by Resolvers on the link until ctx is done,
// then withdraws it and returns nil. The instance gets a name of its own
// (the app-id and a random suffix), so several instances of one app, on one
// host or many, are all found. When inst.Host is empty Announce advertises
// an IPv4 and an IPv6 address of the interface (see WithInterface), those
// it has; otherwise inst.Host, looked up when it is a name.
//
// hashicorp/mdns's server answers the queries. Announce also multicasts the
// instance's records unsolicited, twice a second apart (RFC 6762, section
// 8.3), so that Resolvers already listening learn it at once, and when ctx
// is done sends them again with TTL 0, a goodbye (section 10.1), so that
// they drop it at once; hashicorp/mdns does neither. A Resolver that misses
// the goodbye drops the instance when its TTL runs out. Announce returns an
// error, at once, only when it cannot announce.
func (a *Announcer) Announce(ctx context.Context, inst nameresolution.Instance) error {
	ns := nameresolution.NamespaceOrDefault(inst.Namespace)
	if err := validInstance(inst.AppID, ns, inst.Port); err != nil {
		return fmt.Errorf("nameresolution/mdns: announcing %q: %v", inst.AppID, err)
	}
	ips, err := a.addresses(ctx, inst.Host)
	if err != nil {
		return fmt.Errorf("nameresolution/mdns: announcing %q: %v", inst.AppID, err)
	}
	if len(ips) > maxAddrs {
		// Resolvers keep no more, and drop a response with too many
		// records as a flood.
		a.cfg.logger.Warn("the host has too many addresses; announcing the first", "host", inst.Host, "addresses", len(ips), "announced", maxAddrs)
		ips = ips[:maxAddrs]
	}
	name, err := instanceName(inst.AppID)
	if err != nil {
		return fmt.Errorf("nameresolution/mdns: announcing %q: %v", inst.AppID, err)
	}
	// A host name per instance keeps the address records of two instances
	// on one machine apart.
	host := name + "." + domain
	txt := []string{txtVersion, txtAppID + inst.AppID, txtNamespace + ns}
	svc, err := hmdns.NewMDNSService(name, ServiceType, domain, host, inst.Port, ips, txt)
	if err != nil {
		return fmt.Errorf("nameresolution/mdns: announcing %q: %v", inst.AppID, err)
	}
	srv, err := hmdns.NewServer(&hmdns.Config{Zone: svc, Iface: a.cfg.iface, Logger: a.cfg.stdLogger()})
	if err != nil {
		return fmt.Errorf("nameresolution/mdns: announcing %q: %v", inst.AppID, err)
	}
	log := a.cfg.logger.With("resolver", "mdns", "instance", name, "appID", inst.AppID, "namespace", ns)
	log.Info("announcing", "ips", ips, "port", inst.Port)
	// The answer to a query for the service: PTR, SRV, A, AAAA and TXT.
	records := svc.Records(dns.Question{Name: serviceName, Qtype: dns.TypePTR, Qclass: dns.ClassINET})
	a.multicast(log, "announcement", records)
	again := time.NewTimer(time.Second)
	select {
	case <-ctx.Done():
		again.Stop()
	case <-again.C:
		a.multicast(log, "announcement", records)
		<-ctx.Done()
	}
	// Shutdown closes the sockets; the server's goroutines end on their
	// next read, which fails at once. No answer leaves after the goodbye.
	_ = srv.Shutdown()
	for _, rr := range records {
		rr.Header().Ttl = 0
	}
	a.multicast(log, "goodbye", records)
	log.Info("withdrawn")
	return nil
}

// multicast sends records, as an unsolicited response, to the mDNS group of
// each IP version the host can send on. Failures are logged: a host without
// IPv6 (or IPv4) multicast is normal, and Resolvers that miss the packet
// learn the same thing later by querying, or by the TTL.
func (a *Announcer) multicast(log *slog.Logger, what string, records []dns.RR) {
	m := &dns.Msg{MsgHdr: dns.MsgHdr{Response: true, Authoritative: true}, Compress: true, Answer: records}
	buf, err := m.Pack()
	if err != nil {
		log.Warn("cannot pack the "+what, "err", err)
		return
	}
	var errs []error
	for _, g := range groups {
		if err := sendTo(g, a.cfg.iface, buf); err != nil {
			errs = append(errs, err)
		}
	}
	switch {
	case len(errs) == len(groups):
		log.Warn("cannot multicast the "+what, "err", errors.Join(errs...))
	case len(errs) > 0:
		log.Debug("multicast the "+what+" over one IP version only", "err", errors.Join(errs...))
	}
}

// sendTo sends one packet to g's group from a socket of its own.
func sendTo(g group, iface *net.Interface, buf []byte) error {
	c, err := net.ListenUDP(g.network, nil)
	if err != nil {
		return fmt.Errorf("%s: %v", g.name, err)
	}
	defer c.Close()
	if err := setMulticast(c, g.v6, iface); err != nil {
		return fmt.Errorf("%s: %v", g.name, err)
	}
	if _, err := c.WriteToUDP(buf, g.addr); err != nil {
		return fmt.Errorf("%s: %v", g.name, err)
	}
	return nil
}

// validInstance checks what goes into the records.
func validInstance(appID, namespace string, port int) error {
	switch {
	case appID == "":
		return errors.New("empty app-id")
	case len(txtAppID)+len(appID) > txtMax:
		return fmt.Errorf("app-id longer than %d bytes", txtMax-len(txtAppID))
	case len(txtNamespace)+len(namespace) > txtMax:
		return fmt.Errorf("namespace longer than %d bytes", txtMax-len(txtNamespace))
	case port < 1 || port > 65535:
		return fmt.Errorf("port %d is not from 1 to 65535", port)
	}
	// What a Resolver would refuse (see parseTXT).
	if err := checkText("app-id", appID, txtMax-len(txtAppID)); err != nil {
		return err
	}
	return checkText("namespace", namespace, txtMax-len(txtNamespace))
}

// instanceName returns a DNS label unique to one announcement: nameLabel
// of the app-id, a dash and 12 random hex digits. A Resolver checks that an
// instance's name is one that its app-id could have made.
func instanceName(appID string) (string, error) {
	var suffix [6]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return "", err
	}
	return nameLabel(appID) + "-" + hex.EncodeToString(suffix[:]), nil
}

// nameLabel reduces an app-id to at most 40 letters, digits and dashes,
// not starting or ending with a dash: "app" when nothing is left.
func nameLabel(appID string) string {
	var b strings.Builder
	for _, c := range appID {
		if b.Len() == 40 {
			break
		}
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' {
			b.WriteRune(c)
		} else {
			b.WriteByte('-')
		}
	}
	label := strings.Trim(b.String(), "-")
	if label == "" {
		label = "app"
	}
	return label
}

// addresses returns the IPs to advertise: host's when it is given, else one
// IPv4 and one IPv6 address of the interfaces (see interfaceAddresses).
func (a *Announcer) addresses(ctx context.Context, host string) ([]net.IP, error) {
	if host != "" {
		if ip, err := netip.ParseAddr(host); err == nil {
			return []net.IP{ip.AsSlice()}, nil
		}
		found, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, fmt.Errorf("looking up host %q: %v", host, err)
		}
		ips := make([]net.IP, 0, len(found))
		for _, ip := range found {
			ips = append(ips, ip.Unmap().AsSlice())
		}
		return ips, nil
	}
	var ifaces []net.Interface
	if a.cfg.iface != nil {
		ifaces = []net.Interface{*a.cfg.iface}
	} else {
		all, err := net.Interfaces()
		if err != nil {
			return nil, err
		}
		for _, ifc := range all {
			if ifc.Flags&net.FlagUp != 0 && ifc.Flags&net.FlagMulticast != 0 && ifc.Flags&net.FlagLoopback == 0 {
				ifaces = append(ifaces, ifc)
			}
		}
		if len(ifaces) == 0 {
			// A host whose only multicast link is loopback: sidecars on
			// it find each other there.
			for _, ifc := range all {
				if ifc.Flags&net.FlagUp != 0 && ifc.Flags&net.FlagLoopback != 0 {
					ifaces = append(ifaces, ifc)
				}
			}
		}
	}
	ips, err := interfaceAddresses(ifaces)
	if err != nil {
		return nil, err
	}
	if len(ips) == 0 {
		return nil, errors.New("no interface address to advertise; set the instance host or an interface")
	}
	return ips, nil
}

// interfaceAddresses picks at most one IPv4 and one IPv6 address from
// ifaces, in interface order, preferring routable ones to link-local ones.
// A Resolver dials one address per instance, so advertising more would only
// make its choice arbitrary.
func interfaceAddresses(ifaces []net.Interface) ([]net.IP, error) {
	var v4, v4LinkLocal, v6, v6LinkLocal netip.Addr
	for _, ifc := range ifaces {
		addrs, err := ifc.Addrs()
		if err != nil {
			return nil, fmt.Errorf("addresses of %s: %v", ifc.Name, err)
		}
		for _, addr := range addrs {
			prefix, err := netip.ParsePrefix(addr.String())
			if err != nil {
				continue
			}
			ip := prefix.Addr().Unmap()
			switch {
			case ip.Is4() && ip.IsLinkLocalUnicast():
				if !v4LinkLocal.IsValid() {
					v4LinkLocal = ip
				}
			case ip.Is4():
				if !v4.IsValid() {
					v4 = ip
				}
			case ip.IsLinkLocalUnicast():
				// The resolver borrows the zone from the packet that
				// carried the answer, so a link-local address works.
				if !v6LinkLocal.IsValid() {
					v6LinkLocal = ip.WithZone("")
				}
			default:
				if !v6.IsValid() {
					v6 = ip
				}
			}
		}
	}
	var ips []net.IP
	for _, pair := range [][2]netip.Addr{{v4, v4LinkLocal}, {v6, v6LinkLocal}} {
		switch {
		case pair[0].IsValid():
			ips = append(ips, pair[0].AsSlice())
		case pair[1].IsValid():
			ips = append(ips, pair[1].AsSlice())
		}
	}
	return ips, nil
}

var _ nameresolution.Announcer = (*Announcer)(nil)
