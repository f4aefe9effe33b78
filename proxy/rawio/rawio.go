// Package rawio gives TCP connections a Read and a Write that do not enter
// the Go scheduler's system-call state.
//
// On loopback a write runs the receiving side's TCP processing too and
// takes tens of microseconds on a small virtual machine. The scheduler's
// monitor takes the processor from a thread that has been in a system call
// for about that long and wakes another thread to run it; with a sidecar's
// one processor nearly every write then cost two thread wake-ups and a
// migration. Reads are short, but entering a system call also wakes the
// monitor when it sleeps because the process was idle, and it then polls
// every 20 microseconds for a millisecond or more: after each pause in the
// traffic, dozens of wake-ups of a thread that has nothing to do. The
// sockets of Go's net package are non-blocking, so a raw call never waits:
// EAGAIN sends the caller to the network poller as any other read or write
// (deadlines included).
package rawio

import (
	"context"
	"io"
	"net"
	"sync"
	"syscall"
)

// Conn is a TCP connection whose reads and writes are raw system calls
// (on Linux; Wrap leaves connections alone elsewhere).
type Conn struct {
	*net.TCPConn
	rc syscall.RawConn
	// One state per direction, its callback bound once: a closure made
	// per call would escape to the heap through RawConn's interface (two
	// to four allocations a call, about 20 per invocation through two
	// sidecars).
	rd, wr op
}

// op is the state of one direction's system call, which RawConn calls back
// with the descriptor. mu keeps two callers of one direction (which
// net.Conn allows, and RawConn would only order after the state was set)
// from sharing it.
type op struct {
	mu    sync.Mutex
	call  func(uintptr, []byte) (int, syscall.Errno)
	p     []byte
	n     int
	errno syscall.Errno
	fn    func(uintptr) bool // o.do, bound once
}

func (o *op) do(fd uintptr) bool {
	n, errno, done := attempt(o.call, fd, o.p)
	o.n, o.errno = n, errno
	return done
}

// Wrap returns c with raw reads and writes when it is a *net.TCPConn, and c itself
// otherwise.
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok || !supported {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	w := &Conn{TCPConn: tc, rc: rc}
	w.rd.call, w.wr.call = read, write
	w.rd.fn, w.wr.fn = w.rd.do, w.wr.do
	return w
}

// Write writes all of p, waiting in the network poller while the socket
// buffer is full.
func (c *Conn) Write(p []byte) (int, error) {
	o := &c.wr
	o.mu.Lock()
	defer func() { o.p = nil; o.mu.Unlock() }() // p is not kept past the call
	written := 0
	for written < len(p) {
		o.p, o.n, o.errno = p[written:], 0, 0
		err := c.rc.Write(o.fn)
		written += o.n
		if err = orErrno(err, o.errno); err != nil {
			return written, c.opError("write", err)
		}
	}
	return written, nil
}

// Read reads into p, waiting in the network poller while nothing has
// arrived (read deadlines included).
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	o := &c.rd
	o.mu.Lock()
	o.p, o.n, o.errno = p, 0, 0
	err := c.rc.Read(o.fn)
	n, errno := o.n, o.errno
	o.p = nil
	o.mu.Unlock()
	if err = orErrno(err, errno); err != nil {
		return n, c.opError("read", err)
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// attempt makes the system call call on fd and p, again when a signal
// interrupted it. done is false when the socket is not ready (EAGAIN): the
// caller's poller waits and calls again.
func attempt(call func(uintptr, []byte) (int, syscall.Errno), fd uintptr, p []byte) (n int, errno syscall.Errno, done bool) {
	for {
		n, e := call(fd, p)
		switch e {
		case 0:
			return n, 0, true
		case syscall.EINTR:
		case syscall.EAGAIN:
			return 0, 0, false
		default:
			return 0, e, true
		}
	}
}

// orErrno is err, or else errno when the system call failed.
func orErrno(err error, errno syscall.Errno) error {
	if err == nil && errno != 0 {
		return errno
	}
	return err
}

func (c *Conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// ReadFrom copies r into the connection with Write (not the kernel's
// splice or sendfile, whose system calls would enter the scheduler's
// state again).
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(writerOnly{c}, r)
}

type writerOnly struct{ io.Writer }

// Listener wraps every accepted TCP connection with Wrap.
type Listener struct{ net.Listener }

func (l Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Wrap(c), nil
}

// Dialer is a net.Dialer whose connections are wrapped with Wrap. Its Dial
// also serves clients that take a dialer without a context (nats.go's
// CustomDialer).
type Dialer struct{ net.Dialer }

func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := d.Dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return Wrap(c), nil
}

func (d *Dialer) Dial(network, addr string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, addr)
}
