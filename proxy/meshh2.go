package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Mesh servers (Config.MeshServer).
const (
	MeshServerLean    = "lean"     // leanH2 (the default)
	MeshServerNetHTTP = "net/http" // net/http's HTTP/2 server
)

// leanH2 serves the mesh's HTTP/2 with fewer hand-offs than net/http's
// server: a connection's frames are read on one goroutine, each stream's
// handler runs on a goroutine of its own and writes its answer's frames
// itself, under the connection's write lock, head, body and end of stream
// in one write when the answer is complete (net/http's server passes every
// frame through its serve loop and flushes on a goroutine started for it).
// Framing and header compression are x/net/http2's Framer and hpack.
//
// A connection that does not start with HTTP/2's client preface (HTTP/1.1
// on the h2c port), or a TLS connection that did not negotiate h2, goes to
// the fallback server unchanged.
//
// Not done: server pushes (never used) and priorities (ignored).
type leanH2 struct {
	handler  http.Handler
	fallback *http.Server
	log      *slog.Logger
	idle     time.Duration // a connection without streams this long is closed

	mu       sync.Mutex
	conns    map[*h2Conn]struct{}
	shutting bool
	fallL    *connQueue // connections for the fallback server
}

const (
	h2MaxStreams     = 1000
	h2PrefaceTimeout = 30 * time.Second
	h2IdleTimeout    = 10 * time.Minute // as net/http's mesh server had it
)

func newLeanH2(h http.Handler, fallback *http.Server, log *slog.Logger) *leanH2 {
	return &leanH2{handler: h, fallback: fallback, log: log, idle: h2IdleTimeout, conns: map[*h2Conn]struct{}{}}
}

// Serve accepts connections on l until it fails or Shutdown.
func (s *leanH2) Serve(l net.Listener) error {
	s.mu.Lock()
	s.fallL = newConnQueue()
	fallL := s.fallL
	s.mu.Unlock()
	go func() { _ = s.fallback.Serve(fallL) }()
	defer fallL.Close()
	for {
		c, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			shutting := s.shutting
			s.mu.Unlock()
			if shutting {
				return http.ErrServerClosed
			}
			return err
		}
		go s.sniff(c)
	}
}

// sniff hands c to the HTTP/2 server when it starts with the client
// preface (after a TLS handshake that negotiated h2), and to the fallback
// server otherwise.
func (s *leanH2) sniff(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(h2PrefaceTimeout))
	if tc, ok := c.(*tls.Conn); ok {
		if err := tc.Handshake(); err != nil {
			_ = c.Close()
			return
		}
		if tc.ConnectionState().NegotiatedProtocol != "h2" {
			_ = c.SetReadDeadline(time.Time{})
			s.fallL.push(c)
			return
		}
	}
	br := bufio.NewReaderSize(c, 32<<10)
	// Read no more than it takes to tell: a short HTTP/1.1 request must not
	// wait for bytes that will not come.
	want := len(http2.ClientPreface)
	for {
		head, err := br.Peek(min(max(br.Buffered(), 1), want))
		if err != nil {
			_ = c.Close()
			return
		}
		if !strings.HasPrefix(http2.ClientPreface, string(head)) {
			_ = c.SetReadDeadline(time.Time{})
			s.fallL.push(&peekedConn{Conn: c, r: br})
			return
		}
		if len(head) == want {
			break
		}
		if _, err := br.Peek(len(head) + 1); err != nil { // wait for more
			_ = c.Close()
			return
		}
	}
	_ = c.SetReadDeadline(time.Time{})
	_, _ = br.Discard(len(http2.ClientPreface))
	hc := newH2Conn(c, br, s.handler, s.log)
	hc.idleTimeout = s.idle
	s.mu.Lock()
	if s.shutting {
		s.mu.Unlock()
		_ = c.Close()
		return
	}
	s.conns[hc] = struct{}{}
	s.mu.Unlock()
	hc.serve()
	s.mu.Lock()
	delete(s.conns, hc)
	s.mu.Unlock()
}

// Shutdown tells every connection to go away (GOAWAY with the last stream
// it took), waits for their streams to end or ctx to be done, then closes
// them; the fallback server shuts down alongside.
func (s *leanH2) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutting = true
	conns := make([]*h2Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.goAway(http2.ErrCodeNo)
	}
	err := s.fallback.Shutdown(ctx)
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for _, c := range conns {
		for !c.idle() {
			select {
			case <-ctx.Done():
				for _, c := range conns {
					c.close()
				}
				return ctx.Err()
			case <-t.C:
			}
		}
		c.close()
	}
	return err
}

