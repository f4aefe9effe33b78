package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
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
)

// countedClient is a lean HTTP/2 client whose dials are counted.
func countedClient(t *testing.T) (*h2Client, *atomic.Int32) {
	t.Helper()
	var dials atomic.Int32
	c := newH2Client(nil, func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	})
	t.Cleanup(c.CloseIdleConnections)
	return c, &dials
}

// serveNetHTTPH2C serves h with net/http's h2c server on a loopback port.
func serveNetHTTPH2C(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: &p}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// serveLeanH2 serves h with the lean server on a loopback port.
func serveLeanH2(t *testing.T, h http.Handler) string {
	base, _ := startLean(t, h)
	return strings.TrimPrefix(base, "http://")
}

// clientEcho answers a request with what it saw of it: its body back,
// the headers the client must and must not send, and trailers both
// declared and not.
var clientEcho = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/early" {
		w.Header().Set("Link", "</a.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h := w.Header()
	h.Set("Trailer", "X-Sum")
	h.Set("X-Proto", r.Proto)
	h.Set("X-Content-Length", strconv.FormatInt(r.ContentLength, 10))
	h.Set("X-Seen", fmt.Sprintf("custom=%q ua=%q keepalive=%q te=%q query=%q host=%q rt=%q",
		r.Header.Get("X-Custom"), r.Header.Get("User-Agent"), r.Header.Get("Keep-Alive"), r.Header.Get("Te"), r.URL.RawQuery, r.Host, r.Trailer.Get("X-Rt")))
	_, _ = w.Write(body)
	h.Set("X-Sum", strconv.Itoa(len(body)))
	h.Set(http.TrailerPrefix+"X-Late", "late")
})

