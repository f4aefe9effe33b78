//go:build !linux

package proxy

import (
	"context"
	"errors"
	"net"
	"syscall"
)

var errTransparentLinux = errors.New("transparent interception needs Linux (network namespaces, iptables); use the explicit proxy, --enable-explicit-proxy")

// InNetns needs Linux.
func InNetns(string, func() error) error { return errTransparentLinux }

func originalDst(net.Conn) (*net.TCPAddr, bool, error) { return nil, false, errTransparentLinux }

func listenIn(ctx context.Context, path, addr string) (net.Listener, error) {
	if path != "" {
		return nil, errTransparentLinux
	}
	var lc net.ListenConfig
	return lc.Listen(ctx, "tcp", addr)
}

func netnsDialer(string, *net.Dialer) func(context.Context, string, string) (net.Conn, error) {
	return func(context.Context, string, string) (net.Conn, error) { return nil, errTransparentLinux }
}

func markControl(string, string, syscall.RawConn) error { return nil }
