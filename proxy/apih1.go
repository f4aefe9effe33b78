package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// API servers (Config.APIServer).
const (
	APIServerLean    = "lean"     // leanH1 (the default)
	APIServerNetHTTP = "net/http" // net/http's server alone
)

// leanH1 serves the HTTP API's plain HTTP/1.1 requests with fewer
// hand-offs than net/http's server: one goroutine per connection reads a
// request's head, runs the handler and writes the answer, the head and a
// short body in one write; the check that the caller is still there (a
// read while the handler runs, which cancels the request's context when
// the connection ends) starts only once a call has taken longer than
// h1WatchAfter, where net/http starts a goroutine for it on every request.
//
// Whatever it does not serve itself goes to the fallback server (net/http's,
// with the same handler) on the same connection, with the bytes read so far:
// a request that is not HTTP/1.1 (HTTP/1.0, HTTP/2's preface for h2c), HEAD,
// CONNECT or OPTIONS *, an absolute or asterisk target, a head larger than
// the read buffer, a body sent chunked, Expect, Upgrade, a missing or repeated
// Host, a Content-Length that is not one plain number, a folded header line,
// or any byte net/http would refuse. From then on that connection is the
// fallback server's. A request the lean server takes is parsed as
// net/http's server parses it (FuzzH1Head compares the two).
type leanH1 struct {
	handler       http.Handler
	fallback      *http.Server
	log           *slog.Logger
	headerTimeout time.Duration
	idleTimeout   time.Duration
	maxHead       int           // the longest head net/http's server would take
	watchAfter    time.Duration // a call this long starts the caller check

	fallOnce sync.Once
	fallL    *connQueue

	shutting  atomic.Bool
	mu        sync.Mutex
	conns     map[*h1Conn]struct{}
	listeners map[net.Listener]struct{}
}

const (
	h1ReadBuffer   = 16 << 10
	h1WriteBuffer  = 16 << 10
	h1HoldBody     = 4 << 10   // an answer of unknown length up to this goes with a Content-Length
	h1DiscardLimit = 256 << 10 // unread request body discarded after the handler (net/http's limit)
	h1WatchAfter   = 20 * time.Millisecond
	// h1LingerAfterFIN is net/http's rstAvoidanceDelay.
	h1LingerAfterFIN = 500 * time.Millisecond
)

func newLeanH1(h http.Handler, fallback *http.Server, log *slog.Logger) *leanH1 {
	maxHead := fallback.MaxHeaderBytes
	if maxHead <= 0 {
		maxHead = http.DefaultMaxHeaderBytes
	}
	return &leanH1{
		maxHead:       maxHead + 4096, // net/http's allowance past MaxHeaderBytes
		handler:       h,
		fallback:      fallback,
		log:           log,
		headerTimeout: fallback.ReadHeaderTimeout,
		idleTimeout:   fallback.IdleTimeout,
		watchAfter:    h1WatchAfter,
		fallL:         newConnQueue(),
		conns:         map[*h1Conn]struct{}{},
		listeners:     map[net.Listener]struct{}{},
	}
}

// Serve accepts connections on l until it fails or Shutdown. It may run
// on several listeners at once.
func (s *leanH1) Serve(l net.Listener) error {
	s.fallOnce.Do(func() { go func() { _ = s.fallback.Serve(s.fallL) }() })
	s.mu.Lock()
	if s.shutting.Load() {
		s.mu.Unlock()
		return http.ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.shutting.Load() {
				return http.ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			return err
		}
		c := s.newConn(nc)
		s.mu.Lock()
		if s.shutting.Load() {
			s.mu.Unlock()
			_ = nc.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		go c.serve()
	}
}

// Shutdown stops accepting, closes idle connections, lets the calls
// running finish (each connection closes after its answer) until ctx is
// done, then closes the rest; the fallback server shuts down alongside.
func (s *leanH1) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutting.Store(true)
	for l := range s.listeners {
		_ = l.Close()
	}
	s.mu.Unlock()
	fallDone := make(chan error, 1)
	go func() {
		err := s.fallback.Shutdown(ctx)
		_ = s.fallL.Close()
		fallDone <- err
	}()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		s.mu.Lock()
		n := len(s.conns)
		for c := range s.conns {
			c.closeIfIdle()
		}
		s.mu.Unlock()
		if n == 0 {
			break
		}
		select {
		case <-ctx.Done():
			s.mu.Lock()
			for c := range s.conns {
				c.close()
			}
			s.mu.Unlock()
			<-fallDone
			return ctx.Err()
		case <-t.C:
		}
	}
	return <-fallDone
}

