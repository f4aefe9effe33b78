package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
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
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Mesh servers (Config.MeshServer).
const (
	MeshServerNetHTTP = "net/http" // net/http's HTTP/2 server (the default)
	MeshServerLean    = "lean"     // leanH2 (experimental)
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
	h2InitialWindow  = 1 << 20 // per stream, both ways
	h2ConnWindow     = 8 << 20
	h2MaxFrame       = 16 << 10
	h2MaxStreams     = 1000
	h2PrefaceTimeout = 30 * time.Second
	h2IdleTimeout    = 10 * time.Minute // as net/http's mesh server had it
	h2MinRefresh     = 4 << 10          // smallest WINDOW_UPDATE sent (x/net/http2's inflowMinRefresh)
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

type h2Conn struct {
	nc          net.Conn
	handler     http.Handler
	log         *slog.Logger
	idleTimeout time.Duration // 0: none
	idleArmed   bool          // the idle read deadline is set (under mu)
	tls         *tls.ConnectionState
	remote      string        // the peer's address, for every request's RemoteAddr
	fr          *http2.Framer // reads on the serving goroutine, writes under wmu

	wmu        sync.Mutex
	bw         *bufio.Writer
	henc       *hpack.Encoder
	hbuf       bytes.Buffer
	connUnsent int64 // connection credit owed to the peer, not yet sent (under wmu)

	mu         sync.Mutex
	cond       *sync.Cond
	streams    map[uint32]*h2Stream
	lastID     uint32
	sendWindow int64 // the connection's, towards the peer
	peerWindow int64 // the initial stream window the peer gave
	peerFrame  uint32
	closed     bool
	goingAway  bool
	running    int // handlers not yet returned (a reset stream's may still run)
}

type h2Stream struct {
	c      *h2Conn
	id     uint32
	cancel context.CancelFunc
	window int64 // send window
	reset  bool
	body   *h2Body
}

func newH2Conn(nc net.Conn, br *bufio.Reader, h http.Handler, log *slog.Logger) *h2Conn {
	c := &h2Conn{nc: nc, handler: h, log: log, streams: map[uint32]*h2Stream{}, sendWindow: 65535, peerWindow: 65535, peerFrame: 16384}
	if tc, ok := nc.(*tls.Conn); ok {
		cs := tc.ConnectionState()
		c.tls = &cs
	}
	c.remote = nc.RemoteAddr().String()
	c.cond = sync.NewCond(&c.mu)
	c.bw = bufio.NewWriterSize(nc, 32<<10)
	c.fr = http2.NewFramer(c.bw, br)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = 1 << 20
	c.henc = hpack.NewEncoder(&c.hbuf)
	return c
}

func (c *h2Conn) serve() {
	defer c.close()
	c.wmu.Lock()
	_ = c.fr.WriteSettings(
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: h2MaxStreams},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: h2InitialWindow},
		http2.Setting{ID: http2.SettingMaxFrameSize, Val: h2MaxFrame},
	)
	_ = c.fr.WriteWindowUpdate(0, h2ConnWindow-65535)
	err := c.bw.Flush()
	c.wmu.Unlock()
	if err != nil {
		return
	}
	c.mu.Lock()
	c.armIdleLocked()
	c.mu.Unlock()
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
				// Only armed while no stream is open (armIdleLocked).
				c.goAway(http2.ErrCodeNo)
				return
			}
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
		tableSize := int64(-1)
		c.mu.Lock()
		bad := f.ForeachSetting(func(s http2.Setting) error {
			if err := s.Valid(); err != nil {
				return err
			}
			switch s.ID {
			case http2.SettingInitialWindowSize:
				d := int64(s.Val) - c.peerWindow
				c.peerWindow = int64(s.Val)
				for _, st := range c.streams {
					st.window += d
				}
			case http2.SettingMaxFrameSize:
				c.peerFrame = s.Val
			case http2.SettingHeaderTableSize:
				tableSize = int64(s.Val)
			}
			return nil
		})
		c.cond.Broadcast()
		c.mu.Unlock()
		if bad != nil {
			c.goAway(http2.ErrCodeProtocol)
			return false
		}
		c.wmu.Lock()
		if tableSize >= 0 {
			c.henc.SetMaxDynamicTableSizeLimit(uint32(tableSize))
		}
		_ = c.fr.WriteSettingsAck()
		_ = c.bw.Flush()
		c.wmu.Unlock()
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
		c.mu.Lock()
		if f.StreamID == 0 {
			c.sendWindow += int64(f.Increment)
		} else if st := c.streams[f.StreamID]; st != nil {
			st.window += int64(f.Increment)
		}
		c.cond.Broadcast()
		c.mu.Unlock()
	case *http2.RSTStreamFrame:
		c.mu.Lock()
		st := c.streams[f.StreamID]
		if st != nil {
			st.reset = true
			delete(c.streams, f.StreamID)
			c.armIdleLocked()
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
			c.wmu.Lock()
			_ = c.fr.WritePing(true, f.Data)
			_ = c.bw.Flush()
			c.wmu.Unlock()
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

// armIdleLocked keeps the read deadline of an idle connection: with no
// stream open it is idleTimeout from now, otherwise none. It is called
// with mu held whenever the streams change, from whichever goroutine
// changed them, so a reader blocked in a read gets it too.
func (c *h2Conn) armIdleLocked() {
	if c.idleTimeout <= 0 || c.closed {
		return
	}
	switch {
	case len(c.streams) == 0:
		_ = c.nc.SetReadDeadline(time.Now().Add(c.idleTimeout))
		c.idleArmed = true
	case c.idleArmed:
		_ = c.nc.SetReadDeadline(time.Time{})
		c.idleArmed = false
	}
}

// credit gives back flow-control credit: connN bytes to the connection
// and streamN to stream id. As x/net/http2 does, a WINDOW_UPDATE goes only
// once h2MinRefresh bytes are owed, so a small body costs no frame (and
// no write) of its own; the peer's windows are far larger than what is
// held back.
func (c *h2Conn) credit(id uint32, streamN, connN int64) {
	if streamN <= 0 && connN <= 0 {
		return
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	wrote := false
	if c.connUnsent += connN; c.connUnsent >= h2MinRefresh {
		_ = c.fr.WriteWindowUpdate(0, uint32(c.connUnsent))
		c.connUnsent, wrote = 0, true
	}
	if id != 0 && streamN > 0 {
		_ = c.fr.WriteWindowUpdate(id, uint32(streamN))
		wrote = true
	}
	if wrote {
		_ = c.bw.Flush()
	}
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
	req := &http.Request{Proto: "HTTP/2.0", ProtoMajor: 2, Header: make(http.Header, len(f.Fields)), RemoteAddr: c.remote, TLS: c.tls}
	var path, scheme string
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
			k := http.CanonicalHeaderKey(hf.Name)
			req.Header[k] = append(req.Header[k], hf.Value)
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
		st.body = newH2Body(st)
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
		st.body.req = req
	}
	c.mu.Lock()
	st.window = c.peerWindow
	c.streams[id] = st
	c.armIdleLocked()
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
		c.armIdleLocked()
	}
	st.reset = true
	c.cond.Broadcast()
	c.mu.Unlock()
	c.resetID(st.id, code)
}

