package mdns

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	hmdns "github.com/hashicorp/mdns"

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
// then stops answering and returns nil. The instance gets a name of its own
// (the app-id and a random suffix), so several instances of one app, on one
// host or many, are all found. When inst.Host is empty Announce advertises
// the interface's address (see WithInterface); otherwise inst.Host, looked
// up when it is a name. Resolvers drop a withdrawn instance when their TTL
// passes. Announce returns an error, at once, only when it cannot announce.
func (a *Announcer) Announce(ctx context.Context, inst nameresolution.Instance) error {
	ns := nameresolution.NamespaceOrDefault(inst.Namespace)
	if err := validInstance(inst.AppID, ns, inst.Port); err != nil {
		return fmt.Errorf("nameresolution/mdns: announcing %q: %v", inst.AppID, err)
	}
	ips, err := a.addresses(ctx, inst.Host)
	if err != nil {
		return fmt.Errorf("nameresolution/mdns: announcing %q: %v", inst.AppID, err)
	}
	name, err := instanceName(inst.AppID)
	if err != nil {
		return fmt.Errorf("nameresolution/mdns: announcing %q: %v", inst.AppID, err)
	}
	// A host name per instance keeps the A records of two instances on one
	// machine apart in hashicorp/mdns's client, which files them by host.
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
	<-ctx.Done()
	// Shutdown closes the sockets; the server's goroutines end on their
	// next read, which fails at once.
	_ = srv.Shutdown()
	log.Info("withdrawn")
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
	return nil
}

// instanceName returns a DNS label unique to one announcement: the app-id
// reduced to letters, digits and '-', and 12 random hex digits.
func instanceName(appID string) (string, error) {
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
	var suffix [6]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return "", err
	}
	return label + "-" + hex.EncodeToString(suffix[:]), nil
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
// hashicorp/mdns's client keeps a single address of each family per
// instance, so advertising more would only make the choice arbitrary.
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
