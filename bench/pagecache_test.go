package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// resident counts the pages of file the page cache holds (mincore over a
// mapping of it).
func resident(t *testing.T, file string) int {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (len(m)+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal(errno)
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n
}

// TestDropPageCache: a file just written (dirty, then cached) is no longer
// in the page cache after dropPageCache.
func TestDropPageCache(t *testing.T) {
	file := filepath.Join(t.TempDir(), "binary")
	if err := os.WriteFile(file, bytes.Repeat([]byte("outrigger"), 1<<20), 0o755); err != nil {
		t.Fatal(err)
	}
	before := resident(t, file)
	if before == 0 {
		t.Fatal("a file just written is not in the page cache; the test cannot tell anything")
	}
	if err := dropPageCache(file); err != nil {
		t.Fatal(err)
	}
	if after := resident(t, file); after > before/10 {
		t.Errorf("%d of %d pages still cached after dropPageCache", after, before)
	}
	if err := dropPageCache(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("no error for a missing file")
	}
}
