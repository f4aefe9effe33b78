package rawio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"testing"
	"time"
)

// pair returns a wrapped client end and the plain server end of a loopback
// TCP connection.
func pair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l = Listener{Listener: l}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return s, c
}

func TestWrapsTCPOnly(t *testing.T) {
	w, _ := pair(t)
	if _, ok := w.(*Conn); ok != (runtime.GOOS == "linux") {
		t.Fatalf("an accepted TCP connection is %T on %s", w, runtime.GOOS)
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if Wrap(a) != a {
		t.Fatal("Wrap changed a connection that is not TCP")
	}
}

// TestLargeWriteWaitsForReader writes far more than a socket buffer holds
// to a reader that starts late and reads slowly: the write must wait in
// the poller (EAGAIN) and deliver every byte in order.
func TestLargeWriteWaitsForReader(t *testing.T) {
	w, r := pair(t)
	want := make([]byte, 32<<20)
	for i := range want {
		want[i] = byte(i*13 + i>>11)
	}
	got := make(chan []byte, 1)
	go func() {
		time.Sleep(100 * time.Millisecond) // let the socket buffers fill
		var buf bytes.Buffer
		_, _ = io.Copy(&buf, io.LimitReader(r, int64(len(want))))
		got <- buf.Bytes()
	}()
	n, err := w.Write(want)
	if err != nil || n != len(want) {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(want))
	}
	select {
	case b := <-got:
		if !bytes.Equal(b, want) {
			t.Fatalf("the reader got %d bytes that differ from the %d written", len(b), len(want))
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the reader did not get every byte within 60s")
	}
}

// TestWriteDeadline: with the peer not reading and the buffers full, a write
// returns the deadline error once the write deadline passes.
func TestWriteDeadline(t *testing.T) {
	w, _ := pair(t)
	if err := w.SetWriteDeadline(time.Now().Add(300 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := w.Write(make([]byte, 64<<20))
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Write to a full socket past its deadline: %v, want os.ErrDeadlineExceeded", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Write past its deadline did not return within 30s")
	}
}

// TestWriteToResetPeer: once the peer reset the connection, writes fail
// with an error (not a hang, not silent success).
func TestWriteToResetPeer(t *testing.T) {
	w, r := pair(t)
	r.(*net.TCPConn).SetLinger(0)
	r.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := w.Write([]byte("hello"))
		if err != nil {
			var op *net.OpError
			if !errors.As(err, &op) || op.Op != "write" {
				t.Fatalf("error %v (%T), want a *net.OpError of a write", err, err)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("writes to a reset connection kept succeeding for 20s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestReadFrom: io.Copy into the connection goes through Write and arrives
// whole.
func TestReadFrom(t *testing.T) {
	w, r := pair(t)
	want := bytes.Repeat([]byte("0123456789"), 100_000)
	go func() {
		_, _ = io.Copy(w, bytes.NewReader(want))
		w.(interface{ CloseWrite() error }).CloseWrite()
	}()
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, want the %d written", len(got), len(want))
	}
}

// TestReadEOFAndDeadline: a read waits for data, returns what came, then
// io.EOF once the peer closed; a read past its deadline returns the
// deadline error.
func TestReadEOFAndDeadline(t *testing.T) {
	rw, peer := pair(t)
	if err := rw.SetReadDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, err := rw.Read(make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read with nothing sent past its deadline: %v, want os.ErrDeadlineExceeded", err)
	}
	if err := rw.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(50 * time.Millisecond) // the read waits in the poller first
		_, _ = peer.Write([]byte("ping"))
		peer.Close()
	}()
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, err := io.ReadAll(rw)
		done <- result{b, err}
	}()
	select {
	case r := <-done:
		if r.err != nil || string(r.b) != "ping" {
			t.Fatalf("ReadAll = %q, %v; want \"ping\", nil (io.EOF ends it)", r.b, r.err)
		}
	case <-time.After(20 * time.Second):
		rw.Close()
		t.Fatal("ReadAll did not end within 20s of the peer closing: no io.EOF")
	}
	if n, err := rw.Read(make([]byte, 8)); n != 0 || err != io.EOF {
		t.Fatalf("Read after EOF = %d, %v; want 0, io.EOF", n, err)
	}
}

// TestNoAllocations holds a read and a write to no allocation: their
// system calls' callbacks are bound once per connection.
func TestNoAllocations(t *testing.T) {
	if !supported {
		t.Skip("raw system calls are Linux-only")
	}
	s, c := pair(t)
	if _, ok := s.(*Conn); !ok {
		t.Fatalf("accepted %T, want *Conn", s)
	}
	msg := []byte("ping")
	buf := make([]byte, 16)
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := s.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf[:len(msg)]); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(s, buf[:len(msg)]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per write and read", allocs)
	}
}

// TestConcurrentReads has two goroutines read one connection at once, as
// net.Conn allows: every byte arrives once, to one of them.
func TestConcurrentReads(t *testing.T) {
	s, c := pair(t)
	const total = 1 << 16
	got := make(chan int, 2)
	for range 2 {
		go func() {
			buf := make([]byte, 512)
			n := 0
			for {
				k, err := s.Read(buf)
				n += k
				if err != nil {
					got <- n
					return
				}
			}
		}()
	}
	if _, err := c.Write(bytes.Repeat([]byte("x"), total)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if n := <-got + <-got; n != total {
		t.Errorf("read %d bytes in all, wrote %d", n, total)
	}
}
