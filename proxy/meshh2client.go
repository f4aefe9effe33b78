package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Client sends requests to other sidecars' mesh listeners over HTTP/2,
// one multiplexed connection per address (another is opened only when the
// peer's stream limit is reached), h2c or, with tlsCfg, TLS with ALPN h2.
//
// It does what net/http's HTTP/2 client does for the mesh with fewer
// hand-offs: a request's HEADERS, and a body of known length up to
// h2InlineBody, are written from the calling goroutine in one write, and
// only a longer or unknown-length body gets a goroutine of its own to
// stream it; one goroutine per connection reads frames and hands each
// stream its answer. net/http's client starts a goroutine for every
// request and passes its frames through a separate writer.
//
// A request refused before the peer processed it (REFUSED_STREAM, or past
// the last stream of a GOAWAY) goes again while none of its body has been
// read: after a GOAWAY on another connection, after REFUSED_STREAM on any
// with room, the same one included, with a short pause from the second
// refusal on. A connection that reads nothing for
// pingAfter is pinged and closed when no answer comes in pingTimeout; one
// without streams for idleAfter is closed.
type h2Client struct {
	tlsCfg *tls.Config // nil: h2c
	dial   func(ctx context.Context, network, addr string) (net.Conn, error)

	pingAfter, pingTimeout, idleAfter time.Duration

	mu      sync.Mutex
	conns   map[string][]*h2ClientConn
	dialing map[string]*h2Dial
}

type h2Dial struct {
	done chan struct{}
	cc   *h2ClientConn
	err  error
}

const (
	h2InlineBody       = 64 << 10 // a known-length body up to this is written with its HEADERS
	h2InitialMaxStream = 100      // streams opened before the peer's SETTINGS say how many it takes
	h2PingAfter        = 30 * time.Second
	h2PingTimeout      = 15 * time.Second
	h2ClientIdle       = 10 * time.Minute
	h2HandshakeTimeout = 10 * time.Second
	h2RefusedRetries   = 5
)

func newH2Client(tlsCfg *tls.Config, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *h2Client {
	if tlsCfg != nil {
		tlsCfg = tlsCfg.Clone()
		tlsCfg.NextProtos = []string{"h2"}
	}
	return &h2Client{
		tlsCfg: tlsCfg, dial: dial,
		pingAfter: h2PingAfter, pingTimeout: h2PingTimeout, idleAfter: h2ClientIdle,
		conns: map[string][]*h2ClientConn{}, dialing: map[string]*h2Dial{},
	}
}

// errH2Refused marks a request the peer did not process: it may go again.
type errH2Refused struct{ why string }

func (e errH2Refused) Error() string { return "http2: the peer did not process the request: " + e.why }

// RoundTrip sends req and returns the answer once its head has come; the
// answer's body streams as it arrives. It closes req.Body.
func (t *h2Client) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	addr := req.URL.Host
	if _, _, err := net.SplitHostPort(addr); err != nil {
		port := "80"
		if t.tlsCfg != nil {
			port = "443"
		}
		addr = net.JoinHostPort(addr, port)
	}
	out := &h2Out{req: req}
	err := out.prepare()
	// Every attempt writes the inline body before it waits for an answer.
	defer putBodyBuf(out.inline)
	if err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		cc, err := t.conn(ctx, addr)
		if err != nil {
			out.closeBody()
			return nil, err
		}
		resp, err := cc.roundTrip(out)
		var refused errH2Refused
		if err != nil && errors.As(err, &refused) && attempt < h2RefusedRetries && ctx.Err() == nil && out.rewind() {
			if attempt > 1 {
				// Refused again (the peer's handlers may all be busy):
				// a short pause, doubling.
				select {
				case <-time.After(time.Duration(1<<attempt) * time.Millisecond):
				case <-ctx.Done():
				}
			}
			continue
		}
		if err != nil {
			out.closeBody()
		}
		return resp, err
	}
}