// peekedConn is a connection whose first bytes were read into r.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// h2Conn is one connection of the lean server.
type h2Conn struct {
	h2Link
	handler     http.Handler
	log         *slog.Logger
	idleTimeout time.Duration // 0: none
	idleTimer   *time.Timer   // runs checkIdle (nil without idleTimeout)
	tls         *tls.ConnectionState
	remote      string // the peer's address, for every request's RemoteAddr

	// Under mu.
	idleSince time.Time // when the last stream ended
	streams   map[uint32]*h2Stream
	lastID    uint32
	goingAway bool
	running   int // handlers not yet returned (a reset stream's may still run)
}

type h2Stream struct {
	h2Flow
	c      *h2Conn
	id     uint32
	cancel context.CancelFunc
	body   *h2Body
}

func newH2Conn(nc net.Conn, br *bufio.Reader, h http.Handler, log *slog.Logger) *h2Conn {
	c := &h2Conn{handler: h, log: log, streams: map[uint32]*h2Stream{}}
	c.init(nc, br)
	if tc, ok := nc.(*tls.Conn); ok {
		cs := tc.ConnectionState()
		c.tls = &cs
	}
	c.remote = nc.RemoteAddr().String()
	return c
}

func (c *h2Conn) serve() {
	defer c.close()
	c.wmu.Lock()
	c.writeOurSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: h2MaxStreams})
	err := c.bw.Flush()
	c.wmu.Unlock()
	if err != nil {
		return
	}
	if c.idleTimeout > 0 {
		c.mu.Lock()
		c.idleSince = time.Now()
		c.idleTimer = time.AfterFunc(c.idleTimeout, c.checkIdle)
		c.mu.Unlock()
		defer c.idleTimer.Stop()
	}
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				c.resetID(se.StreamID, se.Code)
				continue
			}
			var ce http2.ConnectionError
			if errors.As(err, &ce) {
				c.goAway(http2.ErrCode(ce))
			}
			return
		}
		if !c.frame(f) {
			return
		}
	}
}

// frame handles one frame read; false ends the connection.
func (c *h2Conn) frame(f http2.Frame) bool {
	switch f := f.(type) {
	case *http2.SettingsFrame:
		if f.IsAck() {
			return true
		}
		if err := c.settings(f, func(d int64) {
			for _, st := range c.streams {
				st.window += d
			}
		}, nil); err != nil {
			c.goAway(http2.ErrCodeProtocol)
			return false
		}
	case *http2.MetaHeadersFrame:
		c.mu.Lock()
		st := c.streams[f.StreamID]
		c.mu.Unlock()
		if st != nil {
			// The request's trailers.
			if st.body == nil || !f.StreamEnded() {
				c.resetID(f.StreamID, http2.ErrCodeProtocol)
				return true
			}
			st.body.end(f)
			return true
		}
		return c.startStream(f)
	case *http2.DataFrame:
		c.mu.Lock()
		st := c.streams[f.StreamID]
		c.mu.Unlock()
		n := int64(f.Length)
		if st == nil || st.body == nil {
			c.credit(0, 0, n) // the stream is gone; the connection's credit comes back
			if f.StreamID > c.lastID {
				c.goAway(http2.ErrCodeProtocol)
				return false
			}
			return true
		}
		ok, streamBack, connBack := st.body.put(f.Data(), f.StreamEnded(), n)
		if !ok {
			c.credit(0, 0, n)
			c.reset(st, http2.ErrCodeFlowControl)
		}
		c.credit(st.id, streamBack, connBack)
	case *http2.WindowUpdateFrame:
		c.windowUpdate(f, func(id uint32) *h2Flow {
			if st := c.streams[id]; st != nil {
				return &st.h2Flow
			}
			return nil
		})
	case *http2.RSTStreamFrame:
		c.mu.Lock()
		st := c.streams[f.StreamID]
		if st != nil {
			st.reset = true
			delete(c.streams, f.StreamID)
			c.noteIdleLocked()
		}
		c.cond.Broadcast()
		c.mu.Unlock()
		if st != nil {
			st.cancel()
			if st.body != nil {
				st.body.fail(errors.New("http2: the caller reset the stream"))
			}
		}
	case *http2.PingFrame:
		if !f.IsAck() {
			c.pong(f)
		}
	case *http2.GoAwayFrame:
		c.mu.Lock()
		c.goingAway = true
		c.mu.Unlock()
	case *http2.PushPromiseFrame:
		c.goAway(http2.ErrCodeProtocol) // a client never pushes
		return false
	}
	return true
}

