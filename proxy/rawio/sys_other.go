//go:build !linux

package rawio

import "syscall"

// supported is false: Wrap leaves connections as they are.
const supported = false

func write(fd uintptr, p []byte) (int, syscall.Errno) {
	return 0, syscall.ENOSYS
}

func read(fd uintptr, p []byte) (int, syscall.Errno) {
	return 0, syscall.ENOSYS
}
