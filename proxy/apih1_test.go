package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// startLeanH1 serves h with the lean HTTP/1.1 server (net/http's as its
// fallback, h2c on) on a free loopback port until the test ends.
func startLeanH1(t *testing.T, h http.Handler, tune func(*leanH1)) (*leanH1, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fb := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute, Protocols: h1AndH2C(), MaxHeaderBytes: 4096}
	s := newLeanH1(h, fb, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if tune != nil {
		tune(s)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		if err := <-done; err != http.ErrServerClosed {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, l.Addr().String()
}

// servedBy names the server that answered: the handler puts its
// ResponseWriter's type in the X-Writer header.
func servedBy(w http.ResponseWriter) { w.Header().Set("X-Writer", fmt.Sprintf("%T", w)) }

const leanWriter = "*proxy.h1Writer"

// dialFor connects to addr for at most d (closed when the test ends).
func dialFor(t *testing.T, addr string, d time.Duration) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(d))
	return c
}

// rawCall writes req on a new connection and reads one final answer (a
// body cut short comes back as far as it came).
func rawCall(t *testing.T, addr, req string) (*http.Response, []byte) {
	t.Helper()
	c := dialFor(t, addr, 10*time.Second)
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var head *http.Request
	if strings.HasPrefix(req, "HEAD ") {
		head = &http.Request{Method: "HEAD"}
	}
	for {
		resp, err := http.ReadResponse(br, head)
		if err != nil {
			t.Fatalf("%.60q: %v", req, err)
		}
		if resp.StatusCode < 200 {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
}

func TestLeanH1Answers(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1024) // 16 KiB
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		servedBy(w)
		switch r.URL.Path {
		case "/echo":
			b, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			w.Header().Set("X-Query", r.URL.RawQuery)
			w.Header().Set("X-Host", r.Host)
			w.Header().Set("X-Len", fmt.Sprint(r.ContentLength))
			_, _ = w.Write(b)
		case "/html":
			_, _ = io.WriteString(w, "<html><body>hi</body></html>")
		case "/big":
			_, _ = w.Write(big[:8<<10])
			_, _ = w.Write(big[8<<10:])
		case "/length":
			w.Header().Set("Content-Length", "5")
			_, _ = io.WriteString(w, "hello")
		case "/short":
			w.Header().Set("Content-Length", "10")
			_, _ = io.WriteString(w, "hello")
		case "/nocontent":
			w.WriteHeader(http.StatusNoContent)
			_, err := io.WriteString(w, "x")
			if err != http.ErrBodyNotAllowed {
				panic("a 204 took a body")
			}
		case "/trailers":
			w.Header().Set("Trailer", "X-Sum")
			w.WriteHeader(http.StatusAccepted)
			_, _ = io.WriteString(w, "body")
			w.Header().Set("X-Sum", "42")
			w.Header().Set(http.TrailerPrefix+"X-Late", "yes")
		case "/hints":
			w.Header().Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			_, _ = io.WriteString(w, "final")
		case "/status":
			w.WriteHeader(599)
		default:
			http.NotFound(w, r)
		}
	})
	_, addr := startLeanH1(t, h, nil)
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	call := func(method, path, body string, hdr ...string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
		if body == "" {
			req.Body = http.NoBody
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s %s: body: %v", method, path, err)
		}
		if got := resp.Header.Get("X-Writer"); got != leanWriter {
			t.Errorf("%s %s: served by %s, want the lean server", method, path, got)
		}
		return resp, string(b)
	}

	resp, b := call("POST", "/echo?a=1&b=%20", "payload")
	if b != "payload" || resp.Header.Get("X-Query") != "a=1&b=%20" || resp.Header.Get("X-Host") != addr || resp.Header.Get("X-Len") != "7" {
		t.Errorf("echo: %q %v", b, resp.Header)
	}
	if resp.ContentLength != 7 || resp.Header.Get("Date") == "" || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("echo: length %d, headers %v", resp.ContentLength, resp.Header)
	}
	if resp, b = call("GET", "/html", ""); resp.Header.Get("Content-Type") != "text/html; charset=utf-8" || b != "<html><body>hi</body></html>" {
		t.Errorf("html: %v %q", resp.Header, b)
	}
	if resp, b = call("GET", "/big", ""); b != string(big) || resp.ContentLength != -1 || len(resp.TransferEncoding) != 1 {
		t.Errorf("big: %d bytes, length %d, %v", len(b), resp.ContentLength, resp.TransferEncoding)
	}
	if resp, b = call("GET", "/length", ""); b != "hello" || resp.ContentLength != 5 {
		t.Errorf("length: %q %d", b, resp.ContentLength)
	}
	if resp, _ = call("GET", "/nocontent", ""); resp.StatusCode != 204 || resp.Header.Get("Content-Length") != "" {
		t.Errorf("204: %d %v", resp.StatusCode, resp.Header)
	}
	if resp, b = call("GET", "/trailers", ""); resp.StatusCode != 202 || b != "body" || resp.Trailer.Get("X-Sum") != "42" || resp.Trailer.Get("X-Late") != "yes" {
		t.Errorf("trailers: %d %q %v", resp.StatusCode, b, resp.Trailer)
	}
	if resp, _ = call("GET", "/status", ""); resp.StatusCode != 599 {
		t.Errorf("599: %d", resp.StatusCode)
	}

	// 1xx goes ahead of the answer.
	var hints []string
	req, _ := http.NewRequest("GET", "http://"+addr+"/hints", nil)
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			hints = append(hints, fmt.Sprint(code, " ", h.Get("Link")))
			return nil
		},
	}))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(hints) != 1 || hints[0] != "103 </a.css>; rel=preload" || string(b2) != "final" {
		t.Errorf("hints: %v %q", hints, b2)
	}

	// An answer short of its Content-Length ends the connection.
	r, b3 := rawCall(t, addr, "GET /short HTTP/1.1\r\nHost: x\r\n\r\n")
	if r.Header.Get("Content-Length") != "10" || string(b3) != "hello" {
		t.Errorf("short: %v %q", r.Header, b3)
	}
}

