//go:build unix

package proxy

import "syscall"

// alive reports whether the app has not closed (or written on) an idle
// connection: one non-blocking peek at the socket (peek), so a connection
// the app dropped while idle is never used for a call.
func (c *inlineConn) alive() bool {
	if c.br.Buffered() > 0 {
		return false // bytes nobody asked for: the connection is out of step
	}
	sc, ok := c.nc.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := true
	err = rc.Control(func(fd uintptr) {
		n, errno := peek(fd)
		switch {
		case errno == syscall.EAGAIN:
		case errno != nil, n == 0:
			alive = false // closed or reset
		default:
			alive = false // unexpected bytes
		}
	})
	return err == nil && alive
}