// conn returns a connection to addr with a stream reserved on it, dialling
// one when none has room (one dial per address at a time).
func (t *h2Client) conn(ctx context.Context, addr string) (*h2ClientConn, error) {
	for {
		t.mu.Lock()
		for _, cc := range t.conns[addr] {
			if cc.reserve() {
				t.mu.Unlock()
				return cc, nil
			}
		}
		if d := t.dialing[addr]; d != nil {
			t.mu.Unlock()
			select {
			case <-d.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			if d.err != nil && !errors.Is(d.err, context.Canceled) && !errors.Is(d.err, context.DeadlineExceeded) {
				return nil, d.err
			}
			continue // the dial's connection may be full already, or its dialler gave up
		}
		d := &h2Dial{done: make(chan struct{})}
		t.dialing[addr] = d
		t.mu.Unlock()
		d.cc, d.err = t.dialConn(ctx, addr)
		t.mu.Lock()
		delete(t.dialing, addr)
		if d.err == nil {
			t.conns[addr] = append(t.conns[addr], d.cc)
			d.cc.reserve()
		}
		close(d.done)
		t.mu.Unlock()
		return d.cc, d.err
	}
}

func (t *h2Client) dialConn(ctx context.Context, addr string) (*h2ClientConn, error) {
	nc, err := t.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	var state *tls.ConnectionState
	if t.tlsCfg != nil {
		cfg := t.tlsCfg
		if cfg.ServerName == "" {
			cfg = cfg.Clone()
			cfg.ServerName, _, _ = net.SplitHostPort(addr)
		}
		tc := tls.Client(nc, cfg)
		hctx, cancel := context.WithTimeout(ctx, h2HandshakeTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			_ = nc.Close()
			return nil, err
		}
		cs := tc.ConnectionState()
		if cs.NegotiatedProtocol != "h2" {
			_ = tc.Close()
			return nil, fmt.Errorf("http2: %s did not negotiate h2 (ALPN %q)", addr, cs.NegotiatedProtocol)
		}
		nc, state = tc, &cs
	}
	cc := &h2ClientConn{t: t, addr: addr, tls: state, streams: map[uint32]*h2ClientStream{}, nextID: 1, maxStreams: h2InitialMaxStream, idleSince: time.Now()}
	cc.init(nc, bufio.NewReaderSize(nc, 32<<10))
	cc.wmu.Lock()
	_, _ = cc.bw.WriteString(http2.ClientPreface)
	cc.writeOurSettings(http2.Setting{ID: http2.SettingEnablePush, Val: 0})
	err = cc.bw.Flush()
	cc.wmu.Unlock()
	if err != nil {
		_ = nc.Close()
		return nil, err
	}
	cc.health = time.AfterFunc(t.pingAfter, cc.checkHealth)
	go cc.readLoop()
	return cc, nil
}

// forget takes cc out of the pool: no new stream goes to it.
func (t *h2Client) forget(cc *h2ClientConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	list := t.conns[cc.addr]
	for i, c := range list {
		if c == cc {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(t.conns, cc.addr)
	} else {
		t.conns[cc.addr] = list
	}
}

// CloseIdleConnections closes the connections that carry no stream.
func (t *h2Client) CloseIdleConnections() {
	t.mu.Lock()
	var all []*h2ClientConn
	for _, list := range t.conns {
		all = append(all, list...)
	}
	t.mu.Unlock()
	for _, cc := range all {
		cc.mu.Lock()
		idle := cc.reserved == 0
		cc.mu.Unlock()
		if idle {
			cc.closeWith(errors.New("http2: connection closed as idle"))
		}
	}
}

// h2Out is a request as the client sends it: the request, and its body
// when it is short enough to go with the head (read before the first
// attempt, so that a refused request can go again).
type h2Out struct {
	req      *http.Request
	inline   *[]byte // the whole body (hasBody and not streamed), lent by bodyBufs
	hasBody  bool
	streamed bool // the body goes from a goroutine of its own
	// owner says who may read a streamed body: 2k while attempt k's
	// writer has not started (another attempt or a close may still take
	// it), 2k+1 once it has.
	owner    atomic.Int64
	trailers string // the Trailer header announced (from req.Trailer)

	host, path, method string // pseudo-headers (check)
}

func (o *h2Out) prepare() error {
	r := o.req
	body := r.Body
	switch {
	case body == nil || body == http.NoBody:
	case r.ContentLength > 0 && r.ContentLength <= h2InlineBody && len(r.Trailer) == 0:
		o.hasBody = true
		o.inline = getBodyBuf(int(r.ContentLength))
		_, err := io.ReadFull(body, *o.inline)
		_ = body.Close()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("http2: reading the request body: %w", err)
		}
	default: // unknown (0 or -1 with a body, as net/http reads it), long, or with trailers
		o.hasBody, o.streamed = true, true
	}
	if len(r.Trailer) > 0 {
		keys := make([]string, 0, len(r.Trailer))
		for k := range r.Trailer {
			keys = append(keys, lowerHeader(k))
		}
		o.trailers = strings.Join(keys, ",")
	}
	return nil
}

// rewind readies o for another attempt; false when its body cannot go
// again (a writer has read from it).
func (o *h2Out) rewind() bool {
	if !o.streamed {
		return true
	}
	cur := o.owner.Load()
	return cur%2 == 0 && o.owner.CompareAndSwap(cur, cur+2)
}

// claim gives attempt's writer the body; false when it went elsewhere.
func (o *h2Out) claim(attempt int64) bool {
	return o.owner.CompareAndSwap(2*attempt, 2*attempt+1)
}

// closeBody closes a streamed body no writer took (RoundTrip must close
// it), and keeps any writer from taking it later.
func (o *h2Out) closeBody() {
	if !o.streamed {
		return
	}
	if cur := o.owner.Load(); cur%2 == 0 && o.owner.CompareAndSwap(cur, cur+1) {
		_ = o.req.Body.Close()
	}
}

// h2ClientConn is one connection of the lean client.
type h2ClientConn struct {
	h2Link
	t      *h2Client
	addr   string
	tls    *tls.ConnectionState
	health *time.Timer
	frames atomic.Uint64 // frames read, for the health check

	nextID uint32 // under wmu: streams are opened in the order their HEADERS go

	// Under mu.
	streams    map[uint32]*h2ClientStream
	reserved   int    // streams open or about to be
	maxStreams uint32 // the peer's limit
	goingAway  bool
	idleSince  time.Time
	seen       uint64 // frames at the last health check
	pinged     bool
	err        error // why it closed
}

// h2ClientStream is one request on a connection.
type h2ClientStream struct {
	h2Flow
	cc      *h2ClientConn
	id      uint32
	out     *h2Out
	attempt int64 // of out's, for its body's owner
	trace   *httptrace.ClientTrace
	stop    func() bool // stops the context's watch
	done    chan struct{}

	// Under cc.mu.
	resp    *http.Response
	err     error
	body    *h2Body
	sentEnd bool // our END_STREAM went
	recvEnd bool // the peer's came
	over    bool // taken out of the connection
}

// reserve counts a stream about to open; false when the connection takes
// no more.
func (cc *h2ClientConn) reserve() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.closed || cc.goingAway || cc.reserved >= int(cc.maxStreams) {
		return false
	}
	cc.reserved++
	return true
}