// Requests the lean server leaves to net/http's reach it with every byte,
// and net/http's answers (errors included) are the caller's.
func TestLeanH1Fallback(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		servedBy(w)
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Proto", r.Proto)
		_, _ = fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, b)
	})
	_, addr := startLeanH1(t, h, nil)
	for _, tc := range []struct {
		name, req string
		code      int
		body      string
	}{
		{"HTTP/1.0", "GET /a HTTP/1.0\r\n\r\n", 200, "GET /a "},
		{"HEAD", "HEAD /a HTTP/1.1\r\nHost: x\r\n\r\n", 200, ""},
		{"chunked body", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 200, "POST /a abc"},
		{"expect", "POST /a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi", 200, "POST /a hi"},
		{"no host", "GET /a HTTP/1.1\r\n\r\n", 400, ""},
		{"two hosts", "GET /a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400, ""},
		{"two lengths", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400, ""},
		{"bad length", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400, ""},
		{"folded", "GET /a HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n 2\r\n\r\n", 200, "GET /a "},
		{"bad name", "GET /a HTTP/1.1\r\nHost: x\r\nX A: 1\r\n\r\n", 400, ""},
		{"absolute", "GET http://x/a HTTP/1.1\r\nHost: x\r\n\r\n", 200, "GET /a "},
		{"head too big", "GET /a HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("b", 9000) + "\r\n\r\n", 431, ""},
		{"head past the buffer", "GET /a HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("b", 20000) + "\r\n\r\n", 431, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := rawCall(t, addr, tc.req)
			if resp.StatusCode != tc.code || (tc.code == 200 && string(b) != tc.body) {
				t.Errorf("%d %q, want %d %q", resp.StatusCode, b, tc.code, tc.body)
			}
			if w := resp.Header.Get("X-Writer"); tc.code == 200 && w == leanWriter {
				t.Errorf("the lean server served it")
			}
		})
	}

	// h2c with prior knowledge goes to net/http's HTTP/2 server.
	h2 := &http.Client{Transport: &http.Transport{Protocols: func() *http.Protocols {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		return &p
	}()}}
	resp, err := h2.Post("http://"+addr+"/h2", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || string(b) != "POST /h2 x" {
		t.Errorf("h2c: %s %q", resp.Proto, b)
	}

	// A connection that starts lean and needs net/http's on its second
	// request keeps its order.
	c := dialFor(t, addr, 10*time.Second)
	_, _ = io.WriteString(c, "POST /1 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\na"+
		"POST /2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nb\r\n0\r\n\r\n"+
		"GET /3 HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	for i, want := range []struct{ body, writer string }{{"POST /1 a", leanWriter}, {"POST /2 b", ""}, {"GET /3 ", ""}} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i+1, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != want.body || (want.writer == leanWriter) != (resp.Header.Get("X-Writer") == leanWriter) {
			t.Errorf("answer %d: %q from %s", i+1, b, resp.Header.Get("X-Writer"))
		}
	}
}

