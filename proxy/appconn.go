package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// inlineMaxBody is the largest request body the inline client carries; it
// buffers such a body so that a call can be replayed on a fresh connection
// when a pooled one turns out to be closed by the app.
const inlineMaxBody = 64 << 10

// inlineTransport is an HTTP/1.1 client for the app channel that writes the
// request and reads the answer on the calling goroutine, over a pool of
// keep-alive connections. net/http's Transport hands every call to a write
// loop and a read loop goroutine per connection; on the hot path of small
// calls those hand-offs cost more than the work. Calls it does not handle
// simply (bodies of unknown or large size, upgrades, Expect: 100-continue)
// go to the fallback Transport, which streams them full duplex.
type inlineTransport struct {
	addr     string
	fallback http.RoundTripper
	dial     func(ctx context.Context, network, addr string) (net.Conn, error)
	maxIdle  int

	mu   sync.Mutex
	idle []*inlineConn
}

type inlineConn struct {
	nc net.Conn
	br *bufio.Reader
	bw *bufio.Writer
}

func newInlineTransport(addr string, fallback http.RoundTripper, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *inlineTransport {
	return &inlineTransport{
		addr:     addr,
		fallback: fallback,
		dial:     dial,
		maxIdle:  256,
	}
}

// simple reports whether the inline client carries req. incoming says req
// is a server's request, whose ContentLength 0 means an empty body; on a
// client's request with a body it means a length not known.
func (t *inlineTransport) simple(req *http.Request, incoming bool) bool {
	if req.Method == http.MethodConnect || req.ContentLength < 0 || req.ContentLength > inlineMaxBody {
		return false
	}
	if !incoming && req.Body != nil && req.Body != http.NoBody && req.ContentLength == 0 {
		return false // a body of unknown length
	}
	h := req.Header
	if len(h["Upgrade"]) > 0 || len(h["Expect"]) > 0 || len(req.TransferEncoding) > 0 || len(req.Trailer) > 0 {
		return false
	}
	return true
}

// RoundTrip implements http.RoundTripper.
func (t *inlineTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.simple(req, false) {
		return t.fallback.RoundTrip(req)
	}
	return t.roundTrip(req, "", false)
}

// roundTrip carries a simple call (see simple): writeAppRequest says what
// token and direct mean.
func (t *inlineTransport) roundTrip(req *http.Request, token string, direct bool) (*http.Response, error) {
	var body []byte
	if req.Body != nil && req.Body != http.NoBody {
		if req.ContentLength > 0 {
			// Written whole before the answer is read (a replay too).
			buf := getBodyBuf(int(req.ContentLength))
			defer putBodyBuf(buf)
			body = *buf
			if _, err := io.ReadFull(req.Body, body); err != nil {
				_ = req.Body.Close()
				return nil, err
			}
		}
		_ = req.Body.Close()
	}
	for attempt := 0; ; attempt++ {
		c, reused, err := t.get(req.Context())
		if err != nil {
			return nil, err
		}
		resp, err := t.exchange(c, req, body, token, direct)
		if err == nil {
			return resp, nil
		}
		_ = c.nc.Close()
		// A pooled connection the app closed as it went idle fails before any
		// answer arrives. Replay the call on a new connection when that is
		// safe, as net/http's Transport does: when nothing reached the app,
		// or when the method is idempotent and the app answered nothing.
		var nw nothingWritten
		if reused && attempt == 0 && req.Context().Err() == nil &&
			(errors.As(err, &nw) || (idempotent(req.Method) && errors.Is(err, io.EOF))) {
			continue
		}
		return nil, err
	}
}

// nothingWritten marks a failure before any byte of the request left.
type nothingWritten struct{ error }

func (e nothingWritten) Unwrap() error { return e.error }

func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

func (t *inlineTransport) exchange(c *inlineConn, req *http.Request, body []byte, token string, direct bool) (*http.Response, error) {
	// A cancelled caller unblocks the read by expiring the deadline.
	stop := context.AfterFunc(req.Context(), func() { _ = c.nc.SetDeadline(time.Unix(1, 0)) })
	if err := writeAppRequest(c.bw, req, t.addr, body, token, direct); err != nil {
		stop()
		return nil, err
	}
	if err := c.bw.Flush(); err != nil {
		stop()
		// A small request goes out in one write; if it failed, nothing went.
		return nil, nothingWritten{err}
	}
	// Peek first: io.EOF here means the app closed the connection without
	// answering a byte (ReadResponse would call that an unexpected EOF).
	if _, err := c.br.Peek(1); err != nil {
		stop()
		if cerr := req.Context().Err(); cerr != nil {
			return nil, cerr
		}
		return nil, err
	}
	resp, err := readAppResponse(c.br, req)
	// Informational answers (103 Early Hints and the like) precede the real one.
	for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
		_ = resp.Body.Close()
		resp, err = readAppResponse(c.br, req)
	}
	if err == nil && resp.StatusCode == http.StatusSwitchingProtocols {
		_ = resp.Body.Close()
		err = errors.New("the app switched protocols on a call that did not ask to")
	}
	if err != nil {
		stop()
		if cerr := req.Context().Err(); cerr != nil {
			return nil, cerr
		}
		return nil, err
	}
	reuse := !resp.Close && !req.Close
	if resp.Body == http.NoBody || resp.ContentLength == 0 {
		_ = resp.Body.Close()
		resp.Body = http.NoBody
		t.done(c, stop, reuse)
		return resp, nil
	}
	resp.Body = &inlineBody{rc: resp.Body, t: t, c: c, stop: stop, reuse: reuse}
	return resp, nil
}

