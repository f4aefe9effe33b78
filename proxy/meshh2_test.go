package proxy

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// echoStreams is the handler of the lean server's protocol tests: it
// reads the body, then answers it back with a trailer.
var echoStreams = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	w.Header().Set("Trailer", "X-Len")
	w.Header().Set("X-Len", "x")
	_, _ = w.Write(b)
	w.Header().Set("X-Len", string(rune('0'+len(b)%10)))
})

// leanPair serves one lean HTTP/2 connection over an in-memory pipe and
// returns the caller's end, with the server's first frames already read.
// The returned write runs fn on its own goroutine (writes to a pipe wait
// for the reader), one at a time.
func leanPair(t testing.TB, h http.Handler) (client net.Conn, fr *http2.Framer, write func(fn func()), done <-chan struct{}) {
	t.Helper()
	cc, sc := net.Pipe()
	end := make(chan struct{})
	go func() {
		defer close(end)
		br := bufio.NewReader(sc)
		if _, err := br.Discard(len(http2.ClientPreface)); err != nil {
			sc.Close()
			return
		}
		newH2Conn(sc, br, h, slog.New(slog.DiscardHandler)).serve()
	}()
	if _, err := io.WriteString(cc, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	write = func(fn func()) {
		go func() {
			mu.Lock()
			defer mu.Unlock()
			fn()
		}()
	}
	return cc, http2.NewFramer(cc, cc), write, end
}

func headerBlock(fields ...string) []byte {
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	for i := 0; i+1 < len(fields); i += 2 {
		_ = enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return buf.Bytes()
}

// TestLeanH2Stream runs one request through the lean server frame by
// frame: body in two DATA frames, answer with its trailer, and a request
// with a forbidden connection header reset.
func TestLeanH2Stream(t *testing.T) {
	cc, fr, write, done := leanPair(t, echoStreams)
	defer func() { cc.Close(); <-done }()
	cc.SetDeadline(time.Now().Add(10 * time.Second))
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	write(func() {
		_ = fr.WriteSettings()
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: headerBlock(":method", "POST", ":scheme", "http", ":path", "/echo", ":authority", "x"), EndHeaders: true})
		_ = fr.WriteData(1, false, []byte("hel"))
		_ = fr.WriteData(1, true, []byte("lo"))
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: headerBlock(":method", "GET", ":scheme", "http", ":path", "/", "connection", "close"), EndHeaders: true, EndStream: true})
	})
	var status, trailer string
	var body []byte
	reset3 := false
	for !(trailer != "" && reset3) {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading: %v (status %q, body %q, trailer %q, stream 3 reset %v)", err, status, body, trailer, reset3)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				write(func() { _ = fr.WriteSettingsAck() })
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID != 1 {
				t.Fatalf("headers on stream %d", f.StreamID)
			}
			if status == "" {
				status = f.PseudoValue("status")
				if f.StreamEnded() {
					t.Fatal("the answer ended with its head")
				}
			} else {
				trailer = f.RegularFields()[0].Name + "=" + f.RegularFields()[0].Value
			}
		case *http2.DataFrame:
			body = append(body, f.Data()...)
		case *http2.RSTStreamFrame:
			if f.StreamID == 3 && f.ErrCode == http2.ErrCodeProtocol {
				reset3 = true
			}
		}
	}
	if status != "200" || string(body) != "hello" || trailer != "x-len=5" {
		t.Errorf("got status %q, body %q, trailer %q", status, body, trailer)
	}
}

// TestLeanH2Panic checks that a handler's panic resets its stream and
// the connection goes on serving.
func TestLeanH2Panic(t *testing.T) {
	var calls atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			panic("boom")
		}
		_, _ = io.WriteString(w, "fine")
	})
	cc, fr, write, done := leanPair(t, h)
	defer func() { cc.Close(); <-done }()
	cc.SetDeadline(time.Now().Add(10 * time.Second))
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	req := headerBlock(":method", "GET", ":scheme", "http", ":path", "/", ":authority", "x")
	write(func() {
		_ = fr.WriteSettings()
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: req, EndHeaders: true, EndStream: true})
	})
	sent3 := false
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				write(func() { _ = fr.WriteSettingsAck() })
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == 1 && !sent3 {
				sent3 = true
				write(func() {
					_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: req, EndHeaders: true, EndStream: true})
				})
			}
		case *http2.DataFrame:
			if f.StreamID == 3 && string(f.Data()) == "fine" {
				return
			}
		}
	}
}