// TestH2ClientRoundTrip sends every kind of request the mesh sends
// through the lean client, to net/http's HTTP/2 server and to the lean
// one: no body, a short body written with its head, long and
// unknown-length bodies streamed past the peer's windows, request and
// answer trailers, an informational answer, and forty calls at once over
// one connection.
func TestH2ClientRoundTrip(t *testing.T) {
	for name, serve := range map[string]func(*testing.T, http.Handler) string{"net/http": serveNetHTTPH2C, "lean": serveLeanH2} {
		t.Run(name, func(t *testing.T) {
			addr := serve(t, clientEcho)
			c, dials := countedClient(t)
			call := func(ctx context.Context, method, path string, body io.Reader, length int64, trailer http.Header) (*http.Response, []byte) {
				t.Helper()
				req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, body)
				if err != nil {
					t.Fatal(err)
				}
				if body != nil {
					req.ContentLength = length
				}
				req.Header.Set("X-Custom", "v")
				req.Header.Set("Keep-Alive", "timeout=5")
				req.Header.Set("Te", "trailers, deflate")
				req.Trailer = trailer
				resp, err := c.RoundTrip(req)
				if err != nil {
					t.Fatalf("%s %s: %v", method, path, err)
				}
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Fatalf("%s %s: reading the answer: %v", method, path, err)
				}
				return resp, got
			}
			check := func(what string, resp *http.Response, got, want []byte, wantCL string) {
				t.Helper()
				if resp.StatusCode != 200 || !bytes.Equal(got, want) || resp.Header.Get("X-Proto") != "HTTP/2.0" {
					t.Errorf("%s: %d %s, %d bytes back, want %d", what, resp.StatusCode, resp.Header.Get("X-Proto"), len(got), len(want))
				}
				if cl := resp.Header.Get("X-Content-Length"); cl != wantCL {
					t.Errorf("%s: the server saw Content-Length %s, want %s", what, cl, wantCL)
				}
				if resp.Trailer.Get("X-Sum") != strconv.Itoa(len(want)) || resp.Trailer.Get("X-Late") != "late" {
					t.Errorf("%s: trailers %v", what, resp.Trailer)
				}
			}

			resp, got := call(context.Background(), http.MethodGet, "/get?a=1&b=%20", nil, 0, nil)
			check("GET", resp, got, nil, "0")
			if seen, want := resp.Header.Get("X-Seen"), fmt.Sprintf(`custom="v" ua="" keepalive="" te="trailers" query="a=1&b=%%20" host=%q rt=""`, addr); seen != want {
				t.Errorf("the server saw %s, want %s", seen, want)
			}

			short := bytes.Repeat([]byte("s"), 1024)
			resp, got = call(context.Background(), http.MethodPost, "/short", bytes.NewReader(short), int64(len(short)), nil)
			check("a 1 KiB body", resp, got, short, "1024")

			long := make([]byte, 3<<20+17) // past the stream's 1 MiB window and the inline limit
			_, _ = rand.Read(long)
			resp, got = call(context.Background(), http.MethodPut, "/long", bytes.NewReader(long), int64(len(long)), nil)
			check("a 3 MiB body", resp, got, long, strconv.Itoa(len(long)))

			pr, pw := io.Pipe()
			trailer := http.Header{"X-Rt": nil}
			go func() {
				for i := 0; i < 5; i++ {
					_, _ = pw.Write(short) // returns once the client read it
				}
				trailer.Set("X-Rt", "sent") // a trailer's value may come as late as the body's end
				pw.Close()
			}()
			resp, got = call(context.Background(), http.MethodPost, "/stream", pr, -1, trailer)
			check("an unknown-length body", resp, got, bytes.Repeat(short, 5), "-1")
			if seen := resp.Header.Get("X-Seen"); !strings.Contains(seen, `rt="sent"`) {
				t.Errorf("the request's trailer did not arrive: %s", seen)
			}

			var early []string
			ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
				early = append(early, strconv.Itoa(code)+" "+h.Get("Link"))
				return nil
			}})
			resp, got = call(ctx, http.MethodPost, "/early", bytes.NewReader(short), int64(len(short)), nil)
			check("an informational answer", resp, got, short, "1024")
			if len(early) != 1 || early[0] != "103 </a.css>; rel=preload" || resp.Header.Get("Link") != "" {
				t.Errorf("informational answers %q, Link %q", early, resp.Header.Get("Link"))
			}

			var wg sync.WaitGroup
			for i := 0; i < 40; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					body := []byte(strings.Repeat(strconv.Itoa(i), 100+i))
					resp, got := call(context.Background(), http.MethodPost, "/many", bytes.NewReader(body), int64(len(body)), nil)
					check("call "+strconv.Itoa(i), resp, got, body, strconv.Itoa(len(body)))
				}()
			}
			wg.Wait()

			// A request HTTP/2 cannot carry fails alone: the connection
			// (and its header compression) goes on serving.
			bad, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
			bad.Host = "bad host\n"
			if _, err := c.RoundTrip(bad); err == nil || !strings.Contains(err.Error(), "invalid Host") {
				t.Errorf("a bad Host: %v", err)
			}
			resp, got = call(context.Background(), http.MethodPost, "/after", bytes.NewReader(short), int64(len(short)), nil)
			check("the call after a bad one", resp, got, short, "1024")
			if n := dials.Load(); n != 1 {
				t.Errorf("%d connections dialled, want 1", n)
			}
		})
	}
}