// roundTrip sends out as a new stream (reserved by the caller) and waits
// for the answer's head.
func (cc *h2ClientConn) roundTrip(out *h2Out) (*http.Response, error) {
	req := out.req
	cs := &h2ClientStream{cc: cc, out: out, attempt: out.owner.Load() / 2, done: make(chan struct{})}
	if tr := httptrace.ContextClientTrace(req.Context()); tr != nil && tr.Got1xxResponse != nil {
		cs.trace = tr
	}
	endWithHead := !out.hasBody && out.trailers == ""
	if err := out.check(); err != nil {
		// Before any encoding: the header compression's state is the
		// connection's, and a request given up half-encoded would corrupt it.
		cc.mu.Lock()
		cc.reserved--
		cc.mu.Unlock()
		out.closeBody()
		return nil, err
	}

	cc.wmu.Lock()
	cc.mu.Lock()
	if cc.closed || cc.goingAway || cc.nextID >= 1<<31 {
		cc.reserved--
		cc.goingAway = true
		err := cc.err
		cc.mu.Unlock()
		cc.wmu.Unlock()
		cc.t.forget(cc)
		if err == nil {
			err = errors.New("no new streams")
		}
		return nil, errH2Refused{why: err.Error()}
	}
	cs.id = cc.nextID
	cc.nextID += 2
	cs.window = cc.peerWindow
	cs.sentEnd = endWithHead
	cc.streams[cs.id] = cs
	crowd := len(cc.streams) > 1
	if ctx := req.Context(); ctx.Done() != nil {
		// Its abort waits for mu, and its RST_STREAM for wmu, so it
		// follows the HEADERS written below.
		cs.stop = context.AfterFunc(ctx, func() { cs.abort(ctx.Err()) })
	}
	cc.mu.Unlock()
	err := cc.encodeRequest(req, out)
	if err == nil {
		err = cc.writeHeaderBlock(cs.id, endWithHead)
	}
	if err == nil && out.hasBody && !out.streamed {
		err = cc.writeData(cs.id, &cs.h2Flow, *out.inline, true)
		if err == nil {
			cc.mu.Lock()
			cs.sentEnd = true
			cc.finishLocked(cs)
			cc.mu.Unlock()
		}
	}
	cc.wmu.Unlock()
	if err == nil || errors.Is(err, errStreamClosed) {
		// A stream reset while its body waited for credit has its
		// outcome already; the frames of others may be in the buffer.
		if ferr := cc.flushSoon(crowd); err == nil {
			err = ferr
		}
	}
	if err != nil && !errors.Is(err, errStreamClosed) {
		cc.closeWith(err)
		out.closeBody()
		return nil, err
	}
	if out.streamed {
		go cs.writeBody()
	}
	<-cs.done
	cc.mu.Lock()
	resp, err := cs.resp, cs.err
	cc.mu.Unlock()
	if resp != nil {
		return resp, nil
	}
	return nil, err
}

