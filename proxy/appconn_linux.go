package proxy

import (
	"syscall"
	"unsafe"
)

// peek looks at one byte of a socket without taking it or waiting. It is a
// raw system call, as the connection's reads and writes are
// (proxy/rawio): entering the scheduler's system-call state for it would
// wake the runtime's monitor after every pause in the traffic.
func peek(fd uintptr) (int, error) {
	var buf [1]byte
	n, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&buf[0])), 1,
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}
