package proxy

import (
	"net"
	"sync"
)

// coalesceMax is how many bytes a coalescing connection holds before a
// writer flushes them itself rather than leaving them to its flusher.
const coalesceMax = 64 << 10

// coalesceReadSize is the read buffer of a coalescing connection; a Read
// asking for at least that much goes to the connection directly.
const coalesceReadSize = 16 << 10

// coalescingConn gathers the writes made to a mesh connection while the
// writing goroutine runs, and sends them in one system call when it yields.
// net/http's HTTP/2 client flushes a request's HEADERS frame before it
// writes the body's DATA, and its server flushes a response's HEADERS
// before the handler's DATA: two writes per message, each of which on
// loopback also runs the receiving side's TCP processing and wakes the
// peer's reader, which then finds half a message. A Write here copies the
// bytes and wakes the connection's flusher goroutine; the flusher runs once
// the writer blocks or yields (with the sidecar's one thread, not before),
// so the frames of one message leave together.
//
// Reads are buffered too: net/http's HTTP/2 framer reads each frame's
// header and then its payload straight from the connection, two system
// calls per frame; a coalescingConn reads what has arrived (up to
// coalesceReadSize) at once and serves the framer from that.
//
// Write returns before the bytes reach the socket. The first failed write
// closes the connection (its reader then fails, as HTTP/2 expects of a
// broken connection) and every later Write returns the error. Close sends
// what is pending first. At most coalesceMax bytes wait: a Write that would
// pass it flushes on the writer's own goroutine, in order. A write deadline
// applies to the flusher's writes made after it was set.
type coalescingConn struct {
	net.Conn

	// Read side, used by one reader at a time (the HTTP/2 read loop).
	rbuf       []byte
	rpos, rend int

	wmu sync.Mutex // held while taking the pending bytes and writing them: keeps order

	mu       sync.Mutex
	pending  []byte
	spare    []byte
	err      error
	wake     chan struct{} // holds one wake-up while the flusher has one to take
	stopped  chan struct{}
	stopOnce sync.Once
}

func newCoalescingConn(c net.Conn) *coalescingConn {
	cc := &coalescingConn{Conn: c, wake: make(chan struct{}, 1), stopped: make(chan struct{})}
	go cc.flusher()
	return cc
}

func (c *coalescingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return 0, err
	}
	if len(c.pending)+len(p) > coalesceMax {
		c.mu.Unlock()
		// Flush what waits, then write p, both in order under wmu.
		c.wmu.Lock()
		defer c.wmu.Unlock()
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		n, err := c.Conn.Write(p)
		if err != nil {
			c.fail(err)
		}
		return n, err
	}
	c.pending = append(c.pending, p...)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default: // already woken, and it has not yet taken what is pending
	}
	return len(p), nil
}

func (c *coalescingConn) Read(p []byte) (int, error) {
	if c.rpos < c.rend {
		n := copy(p, c.rbuf[c.rpos:c.rend])
		c.rpos += n
		return n, nil
	}
	if len(p) >= coalesceReadSize {
		return c.Conn.Read(p)
	}
	if c.rbuf == nil {
		c.rbuf = make([]byte, coalesceReadSize)
	}
	n, err := c.Conn.Read(c.rbuf)
	if n <= 0 {
		return 0, err
	}
	m := copy(p, c.rbuf[:n])
	c.rpos, c.rend = m, n
	if m < n {
		// The rest waits in rbuf; its error, if any, comes back on the
		// next read of the connection.
		err = nil
	}
	return m, err
}

// flusher writes the pending bytes each time it is woken, until Close.
func (c *coalescingConn) flusher() {
	for {
		select {
		case <-c.wake:
		case <-c.stopped:
			return
		}
		c.wmu.Lock()
		_ = c.flushLocked()
		c.wmu.Unlock()
	}
}

// flushLocked writes whatever is pending; the caller holds wmu.
func (c *coalescingConn) flushLocked() error {
	c.mu.Lock()
	buf := c.pending
	c.pending, c.spare = c.spare[:0], nil
	err := c.err
	c.mu.Unlock()
	if err == nil && len(buf) > 0 {
		if _, err = c.Conn.Write(buf); err != nil {
			c.fail(err)
		}
	}
	c.mu.Lock()
	if c.spare == nil && cap(buf) <= coalesceMax {
		c.spare = buf[:0]
	}
	c.mu.Unlock()
	return err
}

// fail records the first write error and closes the connection.
func (c *coalescingConn) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
	_ = c.Conn.Close()
}

// Close sends what is pending (bounded by the write deadline, if any) and
// closes the connection.
func (c *coalescingConn) Close() error {
	c.stopOnce.Do(func() { close(c.stopped) })
	c.wmu.Lock()
	_ = c.flushLocked()
	c.wmu.Unlock()
	c.mu.Lock()
	if c.err == nil {
		c.err = net.ErrClosed
	}
	c.mu.Unlock()
	return c.Conn.Close()
}

// coalescingListener wraps every accepted connection in a coalescingConn.
type coalescingListener struct{ net.Listener }

func (l coalescingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newCoalescingConn(c), nil
}