// check takes the request's pseudo-headers, refusing what HTTP/2 cannot
// carry.
func (o *h2Out) check() error {
	req := o.req
	o.host = req.Host
	if o.host == "" {
		o.host = req.URL.Host
	}
	if !httpguts.ValidHostHeader(o.host) {
		return fmt.Errorf("http2: invalid Host %q", o.host)
	}
	o.path = req.URL.RequestURI()
	if !validPseudoPath(o.path) {
		return fmt.Errorf("http2: invalid request path %q", o.path)
	}
	o.method = req.Method
	if o.method == "" {
		o.method = http.MethodGet
	}
	if !httpguts.ValidHeaderFieldValue(o.method) || strings.ContainsAny(o.method, " /") {
		return fmt.Errorf("http2: invalid method %q", o.method)
	}
	return nil
}

// encodeRequest puts the request's head in hbuf (wmu held).
func (cc *h2ClientConn) encodeRequest(req *http.Request, out *h2Out) error {
	cc.hbuf.Reset()
	host, path, method := out.host, out.path, out.method
	scheme := "http"
	if cc.tls != nil {
		scheme = "https"
	}
	e := cc.henc
	_ = e.WriteField(hpack.HeaderField{Name: ":authority", Value: host})
	_ = e.WriteField(hpack.HeaderField{Name: ":method", Value: method})
	_ = e.WriteField(hpack.HeaderField{Name: ":path", Value: path})
	_ = e.WriteField(hpack.HeaderField{Name: ":scheme", Value: scheme})
	for k, vv := range req.Header {
		switch k {
		case "Host", "Content-Length", "Trailer", "Connection", "Proxy-Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade":
			// Not carried by HTTP/2, or written below.
		case "Te":
			if httpguts.HeaderValuesContainsToken(vv, "trailers") {
				_ = e.WriteField(hpack.HeaderField{Name: "te", Value: "trailers"})
			}
		case "User-Agent":
			for _, v := range vv {
				if v != "" && httpguts.ValidHeaderFieldValue(v) {
					_ = e.WriteField(hpack.HeaderField{Name: "user-agent", Value: v})
				}
			}
		default:
			cc.encodeField(k, vv)
		}
	}
	if out.trailers != "" {
		_ = e.WriteField(hpack.HeaderField{Name: "trailer", Value: out.trailers})
	}
	switch n := req.ContentLength; {
	case !out.hasBody && (method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch):
		_ = e.WriteField(hpack.HeaderField{Name: "content-length", Value: "0"})
	case out.hasBody && n > 0:
		_ = e.WriteField(hpack.HeaderField{Name: "content-length", Value: strconv.FormatInt(n, 10)})
	}
	return nil
}

// validPseudoPath reports whether a :path is one HTTP/2 carries: absolute,
// or "*" (as x/net/http2 checks it).
func validPseudoPath(v string) bool {
	return (len(v) > 0 && v[0] == '/') || v == "*"
}

