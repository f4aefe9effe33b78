package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Link is what both ends of a mesh HTTP/2 connection share, the lean
// server (h2Conn) and the lean client (h2ClientConn): x/net/http2's Framer
// reading on the connection's reading goroutine and writing under wmu into
// a buffer flushed once per message, the header encoder, and flow control
// in both directions.
type h2Link struct {
	nc net.Conn
	fr *http2.Framer

	// Used by the reading goroutine alone.
	keys map[string]string // header names as read (lower case) to their canonical form

	wmu        sync.Mutex
	bw         *bufio.Writer
	henc       *hpack.Encoder
	hbuf       bytes.Buffer
	connUnsent int64 // connection credit owed to the peer, not yet written (under wmu)
	connHeld   int64 // connection credit written into bw, not yet flushed (under wmu)

	mu         sync.Mutex
	cond       *sync.Cond // signalled when windows grow, streams end or the link closes
	sendWindow int64      // the connection's, towards the peer
	peerWindow int64      // the initial stream window the peer gave
	peerFrame  uint32     // the largest frame the peer takes
	closed     bool
}

// h2Flow is one stream's sending side: its window towards the peer and
// whether it was reset (under the link's mu).
type h2Flow struct {
	window int64
	reset  bool
}

const (
	h2InitialWindow = 1 << 20 // per stream, both ways
	h2ConnWindow    = 8 << 20
	h2MaxFrame      = 16 << 10
	h2MinRefresh    = 4 << 10 // smallest WINDOW_UPDATE sent (x/net/http2's inflowMinRefresh)
	// h2CreditFlush is how much connection credit may wait in the write
	// buffer for the next message to carry it: the peer keeps at least
	// h2ConnWindow-h2CreditFlush to send with meanwhile.
	h2CreditFlush = 1 << 20
)

func (l *h2Link) init(nc net.Conn, r io.Reader) {
	l.nc = nc
	l.sendWindow, l.peerWindow, l.peerFrame = 65535, 65535, 16384
	l.cond = sync.NewCond(&l.mu)
	l.bw = bufio.NewWriterSize(linkWriter{l}, 32<<10)
	l.fr = http2.NewFramer(l.bw, r)
	l.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	l.fr.MaxHeaderListSize = 1 << 20
	l.henc = hpack.NewEncoder(&l.hbuf)
}

// h2MaxKeys bounds a link's cache of canonical header names: a peer that
// sends ever new names gets them canonicalized afresh once it is full.
const h2MaxKeys = 128

// headerKey returns name in its canonical form (http.CanonicalHeaderKey),
// remembering the names this link reads again and again so that each
// request does not allocate them anew. Only the reading goroutine calls it.
func (l *h2Link) headerKey(name string) string {
	if k, ok := l.keys[name]; ok {
		return k
	}
	k := http.CanonicalHeaderKey(name)
	if len(l.keys) < h2MaxKeys {
		if l.keys == nil {
			l.keys = make(map[string]string, 16)
		}
		l.keys[strings.Clone(name)] = k
	}
	return k
}

// addHeaderValue appends v to h[k]. A name's first value is taken from
// vals, one slice shared by the whole header, so that a header of n names
// allocates once rather than n times; capped to its length, a name's slice
// is copied when a second value comes.
func addHeaderValue(h http.Header, vals *[]string, k, v string) {
	if old, ok := h[k]; ok {
		h[k] = append(old, v)
		return
	}
	*vals = append(*vals, v)
	n := len(*vals)
	h[k] = (*vals)[n-1 : n : n]
}

// writeOurSettings writes the settings both ends advertise (plus extra)
// and the connection window's growth to h2ConnWindow (wmu held).
func (l *h2Link) writeOurSettings(extra ...http2.Setting) {
	_ = l.fr.WriteSettings(append([]http2.Setting{
		{ID: http2.SettingInitialWindowSize, Val: h2InitialWindow},
		{ID: http2.SettingMaxFrameSize, Val: h2MaxFrame},
	}, extra...)...)
	_ = l.fr.WriteWindowUpdate(0, h2ConnWindow-65535)
}