// done returns c to the pool, or closes it.
func (t *inlineTransport) done(c *inlineConn, stop func() bool, reuse bool) {
	if !stop() {
		reuse = false // the deadline fired: the connection is spent
	}
	if reuse {
		t.mu.Lock()
		if len(t.idle) < t.maxIdle {
			t.idle = append(t.idle, c)
			t.mu.Unlock()
			return
		}
		t.mu.Unlock()
	}
	_ = c.nc.Close()
}

func (t *inlineTransport) get(ctx context.Context) (*inlineConn, bool, error) {
	for {
		t.mu.Lock()
		n := len(t.idle)
		if n == 0 {
			t.mu.Unlock()
			break
		}
		c := t.idle[n-1]
		t.idle = t.idle[:n-1]
		t.mu.Unlock()
		if c.alive() {
			return c, true, nil
		}
		_ = c.nc.Close()
	}
	nc, err := t.dial(ctx, "tcp", t.addr)
	if err != nil {
		return nil, false, err
	}
	return &inlineConn{nc: nc, br: bufio.NewReaderSize(nc, 16<<10), bw: bufio.NewWriterSize(nc, 16<<10)}, false, nil
}

func (t *inlineTransport) closeIdle() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	for _, c := range idle {
		_ = c.nc.Close()
	}
}

// inlineBody gives the connection back once the answer's body is read to
// its end, and closes it when the reader gives up early.
type inlineBody struct {
	rc       io.ReadCloser
	t        *inlineTransport
	c        *inlineConn
	stop     func() bool
	reuse    bool
	finished bool
	sawEOF   bool
}

func (b *inlineBody) Read(p []byte) (int, error) {
	if b.finished {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.sawEOF = true
	}
	return n, err
}

func (b *inlineBody) Close() error {
	if b.finished {
		return nil
	}
	b.finished = true
	err := b.rc.Close()
	b.t.done(b.c, b.stop, b.reuse && b.sawEOF)
	return err
}

// readAppResponse reads the app's answer to req. A plain one (HTTP/1.1, a
// final status other than 204 and 304, exactly one Content-Length, nothing
// net/http would rewrite) is parsed from one string by parseH1Fields,
// without net/http's allocation per header; any other is left to
// http.ReadResponse, which reads the same bytes (FuzzAppResponse compares
// the two).
func readAppResponse(br *bufio.Reader, req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodHead {
		return http.ReadResponse(br, req)
	}
	head, _ := peekHead(br) // a head cut short fails parseAppResponse
	resp, ok := parseAppResponse(head)
	if !ok {
		return http.ReadResponse(br, req)
	}
	_, _ = br.Discard(len(head))
	resp.Request = req
	if resp.ContentLength == 0 {
		resp.Body = http.NoBody
	} else {
		resp.Body = &appResponseBody{br: br, remain: resp.ContentLength}
	}
	return resp, nil
}

// parseAppResponse parses a plain answer's head (readAppResponse); the
// Body is left to the caller.
func parseAppResponse(head []byte) (*http.Response, bool) {
	if !bytes.HasSuffix(head, crlf2) {
		return nil, false
	}
	s := string(head[:len(head)-2]) // every line ends in CRLF
	eol := strings.Index(s, "\r\n")
	status, ok := strings.CutPrefix(s[:eol], "HTTP/1.1 ")
	// A bare LF ends a line for net/http: such a head is left to it
	// (parseH1Fields refuses one in a header line).
	if !ok || len(status) < 3 || (len(status) > 3 && status[3] != ' ') || strings.IndexByte(status, '\n') >= 0 {
		return nil, false
	}
	code := 0
	for i := range 3 {
		if status[i] < '0' || status[i] > '9' {
			return nil, false
		}
		code = code*10 + int(status[i]-'0')
	}
	if !bodyAllowed(code) {
		return nil, false
	}
	f, ok := parseH1Fields(s[eol+2:], false)
	if !ok || f.lengths != 1 {
		return nil, false
	}
	if _, ok := f.header["Pragma"]; ok {
		return nil, false // net/http may add a Cache-Control
	}
	if f.close {
		delete(f.header, "Connection") // as http.ReadResponse does
	}
	return &http.Response{
		Status: status, StatusCode: code, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: f.header, ContentLength: f.contentLength, Close: f.close,
	}, true
}

// appResponseBody is an answer's body of known length.
type appResponseBody struct {
	br     *bufio.Reader
	remain int64
}

func (b *appResponseBody) Read(p []byte) (int, error) {
	if b.remain == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.remain {
		p = p[:b.remain]
	}
	n, err := b.br.Read(p)
	b.remain -= int64(n)
	if b.remain == 0 {
		return n, io.EOF
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// Close leaves what is unread; the connection is then not reused
// (inlineBody).
func (b *appResponseBody) Close() error { return nil }