// writeBody streams a request body of unknown or long length, then ends
// the stream (with the request's trailers when it has any).
func (cs *h2ClientStream) writeBody() {
	out := cs.out
	if !out.claim(cs.attempt) {
		return // given up for another attempt, which owns the body, or closed
	}
	body := out.req.Body
	defer body.Close()
	cc := cs.cc
	bufp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bufp)
	buf := (*bufp)[:h2MaxFrame]
	var sent int64
	for {
		n, rerr := body.Read(buf)
		sent += int64(n)
		if rerr == nil && out.req.ContentLength > 0 && sent > out.req.ContentLength {
			rerr = fmt.Errorf("http2: request body longer than its Content-Length %d", out.req.ContentLength)
			n = 0
		}
		end := rerr == io.EOF
		if rerr != nil && !end {
			cs.abortCode(fmt.Errorf("http2: reading the request body: %w", rerr), http2.ErrCodeCancel)
			return
		}
		trailers := end && len(out.req.Trailer) > 0
		cc.wmu.Lock()
		err := cc.writeData(cs.id, &cs.h2Flow, buf[:n], end && !trailers)
		if err == nil && trailers {
			cc.hbuf.Reset()
			for k, vv := range out.req.Trailer {
				cc.encodeField(k, vv)
			}
			err = cc.writeHeaderBlock(cs.id, true)
		}
		if err == nil {
			err = cc.bw.Flush()
		}
		cc.wmu.Unlock()
		if err != nil {
			if errors.Is(err, errStreamClosed) {
				return // reset, ended or aborted: whoever did it told the reader
			}
			cc.closeWith(err)
			return
		}
		if end {
			cc.mu.Lock()
			cs.sentEnd = true
			cc.finishLocked(cs)
			cc.mu.Unlock()
			return
		}
	}
}

// abort ends the stream for the caller's reason (its context ended, it
// closed the answer's body early): the peer gets RST_STREAM CANCEL.
func (cs *h2ClientStream) abort(err error) { cs.abortCode(err, http2.ErrCodeCancel) }

func (cs *h2ClientStream) abortCode(err error, code http2.ErrCode) {
	cc := cs.cc
	cc.mu.Lock()
	open := !cs.over && !(cs.sentEnd && cs.recvEnd)
	cs.failLocked(err)
	cc.mu.Unlock()
	if open {
		cc.resetID(cs.id, code)
	}
}

// failLocked ends cs with err: a caller still waiting for the head gets
// err, a reader of the body gets it after what has come (cc.mu held).
func (cs *h2ClientStream) failLocked(err error) {
	cc := cs.cc
	cs.reset = true
	if cs.resp == nil && cs.err == nil {
		cs.err = err
		close(cs.done)
	}
	if cs.body != nil {
		cs.body.fail(err)
	}
	cc.removeLocked(cs)
	cc.cond.Broadcast()
}

// finishLocked takes a stream whose both halves ended out of the
// connection (cc.mu held).
func (cc *h2ClientConn) finishLocked(cs *h2ClientStream) {
	if cs.sentEnd && cs.recvEnd {
		cc.removeLocked(cs)
	}
}

func (cc *h2ClientConn) removeLocked(cs *h2ClientStream) {
	if cs.over {
		return
	}
	cs.over = true
	if cs.stop != nil {
		cs.stop()
	}
	delete(cc.streams, cs.id)
	cc.reserved--
	if cc.reserved == 0 {
		cc.idleSince = time.Now()
		if cc.goingAway && !cc.closed {
			go cc.closeWith(errors.New("http2: connection done after GOAWAY"))
		}
	}
}

// closeWith closes the connection: every stream still open fails with err.
func (cc *h2ClientConn) closeWith(err error) {
	cc.t.forget(cc)
	cc.mu.Lock()
	if cc.closed {
		cc.mu.Unlock()
		return
	}
	cc.closed = true
	cc.err = err
	for _, cs := range cc.streams {
		cs.failLocked(err)
	}
	cc.cond.Broadcast()
	cc.mu.Unlock()
	if cc.health != nil {
		cc.health.Stop()
	}
	_ = cc.nc.Close()
}

func (cc *h2ClientConn) readLoop() {
	for {
		f, err := cc.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				cc.streamError(se.StreamID, se)
				continue
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			cc.closeWith(fmt.Errorf("http2: connection to %s lost: %w", cc.addr, err))
			return
		}
		cc.frames.Add(1)
		if err := cc.frame(f); err != nil {
			cc.wmu.Lock()
			_ = cc.fr.WriteGoAway(0, http2.ErrCodeProtocol, nil)
			_ = cc.bw.Flush()
			cc.wmu.Unlock()
			cc.closeWith(err)
			return
		}
	}
}