// settings applies the peer's SETTINGS frame (not an acknowledgement) and
// acknowledges it. streamWindows gets the change of the initial stream
// window, to add to every open stream's, and other the settings the link
// does not keep itself; both are called with mu held.
func (l *h2Link) settings(f *http2.SettingsFrame, streamWindows func(delta int64), other func(http2.Setting)) error {
	tableSize := int64(-1)
	l.mu.Lock()
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingInitialWindowSize:
			d := int64(s.Val) - l.peerWindow
			l.peerWindow = int64(s.Val)
			streamWindows(d)
		case http2.SettingMaxFrameSize:
			l.peerFrame = s.Val
		case http2.SettingHeaderTableSize:
			tableSize = int64(s.Val)
		default:
			if other != nil {
				other(s)
			}
		}
		return nil
	})
	l.cond.Broadcast()
	l.mu.Unlock()
	if err != nil {
		return err
	}
	l.wmu.Lock()
	if tableSize >= 0 {
		l.henc.SetMaxDynamicTableSizeLimit(uint32(tableSize))
	}
	_ = l.fr.WriteSettingsAck()
	_ = l.bw.Flush()
	l.wmu.Unlock()
	return nil
}

// windowUpdate adds a WINDOW_UPDATE's credit to the connection's window or
// to the flow of its stream (nil when the stream is gone; mu held by the
// caller of flow).
func (l *h2Link) windowUpdate(f *http2.WindowUpdateFrame, flow func(id uint32) *h2Flow) {
	l.mu.Lock()
	if f.StreamID == 0 {
		l.sendWindow += int64(f.Increment)
	} else if fl := flow(f.StreamID); fl != nil {
		fl.window += int64(f.Increment)
	}
	l.cond.Broadcast()
	l.mu.Unlock()
}

// pong answers a PING.
func (l *h2Link) pong(f *http2.PingFrame) {
	l.wmu.Lock()
	_ = l.fr.WritePing(true, f.Data)
	_ = l.bw.Flush()
	l.wmu.Unlock()
}

// linkWriter is what a link's write buffer flushes into: the connection,
// noting that the credit held in the buffer went with it.
type linkWriter struct{ l *h2Link }

func (w linkWriter) Write(p []byte) (int, error) {
	w.l.connHeld = 0 // under wmu, as every write to bw
	return w.l.nc.Write(p)
}

// flushSoon writes out what the buffer holds (wmu not held). With crowd
// set (other streams are open on the link) it first lets the goroutines
// ready to run have their turn: the other calls or answers of the
// connection that are ready add their frames first, and one write carries
// them all; whichever comes back first flushes, the others find the buffer
// empty. With the sidecar's one thread, a write of its own for every
// message under load cost three times the system-call time (profiles at
// maximum throughput: 0.77-0.87 s against 0.23-0.29 s of the caller's
// samples in its mesh writes). A message alone on its link is written at
// once: at a modest rate there is seldom anything to batch it with, and
// waiting for unrelated work (another connection's request, a timer) only
// delays it.
func (l *h2Link) flushSoon(crowd bool) error {
	if crowd {
		runtime.Gosched()
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.bw.Buffered() == 0 {
		return nil
	}
	return l.bw.Flush()
}

// credit gives back flow-control credit: connN bytes to the connection
// and streamN to stream id. As x/net/http2 does, a WINDOW_UPDATE is made
// only once h2MinRefresh bytes are owed. The connection's goes into the
// write buffer and leaves with the next message written, unless
// h2CreditFlush of it waits there: with small bodies, a write of its own
// for every few messages cost as much as a message's. A stream's credit
// is flushed at once (its sender may be waiting for it).
func (l *h2Link) credit(id uint32, streamN, connN int64) {
	if streamN <= 0 && connN <= 0 {
		return
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	flush := false
	if l.connUnsent += connN; l.connUnsent >= h2MinRefresh {
		_ = l.fr.WriteWindowUpdate(0, uint32(l.connUnsent))
		l.connHeld += l.connUnsent
		l.connUnsent = 0
		flush = l.connHeld >= h2CreditFlush
	}
	if id != 0 && streamN > 0 {
		_ = l.fr.WriteWindowUpdate(id, uint32(streamN))
		flush = true
	}
	if flush {
		_ = l.bw.Flush()
	}
}

func (l *h2Link) resetID(id uint32, code http2.ErrCode) {
	l.wmu.Lock()
	_ = l.fr.WriteRSTStream(id, code)
	_ = l.bw.Flush()
	l.wmu.Unlock()
}

// encodeField adds a header's values to the block in hbuf (wmu held),
// leaving out what HTTP/2 cannot carry: an invalid name or value.
func (l *h2Link) encodeField(k string, vv []string) {
	if !httpguts.ValidHeaderFieldName(k) {
		return
	}
	lk := lowerHeader(k)
	for _, v := range vv {
		if httpguts.ValidHeaderFieldValue(v) {
			_ = l.henc.WriteField(hpack.HeaderField{Name: lk, Value: v})
		}
	}
}

// lowerHeader is k in lower case, without allocating for the common
// headers.
func lowerHeader(k string) string {
	if v, ok := commonLowerHeader[k]; ok {
		return v
	}
	return strings.ToLower(k)
}

var commonLowerHeader = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"Accept", "Accept-Encoding", "Accept-Language", "Authorization", "Cache-Control", "Content-Encoding",
		"Content-Length", "Content-Type", "Date", "Etag", "Last-Modified", "Location", "Te", "Trailer",
		"Traceparent", "Tracestate", "User-Agent", "Vary", "X-Request-Id",
		hdrCalleeAppID, hdrCalleeNamespace, hdrCallerAppID, hdrCallerNamespace,
	} {
		m[k] = strings.ToLower(k)
	}
	return m
}()

