package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/outrigger/outrigger/proxy/iptables"
)

// originalDst is where a connection that iptables redirected to this
// sidecar was going (SO_ORIGINAL_DST); ok is false for a connection that
// was not redirected.
func originalDst(c net.Conn) (dst *net.TCPAddr, ok bool, err error) {
	tc, isTCP := c.(*net.TCPConn)
	if !isTCP {
		return nil, false, errors.New("not a TCP connection")
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return nil, false, err
	}
	var gerr error
	cerr := raw.Control(func(fd uintptr) {
		// The kernel answers a sockaddr_in, read here through the
		// IPv6 multicast-request shape that has room for it.
		mreq, err := unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST)
		if err != nil {
			gerr = err
			return
		}
		a := mreq.Multiaddr
		dst = &net.TCPAddr{IP: net.IPv4(a[4], a[5], a[6], a[7]), Port: int(a[2])<<8 | int(a[3])}
	})
	if cerr != nil {
		return nil, false, cerr
	}
	if gerr != nil {
		if errors.Is(gerr, unix.ENOENT) {
			return nil, false, nil // no NAT entry: a direct connection
		}
		return nil, false, gerr
	}
	local, _ := c.LocalAddr().(*net.TCPAddr)
	if local != nil && local.IP.Equal(dst.IP) && local.Port == dst.Port {
		return dst, false, nil
	}
	return dst, true, nil
}

// InNetns runs fn on an OS thread moved into the network namespace at path
// (e.g. /var/run/netns/NAME): the sockets fn opens live there for their
// whole life, whichever thread later uses them. The thread goes back to
// the caller's namespace before other goroutines may use it; if it cannot,
// it ends with fn's goroutine (so a child process started from it with
// Pdeathsig would die: start none in fn).
func InNetns(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		home, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer home.Close()
		target, err := os.Open(path)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("the app's network namespace: %w", err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("entering the app's network namespace %s: %w (transparent interception needs CAP_NET_ADMIN; the explicit proxy, --enable-explicit-proxy, needs no privilege)", path, err)
			return
		}
		err = fn()
		if unix.Setns(int(home.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		} // else the thread ends with this goroutine
		errc <- err
	}()
	return <-errc
}

// listenIn opens a TCP listener at addr inside the namespace at path, or
// in the sidecar's own when path is empty.
func listenIn(ctx context.Context, path, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	if path == "" {
		return lc.Listen(ctx, "tcp", addr)
	}
	var l net.Listener
	err := InNetns(path, func() error {
		var err error
		l, err = lc.Listen(ctx, "tcp", addr)
		return err
	})
	return l, err
}

// netnsDialer dials from inside the namespace at path.
func netnsDialer(path string, d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := InNetns(path, func() error {
			var err error
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// markControl marks the socket of a pass-through connection (SO_MARK) so
// that the interception rules leave it alone, however the sidecar's own
// traffic is otherwise told apart; without CAP_NET_ADMIN the mark is not
// set, and the rules must exclude the sidecar by owner.
func markControl(_, _ string, c syscall.RawConn) error {
	return c.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, iptables.PassthroughMark)
	})
}
