package rawio

import (
	"syscall"
	"unsafe"
)

const supported = true

// write is write(2) on fd without entering the scheduler's system-call
// state; p is not empty.
func write(fd uintptr, p []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(n), e
}

// read is read(2) on fd without entering the scheduler's system-call
// state; p is not empty.
func read(fd uintptr, p []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(n), e
}