// h1Conn is one connection of the lean server.
type h1Conn struct {
	s        *leanH1
	nc       net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer
	remote   string
	hold     []byte // an answer's body held until its length is known
	served   bool   // a request was served on this connection
	lastPOST bool   // the last one was a POST

	mu     sync.Mutex
	idle   bool // waiting for a request (Shutdown closes it then)
	closed bool

	// The caller check: once a call has run h1WatchAfter with its request
	// body read, a read on the connection (watch, from the timer) tells a
	// caller that went away from one that is waiting.
	watchTimer *time.Timer
	wmu        sync.Mutex
	wcond      sync.Cond
	serving    bool // a call is running (arm works only then)
	armed      bool // the current call may be watched
	watching   bool // watch is reading
	aborting   bool // the read is being ended on purpose
	gone       bool // the read failed: the caller went away
	cancel     context.CancelFunc
}

func (s *leanH1) newConn(nc net.Conn) *h1Conn {
	c := &h1Conn{
		s:      s,
		nc:     nc,
		br:     bufio.NewReaderSize(nc, h1ReadBuffer),
		bw:     bufio.NewWriterSize(nc, h1WriteBuffer),
		remote: nc.RemoteAddr().String(),
	}
	c.wcond.L = &c.wmu
	c.watchTimer = time.AfterFunc(time.Hour, c.watch)
	c.watchTimer.Stop()
	return c
}

func (c *h1Conn) closeIfIdle() {
	c.mu.Lock()
	if c.idle && !c.closed {
		c.closed = true
		_ = c.nc.Close()
	}
	c.mu.Unlock()
}

func (c *h1Conn) close() {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		_ = c.nc.Close()
	}
	c.mu.Unlock()
}

func (c *h1Conn) forget() {
	c.s.mu.Lock()
	delete(c.s.conns, c)
	c.s.mu.Unlock()
}

func (c *h1Conn) serve() {
	defer c.forget()
	for {
		head, err := c.readHead()
		if err != nil {
			c.close()
			return
		}
		req, ok := parseH1Head(head)
		if !ok || len(head) > c.s.maxHead {
			c.handOff()
			return
		}
		_, _ = c.br.Discard(len(head))
		c.served, c.lastPOST = true, req.method == http.MethodPost
		keep, unread := c.serveOne(req)
		if !keep {
			if unread {
				c.closeWriteAndWait()
			}
			c.close()
			return
		}
	}
}

// handOff gives the connection, with the bytes read and not yet served, to
// the fallback server.
func (c *h1Conn) handOff() {
	_ = c.nc.SetReadDeadline(time.Time{})
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return
	}
	c.s.fallL.push(&peekedConn{Conn: c.nc, r: c.br})
}

// readHead waits for a request's head (up to the blank line) and returns
// it without consuming it. A head that does not fit the read buffer comes
// back as it is: parseH1Head refuses it, so the fallback server reads it.
func (c *h1Conn) readHead() ([]byte, error) {
	if c.br.Buffered() == 0 {
		c.mu.Lock()
		if c.closed || c.s.shutting.Load() {
			c.mu.Unlock()
			return nil, net.ErrClosed
		}
		c.idle = true
		c.mu.Unlock()
		if c.s.idleTimeout > 0 {
			_ = c.nc.SetReadDeadline(time.Now().Add(c.s.idleTimeout))
		}
		_, err := c.br.Peek(1)
		c.mu.Lock()
		c.idle = false
		closed := c.closed
		c.mu.Unlock()
		if err != nil || closed {
			return nil, errors.Join(err, net.ErrClosed)
		}
	}
	if c.s.headerTimeout > 0 {
		_ = c.nc.SetReadDeadline(time.Now().Add(c.s.headerTimeout))
	}
	if c.served {
		// As net/http's server: 4 bytes before every request but the
		// first (the connection closes quietly when they do not come),
		// and after a POST up to 4 CR or LF bytes skipped (RFC 7230,
		// section 3.5, for clients that end a POST body with CRLF).
		if _, err := c.br.Peek(4); err != nil {
			return nil, err
		}
		if c.lastPOST {
			b, _ := c.br.Peek(4)
			skip := 0
			for skip < len(b) && (b[skip] == '\r' || b[skip] == '\n') {
				skip++
			}
			_, _ = c.br.Discard(skip)
		}
	}
	head, err := peekHead(c.br)
	if err != nil && len(head) == 0 {
		return nil, err
	}
	// A head cut short by an error goes to net/http's server, which
	// answers it as it would have (400); one past the buffer too.
	_ = c.nc.SetReadDeadline(time.Time{})
	return head, nil
}

