package proxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// TestCoalescingConnOrder has several goroutines write numbered records of
// sizes from a few bytes to past coalesceMax; the other end must read every
// record whole, each writer's in its order, and nothing else.
func TestCoalescingConnOrder(t *testing.T) {
	raw, peer := tcpPair(t)
	c := newCoalescingConn(raw)
	const writers, records = 4, 300
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range records {
				size := 1 + rng.IntN(200)
				if i%50 == 7 {
					size = coalesceMax + rng.IntN(coalesceMax)
				}
				rec := make([]byte, 12+size)
				binary.BigEndian.PutUint32(rec[0:], uint32(w))
				binary.BigEndian.PutUint32(rec[4:], uint32(i))
				binary.BigEndian.PutUint32(rec[8:], uint32(size))
				for j := range size {
					rec[12+j] = byte(w*31 + i + j)
				}
				if _, err := c.Write(rec); err != nil {
					t.Errorf("writer %d record %d: %v", w, i, err)
					return
				}
			}
		}()
	}
	done := make(chan error, 1)
	go func() {
		next := make([]int, writers)
		hdr := make([]byte, 12)
		for n := 0; n < writers*records; n++ {
			if _, err := io.ReadFull(peer, hdr); err != nil {
				done <- err
				return
			}
			w, i, size := int(binary.BigEndian.Uint32(hdr)), int(binary.BigEndian.Uint32(hdr[4:])), int(binary.BigEndian.Uint32(hdr[8:]))
			if w >= writers || i != next[w] || size > 2*coalesceMax {
				done <- errors.New("record out of order or torn")
				return
			}
			next[w]++
			body := make([]byte, size)
			if _, err := io.ReadFull(peer, body); err != nil {
				done <- err
				return
			}
			for j, b := range body {
				if b != byte(w*31+i+j) {
					done <- errors.New("record body corrupted")
					return
				}
			}
		}
		done <- nil
	}()
	wg.Wait()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the reader did not get every record within 30s")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

// countingConn counts the writes that reach it.
type countingConn struct {
	net.Conn
	mu     sync.Mutex
	writes int
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes++
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *countingConn) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes
}

// TestCoalescingConnGathers checks the point of the type: writes made while
// the writer runs leave in one system call once it blocks (one thread, as a
// sidecar runs).
func TestCoalescingConnGathers(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	raw, peer := tcpPair(t)
	counted := &countingConn{Conn: raw}
	c := newCoalescingConn(counted)
	defer c.Close()
	want := []byte("HEADERS-frame|DATA-frame|DATA-end")
	for _, part := range bytes.SplitAfter(want, []byte("|")) {
		if _, err := c.Write(part); err != nil {
			t.Fatal(err)
		}
	}
	got := make([]byte, len(want))
	if _, err := io.ReadFull(peer, got); err != nil { // blocks: the flusher runs
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %q, want %q", got, want)
	}
	if n := counted.count(); n != 1 {
		t.Fatalf("three writes in a row reached the socket in %d writes, want 1", n)
	}
}

// TestCoalescingConnCloseSendsPending: bytes written just before Close still
// arrive, then EOF.
func TestCoalescingConnCloseSendsPending(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	raw, peer := tcpPair(t)
	c := newCoalescingConn(raw)
	if _, err := c.Write([]byte("last words")); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(peer)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "last words" {
		t.Fatalf("read %q before EOF, want %q", got, "last words")
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close: %v, want net.ErrClosed", err)
	}
}

// TestCoalescingConnWriteError: once the socket refuses a write (here its
// write deadline has passed, the peer alive and silent), the connection is
// closed, so its reader fails instead of waiting on, and later writes return
// the error.
func TestCoalescingConnWriteError(t *testing.T) {
	raw, _ := tcpPair(t)
	c := newCoalescingConn(raw)
	defer c.Close()
	if err := c.SetWriteDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	readErr := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 10))
		readErr <- err
	}()
	if _, err := c.Write([]byte("never sent")); err != nil {
		t.Fatalf("the first Write only queues, yet returned %v", err)
	}
	select {
	case err := <-readErr:
		if err == nil {
			t.Fatal("Read after a failed write returned no error")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Read after a failed write did not return within 20s")
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := c.Write([]byte("x"))
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Write after the failed flush: %v, want the deadline error", err)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestCoalescingConnRead: a burst read at once is served to small reads in
// order; a read as large as the buffer goes to the socket directly.
func TestCoalescingConnRead(t *testing.T) {
	raw, peer := tcpPair(t)
	c := newCoalescingConn(raw)
	defer c.Close()
	want := make([]byte, 3*coalesceReadSize)
	for i := range want {
		want[i] = byte(i * 7)
	}
	go func() { _, _ = peer.Write(want) }()
	var got []byte
	small := make([]byte, 9)
	for len(got) < 100 {
		n, err := c.Read(small)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, small[:n]...)
	}
	big := make([]byte, coalesceReadSize)
	for len(got) < len(want) {
		n, err := c.Read(big)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, big[:n]...)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("bytes read differ from the bytes sent")
	}
}
