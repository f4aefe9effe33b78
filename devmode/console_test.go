package devmode

import (
	"strings"
	"sync"
	"testing"
)

func TestLineWriter(t *testing.T) {
	var out strings.Builder
	c := newConsole(&out)
	w := c.writer("== APP - a == ")
	for _, chunk := range []string{"one\ntw", "o\n", "three", "\r\n", "\n", "partial"} {
		if n, err := w.Write([]byte(chunk)); n != len(chunk) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", chunk, n, err)
		}
	}
	w.Flush()
	w.Flush() // nothing left: writes nothing
	want := "== APP - a == one\n== APP - a == two\n== APP - a == three\n== APP - a == \n== APP - a == partial\n"
	if out.String() != want {
		t.Errorf("got\n%q\nwant\n%q", out.String(), want)
	}
}

func TestLineWriterLongLine(t *testing.T) {
	var out strings.Builder
	w := newConsole(&out).writer("> ")
	long := strings.Repeat("x", maxLine+10)
	_, _ = w.Write([]byte(long + "\n"))
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 2 || lines[0] != "> "+long[:maxLine] || lines[1] != "> "+long[maxLine:] {
		t.Errorf("a line longer than %d came out as %d lines", maxLine, len(lines))
	}
}

// TestConsoleNoInterleaving writes from many writers at once: every output
// line must be whole.
func TestConsoleNoInterleaving(t *testing.T) {
	var out strings.Builder
	c := newConsole(&out)
	var wg sync.WaitGroup
	for i := range 8 {
		w := c.writer(strings.Repeat(string(rune('a'+i)), 3) + " ")
		wg.Go(func() {
			for range 200 {
				_, _ = w.Write([]byte("0123456789"))
				_, _ = w.Write([]byte("0123456789\n"))
			}
		})
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 8*200 {
		t.Fatalf("%d lines; want %d", len(lines), 8*200)
	}
	for _, l := range lines {
		if len(l) != 24 || l[0] != l[1] || l[1] != l[2] || l[4:] != "01234567890123456789" {
			t.Fatalf("mangled line %q", l)
		}
	}
}