// peekHead waits for a head ending in a blank line and returns it without
// consuming it. When the buffer fills first, or reading fails first, it
// returns what is buffered (no blank line at its end) and the error.
func peekHead(br *bufio.Reader) ([]byte, error) {
	searched := 0
	for {
		n := br.Buffered()
		b, _ := br.Peek(n)
		if i := bytes.Index(b[max(searched-3, 0):], crlf2); i >= 0 {
			return b[:max(searched-3, 0)+i+4], nil
		}
		searched = n
		if n == br.Size() {
			return b, nil
		}
		if _, err := br.Peek(n + 1); err != nil {
			return b, err
		}
	}
}

var crlf2 = []byte("\r\n\r\n")

// h1Head is a request head the lean server serves.
type h1Head struct {
	method, target, host string
	url                  *url.URL
	header               http.Header
	contentLength        int64
	close                bool
}

// parseH1Head parses an HTTP/1.1 request head ending in a blank line. ok
// is false for whatever the lean server leaves to net/http's (leanH1).
func parseH1Head(head []byte) (*h1Head, bool) {
	if !bytes.HasSuffix(head, crlf2) {
		return nil, false
	}
	s := string(head[:len(head)-2]) // every line ends in CRLF
	eol := strings.Index(s, "\r\n")
	line := s[:eol]
	s = s[eol+2:]
	method, rest, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || proto != "HTTP/1.1" || !validMethod(method) || target == "" || target[0] != '/' {
		return nil, false
	}
	switch method {
	case http.MethodHead, http.MethodConnect, "PRI":
		return nil, false
	}
	for i := 0; i < len(target); i++ {
		// net/http refuses control bytes and spaces; leave those to it.
		if target[i] <= ' ' || target[i] == 0x7f {
			return nil, false
		}
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil, false
	}
	f, ok := parseH1Fields(s, true)
	if !ok || f.hosts != 1 {
		return nil, false
	}
	return &h1Head{method: method, target: target, url: u, header: f.header, host: f.host, contentLength: f.contentLength, close: f.close}, true
}

// h1Fields is a head's header section as parseH1Fields reads it.
type h1Fields struct {
	header        http.Header
	hosts         int
	host          string
	contentLength int64 // 0 when absent
	lengths       int   // Content-Length fields
	close         bool  // Connection: close
}

// parseH1Fields parses header lines, each ending in CRLF, as net/http
// does; ok is false for what the lean paths leave to net/http (a folded
// or malformed line, Transfer-Encoding, Expect, Upgrade, a Content-Length
// that is repeated or not plain digits). Values are substrings of s. A
// request's Host is taken out of the header (dropHost), as net/http does.
func parseH1Fields(s string, dropHost bool) (h1Fields, bool) {
	n := strings.Count(s, "\r\n")
	f := h1Fields{header: make(http.Header, n)}
	vals := make([]string, n)
	for i := 0; s != ""; i++ {
		eol := strings.Index(s, "\r\n")
		line := s[:eol]
		s = s[eol+2:]
		name, value, ok := strings.Cut(line, ":")
		if !ok || !httpguts.ValidHeaderFieldName(name) {
			return f, false // also a folded line, which starts with a blank
		}
		value = strings.Trim(value, " \t")
		if !httpguts.ValidHeaderFieldValue(value) {
			return f, false
		}
		k := http.CanonicalHeaderKey(name)
		switch k {
		case "Host":
			f.hosts++
			if !httpguts.ValidHostHeader(value) {
				return f, false
			}
			f.host = value
			if dropHost {
				continue
			}
		case "Content-Length":
			f.lengths++
			cl, ok := plainLength(value)
			if !ok || f.lengths > 1 { // net/http folds equal repeats into one
				return f, false
			}
			f.contentLength = cl
		case "Transfer-Encoding", "Expect", "Upgrade":
			return f, false
		case "Connection":
			if httpguts.HeaderValuesContainsToken([]string{value}, "close") {
				f.close = true
			}
		}
		vals[i] = value
		if vv, ok := f.header[k]; ok {
			f.header[k] = append(vv, value)
		} else {
			f.header[k] = vals[i : i+1 : i+1]
		}
	}
	return f, true
}

