// Package rawwrite gives TCP connections a Write that does not enter the Go
// scheduler's system-call state.
//
// On loopback a write runs the receiving side's TCP processing too and
// takes tens of microseconds on a small virtual machine. The scheduler's
// monitor takes the processor from a thread that has been in a system call
// for about that long and wakes another thread to run it; with a sidecar's
// one processor nearly every write then cost two thread wake-ups and a
// migration, which showed as a third of its context switches. The sockets
// of Go's net package are non-blocking, so a raw write never waits: a full
// socket buffer answers EAGAIN and the write waits in the network poller as
// any other (write deadlines included).
package rawwrite

import (
	"context"
	"io"
	"net"
	"syscall"
)

// Conn is a TCP connection whose writes are raw system calls (on Linux; on
// other systems, plain ones).
type Conn struct {
	*net.TCPConn
	rc syscall.RawConn
}

// Wrap returns c with raw writes when it is a *net.TCPConn, and c itself
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
	return &Conn{TCPConn: tc, rc: rc}
}

// Write writes all of p, waiting in the network poller while the socket
// buffer is full.
func (c *Conn) Write(p []byte) (int, error) {
	written := 0
	for written < len(p) {
		var errno syscall.Errno
		err := c.rc.Write(func(fd uintptr) bool {
			for {
				n, e := write(fd, p[written:])
				switch e {
				case 0:
					written += n
					return true
				case syscall.EINTR:
					continue
				case syscall.EAGAIN:
					return false // wait until writable
				default:
					errno = e
					return true
				}
			}
		})
		if err == nil && errno != 0 {
			err = errno
		}
		if err != nil {
			return written, &net.OpError{Op: "write", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
		}
	}
	return written, nil
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

// Dial is net.Dialer's DialContext with the connection wrapped.
func Dial(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return Wrap(c), nil
	}
}