// rawH2 accepts connections on a loopback port and runs each through
// script with a framer whose SETTINGS exchange is done; a nil script
// serves the connection with the lean server and clientEcho.
func rawH2(t *testing.T, script func(n int, fr *http2.Framer, conn net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for n := 1; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			go func() {
				br := bufio.NewReader(c)
				if _, err := br.Discard(len(http2.ClientPreface)); err != nil {
					return
				}
				if script == nil {
					newH2Conn(c, br, clientEcho, slog.New(slog.DiscardHandler)).serve()
					return
				}
				fr := http2.NewFramer(c, br)
				fr.ReadMetaHeaders = nil
				_ = fr.WriteSettings()
				script(n, fr, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// readUntil reads frames until one for which stop is true.
func readUntil(fr *http2.Framer, stop func(http2.Frame) bool) error {
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return err
		}
		if _, ok := f.(*http2.SettingsFrame); ok && !f.Header().Flags.Has(http2.FlagSettingsAck) {
			_ = fr.WriteSettingsAck()
		}
		if stop(f) {
			return nil
		}
	}
}

// TestH2ClientRefused: a request the peer refused before processing it
// goes again, on the same connection after REFUSED_STREAM and on a new one
// after a GOAWAY before its stream; one whose streamed body was already
// read from does not.
func TestH2ClientRefused(t *testing.T) {
	cases := []struct {
		name   string
		refuse func(fr *http2.Framer)
		answer string // what comes back
		dials  int32
	}{
		{"REFUSED_STREAM", func(fr *http2.Framer) { _ = fr.WriteRSTStream(1, http2.ErrCodeRefusedStream) }, "again", 1},
		{"GOAWAY", func(fr *http2.Framer) { _ = fr.WriteGoAway(0, http2.ErrCodeNo, nil) }, "body", 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr := rawH2(t, func(n int, fr *http2.Framer, c net.Conn) {
				if n > 1 {
					return
				}
				isHeaders := func(f http2.Frame) bool { _, ok := f.(*http2.HeadersFrame); return ok }
				_ = readUntil(fr, isHeaders)
				tc.refuse(fr)
				// A stream of the same connection is answered by the script.
				_ = readUntil(fr, isHeaders)
				_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: headerBlock(":status", "200"), EndHeaders: true})
				_ = fr.WriteData(3, true, []byte("again"))
				_ = readUntil(fr, func(http2.Frame) bool { return false })
			})
			// The first connection is scripted; the later ones serve.
			c, dials := countedClient(t)
			ln2 := rawH2(t, nil)
			c.dial = func(ctx context.Context, network, a string) (net.Conn, error) {
				if dials.Add(1) > 1 {
					a = ln2
				}
				var d net.Dialer
				return d.DialContext(ctx, network, a)
			}
			req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/again", strings.NewReader("body"))
			resp, err := c.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(got) != tc.answer || dials.Load() != tc.dials {
				t.Errorf("got %q after %d dials, want %q after %d", got, dials.Load(), tc.answer, tc.dials)
			}
		})
	}

	t.Run("streamed body read", func(t *testing.T) {
		addr := rawH2(t, func(n int, fr *http2.Framer, c net.Conn) {
			_ = readUntil(fr, func(f http2.Frame) bool { _, ok := f.(*http2.DataFrame); return ok })
			_ = fr.WriteRSTStream(1, http2.ErrCodeRefusedStream)
			_ = readUntil(fr, func(http2.Frame) bool { return false })
		})
		c, dials := countedClient(t)
		pr, pw := io.Pipe()
		go func() { _, _ = pw.Write([]byte("part")) }() // then nothing: the body stays open
		defer pw.Close()
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/once", pr)
		req.ContentLength = -1
		_, err := c.RoundTrip(req)
		var refused errH2Refused
		if !errors.As(err, &refused) || dials.Load() != 1 {
			t.Errorf("got %v after %d dials, want the refusal after 1", err, dials.Load())
		}
	})
}

// TestH2ClientCancel: a caller's cancelled context, and an answer's body
// closed before its end, reset the stream, so the peer's handler stops.
func TestH2ClientCancel(t *testing.T) {
	stopped := make(chan string, 2)
	addr := serveLeanH2(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream" {
			w.WriteHeader(200)
			for r.Context().Err() == nil {
				_, _ = w.Write(make([]byte, 1024))
				w.(http.Flusher).Flush()
				time.Sleep(time.Millisecond)
			}
		}
		<-r.Context().Done()
		stopped <- r.URL.Path
	}))
	c, _ := countedClient(t)

	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/wait", nil)
	if _, err := c.RoundTrip(req); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled call: %v", err)
	}

	req, _ = http.NewRequest(http.MethodGet, "http://"+addr+"/stream", nil)
	resp, err := c.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	seen := map[string]bool{}
	for len(seen) < 2 {
		select {
		case p := <-stopped:
			seen[p] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("the server's handlers saw the end of %v only", seen)
		}
	}
	c.mu.Lock()
	open := 0
	for _, list := range c.conns {
		for _, cc := range list {
			cc.mu.Lock()
			open += len(cc.streams) + cc.reserved
			cc.mu.Unlock()
		}
	}
	c.mu.Unlock()
	if open != 0 {
		t.Errorf("%d streams still counted open", open)
	}
}