// plainLength parses a Content-Length of digits only.
func plainLength(v string) (int64, bool) {
	if v == "" || len(v) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, false
		}
		n = n*10 + int64(v[i]-'0')
	}
	return n, true
}

func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for i := 0; i < len(m); i++ {
		if !httpguts.IsTokenRune(rune(m[i])) {
			return false
		}
	}
	return true
}

// closeWriteAndWait ends the answers with a FIN and waits a while before
// the connection closes, as net/http's server does when a request's body
// was left unread: closing at once with unread bytes would send a reset,
// and the caller, still writing its body, could lose the answer (a 413 for
// a body over the limit, say) to it.
func (c *h1Conn) closeWriteAndWait() {
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	time.Sleep(h1LingerAfterFIN)
}

// serveOne runs the handler on one request and writes its answer; keep
// false means the connection must close, unread that part of the
// request's body was not read.
func (c *h1Conn) serveOne(h *h1Head) (keep, unread bool) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var body io.ReadCloser = http.NoBody
	var rb *h1Body
	if h.contentLength > 0 {
		rb = &h1Body{c: c, remain: h.contentLength}
		rb.left.Store(h.contentLength)
		body = rb
	}
	r := (&http.Request{
		Method:        h.method,
		URL:           h.url,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h.header,
		Body:          body,
		ContentLength: h.contentLength,
		Host:          h.host,
		RemoteAddr:    c.remote,
		RequestURI:    h.target,
		Close:         h.close,
	}).WithContext(ctx)
	w := &h1Writer{c: c, reqBody: rb, header: make(http.Header), cl: -1, closeAfter: h.close}
	c.wmu.Lock()
	c.serving, c.armed, c.gone, c.cancel = true, rb == nil, false, cancel
	c.wmu.Unlock()
	if rb == nil {
		c.watchTimer.Reset(c.s.watchAfter)
	}
	panicked := c.runHandler(w, r)
	c.unwatch()
	if panicked {
		return false, false
	}
	w.finish()
	if rb != nil {
		// A goroutine the handler left reading the body may hold the lock
		// until its read ends; the answer went first.
		rb.mu.Lock()
		rb.closed = true
		if rb.err == nil && rb.remain > 0 {
			if rb.remain > h1DiscardLimit {
				w.closeAfter, unread = true, true
			} else if _, err := c.br.Discard(int(rb.remain)); err != nil {
				w.closeAfter = true
			}
		} else if rb.err != nil {
			w.closeAfter = true
		}
		rb.mu.Unlock()
	}
	return !w.closeAfter && w.err == nil && !c.gone && !c.s.shutting.Load(), unread && w.err == nil && !c.gone
}

// runHandler runs the handler; a panic is logged (as net/http's server
// does, http.ErrAbortHandler quietly) and ends the connection.
func (c *h1Conn) runHandler(w *h1Writer, r *http.Request) (panicked bool) {
	defer func() {
		if p := recover(); p != nil {
			panicked = true
			if p != http.ErrAbortHandler {
				buf := make([]byte, 16<<10)
				buf = buf[:runtime.Stack(buf, false)]
				c.s.log.Error("HTTP API handler panicked", "panic", p, "stack", string(buf))
			}
		}
	}()
	c.s.handler.ServeHTTP(w, r)
	return false
}

// watch, run by the timer, reads from the connection while the call runs:
// data is the caller's next request (it stays in the buffer), an error
// means the caller went away and cancels the call's context.
func (c *h1Conn) watch() {
	c.wmu.Lock()
	if !c.armed || c.br.Buffered() > 0 {
		c.wmu.Unlock()
		return
	}
	c.armed, c.watching = false, true
	c.wmu.Unlock()
	_, err := c.br.Peek(1)
	c.wmu.Lock()
	c.watching = false
	if err != nil && !c.aborting {
		c.gone = true
		c.cancel()
	}
	c.wcond.Broadcast()
	c.wmu.Unlock()
}

// arm lets the caller check start once the request's body is read, while
// the call runs.
func (c *h1Conn) arm() {
	c.wmu.Lock()
	ok := c.serving
	c.armed = ok
	c.wmu.Unlock()
	if ok {
		c.watchTimer.Reset(c.s.watchAfter)
	}
}

