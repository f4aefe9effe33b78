package proxy

import (
	"math/bits"
	"sync"
)

// Short bodies pass through a sidecar in one piece: the caller's sidecar
// reads a request body whole to send it with its head, the callee's reads
// it whole to write it to the app (and to write it again on a fresh
// connection when a pooled one turns out closed), and a handler's answer
// is held until it ends. bodyBufs lends those buffers, so that a call of a
// steady size allocates none of them.
//
// One sync.Pool per power of two from minBodyBuf to maxBodyBuf; a larger
// buffer is allocated and left to the collector.
const (
	minBodyBufShift = 10 // 1 KiB
	maxBodyBufShift = 16 // 64 KiB
)

var bodyBufs [maxBodyBufShift - minBodyBufShift + 1]sync.Pool

// bodyBufClass is the pool whose buffers hold n bytes, or -1.
func bodyBufClass(n int) int {
	if n > 1<<maxBodyBufShift {
		return -1
	}
	shift := minBodyBufShift
	if n > 1<<minBodyBufShift {
		shift = bits.Len(uint(n - 1))
	}
	return shift - minBodyBufShift
}

// getBodyBuf returns a buffer of length n, from its pool when n is at most
// 64 KiB; give it back with putBodyBuf once nothing refers to it.
func getBodyBuf(n int) *[]byte {
	c := bodyBufClass(n)
	if c < 0 {
		b := make([]byte, n)
		return &b
	}
	if p, ok := bodyBufs[c].Get().(*[]byte); ok {
		*p = (*p)[:n]
		return p
	}
	b := make([]byte, n, 1<<(c+minBodyBufShift))
	return &b
}

// putBodyBuf gives b back to its pool; nil and odd-sized buffers are let go.
func putBodyBuf(b *[]byte) {
	if b == nil {
		return
	}
	c := bodyBufClass(cap(*b))
	if c < 0 || cap(*b) != 1<<(c+minBodyBufShift) {
		return
	}
	*b = (*b)[:0]
	bodyBufs[c].Put(b)
}