// Several requests in one write come back in order; a body the handler
// did not read is skipped, and one too long to skip ends the connection.
func TestLeanH1Pipelined(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		servedBy(w)
		if r.URL.Query().Get("read") != "" {
			_, _ = io.Copy(io.Discard, r.Body)
		}
		_, _ = io.WriteString(w, r.URL.Path)
	})
	_, addr := startLeanH1(t, h, nil)
	c := dialFor(t, addr, 10*time.Second)
	unread := strings.Repeat("u", 10000)
	tooLong := 300 << 10
	go func() {
		_, _ = io.WriteString(c, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"+
			"POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n\r\n"+unread+
			"POST /3?read=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"+
			fmt.Sprintf("POST /4 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", tooLong))
		_, _ = c.Write(make([]byte, tooLong))
	}()
	br := bufio.NewReader(c)
	for i := 1; i <= 4; i++ {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != fmt.Sprintf("/%d", i) || resp.Header.Get("X-Writer") != leanWriter {
			t.Errorf("answer %d: %q from %s", i, b, resp.Header.Get("X-Writer"))
		}
		if (i == 4) != resp.Close {
			t.Errorf("answer %d: Connection: close is %v", i, resp.Close)
		}
	}
}

// A caller that goes away while its call runs cancels the call's context.
func TestLeanH1CallerGone(t *testing.T) {
	cancelled := make(chan string, 2)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
			cancelled <- r.URL.Path
		case <-time.After(20 * time.Second):
		}
	})
	_, addr := startLeanH1(t, h, func(s *leanH1) { s.watchAfter = time.Millisecond })
	for _, req := range []string{"GET /nobody HTTP/1.1\r\nHost: x\r\n\r\n", "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(c, req)
		time.Sleep(50 * time.Millisecond) // let the check start; either way the close must cancel
		c.Close()
		select {
		case p := <-cancelled:
			t.Logf("%s cancelled", p)
		case <-time.After(10 * time.Second):
			t.Fatalf("%q: the call was not cancelled when its caller left", req)
		}
	}
}

// The caller check ends with the call: the next request on the connection
// is read whole, also when it arrived while the check was reading.
func TestLeanH1CheckHandsBack(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/slow" {
			time.Sleep(30 * time.Millisecond)
		}
		_, _ = fmt.Fprintf(w, "%s %s", r.URL.Path, b)
	})
	_, addr := startLeanH1(t, h, func(s *leanH1) { s.watchAfter = time.Millisecond })
	c := dialFor(t, addr, 20*time.Second)
	br := bufio.NewReader(c)
	for i := range 20 {
		_, _ = io.WriteString(c, "POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\na")
		if i%2 == 1 {
			time.Sleep(10 * time.Millisecond) // the next request lands during the check
			_, _ = io.WriteString(c, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
		}
		for _, want := range []string{"/slow a", "/next "}[:1+i%2] {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("round %d: %v", i, err)
			}
			b, _ := io.ReadAll(resp.Body)
			if string(b) != want {
				t.Fatalf("round %d: %q, want %q", i, b, want)
			}
		}
	}
}

