package proxy

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Transparent interception: iptables rules in the app's network namespace
// redirect its outbound TCP to the sidecar's transparent listener, which
// learns each connection's original destination (SO_ORIGINAL_DST). A
// virtual address (127.77.0.0/16, named in the virtual hosts file) is an
// app: the connection is intercepted, its calls carried over the mesh. The
// sidecar's own API ports on loopback are served as the API. Anything else
// is joined, as TCP, to a connection the sidecar makes to its destination.

// VirtualPrefix is the range of the addresses that stand for apps.
var VirtualPrefix = netip.MustParsePrefix("127.77.0.0/16")

// DefaultTransparentPort is the transparent listener's port.
const DefaultTransparentPort = 15001

// virtualHosts maps the virtual addresses of a hosts file to app-ids,
// reading the file again when it changes (checked at most once a second).
type virtualHosts struct {
	path string

	mu      sync.Mutex
	byAddr  map[netip.Addr]string
	modTime time.Time
	checked time.Time
}

// lookup is the app-id at addr; "" for none.
func (v *virtualHosts) lookup(addr netip.Addr) string {
	if v == nil || v.path == "" {
		return ""
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if now := time.Now(); now.Sub(v.checked) > time.Second {
		v.checked = now
		if fi, err := os.Stat(v.path); err == nil && !fi.ModTime().Equal(v.modTime) {
			if m, err := readVirtualHosts(v.path); err == nil {
				v.byAddr, v.modTime = m, fi.ModTime()
			}
		}
	}
	return v.byAddr[addr]
}

// readVirtualHosts reads a hosts file: the first name on each line whose
// address is in VirtualPrefix is the app-id at that address.
func readVirtualHosts(path string) (map[netip.Addr]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[netip.Addr]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		a, err := netip.ParseAddr(fields[0])
		if err != nil || !VirtualPrefix.Contains(a) {
			continue
		}
		m[a] = strings.ToLower(fields[1])
	}
	return m, sc.Err()
}

// VirtualAddress is the address the i-th app (from 0) of a virtual hosts
// file gets: 127.77.0.2, 127.77.0.3, ...
func VirtualAddress(i int) (netip.Addr, error) {
	n := i + 2
	if n > 0xfffe {
		return netip.Addr{}, fmt.Errorf("more than %d apps", 0xfffe-2)
	}
	return netip.AddrFrom4([4]byte{127, 77, byte(n >> 8), byte(n)}), nil
}

// serveTransparent accepts the redirected connections of the app until
// the listener closes.
func (s *Sidecar) serveTransparent(l net.Listener) error {
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go s.takeTransparent(c)
	}
}

// takeTransparent routes one redirected connection by its original
// destination.
func (s *Sidecar) takeTransparent(c net.Conn) {
	dst, redirected, err := originalDst(c)
	if err != nil || !redirected {
		// Not sent here by the rules: nothing to route it by.
		s.stats.intercepted.WithLabelValues("transparent", "error").Inc()
		s.log.Debug("transparent listener: a connection without an original destination", "from", c.RemoteAddr().String(), "err", err)
		_ = c.Close()
		return
	}
	addr, _ := netip.AddrFromSlice(dst.IP.To4())
	if id := s.virtual.lookup(addr); id != "" {
		s.stats.intercepted.WithLabelValues("transparent", "mesh").Inc()
		if s.tcpPort(dst.Port) {
			s.tunnelToApp(c, c, id)
			return
		}
		s.intercepted.push(&interceptedConn{Conn: c, appID: id, r: c})
		return
	}
	if addr.IsLoopback() && s.ownAPI != nil {
		// The app's own calls to its sidecar's API (its namespace's
		// loopback is not the sidecar's).
		switch dst.Port {
		case s.ports.HTTP:
			s.ownAPI.push(c)
			return
		case s.ports.GRPC:
			s.ownGRPC.push(c)
			return
		}
	}
	if VirtualPrefix.Contains(addr) {
		// A virtual address no app has: refused, never sent anywhere.
		s.stats.intercepted.WithLabelValues("transparent", "error").Inc()
		s.log.Warn("transparent: no app has this virtual address", "address", dst.String())
		_ = c.Close()
		return
	}
	d := net.Dialer{Timeout: 10 * time.Second, Control: markControl}
	up, err := d.DialContext(s.life, "tcp", dst.String())
	if err != nil {
		s.stats.intercepted.WithLabelValues("transparent", "error").Inc()
		s.log.Debug("transparent pass-through: the destination did not answer", "address", dst.String(), "err", err)
		_ = c.Close()
		return
	}
	s.stats.intercepted.WithLabelValues("transparent", "passthrough").Inc()
	s.pipe(c, c, up)
}

// transparentAddr is where the transparent listener listens.
func (s *Sidecar) transparentAddr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.cfg.TransparentPort))
}

// appDialer is how the sidecar connects to its app: from inside the app's
// network namespace when it has one of its own.
func appDialer(cfg *Config, d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if cfg.AppNetns != "" {
		return netnsDialer(cfg.AppNetns, d)
	}
	return d.DialContext
}