// streamError resets one stream that broke the protocol.
func (cc *h2ClientConn) streamError(id uint32, err error) {
	cc.mu.Lock()
	cs := cc.streams[id]
	if cs != nil {
		cs.failLocked(err)
	}
	cc.mu.Unlock()
	code := http2.ErrCodeProtocol
	var se http2.StreamError
	if errors.As(err, &se) {
		code = se.Code
	}
	cc.resetID(id, code)
}

// frame handles one frame read; an error ends the connection.
func (cc *h2ClientConn) frame(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.SettingsFrame:
		if f.IsAck() {
			return nil
		}
		return cc.settings(f, func(d int64) {
			for _, cs := range cc.streams {
				cs.window += d
			}
		}, func(s http2.Setting) {
			if s.ID == http2.SettingMaxConcurrentStreams {
				cc.maxStreams = s.Val
			}
		})
	case *http2.MetaHeadersFrame:
		return cc.headers(f)
	case *http2.DataFrame:
		n := int64(f.Length)
		var body *h2Body
		cc.mu.Lock()
		cs := cc.streams[f.StreamID]
		if cs != nil {
			body = cs.body
		}
		cc.mu.Unlock()
		if body == nil {
			cc.credit(0, 0, n) // the stream is gone: the connection's credit comes back
			if cs != nil {
				cc.streamError(f.StreamID, http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeProtocol, Cause: errors.New("DATA before the answer's head")})
			}
			return nil
		}
		ok, streamBack, connBack := body.put(f.Data(), f.StreamEnded(), n)
		if !ok {
			cc.credit(0, 0, n)
			cc.streamError(f.StreamID, http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeFlowControl})
			return nil
		}
		cc.credit(f.StreamID, streamBack, connBack)
		if f.StreamEnded() {
			cc.mu.Lock()
			cs.recvEnd = true
			cc.finishLocked(cs)
			cc.mu.Unlock()
		}
	case *http2.WindowUpdateFrame:
		cc.windowUpdate(f, func(id uint32) *h2Flow {
			if cs := cc.streams[id]; cs != nil {
				return &cs.h2Flow
			}
			return nil
		})
	case *http2.RSTStreamFrame:
		cc.mu.Lock()
		if cs := cc.streams[f.StreamID]; cs != nil {
			switch {
			case cs.resp == nil && f.ErrCode == http2.ErrCodeRefusedStream:
				cs.failLocked(errH2Refused{why: "stream refused"})
			case cs.recvEnd && f.ErrCode == http2.ErrCodeNo:
				// The whole answer came: the peer wants no more of the body.
				cs.reset = true
				cc.removeLocked(cs)
				cc.cond.Broadcast()
			default:
				cs.failLocked(http2.StreamError{StreamID: f.StreamID, Code: f.ErrCode, Cause: errors.New("reset by the peer")})
			}
		}
		cc.mu.Unlock()
	case *http2.PingFrame:
		if !f.IsAck() {
			cc.pong(f)
		}
	case *http2.GoAwayFrame:
		cc.mu.Lock()
		cc.goingAway = true
		for id, cs := range cc.streams {
			if id > f.LastStreamID {
				cs.failLocked(errH2Refused{why: "GOAWAY before the stream"})
			}
		}
		closeNow := cc.reserved == 0
		cc.mu.Unlock()
		cc.t.forget(cc)
		if closeNow {
			cc.closeWith(errors.New("http2: the peer went away"))
		}
	case *http2.PushPromiseFrame:
		return errors.New("http2: push promised though disabled")
	}
	return nil
}