// writeHeaderBlock writes the block in hbuf as HEADERS and, past the
// peer's frame size, CONTINUATION frames (wmu held).
func (l *h2Link) writeHeaderBlock(id uint32, endStream bool) error {
	l.mu.Lock()
	max := int(l.peerFrame)
	l.mu.Unlock()
	block := l.hbuf.Bytes()
	first := block[:min(len(block), max)]
	block = block[len(first):]
	if err := l.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndStream: endStream, EndHeaders: len(block) == 0}); err != nil {
		return err
	}
	for len(block) > 0 {
		frag := block[:min(len(block), max)]
		block = block[len(frag):]
		if err := l.fr.WriteContinuation(id, len(block) == 0, frag); err != nil {
			return err
		}
	}
	return nil
}

var errStreamClosed = errors.New("http2: stream closed")

// take waits for send credit for up to want bytes of a stream. It is
// called with wmu held; while it waits it flushes and lets go of wmu, so
// the reader can answer pings and take window updates.
func (l *h2Link) take(fl *h2Flow, want int) (int, error) {
	if want == 0 {
		return 0, nil
	}
	for {
		l.mu.Lock()
		if l.closed || fl.reset {
			l.mu.Unlock()
			return 0, errStreamClosed
		}
		if n := min(int64(want), l.sendWindow, fl.window, int64(l.peerFrame)); n > 0 {
			l.sendWindow -= n
			fl.window -= n
			l.mu.Unlock()
			return int(n), nil
		}
		l.mu.Unlock()
		if err := l.bw.Flush(); err != nil {
			return 0, err
		}
		l.wmu.Unlock()
		l.mu.Lock()
		for !l.closed && !fl.reset && (l.sendWindow <= 0 || fl.window <= 0) {
			l.cond.Wait()
		}
		l.mu.Unlock()
		l.wmu.Lock()
	}
}

// writeData writes data as DATA frames of stream id as its credit allows,
// the last with END_STREAM when end is set (an empty one when data is);
// wmu held.
func (l *h2Link) writeData(id uint32, fl *h2Flow, data []byte, end bool) error {
	for len(data) > 0 || end {
		n, err := l.take(fl, len(data))
		if err != nil {
			return err
		}
		last := end && n == len(data)
		if err := l.fr.WriteData(id, last, data[:n]); err != nil {
			return err
		}
		data = data[n:]
		if last {
			return nil
		}
	}
	return nil
}

// h2Body is a stream's incoming body (a request's at the server, an
// answer's at the client): DATA frames queued by the reader, at most the
// stream's window of them. Trailers go into *trailerTo when the reader
// sees the end: only those declared there, or all when anyTrailer is set.
type h2Body struct {
	link       *h2Link
	id         uint32
	trailerTo  *http.Header
	anyTrailer bool

	mu       sync.Mutex
	cond     sync.Cond  // L is &mu
	chunks   []*h2Chunk // what was received and not yet read, from rpos in the first to wpos in the last
	rpos     int
	wpos     int
	held     int64 // bytes received, not yet read
	unsent   int64 // stream credit for bytes read, not yet sent
	eof      bool
	err      error
	gone     bool // nobody reads any more: what arrives is granted back at once
	trailers []hpack.HeaderField
	applied  bool // trailers put in *trailerTo
}

// h2Chunk is a piece of an incoming body's buffer. Chunks come from a
// pool and go back once read, so a long body streams through a few of
// them, bounded by the stream's window, instead of through a slice that
// grows and is copied (whose garbage made a sidecar's memory swell under a
// 64 MiB stream each way).
type h2Chunk [16 << 10]byte

