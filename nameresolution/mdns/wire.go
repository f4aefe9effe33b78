package mdns

import (
	"net"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// group is the mDNS group of one IP version.
type group struct {
	name    string // "IPv4", "IPv6"
	network string // "udp4", "udp6"
	v6      bool
	addr    *net.UDPAddr
}

// groups are the mDNS groups, IPv4 first.
var groups = [...]group{
	{"IPv4", "udp4", false, &net.UDPAddr{IP: net.IPv4(224, 0, 0, 251), Port: 5353}},
	{"IPv6", "udp6", true, &net.UDPAddr{IP: net.ParseIP("ff02::fb"), Port: 5353}},
}

// setMulticast makes c send multicast on iface (nil: the system's choice)
// with the TTL (hop limit) of 255 that RFC 6762 asks for, and loop it back
// to this host, where other sidecars may listen.
func setMulticast(c *net.UDPConn, v6 bool, iface *net.Interface) error {
	if v6 {
		p := ipv6.NewPacketConn(c)
		if iface != nil {
			if err := p.SetMulticastInterface(iface); err != nil {
				return err
			}
		}
		_ = p.SetMulticastHopLimit(255)
		_ = p.SetMulticastLoopback(true)
		return nil
	}
	p := ipv4.NewPacketConn(c)
	if iface != nil {
		if err := p.SetMulticastInterface(iface); err != nil {
			return err
		}
	}
	_ = p.SetMulticastTTL(255)
	_ = p.SetMulticastLoopback(true)
	return nil
}

// reader reads datagrams from c with the index of the interface each came
// in on (0 where the system does not tell).
type reader func(b []byte) (n, ifIndex int, src net.Addr, err error)

func newReader(c *net.UDPConn, v6 bool) reader {
	if v6 {
		p := ipv6.NewPacketConn(c)
		_ = p.SetControlMessage(ipv6.FlagInterface, true)
		return func(b []byte) (int, int, net.Addr, error) {
			n, cm, src, err := p.ReadFrom(b)
			if cm == nil {
				return n, 0, src, err
			}
			return n, cm.IfIndex, src, err
		}
	}
	p := ipv4.NewPacketConn(c)
	_ = p.SetControlMessage(ipv4.FlagInterface, true)
	return func(b []byte) (int, int, net.Addr, error) {
		n, cm, src, err := p.ReadFrom(b)
		if cm == nil {
			return n, 0, src, err
		}
		return n, cm.IfIndex, src, err
	}
}
