//go:build unix && !linux

package proxy

import "syscall"

// peek looks at one byte of a socket without taking it or waiting.
func peek(fd uintptr) (int, error) {
	var buf [1]byte
	n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return n, err
}
