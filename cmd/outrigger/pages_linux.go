package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// releaseStartupPages unmaps from this process the pages of its own
// executable's read-only mappings (code, read-only data, the function
// tables) once start-up is over. Start-up touches pages all over the
// binary (most of them package initialisers and the runtime's first pass
// over its type tables, which never run again), and the kernel maps the
// neighbours of every page it faults in, so an idle sidecar held about
// 33 MB of its binary resident when its own heap and stacks were about
// 7 MB. The pages stay in the page cache, shared with every process that
// maps the binary; the ones the sidecar goes on using fault back in from
// there, without reading the disk.
//
// Only mappings of the executable that are not writable and hold no
// anonymous page are released: MADV_DONTNEED on such a mapping
// only drops page-table entries, and the file's contents come back
// unchanged on the next access. A mapping the process wrote (a relocated
// read-only segment of a position-independent build) is left alone. It
// returns the bytes of the mappings it released.
func releaseStartupPages() (int64, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, err
	}
	maps, err := readSmaps()
	if err != nil {
		return 0, err
	}
	var released int64
	for _, m := range maps {
		if !releasable(m, exe) {
			continue
		}
		// The raw call, since the range is an address of the process's own
		// image, not a Go slice.
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, m.start, m.end-m.start, unix.MADV_DONTNEED); errno != 0 {
			return released, fmt.Errorf("madvise %x-%x: %w", m.start, m.end, errno)
		}
		released += int64(m.end - m.start)
	}
	return released, nil
}

// releasable reports whether m is a mapping of the executable exe whose
// pages may be dropped: not writable, and with no anonymous page (a copy the
// process made by writing, as relocating a position-independent build
// does). Dirty pages of the file itself (Private_Dirty without Anonymous: a
// binary written moments ago, not yet on disk) are the page cache's and
// come back as they are.
func releasable(m mapping, exe string) bool {
	return m.path == exe && !strings.ContainsRune(m.perms, 'w') && m.anonymous == 0 && m.end > m.start
}

// mapping is one entry of /proc/self/smaps: the address range, the
// permissions, the mapped file, and the kilobytes of it that are anonymous
// copies (Anonymous).
type mapping struct {
	start, end  uintptr
	perms, path string
	anonymous   int64
}

// readSmaps reads /proc/self/smaps.
func readSmaps() ([]mapping, error) {
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return nil, err
	}
	return parseSmaps(b)
}

// parseSmaps reads the entries of an smaps file: a header line per mapping
// ("start-end perms offset dev inode [path]") followed by "Key: value kB"
// lines.
func parseSmaps(b []byte) ([]mapping, error) {
	var out []mapping
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if k, ok := strings.CutSuffix(f[0], ":"); ok {
			if len(out) == 0 || len(f) < 2 {
				continue
			}
			if k != "Anonymous" {
				continue
			}
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("smaps: unexpected line %q", line)
			}
			out[len(out)-1].anonymous += n
			continue
		}
		if len(f) < 5 {
			return nil, fmt.Errorf("smaps: unexpected line %q", line)
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if !ok || err1 != nil || err2 != nil {
			return nil, fmt.Errorf("smaps: unexpected line %q", line)
		}
		m := mapping{start: uintptr(start), end: uintptr(end), perms: f[1]}
		if len(f) >= 6 {
			m.path = strings.Join(f[5:], " ")
		}
		out = append(out, m)
	}
	return out, sc.Err()
}