// TestH2ClientHealth: a peer that stops answering (not even pings) has its
// connection closed, failing the call waiting on it; a connection left
// without streams is closed after the idle time.
func TestH2ClientHealth(t *testing.T) {
	silent := rawH2(t, func(n int, fr *http2.Framer, c net.Conn) {
		_, _ = io.Copy(io.Discard, c)
	})
	c, _ := countedClient(t)
	c.pingAfter, c.pingTimeout = 100*time.Millisecond, 100*time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+silent+"/", nil)
	_, err := c.RoundTrip(req)
	if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "ping") {
		t.Errorf("call to a silent peer: %v (context: %v)", err, ctx.Err())
	}

	live := rawH2(t, nil)
	c2, _ := countedClient(t)
	c2.pingAfter, c2.pingTimeout, c2.idleAfter = 50*time.Millisecond, 50*time.Millisecond, 100*time.Millisecond
	req, _ = http.NewRequest(http.MethodGet, "http://"+live+"/", nil)
	resp, err := c2.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c2.mu.Lock()
		n := len(c2.conns)
		c2.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("an idle connection was not closed")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// FuzzH2Client feeds the client arbitrary frames from its peer while it
// waits for an answer: it returns an answer or an error, never panics or
// hangs.
func FuzzH2Client(f *testing.F) {
	var seed bytes.Buffer
	sf := http2.NewFramer(&seed, nil)
	_ = sf.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 10})
	_ = sf.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: headerBlock(":status", "103", "link", "x"), EndHeaders: true})
	_ = sf.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: headerBlock(":status", "200", "trailer", "x-t", "content-length", "3"), EndHeaders: true})
	_ = sf.WriteData(1, false, []byte("abc"))
	_ = sf.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: headerBlock("x-t", "1"), EndHeaders: true, EndStream: true})
	_ = sf.WriteWindowUpdate(0, 100)
	_ = sf.WritePing(false, [8]byte{1})
	_ = sf.WriteGoAway(1, http2.ErrCodeNo, nil)
	f.Add(seed.Bytes())
	seed.Reset()
	_ = sf.WriteRSTStream(1, http2.ErrCodeRefusedStream)
	f.Add(seed.Bytes())
	f.Add([]byte(strings.Repeat("\x00", 9)))
	f.Fuzz(func(t *testing.T, in []byte) {
		client, server := net.Pipe()
		defer server.Close()
		go func() {
			br := bufio.NewReader(server)
			if _, err := br.Discard(len(http2.ClientPreface)); err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, br) }()
			_, _ = server.Write(in)
			server.Close() // the peer is gone: whatever is waiting ends
		}()
		c := newH2Client(nil, func(context.Context, string, string) (net.Conn, error) { return client, nil })
		c.pingAfter, c.pingTimeout = time.Second, time.Second
		defer c.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://peer:1/f", strings.NewReader("abc"))
		resp, err := c.RoundTrip(req)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	})
}

// writeCounter counts a connection's writes.
type writeCounter struct {
	net.Conn
	n *atomic.Int32
}

func (c writeCounter) Write(p []byte) (int, error) {
	c.n.Add(1)
	return c.Conn.Write(p)
}

// TestH2CreditRidesAlong: connection credit for small answers leaves with
// the next request instead of in a write of its own, so each call costs
// the client one write.
func TestH2CreditRidesAlong(t *testing.T) {
	addr := serveLeanH2(t, clientEcho)
	var writes atomic.Int32
	c := newH2Client(nil, func(ctx context.Context, network, a string) (net.Conn, error) {
		var d net.Dialer
		nc, err := d.DialContext(ctx, network, a)
		return writeCounter{nc, &writes}, err
	})
	t.Cleanup(c.CloseIdleConnections)
	body := bytes.Repeat([]byte("b"), 1024)
	call := func() {
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/", bytes.NewReader(body))
		resp, err := c.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("%d bytes back: %v", len(got), err)
		}
	}
	call() // the connection's preface and SETTINGS exchange
	time.Sleep(50 * time.Millisecond)
	before := writes.Load()
	const calls = 32 // 32 KiB of answers: eight WINDOW_UPDATEs' worth
	for i := 0; i < calls; i++ {
		call()
	}
	if n := writes.Load() - before; n != calls {
		t.Errorf("%d writes for %d calls, want one each", n, calls)
	}
}
