package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
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
			body = make([]byte, req.ContentLength)
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
	resp, err := http.ReadResponse(c.br, req)
	// Informational answers (103 Early Hints and the like) precede the real one.
	for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
		_ = resp.Body.Close()
		resp, err = http.ReadResponse(c.br, req)
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
