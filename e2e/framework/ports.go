package framework

import (
	"net"
	"sync"
	"testing"
)

var (
	portsMu sync.Mutex
	given   = map[int]bool{}
)

// reservePort keeps FreePort from handing out port (0: none).
func reservePort(port int) {
	if port == 0 {
		return
	}
	portsMu.Lock()
	given[port] = true
	portsMu.Unlock()
}

// FreePort returns a loopback TCP port that was free a moment ago and that
// this process has not handed out before.
func FreePort(t testing.TB) int {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("e2e: finding a free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		portsMu.Lock()
		dup := given[port]
		given[port] = true
		portsMu.Unlock()
		if !dup {
			return port
		}
	}
	t.Fatal("e2e: no fresh free port after 100 tries")
	return 0
}

// Listen opens a loopback listener on a fresh port and keeps it: the race
// between finding a port and binding it does not arise for the test's own apps.
func Listen(t testing.TB) net.Listener {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("e2e: listening on loopback: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		portsMu.Lock()
		dup := given[port]
		given[port] = true
		portsMu.Unlock()
		if !dup {
			return l
		}
		_ = l.Close()
	}
	t.Fatal("e2e: no fresh free port after 100 tries")
	return nil
}
