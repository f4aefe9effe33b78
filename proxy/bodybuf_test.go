package proxy

import "testing"

func TestBodyBufClasses(t *testing.T) {
	for _, c := range []struct{ n, cap int }{
		{0, 1 << 10}, {1, 1 << 10}, {1 << 10, 1 << 10}, {1<<10 + 1, 2 << 10},
		{3000, 4 << 10}, {64 << 10, 64 << 10}, {64<<10 + 1, 64<<10 + 1},
	} {
		b := getBodyBuf(c.n)
		if len(*b) != c.n || cap(*b) != c.cap {
			t.Errorf("getBodyBuf(%d): len %d cap %d, want len %d cap %d", c.n, len(*b), cap(*b), c.n, c.cap)
		}
		putBodyBuf(b)
	}
	// A buffer that grew to a size of no class is let go, not pooled.
	odd := make([]byte, 0, 3000)
	putBodyBuf(&odd)
	if b := getBodyBuf(3000); cap(*b) != 4<<10 {
		t.Errorf("a buffer of cap %d came back from the 4 KiB pool", cap(*b))
	}
	putBodyBuf(nil)
}