// noteIdleLocked records when the connection became idle: called with mu
// held whenever a stream leaves c.streams. No deadline is set per request;
// checkIdle looks at idleSince now and then.
func (c *h2Conn) noteIdleLocked() {
	if c.idleTimeout > 0 && len(c.streams) == 0 {
		c.idleSince = time.Now()
	}
}

// checkIdle runs on c.idleTimer: a connection with no stream open for
// idleTimeout is told to go away and closed; otherwise the check comes
// again when it could first be due.
func (c *h2Conn) checkIdle() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	next := c.idleTimeout
	if len(c.streams) == 0 {
		next -= time.Since(c.idleSince)
	}
	if next <= 0 {
		c.mu.Unlock()
		c.goAway(http2.ErrCodeNo)
		c.close()
		return
	}
	c.idleTimer.Reset(next)
	c.mu.Unlock()
}

func (c *h2Conn) goAway(code http2.ErrCode) {
	c.mu.Lock()
	last := c.lastID
	c.goingAway = true
	c.mu.Unlock()
	c.wmu.Lock()
	_ = c.fr.WriteGoAway(last, code, nil)
	_ = c.bw.Flush()
	c.wmu.Unlock()
}

// idle reports whether no stream is open.
func (c *h2Conn) idle() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.streams) == 0 || c.closed
}

func (c *h2Conn) close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	streams := c.streams
	c.streams = map[uint32]*h2Stream{}
	c.cond.Broadcast()
	c.mu.Unlock()
	for _, st := range streams {
		st.cancel()
		if st.body != nil {
			st.body.fail(io.ErrUnexpectedEOF)
		}
	}
	_ = c.nc.Close()
}

func (c *h2Conn) startStream(f *http2.MetaHeadersFrame) bool {
	id := f.StreamID
	c.mu.Lock()
	if id%2 == 0 || id <= c.lastID {
		c.mu.Unlock()
		c.goAway(http2.ErrCodeProtocol)
		return false
	}
	c.lastID = id
	// Handlers still running count, not open streams: a caller that opens
	// and resets streams at once must not pile up handlers.
	refuse := c.running >= h2MaxStreams || c.goingAway
	c.mu.Unlock()
	if refuse {
		c.resetID(id, http2.ErrCodeRefusedStream)
		return true
	}
	regular := len(f.RegularFields()) // the pseudo-headers go elsewhere
	req := &http.Request{Proto: "HTTP/2.0", ProtoMajor: 2, Header: make(http.Header, regular), RemoteAddr: c.remote, TLS: c.tls}
	var path, scheme string
	vals := make([]string, 0, regular)
	for _, hf := range f.Fields {
		switch hf.Name {
		case ":method":
			req.Method = hf.Value
		case ":path":
			path = hf.Value
		case ":authority":
			req.Host = hf.Value
		case ":scheme":
			scheme = hf.Value
		default:
			if hf.IsPseudo() || !httpguts.ValidHeaderFieldValue(hf.Value) {
				c.resetID(id, http2.ErrCodeProtocol)
				return true
			}
			addHeaderValue(req.Header, &vals, c.headerKey(hf.Name), hf.Value)
		}
	}
	if req.Host == "" {
		req.Host = req.Header.Get("Host")
	}
	delete(req.Header, "Host")
	if req.Method == "" || scheme == "" || !strings.HasPrefix(path, "/") || hasConnectionHeaders(req.Header) {
		c.resetID(id, http2.ErrCodeProtocol)
		return true
	}
	u, err := url.ParseRequestURI(path)
	if err != nil {
		c.resetID(id, http2.ErrCodeProtocol)
		return true
	}
	req.URL, req.RequestURI = u, path
	ctx, cancel := context.WithCancel(context.Background())
	st := &h2Stream{c: c, id: id, cancel: cancel}
	if f.StreamEnded() {
		req.Body, req.ContentLength = http.NoBody, 0
	} else {
		st.body = newH2Body(&c.h2Link, id)
		req.Body = st.body
		req.ContentLength = -1
		if cl := req.Header["Content-Length"]; len(cl) == 1 {
			if n, err := strconv.ParseInt(cl[0], 10, 64); err == nil && n >= 0 {
				req.ContentLength = n
			}
		}
		if vv := req.Header["Trailer"]; len(vv) > 0 {
			req.Trailer = http.Header{}
			for _, v := range vv {
				for _, k := range strings.Split(v, ",") {
					if k = http.CanonicalHeaderKey(strings.TrimSpace(k)); k != "" {
						req.Trailer[k] = nil
					}
				}
			}
			delete(req.Header, "Trailer")
		}
	}
	req = req.WithContext(ctx)
	if st.body != nil {
		st.body.trailerTo = &req.Trailer
	}
	c.mu.Lock()
	st.window = c.peerWindow
	c.streams[id] = st
	c.running++
	c.mu.Unlock()
	go c.run(st, req)
	return true
}