// unwatch ends the caller check of the call that returned.
func (c *h1Conn) unwatch() {
	c.watchTimer.Stop()
	c.wmu.Lock()
	c.serving, c.armed = false, false
	if c.watching {
		c.aborting = true
		_ = c.nc.SetReadDeadline(time.Unix(1, 0))
		for c.watching {
			c.wcond.Wait()
		}
		c.aborting = false
		_ = c.nc.SetReadDeadline(time.Time{})
	}
	c.wmu.Unlock()
}

// h1Body is a request's body of known length, read from the connection.
type h1Body struct {
	c      *h1Conn
	mu     sync.Mutex
	remain int64
	closed bool
	err    error
	left   atomic.Int64 // remain, for the writer (a reader may hold mu)
}

func (b *h1Body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	if b.err != nil {
		return 0, b.err
	}
	if b.remain == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.remain {
		p = p[:b.remain]
	}
	n, err := b.c.br.Read(p)
	b.remain -= int64(n)
	b.left.Store(b.remain)
	if b.remain == 0 {
		b.c.arm()
		return n, io.EOF
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		b.err = err
	}
	return n, err
}

// Close ends the handler's reading; what is left is discarded (or the
// connection closed) after the answer.
func (b *h1Body) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}

// h1Writer is a call's http.ResponseWriter. The head waits until the body's
// length is known or a flush: an answer of at most h1HoldBody bytes whose
// handler set no Content-Length gets one and goes in one write, as
// net/http's does; a longer one goes chunked.
type h1Writer struct {
	c          *h1Conn
	reqBody    *h1Body // nil without a body
	header     http.Header
	code       int
	committed  bool // the head was written
	chunked    bool
	cl         int64 // the Content-Length, -1 when not known
	written    int64
	trailers   []string // announced in the Trailer header
	closeAfter bool
	done       bool
	err        error
}

func (w *h1Writer) Header() http.Header { return w.header }

func (w *h1Writer) WriteHeader(code int) {
	if w.code != 0 || w.done || code < 100 || code > 999 {
		return
	}
	if code >= 200 || code == http.StatusSwitchingProtocols {
		w.code = code
		if v := w.header.Get("Content-Length"); v != "" {
			if n, ok := plainLength(v); ok {
				w.cl = n
			} else {
				w.header.Del("Content-Length")
			}
		}
		return
	}
	// An informational answer goes at once, with the headers set so far.
	bw := w.c.bw
	w.statusLine(code)
	for k, vv := range w.header {
		for _, v := range vv {
			if httpguts.ValidHeaderFieldName(k) {
				writeHeaderLine(bw, k, v)
			}
		}
	}
	bw.WriteString("\r\n")
	if err := bw.Flush(); err != nil {
		w.err = err
	}
}

func (w *h1Writer) statusLine(code int) {
	bw := w.c.bw
	var num [8]byte
	bw.WriteString("HTTP/1.1 ")
	bw.Write(strconv.AppendInt(num[:0], int64(code), 10))
	bw.WriteByte(' ')
	if text := http.StatusText(code); text != "" {
		bw.WriteString(text)
	} else {
		bw.WriteString("status code ")
		bw.Write(strconv.AppendInt(num[:0], int64(code), 10))
	}
	bw.WriteString("\r\n")
}

func (w *h1Writer) Write(p []byte) (int, error) {
	if w.done {
		return 0, errH1Done
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.code == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !bodyAllowed(w.code) {
		return 0, http.ErrBodyNotAllowed
	}
	w.written += int64(len(p))
	if w.cl >= 0 && w.written > w.cl {
		return 0, http.ErrContentLength
	}
	if !w.committed {
		if w.cl < 0 && len(w.c.hold)+len(p) <= h1HoldBody {
			w.c.hold = append(w.c.hold, p...)
			return len(p), nil
		}
		w.commit(false, p)
	}
	w.body(p)
	if w.err != nil {
		return 0, w.err
	}
	return len(p), nil
}

// body writes p as the answer's body (a chunk when chunked).
func (w *h1Writer) body(p []byte) {
	if len(p) == 0 {
		return
	}
	bw := w.c.bw
	if w.chunked {
		var num [16]byte
		bw.Write(strconv.AppendInt(num[:0], int64(len(p)), 16))
		bw.WriteString("\r\n")
	}
	_, err := bw.Write(p)
	if w.chunked {
		bw.WriteString("\r\n")
	}
	if err != nil {
		w.err = err
	}
}

func (w *h1Writer) Flush() { _ = w.FlushError() }

// FlushError sends what is held (http.ResponseController uses it).
func (w *h1Writer) FlushError() error {
	if w.done {
		return errH1Done
	}
	if w.code == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		w.commit(false, nil)
	}
	if w.err == nil {
		w.err = w.c.bw.Flush()
	}
	return w.err
}

