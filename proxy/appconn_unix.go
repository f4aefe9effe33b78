//go:build unix && !linux

package proxy

import "syscall"

// alive reports whether the app has not closed (or written on) an idle
// connection: one non-blocking peek at the socket, so a connection the app
// dropped while idle is never used for a call.
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
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case rerr == syscall.EAGAIN:
		case rerr != nil, n == 0:
			alive = false // closed or reset
		default:
			alive = false // unexpected bytes
		}
		return true
	})
	return err == nil && alive
}