func (c *h2Conn) resetID(id uint32, code http2.ErrCode) {
	c.wmu.Lock()
	_ = c.fr.WriteRSTStream(id, code)
	_ = c.bw.Flush()
	c.wmu.Unlock()
}

// h2Body is a stream's request body: DATA frames queued by the reader, at
// most the stream's window of them.
type h2Body struct {
	st     *h2Stream
	req    *http.Request
	mu     sync.Mutex
	cond   *sync.Cond
	buf    []byte
	held   int64 // bytes received, not yet read
	unsent int64 // stream credit for bytes read, not yet sent
	eof    bool
	err    error
	gone   bool // nobody reads any more: what arrives is granted back at once
}

func newH2Body(st *h2Stream) *h2Body {
	b := &h2Body{st: st}
	b.cond = sync.NewCond(&b.mu)
	return b
}

// put queues a DATA frame's payload (n counts its padding too). ok is
// false when the caller sent more than the window allowed; streamBack and
// connBack are credit to give back at once (padding, and what arrives
// once nobody reads).
func (b *h2Body) put(p []byte, end bool, n int64) (ok bool, streamBack, connBack int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.eof || b.held+n > h2InitialWindow {
		return false, 0, 0
	}
	b.eof = end
	if b.gone {
		return true, 0, n
	}
	b.held += int64(len(p))
	b.buf = append(b.buf, p...)
	b.cond.Broadcast()
	if pad := n - int64(len(p)); pad > 0 {
		return true, pad, pad
	}
	return true, 0, 0
}

// end takes the request's trailers and ends the body.
func (b *h2Body) end(f *http2.MetaHeadersFrame) {
	b.mu.Lock()
	for _, hf := range f.RegularFields() {
		k := http.CanonicalHeaderKey(hf.Name)
		if _, declared := b.req.Trailer[k]; declared {
			b.req.Trailer[k] = append(b.req.Trailer[k], hf.Value)
		}
	}
	b.eof = true
	b.cond.Broadcast()
	b.mu.Unlock()
}

func (b *h2Body) fail(err error) {
	b.mu.Lock()
	if b.err == nil {
		b.err = err
	}
	b.cond.Broadcast()
	b.mu.Unlock()
}

func (b *h2Body) Read(p []byte) (int, error) {
	b.mu.Lock()
	for len(b.buf) == 0 && !b.eof && b.err == nil {
		b.cond.Wait()
	}
	if len(b.buf) == 0 {
		err := b.err
		if err == nil {
			err = io.EOF
		}
		b.mu.Unlock()
		return 0, err
	}
	n := copy(p, b.buf)
	b.buf = b.buf[n:]
	if len(b.buf) == 0 {
		b.buf = nil
	}
	b.held -= int64(n)
	var streamBack int64
	if !b.eof { // the stream's credit matters only while the caller sends
		if b.unsent += int64(n); b.unsent >= h2MinRefresh {
			streamBack, b.unsent = b.unsent, 0
		}
	}
	b.mu.Unlock()
	b.st.c.credit(b.st.id, streamBack, int64(n))
	return n, nil
}