// hasConnectionHeaders reports headers HTTP/2 forbids (RFC 9113, 8.2.2).
func hasConnectionHeaders(h http.Header) bool {
	for _, k := range []string{"Connection", "Proxy-Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade"} {
		if len(h[k]) > 0 {
			return true
		}
	}
	if te := h["Te"]; len(te) > 0 && (len(te) > 1 || te[0] != "trailers") {
		return true
	}
	return false
}

// errHandlerReturned fails a write to a stream whose handler has returned.
var errHandlerReturned = errors.New("http2: the handler has returned")

func (c *h2Conn) run(st *h2Stream, req *http.Request) {
	w := &h2Writer{st: st, header: http.Header{}, head: req.Method == http.MethodHead}
	defer func() {
		st.cancel()
		c.mu.Lock()
		c.running--
		c.mu.Unlock()
		if p := recover(); p != nil {
			// As net/http's server: the stream is reset, the sidecar
			// goes on serving.
			c.reset(st, http2.ErrCodeInternal)
			if st.body != nil {
				st.body.release()
			}
			if p != http.ErrAbortHandler {
				buf := make([]byte, 16<<10)
				buf = buf[:runtime.Stack(buf, false)]
				c.log.Error("mesh handler panicked", "panic", p, "stack", string(buf))
			}
		}
	}()
	c.handler.ServeHTTP(w, req)
	w.finish()
}

// reset ends st with RST_STREAM.
func (c *h2Conn) reset(st *h2Stream, code http2.ErrCode) {
	c.mu.Lock()
	if c.streams[st.id] == st {
		delete(c.streams, st.id)
		c.noteIdleLocked()
	}
	st.reset = true
	c.cond.Broadcast()
	c.mu.Unlock()
	c.resetID(st.id, code)
}

// h2Writer is a stream's http.ResponseWriter: it holds the answer's head
// and body until a flush, 32 KiB of body or the handler's end, then writes
// them in one go.
type h2Writer struct {
	st          *h2Stream
	header      http.Header
	code        int
	head        bool // a HEAD request: no body goes out
	sentHeaders bool
	trailers    []string // announced in the Trailer header when the head went
	buf         []byte
	bufp        *[]byte // buf's buffer, lent by bodyBufs until finish
	failed      error
}

func (w *h2Writer) Header() http.Header { return w.header }

func (w *h2Writer) WriteHeader(code int) {
	if w.code != 0 || w.failed != nil || code < 100 || code > 999 {
		return
	}
	if code >= 200 {
		w.code = code
		return
	}
	if code == http.StatusSwitchingProtocols {
		return // not in HTTP/2
	}
	// An informational answer goes at once, with the headers set so far.
	c := w.st.c
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.hbuf.Reset()
	_ = c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: strconv.Itoa(code)})
	for k, vv := range w.header {
		if !hopByHop(k) {
			c.encodeField(k, vv)
		}
	}
	err := c.writeHeaderBlock(w.st.id, false)
	if err == nil {
		err = c.bw.Flush()
	}
	w.failed = err
}