// FuzzLeanH2 feeds the lean server arbitrary bytes after the preface: it
// must not panic, and must let go of the connection once the caller does.
func FuzzLeanH2(f *testing.F) {
	var seed bytes.Buffer
	sf := http2.NewFramer(&seed, nil)
	_ = sf.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 10})
	_ = sf.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: headerBlock(":method", "POST", ":scheme", "http", ":path", "/x", "content-length", "3"), EndHeaders: true})
	_ = sf.WriteData(1, false, []byte("abc"))
	_ = sf.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: headerBlock("x-t", "1"), EndHeaders: true, EndStream: true})
	_ = sf.WriteWindowUpdate(0, 100)
	_ = sf.WriteRSTStream(1, http2.ErrCodeCancel)
	_ = sf.WritePing(false, [8]byte{1})
	f.Add(seed.Bytes())
	f.Add([]byte(strings.Repeat("\x00", 9)))
	f.Fuzz(func(t *testing.T, in []byte) {
		cc, _, _, done := leanPair(t, echoStreams)
		go func() { _, _ = io.Copy(io.Discard, cc) }()
		_, _ = cc.Write(in)
		cc.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the server did not let go of a closed connection")
		}
	})
}

func TestMeshServerFlagValue(t *testing.T) {
	for v, ok := range map[string]bool{"": true, MeshServerNetHTTP: true, MeshServerLean: true, "envoy": false} {
		err := (&Config{AppID: "a", Resolver: &mapResolver{}, MeshServer: v}).Validate()
		if (err == nil) != ok || (err != nil && !strings.Contains(err.Error(), "--mesh-server")) {
			t.Errorf("MeshServer %q: %v", v, err)
		}
	}
}

// startLean serves h with the lean server on a loopback port and returns
// an h2c client of net/http for it.
func startLean(t *testing.T, h http.Handler) (base string, client *http.Client) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newLeanH2(h, &http.Server{Handler: h}, slog.New(slog.DiscardHandler))
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = ln.Close()
		_ = srv.Shutdown(ctx)
		<-done
	})
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p}
	t.Cleanup(tr.CloseIdleConnections)
	return "http://" + ln.Addr().String(), &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// TestLeanH2Informational checks that a 103 goes ahead of the answer.
func TestLeanH2Informational(t *testing.T) {
	base, client := startLean(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		_, _ = io.WriteString(w, "page")
	}))
	var early []string
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		early = append(early, strconv.Itoa(code)+" "+h.Get("Link"))
		return nil
	}})
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "page" || len(early) != 1 || early[0] != "103 </style.css>; rel=preload" || resp.Header.Get("Link") != "" {
		t.Errorf("got %d %q, informational %q, Link %q", resp.StatusCode, body, early, resp.Header.Get("Link"))
	}
}

// TestLeanH2EarlyAnswer sends bodies larger than the connection's window
// to a handler that answers without reading them: each answer arrives, and
// the credit of what nobody read comes back, so the connection does not
// stall on later calls.
func TestLeanH2EarlyAnswer(t *testing.T) {
	base, client := startLean(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/refuse" {
			// Give the caller time to fill the stream's window, so that
			// unread credit that did not come back would add up.
			time.Sleep(100 * time.Millisecond)
			http.Error(w, "too big", http.StatusRequestEntityTooLarge)
			return
		}
		n, _ := io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, strconv.FormatInt(n, 10))
	}))
	chunk := bytes.Repeat([]byte("x"), 1<<20)
	for i := range 12 { // 12 MiB offered against an 8 MiB connection window
		pr, pw := io.Pipe()
		go func() {
			for range 2 {
				if _, err := pw.Write(chunk); err != nil {
					return
				}
			}
			pw.Close()
		}()
		resp, err := client.Post(base+"/refuse", "application/octet-stream", pr)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		pr.CloseWithError(io.ErrClosedPipe)
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("call %d: status %d", i, resp.StatusCode)
		}
	}
	resp, err := client.Post(base+"/count", "application/octet-stream", bytes.NewReader(bytes.Repeat(chunk, 3)))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != strconv.Itoa(3<<20) {
		t.Errorf("after the refused calls: %d %q", resp.StatusCode, body)
	}
}

