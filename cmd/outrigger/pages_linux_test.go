package main

import (
	"bytes"
	"os"
	"slices"
	"strconv"
	"testing"
)

func TestParseSmaps(t *testing.T) {
	smaps := []byte(`00400000-020d4000 r-xp 00000000 fe:01 1234                       /opt/bin/outrigger
Size:              29520 kB
Rss:               16780 kB
Private_Clean:     16780 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me dw sd
020d4000-0412d000 r--p 01cd4000 fe:01 1234                       /opt/bin/outrigger
Private_Dirty:         8 kB
Anonymous:             8 kB
0418d000-04190000 r--p 03d2d000 fe:01 1234                       /opt/bin/outrigger
Private_Dirty:        12 kB
Anonymous:             0 kB
0412d000-04238000 rw-p 03d2d000 fe:01 1234                       /opt/bin/outrigger
Private_Dirty:       876 kB
7fea8807e000-7fea8817e000 rw-p 00000000 00:00 0
Anonymous:           572 kB
7fea9000000-7fea9001000 r--p 00000000 fe:01 99                   /opt/bin/a file with spaces
Private_Dirty:         0 kB
`)
	maps, err := parseSmaps(smaps)
	if err != nil {
		t.Fatal(err)
	}
	if len(maps) != 6 {
		t.Fatalf("%d mappings: %+v", len(maps), maps)
	}
	if m := maps[0]; m.start != 0x400000 || m.end != 0x20d4000 || m.perms != "r-xp" || m.path != "/opt/bin/outrigger" || m.anonymous != 0 {
		t.Errorf("text: %+v", m)
	}
	if m := maps[1]; m.anonymous != 8 {
		t.Errorf("written read-only data: %+v", m)
	}
	if m := maps[5]; m.path != "/opt/bin/a file with spaces" {
		t.Errorf("path with spaces: %q", m.path)
	}
	var got []bool
	for _, m := range maps {
		got = append(got, releasable(m, "/opt/bin/outrigger"))
	}
	// The text, and read-only data whose pages are dirty in the page cache
	// (a binary written moments ago) but not the process's own copies; the
	// read-only mapping with copies (a relocated segment), the writable
	// data, anonymous memory and other files stay.
	if want := []bool{true, false, true, false, false, false}; !slices.Equal(got, want) {
		t.Errorf("releasable = %v, want %v", got, want)
	}
	if _, err := parseSmaps([]byte("not a mapping\n")); err == nil {
		t.Error("a malformed header line was taken")
	}
}

// TestReleaseStartupPages releases this test binary's pages: its resident
// file pages drop, and the code goes on running (it faults back in).
func TestReleaseStartupPages(t *testing.T) {
	before := rssFile(t)
	n, err := releaseStartupPages()
	if err != nil {
		t.Fatal(err)
	}
	after := rssFile(t)
	if n <= 0 || after > before/2 {
		t.Errorf("released %d bytes of mappings; file pages resident %d kB before, %d kB after", n, before, after)
	}
	// Code and data of the binary are still there.
	if _, fs, err := parseSidecarFlags("outrigger sidecar", []string{"--app-id", "a"}); err != nil || fs.Lookup("app-port") == nil {
		t.Fatalf("after releasing: %v", err)
	}
	t.Logf("released %d MB of mappings; RssFile %d kB -> %d kB", n>>20, before, after)
}

func rssFile(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("RssFile:")); ok {
			n, err := strconv.ParseInt(string(bytes.TrimSpace(bytes.TrimSuffix(bytes.TrimSpace(v), []byte("kB")))), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}