var h2Chunks = sync.Pool{New: func() any { return new(h2Chunk) }}

func newH2Body(l *h2Link, id uint32) *h2Body {
	b := &h2Body{link: l, id: id}
	b.cond.L = &b.mu
	return b
}

// put queues a DATA frame's payload (n counts its padding too). ok is
// false when the peer sent more than the window allowed; streamBack and
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
	pad := n - int64(len(p))
	b.held += int64(len(p))
	for len(p) > 0 {
		if len(b.chunks) == 0 || b.wpos == len(h2Chunk{}) {
			b.chunks = append(b.chunks, h2Chunks.Get().(*h2Chunk))
			b.wpos = 0
		}
		m := copy(b.chunks[len(b.chunks)-1][b.wpos:], p)
		b.wpos += m
		p = p[m:]
	}
	b.cond.Broadcast()
	if pad > 0 {
		return true, pad, pad
	}
	return true, 0, 0
}

// end takes the trailers and ends the body.
func (b *h2Body) end(f *http2.MetaHeadersFrame) {
	b.mu.Lock()
	b.trailers = f.RegularFields()
	b.eof = true
	b.cond.Broadcast()
	b.mu.Unlock()
}

// ended reports whether the peer ended the body.
func (b *h2Body) ended() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.eof
}

// fail ends the body with err after what has come, unless the peer ended
// it already.
func (b *h2Body) fail(err error) {
	b.mu.Lock()
	if b.err == nil && !b.eof {
		b.err = err
	}
	b.cond.Broadcast()
	b.mu.Unlock()
}

func (b *h2Body) Read(p []byte) (int, error) {
	b.mu.Lock()
	for b.held == 0 && !b.eof && b.err == nil {
		b.cond.Wait()
	}
	if b.held == 0 {
		err := b.err
		if err == nil {
			err = io.EOF
			b.applyTrailersLocked()
		}
		b.mu.Unlock()
		return 0, err
	}
	n := b.take(p)
	var streamBack int64
	if !b.eof { // the stream's credit matters only while the peer sends
		if b.unsent += int64(n); b.unsent >= h2MinRefresh {
			streamBack, b.unsent = b.unsent, 0
		}
	}
	b.mu.Unlock()
	b.link.credit(b.id, streamBack, int64(n))
	return n, nil
}

// take copies what is buffered into p (mu held), giving each chunk read
// to the end back to the pool.
func (b *h2Body) take(p []byte) int {
	n := 0
	for n < len(p) && b.held > 0 {
		c := b.chunks[0]
		end := len(c)
		if len(b.chunks) == 1 {
			end = b.wpos
		}
		m := copy(p[n:], c[b.rpos:end])
		n += m
		b.rpos += m
		b.held -= int64(m)
		if b.rpos == end {
			b.dropFirst()
		}
	}
	return n
}

// dropFirst gives the first chunk back (mu held).
func (b *h2Body) dropFirst() {
	h2Chunks.Put(b.chunks[0])
	copy(b.chunks, b.chunks[1:])
	b.chunks[len(b.chunks)-1] = nil
	b.chunks = b.chunks[:len(b.chunks)-1]
	b.rpos = 0
	if len(b.chunks) == 0 {
		b.wpos = 0
	}
}

// applyTrailersLocked puts the trailers where they go, once, on the
// reading goroutine (whoever reads the body reads them after its end).
func (b *h2Body) applyTrailersLocked() {
	if b.applied || b.trailerTo == nil {
		return
	}
	b.applied = true
	for _, hf := range b.trailers {
		k := http.CanonicalHeaderKey(hf.Name)
		t := *b.trailerTo
		if _, declared := t[k]; !declared && !b.anyTrailer {
			continue
		}
		if t == nil {
			t = http.Header{}
			*b.trailerTo = t
		}
		t[k] = append(t[k], hf.Value)
	}
}

// Close stops the reading: what was received and what comes from now on
// is granted back to the peer.
func (b *h2Body) Close() error {
	b.fail(errBodyClosed)
	b.release()
	return nil
}

var errBodyClosed = errors.New("http2: body closed")

// release gives the connection back its credit for what was received and
// will not be read, now and from now on; it reports whether the peer was
// still sending.
func (b *h2Body) release() (sending bool) {
	b.mu.Lock()
	held := b.held
	for len(b.chunks) > 0 {
		b.dropFirst()
	}
	b.held, b.gone = 0, true
	sending = !b.eof
	b.mu.Unlock()
	b.link.credit(0, 0, held)
	return sending
}