// commit writes the head, then the body held; last is whether the handler
// has returned (the length of a held body is then known), next the body
// about to be written (a Content-Type is sniffed from the first bytes).
func (w *h1Writer) commit(last bool, next []byte) {
	w.committed = true
	h := w.header
	w.trailers = announcedTrailers(h)
	prefixed := false
	for k := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			prefixed = true
		}
	}
	held := w.c.hold
	allowed := bodyAllowed(w.code)
	_, setCL := h["Content-Length"]
	if last && w.cl < 0 && allowed && len(w.trailers) == 0 && !prefixed {
		w.cl = int64(len(held))
	}
	if w.code == http.StatusSwitchingProtocols {
		w.closeAfter = true // without Hijack there is no other protocol to switch to
	}
	if allowed {
		_, haveType := h["Content-Type"]
		sniff := held
		if len(sniff) == 0 {
			sniff = next
		}
		if !haveType && h.Get("Content-Encoding") == "" && len(sniff) > 0 {
			h["Content-Type"] = []string{http.DetectContentType(sniff[:min(len(sniff), 512)])}
		}
		w.chunked = w.cl < 0
	} else {
		delete(h, "Content-Length")
		delete(h, "Transfer-Encoding")
		if w.code == http.StatusNotModified {
			delete(h, "Content-Type")
		}
		w.cl = 0
	}
	if w.c.s.shutting.Load() {
		w.closeAfter = true
	}
	if w.reqBody != nil && w.reqBody.left.Load() > h1DiscardLimit {
		w.closeAfter = true // too much request left to skip (as net/http)
	}
	if httpguts.HeaderValuesContainsToken(h["Connection"], "close") {
		w.closeAfter = true
	}
	bw := w.c.bw
	w.statusLine(w.code)
	for k, vv := range h {
		if k == "Transfer-Encoding" || (k == "Connection" && w.closeAfter) || strings.HasPrefix(k, http.TrailerPrefix) || !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		for _, v := range vv {
			writeHeaderLine(bw, k, v)
		}
	}
	if _, ok := h["Date"]; !ok {
		bw.WriteString("Date: ")
		bw.WriteString(httpDate().value)
		bw.WriteString("\r\n")
	}
	if w.cl >= 0 && allowed && !setCL {
		var num [20]byte
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(num[:0], w.cl, 10))
		bw.WriteString("\r\n")
	}
	if w.chunked {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if w.closeAfter {
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
	w.c.hold = w.c.hold[:0]
	if allowed {
		w.body(held)
	}
}

// finish completes the answer once the handler returned.
func (w *h1Writer) finish() {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	if !w.committed && w.err == nil {
		w.commit(true, nil)
	}
	w.done = true
	if w.err != nil {
		w.closeAfter = true
		return
	}
	bw := w.c.bw
	if w.chunked {
		bw.WriteString("0\r\n")
		for _, k := range w.trailers {
			for _, v := range w.header[k] {
				writeHeaderLine(bw, k, v)
			}
		}
		for k, vv := range w.header {
			if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok && httpguts.ValidHeaderFieldName(name) {
				for _, v := range vv {
					writeHeaderLine(bw, name, v)
				}
			}
		}
		bw.WriteString("\r\n")
	} else if w.cl >= 0 && w.written != w.cl && bodyAllowed(w.code) {
		w.closeAfter = true // short of its Content-Length: the caller cannot tell where it ends
	}
	if err := bw.Flush(); err != nil {
		w.err = err
		w.closeAfter = true
	}
	if cap(w.c.hold) > 4*h1HoldBody {
		w.c.hold = nil
	}
}

var errH1Done = errors.New("proxy: the answer was written after its handler returned")

// httpDate is the Date header's value, formatted once a second.
func httpDate() *cachedDate {
	now := time.Now()
	sec := now.Unix()
	if d := dateCache.Load(); d != nil && d.sec == sec {
		return d
	}
	d := &cachedDate{sec: sec, value: now.UTC().Format(http.TimeFormat)}
	dateCache.Store(d)
	return d
}

type cachedDate struct {
	sec   int64
	value string
}

var dateCache atomic.Pointer[cachedDate]