// headers takes an answer's head (or an informational one) or its
// trailers.
func (cc *h2ClientConn) headers(f *http2.MetaHeadersFrame) error {
	cc.mu.Lock()
	cs := cc.streams[f.StreamID]
	if cs == nil {
		cc.mu.Unlock()
		return nil // a stream given up: its frames are dropped
	}
	haveHead, body := cs.resp != nil, cs.body
	cc.mu.Unlock()
	if haveHead {
		if body == nil || !f.StreamEnded() {
			cc.streamError(f.StreamID, http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeProtocol, Cause: errors.New("HEADERS after the answer's head")})
			return nil
		}
		body.end(f)
		cc.mu.Lock()
		cs.recvEnd = true
		cc.finishLocked(cs)
		cc.mu.Unlock()
		return nil
	}
	status := f.PseudoValue("status")
	code, err := strconv.Atoi(status)
	if err != nil || len(status) != 3 {
		cc.streamError(f.StreamID, http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeProtocol, Cause: fmt.Errorf("malformed :status %q", status)})
		return nil
	}
	regular := f.RegularFields()
	header := make(http.Header, len(regular))
	vals := make([]string, 0, len(regular))
	var trailer http.Header
	for _, hf := range regular {
		k := cc.headerKey(hf.Name)
		if k == "Trailer" {
			if trailer == nil {
				trailer = http.Header{}
			}
			for _, name := range strings.Split(hf.Value, ",") {
				if name = textproto.TrimString(name); name != "" {
					trailer[http.CanonicalHeaderKey(name)] = nil
				}
			}
			continue
		}
		addHeaderValue(header, &vals, k, hf.Value)
	}
	if code < 200 {
		if f.StreamEnded() {
			cc.streamError(f.StreamID, http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeProtocol, Cause: errors.New("informational answer with END_STREAM")})
			return nil
		}
		if cs.trace != nil {
			if err := cs.trace.Got1xxResponse(code, textproto.MIMEHeader(header)); err != nil {
				cs.abort(err)
			}
		}
		return nil
	}
	resp := &http.Response{
		Status:        status + " " + http.StatusText(code),
		StatusCode:    code,
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		Header:        header,
		Trailer:       trailer,
		ContentLength: -1,
		Request:       cs.out.req,
		TLS:           cc.tls,
	}
	if cl := header["Content-Length"]; len(cl) == 1 {
		if n, err := strconv.ParseInt(cl[0], 10, 64); err == nil && n >= 0 {
			resp.ContentLength = n
		}
	}
	if f.StreamEnded() {
		resp.Body = http.NoBody
		if resp.ContentLength < 0 {
			resp.ContentLength = 0
		}
	} else {
		b := newH2Body(&cc.h2Link, cs.id)
		b.trailerTo, b.anyTrailer = &resp.Trailer, true
		body = b
		resp.Body = &h2RespBody{h2Body: b, cs: cs}
	}
	cc.mu.Lock()
	if cs.over && cs.err != nil { // aborted meanwhile
		cc.mu.Unlock()
		return nil
	}
	cs.resp, cs.body = resp, body
	if f.StreamEnded() {
		cs.recvEnd = true
		cc.finishLocked(cs)
	}
	close(cs.done)
	cc.mu.Unlock()
	return nil
}

// h2RespBody is an answer's body: closing it before its end resets the
// stream.
type h2RespBody struct {
	*h2Body
	cs *h2ClientStream
}

func (b *h2RespBody) Close() error {
	if !b.ended() {
		b.cs.abort(errBodyClosed)
	}
	return b.h2Body.Close()
}

// checkHealth runs every pingAfter: a connection that read nothing since
// the last check is pinged, and closed when the ping is not answered in
// pingTimeout; one without streams for idleAfter is closed.
func (cc *h2ClientConn) checkHealth() {
	frames := cc.frames.Load()
	cc.mu.Lock()
	if cc.closed {
		cc.mu.Unlock()
		return
	}
	quiet := frames == cc.seen
	cc.seen = frames
	idle := cc.reserved == 0 && time.Since(cc.idleSince) >= cc.t.idleAfter
	switch {
	case idle:
		cc.mu.Unlock()
		cc.closeWith(errors.New("http2: connection closed as idle"))
		return
	case quiet && cc.pinged:
		cc.mu.Unlock()
		cc.closeWith(fmt.Errorf("http2: %s did not answer a ping in %s", cc.addr, cc.t.pingTimeout))
		return
	case quiet:
		cc.pinged = true
		cc.mu.Unlock()
		cc.wmu.Lock()
		_ = cc.fr.WritePing(false, [8]byte{'o', 'u', 't', 'r', 'i', 'g', 'g', 'r'})
		_ = cc.bw.Flush()
		cc.wmu.Unlock()
		cc.health.Reset(cc.t.pingTimeout)
		return
	}
	cc.pinged = false
	cc.mu.Unlock()
	cc.health.Reset(cc.t.pingAfter)
}
