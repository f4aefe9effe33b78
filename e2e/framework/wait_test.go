package framework

import (
	"errors"
	"net"
	"strconv"
	"testing"
)

// A dial from port P to port P with nothing listening meets itself; the
// probe must not take that for a listener.
func TestDialListenerSelfConnect(t *testing.T) {
	port := FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}}
	if err := dialListener(d, addr); !errors.Is(err, ErrSelfConnect) {
		t.Fatalf("a dial from %s to itself: %v, want ErrSelfConnect", addr, err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := DialListener(l.Addr().String()); err != nil {
		t.Fatalf("a dial to a listener: %v", err)
	}
	_ = l.Close()
	if err := DialListener(l.Addr().String()); err == nil {
		t.Fatal("a dial to a closed port succeeded")
	}
}