func (w *h2Writer) Write(p []byte) (int, error) {
	if w.failed != nil {
		return 0, w.failed
	}
	if w.code == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.head {
		return len(p), nil
	}
	if w.bufp == nil {
		w.bufp = getBodyBuf(max(len(p), 4<<10))
		w.buf = (*w.bufp)[:0]
	}
	w.buf = append(w.buf, p...)
	if len(w.buf) >= 32<<10 {
		if err := w.send(false); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (w *h2Writer) Flush() { _ = w.FlushError() }

// FlushError sends what is held (http.ResponseController uses it).
func (w *h2Writer) FlushError() error {
	if w.code == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return w.send(false)
}

func (w *h2Writer) finish() {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	err := w.send(true) // the answer's last frames, in the link's buffer
	if w.bufp != nil {
		// Copied or given up: the buffer goes back.
		*w.bufp = w.buf
		putBodyBuf(w.bufp)
		w.bufp, w.buf = nil, nil
	}
	c := w.st.c
	c.mu.Lock()
	if c.streams[w.st.id] == w.st {
		delete(c.streams, w.st.id)
		c.noteIdleLocked()
	}
	crowd := len(c.streams) > 0 // other streams are open on the link
	c.mu.Unlock()
	if err == nil {
		err = c.flushSoon(crowd)
	}
	if err != nil {
		w.failed = err
	} else {
		// A write from a goroutine the handler left behind fails.
		w.failed = errHandlerReturned
	}
	if w.st.body != nil && w.st.body.release() && err == nil {
		// The answer is complete and the caller is still sending: tell it
		// to stop (RFC 9113, 8.1).
		c.resetID(w.st.id, http2.ErrCodeNo)
	}
}

// send writes the head (once) and what is held, ending the stream when
// end is set (with trailers when the handler set any); the frames that end
// it are left in the buffer for finish to flush.
func (w *h2Writer) send(end bool) error {
	if w.failed != nil {
		return w.failed
	}
	err := w.sendLocked(end)
	if err != nil {
		w.failed = err
	}
	return err
}

func (w *h2Writer) sendLocked(end bool) error {
	c := w.st.c
	if !w.sentHeaders {
		w.trailers = announcedTrailers(w.header) // the trailers the head announces
	}
	var trailers http.Header
	if end {
		for _, k := range w.trailers {
			if vv, ok := w.header[k]; ok {
				if trailers == nil {
					trailers = http.Header{}
				}
				trailers[k] = vv
			}
		}
		for k, vv := range w.header {
			if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
				if trailers == nil {
					trailers = http.Header{}
				}
				trailers[name] = vv
			}
		}
	}
	data := w.buf
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if !w.sentHeaders {
		w.sentHeaders = true
		// As net/http's server: a Content-Type sniffed from the body when
		// the handler set none, and a Date.
		if _, ok := w.header["Content-Type"]; !ok && len(data) > 0 && bodyAllowed(w.code) {
			w.header["Content-Type"] = []string{http.DetectContentType(data[:min(len(data), 512)])}
		}
		_, hasDate := w.header["Date"]
		c.hbuf.Reset()
		_ = c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: strconv.Itoa(w.code)})
		for k, vv := range w.header {
			if !strings.HasPrefix(k, http.TrailerPrefix) && !hopByHop(k) && !w.announced(k) {
				c.encodeField(k, vv)
			}
		}
		if !hasDate {
			_ = c.henc.WriteField(hpack.HeaderField{Name: "date", Value: httpDate().value})
		}
		endHeaders := end && len(data) == 0 && len(trailers) == 0
		if err := c.writeHeaderBlock(w.st.id, endHeaders); err != nil {
			return err
		}
		if endHeaders {
			return nil // flushed by finish
		}
	}
	if err := c.writeData(w.st.id, &w.st.h2Flow, data, end && len(trailers) == 0); err != nil {
		return err
	}
	w.buf = w.buf[:0]
	if len(trailers) > 0 {
		c.hbuf.Reset()
		for k, vv := range trailers {
			c.encodeField(k, vv)
		}
		if err := c.writeHeaderBlock(w.st.id, true); err != nil {
			return err
		}
	}
	if end {
		return nil // flushed by finish
	}
	return c.bw.Flush()
}

// announcedTrailers is the trailer names an answer's Trailer header lists.
func announcedTrailers(h http.Header) []string {
	var names []string
	for _, v := range h["Trailer"] {
		for k := range strings.SplitSeq(v, ",") {
			if k = http.CanonicalHeaderKey(textproto.TrimString(k)); k != "" {
				names = append(names, k)
			}
		}
	}
	return names
}

// bodyAllowed reports whether an answer with this status may have a body.
func bodyAllowed(code int) bool {
	return code >= 200 && code != http.StatusNoContent && code != http.StatusNotModified
}

func (w *h2Writer) announced(k string) bool {
	for _, t := range w.trailers {
		if t == k {
			return true
		}
	}
	return false
}
