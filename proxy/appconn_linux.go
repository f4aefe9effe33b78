package proxy

import (
	"syscall"
	"unsafe"
)

// alive reports whether the app has not closed (or written on) an idle
// connection: one non-blocking peek at the socket, so a connection the app
// dropped while idle is never used for a call. The peek is a raw system
// call, as the connection's reads and writes are (proxy/rawio): it never
// blocks, and entering the scheduler's system-call state for it would wake
// the runtime's monitor after every pause in the traffic.
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
	err = rc.Control(func(fd uintptr) {
		n, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&buf[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		switch {
		case errno == syscall.EAGAIN:
		case errno != 0, n == 0:
			alive = false // closed or reset
		default:
			alive = false // unexpected bytes
		}
	})
	return err == nil && alive
}