// A handler's panic ends its connection; the server goes on.
func TestLeanH1Panic(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/panic" {
			panic(http.ErrAbortHandler)
		}
		_, _ = io.WriteString(w, "ok")
	})
	_, addr := startLeanH1(t, h, nil)
	c := dialFor(t, addr, 10*time.Second)
	_, _ = io.WriteString(c, "GET /panic HTTP/1.1\r\nHost: x\r\n\r\n")
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("after a panic: read %d, %v; want the connection closed", n, err)
	}
	if _, b := rawCall(t, addr, "GET /ok HTTP/1.1\r\nHost: x\r\n\r\n"); string(b) != "ok" {
		t.Errorf("after a panic: %q", b)
	}
}

// Shutdown closes idle connections at once and lets a running call end
// with its answer (Connection: close).
func TestLeanH1Shutdown(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(started)
			<-release
		}
		_, _ = io.WriteString(w, "done")
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := newLeanH1(h, &http.Server{Handler: h}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	addr := l.Addr().String()
	idle := dialFor(t, addr, 10*time.Second)
	_, _ = io.WriteString(idle, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
	ibr := bufio.NewReader(idle)
	if resp, err := http.ReadResponse(ibr, nil); err != nil || resp.Close {
		t.Fatalf("idle connection's first answer: %v", err)
	} else {
		_, _ = io.ReadAll(resp.Body)
	}
	busy := dialFor(t, addr, 10*time.Second)
	_, _ = io.WriteString(busy, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	<-started
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	if _, err := ibr.ReadByte(); err != io.EOF {
		t.Errorf("idle connection after Shutdown: %v, want EOF", err)
	}
	close(release)
	resp, err := http.ReadResponse(bufio.NewReader(busy), nil)
	if err != nil {
		t.Fatalf("the running call's answer: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "done" || !resp.Close {
		t.Errorf("the running call: %q, Connection: close %v", b, resp.Close)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-served; err != http.ErrServerClosed {
		t.Errorf("Serve: %v", err)
	}
}

// A flushed answer reaches the caller while the handler still runs, and
// many connections at once each get their own answers.
func TestLeanH1FlushAndConcurrency(t *testing.T) {
	next := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream" {
			_, _ = io.WriteString(w, "first;")
			w.(http.Flusher).Flush()
			<-next
			_, _ = io.WriteString(w, "second")
			return
		}
		b, _ := io.ReadAll(r.Body)
		_, _ = w.Write(b)
	})
	_, addr := startLeanH1(t, h, nil)
	resp, err := http.Get("http://" + addr + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first;" {
		t.Fatalf("flushed part: %q %v", buf, err)
	}
	close(next)
	rest, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(rest) != "second" {
		t.Errorf("rest: %q", rest)
	}

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	defer client.CloseIdleConnections()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Go(func() {
			for i := range 50 {
				want := fmt.Sprintf("%d-%d-%s", g, i, strings.Repeat("x", (g*i)%9000))
				resp, err := client.Post("http://"+addr+"/echo", "text/plain", strings.NewReader(want))
				if err != nil {
					errs <- err
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(b) != want {
					errs <- fmt.Errorf("got %d bytes, want %d", len(b), len(want))
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// FuzzH1Head checks the lean server's head parser against net/http's: a
// head it takes must come out as net/http reads it.
func FuzzH1Head(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /v1.0/invoke/a/method/b?x=1 HTTP/1.1\r\nHost: 127.0.0.1:3500\r\nContent-Length: 5\r\ncontent-type: text/plain\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nX-A: 2\r\nConnection: close\r\n\r\n",
		"GET /a%20b HTTP/1.1\r\nHost: x\r\nX-A:\t v \t\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 007\r\n\r\n",
		"GET /a HTTP/1.1\r\nhost: x\r\nX-Empty:\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, head []byte) {
		h, ok := parseH1Head(head)
		if !ok {
			return
		}
		want, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
		if err != nil {
			t.Fatalf("lean took %q, net/http refuses it: %v", head, err)
		}
		if h.method != want.Method || h.target != want.RequestURI || h.host != want.Host || h.url.String() != want.URL.String() ||
			h.contentLength != want.ContentLength || h.close != want.Close {
			t.Fatalf("%q: lean %s %s host %q length %d close %v; net/http %s %s host %q length %d close %v",
				head, h.method, h.url, h.host, h.contentLength, h.close, want.Method, want.URL, want.Host, want.ContentLength, want.Close)
		}
		if len(h.header) != len(want.Header) && !(len(h.header) == 0 && len(want.Header) == 0) {
			t.Fatalf("%q: headers %v, net/http %v", head, h.header, want.Header)
		}
		for k, v := range want.Header {
			if !reflect.DeepEqual(h.header[k], v) {
				t.Fatalf("%q: header %s %q, net/http %q", head, k, h.header[k], v)
			}
		}
	})
}

// An answer that comes before a large body was read (a 413, say) reaches
// the caller still writing that body: the connection half-closes and
// lingers rather than resetting under it.
func TestLeanH1EarlyAnswer(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "too large", http.StatusRequestEntityTooLarge)
	})
	_, addr := startLeanH1(t, h, nil)
	body := bytes.Repeat([]byte("b"), 4<<20)
	for i := range 5 {
		resp, err := http.Post("http://"+addr+"/big", "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		_, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !resp.Close {
			t.Errorf("call %d: %d, Connection: close %v", i, resp.StatusCode, resp.Close)
		}
	}
}

// FuzzLeanH1 sends arbitrary bytes to the lean server and to net/http's
// alone, each serving the same handler on a connection of its own: the
// answers (status, body, and the headers the handler set) must be the
// same, in the same order, and the lean server must neither panic nor
// hang.
func FuzzLeanH1(f *testing.F) {
	for _, s := range []string{
		"GET /a?x=1 HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
		"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\nHost: y\r\n\r\n",
		"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /a HTTP/1.0\r\n\r\n",
		"HEAD /a HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /big HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcdGET /c HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-a: 2\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ignore":
		case "/big":
			_, _ = w.Write(bytes.Repeat([]byte("z"), 9000))
		default:
			b, err := io.ReadAll(r.Body)
			w.Header().Set("X-Got", fmt.Sprintf("%s %s %s %q %d %v", r.Method, r.URL.RequestURI(), r.Host, r.Header["X-A"], r.ContentLength, err))
			_, _ = w.Write(b)
		}
	})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	newServer := func(lean bool) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			f.Fatal(err)
		}
		fb := &http.Server{Handler: h, ErrorLog: slog.NewLogLogger(quiet.Handler(), slog.LevelDebug)}
		if lean {
			go func() { _ = newLeanH1(h, fb, quiet).Serve(l) }()
		} else {
			go func() { _ = fb.Serve(l) }()
		}
		f.Cleanup(func() { _ = l.Close() })
		return l.Addr().String()
	}
	leanAddr, plainAddr := newServer(true), newServer(false)
	answers := func(t *testing.T, addr string, in []byte) []string {
		c := dialFor(t, addr, 5*time.Second)
		go func() {
			_, _ = c.Write(in)
			_ = c.(*net.TCPConn).CloseWrite()
		}()
		br := bufio.NewReader(c)
		var out []string
		for {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatalf("%q: no answer or end within 5 s", in)
				}
				return out
			}
			b, err := io.ReadAll(resp.Body)
			out = append(out, fmt.Sprintf("%d %q %q %v", resp.StatusCode, resp.Header.Get("X-Got"), b, err))
			if resp.Close {
				return out
			}
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if bytes.HasPrefix(in, []byte("HEAD")) || bytes.Contains(in, []byte("\nHEAD")) {
			return // a HEAD answer has no body to read: ReadResponse needs the request
		}
		got, want := answers(t, leanAddr, in), answers(t, plainAddr, in)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\nlean     %q\nnet/http %q", in, got, want)
		}
	})
}
