package devmode

import (
	"bytes"
	"io"
	"sync"
)

// maxLine is the longest line a prefixed writer holds back waiting for its
// end; a longer one is written in pieces, each prefixed.
const maxLine = 64 << 10

// console is the shared output of a run: whole lines from several writers,
// never interleaved within a line.
type console struct {
	mu sync.Mutex
	w  io.Writer
}

func newConsole(w io.Writer) *console { return &console{w: w} }

// writer returns a writer whose every line goes to the console after prefix.
func (c *console) writer(prefix string) *lineWriter {
	return &lineWriter{c: c, prefix: []byte(prefix)}
}

// lineWriter prefixes every line written to it. It is safe for concurrent
// use (an app's stdout and stderr share one).
type lineWriter struct {
	c      *console
	prefix []byte

	mu  sync.Mutex
	buf []byte
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.buf = append(l.buf, p...)
			if len(l.buf) >= maxLine {
				l.emit(l.buf)
				l.buf = l.buf[:0]
			}
			break
		}
		if len(l.buf) > 0 {
			l.buf = append(l.buf, p[:i]...)
			l.emit(l.buf)
			l.buf = l.buf[:0]
		} else {
			l.emit(p[:i])
		}
		p = p[i+1:]
	}
	return n, nil
}

// Flush writes a last line that has no newline.
func (l *lineWriter) Flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.emit(l.buf)
		l.buf = l.buf[:0]
	}
}

// emit writes one line, in pieces of at most maxLine; l.mu is held.
func (l *lineWriter) emit(line []byte) {
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	for {
		piece := line[:min(len(line), maxLine)]
		out := make([]byte, 0, len(l.prefix)+len(piece)+1)
		out = append(append(append(out, l.prefix...), piece...), '\n')
		l.c.mu.Lock()
		_, _ = l.c.w.Write(out)
		l.c.mu.Unlock()
		line = line[len(piece):]
		if len(line) == 0 {
			return
		}
	}
}
