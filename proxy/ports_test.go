package proxy

import (
	"errors"
	"net"
	"strings"
	"testing"
)

// listeners returns a listen func that hands out ls in order.
func listeners(ls ...net.Listener) func() (net.Listener, error) {
	return func() (net.Listener, error) {
		if len(ls) == 0 {
			return nil, errors.New("no more listeners")
		}
		l := ls[0]
		ls = ls[1:]
		return l, nil
	}
}

func loopback(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// closed reports whether l was closed: Accept on a closed listener fails
// at once with net.ErrClosed.
func closed(l net.Listener) bool {
	_, err := l.Accept()
	return errors.Is(err, net.ErrClosed)
}

func TestListenPassingOverReservedPort(t *testing.T) {
	first, second := loopback(t), loopback(t)
	got, err := listenPassingOver(map[int]bool{portOf(first): true}, 0, listeners(first, second))
	if err != nil {
		t.Fatal(err)
	}
	if got != second {
		t.Fatalf("got the listener on %d, want the one on %d (%d is reserved)", portOf(got), portOf(second), portOf(first))
	}
	if !closed(first) {
		t.Error("the listener on the reserved port is still open")
	}
}

func TestListenPassingOverKeepsAFixedPort(t *testing.T) {
	l := loopback(t)
	// A port asked for by number is the caller's choice, reserved or not.
	got, err := listenPassingOver(map[int]bool{portOf(l): true}, portOf(l), listeners(l))
	if err != nil || got != l {
		t.Fatalf("got %v, %v; want the listener asked for", got, err)
	}
}

func TestListenPassingOverGivesUp(t *testing.T) {
	var ls []net.Listener
	reserved := map[int]bool{}
	for range maxPassedOver {
		l := loopback(t)
		ls = append(ls, l)
		reserved[portOf(l)] = true
	}
	_, err := listenPassingOver(reserved, 0, listeners(ls...))
	if err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Fatalf("err = %v, want one saying every port offered was reserved", err)
	}
	for _, l := range ls {
		if !closed(l) {
			t.Fatalf("the listener on %d is still open", portOf(l))
		}
	}
}