func (b *h2Body) Close() error {
	b.fail(errors.New("http2: request body closed"))
	b.release()
	return nil
}

// release gives the connection back its credit for what was received and
// will not be read, now and from now on; it reports whether the caller was
// still sending.
func (b *h2Body) release() (sending bool) {
	b.mu.Lock()
	held := b.held
	b.held, b.buf, b.gone = 0, nil, true
	sending = !b.eof
	b.mu.Unlock()
	b.st.c.credit(0, 0, held)
	return sending
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
	err := w.send(true)
	c := w.st.c
	c.mu.Lock()
	if c.streams[w.st.id] == w.st {
		delete(c.streams, w.st.id)
		c.armIdleLocked()
	}
	c.mu.Unlock()
	if w.st.body != nil && w.st.body.release() && err == nil {
		// The answer is complete and the caller is still sending: tell it
		// to stop (RFC 9113, 8.1).
		c.resetID(w.st.id, http2.ErrCodeNo)
	}
}

// send writes the head (once) and what is held, ending the stream when
// end is set (with trailers when the handler set any).
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
		// The trailers the head announces.
		for _, v := range w.header["Trailer"] {
			for _, k := range strings.Split(v, ",") {
				if k = http.CanonicalHeaderKey(strings.TrimSpace(k)); k != "" {
					w.trailers = append(w.trailers, k)
				}
			}
		}
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
		if _, ok := w.header["Date"]; !ok {
			w.header["Date"] = []string{time.Now().UTC().Format(http.TimeFormat)}
		}
		c.hbuf.Reset()
		_ = c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: strconv.Itoa(w.code)})
		for k, vv := range w.header {
			if !strings.HasPrefix(k, http.TrailerPrefix) && !hopByHop(k) && !w.announced(k) {
				c.encodeField(k, vv)
			}
		}
		endHeaders := end && len(data) == 0 && len(trailers) == 0
		if err := c.writeHeaderBlock(w.st.id, endHeaders); err != nil {
			return err
		}
		if endHeaders {
			return c.bw.Flush()
		}
	}
	for len(data) > 0 || (end && len(trailers) == 0) {
		n, err := c.take(w.st, len(data))
		if err != nil {
			return err
		}
		last := end && len(trailers) == 0 && n == len(data)
		if err := c.fr.WriteData(w.st.id, last, data[:n]); err != nil {
			return err
		}
		data = data[n:]
		if last {
			break
		}
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
	return c.bw.Flush()
}

// encodeField adds a header's values to the block in hbuf (wmu held),
// leaving out what HTTP/2 cannot carry: an invalid name or value.
func (c *h2Conn) encodeField(k string, vv []string) {
	if !httpguts.ValidHeaderFieldName(k) {
		return
	}
	lk := strings.ToLower(k)
	for _, v := range vv {
		if httpguts.ValidHeaderFieldValue(v) {
			_ = c.henc.WriteField(hpack.HeaderField{Name: lk, Value: v})
		}
	}
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

// writeHeaderBlock writes the block in hbuf as HEADERS and, past the
// peer's frame size, CONTINUATION frames (wmu held).
func (c *h2Conn) writeHeaderBlock(id uint32, endStream bool) error {
	c.mu.Lock()
	max := int(c.peerFrame)
	c.mu.Unlock()
	block := c.hbuf.Bytes()
	first := block[:min(len(block), max)]
	block = block[len(first):]
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndStream: endStream, EndHeaders: len(block) == 0}); err != nil {
		return err
	}
	for len(block) > 0 {
		frag := block[:min(len(block), max)]
		block = block[len(frag):]
		if err := c.fr.WriteContinuation(id, len(block) == 0, frag); err != nil {
			return err
		}
	}
	return nil
}

// take waits for send credit for up to want bytes of the stream. It is
// called with wmu held; while it waits it flushes and lets go of wmu, so
// the reader can answer pings and take window updates.
func (c *h2Conn) take(st *h2Stream, want int) (int, error) {
	if want == 0 {
		return 0, nil
	}
	for {
		c.mu.Lock()
		if c.closed || st.reset {
			c.mu.Unlock()
			return 0, errors.New("http2: stream closed")
		}
		if n := min(int64(want), c.sendWindow, st.window, int64(c.peerFrame)); n > 0 {
			c.sendWindow -= n
			st.window -= n
			c.mu.Unlock()
			return int(n), nil
		}
		c.mu.Unlock()
		if err := c.bw.Flush(); err != nil {
			return 0, err
		}
		c.wmu.Unlock()
		c.mu.Lock()
		for !c.closed && !st.reset && (c.sendWindow <= 0 || st.window <= 0) {
			c.cond.Wait()
		}
		c.mu.Unlock()
		c.wmu.Lock()
	}
}