// TestLeanH2ShortHTTP1 checks that an HTTP/1.x request shorter than the
// HTTP/2 preface goes to the HTTP/1.1 server at once.
func TestLeanH2ShortHTTP1(t *testing.T) {
	base, _ := startLean(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "one")
	}))
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Well under the 30 s the server gives a preface.
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.0\r\n\r\n"); err != nil { // 18 bytes
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "one" {
		t.Errorf("got %d %q", resp.StatusCode, body)
	}
}

// TestLeanH2Defaults checks what net/http's server adds to an answer (a
// sniffed Content-Type, a Date) and that an idle connection is closed.
func TestLeanH2Defaults(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "<html><body>hi</body></html>")
	})
	srv := newLeanH2(h, &http.Server{Handler: h}, slog.New(slog.DiscardHandler))
	srv.idle = 200 * time.Millisecond
	go func() { _ = srv.Serve(ln) }()
	defer ln.Close()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, http2.ClientPreface)
	fr := http2.NewFramer(c, c)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	var mu sync.Mutex
	write := func(fn func()) { go func() { mu.Lock(); defer mu.Unlock(); fn() }() }
	write(func() {
		_ = fr.WriteSettings()
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: headerBlock(":method", "GET", ":scheme", "http", ":path", "/", ":authority", "x"), EndHeaders: true, EndStream: true})
	})
	var ctype, date string
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("the connection ended without a GOAWAY: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				write(func() { _ = fr.WriteSettingsAck() })
			}
		case *http2.MetaHeadersFrame:
			for _, hf := range f.RegularFields() {
				switch hf.Name {
				case "content-type":
					ctype = hf.Value
				case "date":
					date = hf.Value
				}
			}
		case *http2.GoAwayFrame:
			// The idle timeout, after the answer.
			if _, err := http.ParseTime(date); err != nil || ctype != "text/html; charset=utf-8" {
				t.Errorf("Content-Type %q, Date %q", ctype, date)
			}
			return
		}
	}
}

// TestLeanH2HeaderValues sends one name several times among others, on two
// requests of one connection (the second reads the names from the link's
// cache), and checks the handler sees each name canonical with its values
// in order, and that adding to one name leaves the others as they were.
func TestLeanH2HeaderValues(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Add("X-Multi", "added")
		r.Header.Add("X-One", "added")
		_, _ = io.WriteString(w, strings.Join(r.Header["X-Multi"], ",")+"|"+strings.Join(r.Header["X-One"], ",")+"|"+strings.Join(r.Header["X-Other"], ","))
	})
	cc, fr, write, done := leanPair(t, h)
	defer func() { cc.Close(); <-done }()
	cc.SetDeadline(time.Now().Add(10 * time.Second))
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	block := headerBlock(":method", "GET", ":scheme", "http", ":path", "/", ":authority", "x",
		"x-multi", "a", "x-one", "b", "x-multi", "c", "x-other", "d", "x-multi", "e")
	write(func() {
		_ = fr.WriteSettings()
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndHeaders: true, EndStream: true})
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: block, EndHeaders: true, EndStream: true})
	})
	bodies := map[uint32]string{}
	ended := 0
	for ended < 2 {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading: %v (bodies %v)", err, bodies)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				write(func() { _ = fr.WriteSettingsAck() })
			}
		case *http2.DataFrame:
			bodies[f.StreamID] += string(f.Data())
			if f.StreamEnded() {
				ended++
			}
		case *http2.MetaHeadersFrame:
			if f.StreamEnded() {
				ended++
			}
		case *http2.RSTStreamFrame:
			t.Fatalf("stream %d reset: %v", f.StreamID, f.ErrCode)
		}
	}
	const want = "a,c,e,added|b,added|d"
	if bodies[1] != want || bodies[3] != want {
		t.Errorf("got %q and %q, want %q for both", bodies[1], bodies[3], want)
	}
}

// TestHeaderKeyCacheBound checks that a link canonicalizes names beyond
// its cache's bound without remembering them.
func TestHeaderKeyCacheBound(t *testing.T) {
	var l h2Link
	for i := range 2 * h2MaxKeys {
		name := "x-name-" + strconv.Itoa(i)
		if got, want := l.headerKey(name), http.CanonicalHeaderKey(name); got != want {
			t.Fatalf("headerKey(%q) = %q, want %q", name, got, want)
		}
	}
	if len(l.keys) != h2MaxKeys {
		t.Errorf("the cache holds %d names, want %d", len(l.keys), h2MaxKeys)
	}
	if got := l.headerKey("x-name-0"); got != "X-Name-0" {
		t.Errorf("a cached name came back as %q", got)
	}
}
