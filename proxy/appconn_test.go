package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestInlineTransportReusesConnections(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/chunked":
			w.Write([]byte("part1"))
			w.(http.Flusher).Flush()
			w.Write([]byte("part2"))
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		case "/close":
			w.Header().Set("Connection", "close")
			fmt.Fprint(w, "bye")
		default:
			fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.RequestURI(), b)
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	tr := newInlineTransport(srv.Listener.Addr().String(), http.DefaultTransport, (&net.Dialer{}).DialContext)
	defer tr.closeIdle()
	do := func(method, path, body string) (*http.Response, string) {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, "http://"+srv.Listener.Addr().String()+path, rd)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s %s: reading: %v", method, path, err)
		}
		return resp, string(b)
	}
	for i := range 5 {
		if _, got := do(http.MethodPost, fmt.Sprintf("/x?i=%d", i), "hello"); got != fmt.Sprintf("POST /x?i=%d hello", i) {
			t.Fatalf("got %q", got)
		}
	}
	if _, got := do(http.MethodGet, "/chunked", ""); got != "part1part2" {
		t.Fatalf("chunked: got %q", got)
	}
	if resp, got := do(http.MethodGet, "/empty", ""); resp.StatusCode != 204 || got != "" {
		t.Fatalf("204: got %d %q", resp.StatusCode, got)
	}
	if resp, got := do(http.MethodHead, "/x", ""); resp.StatusCode != 200 || got != "" {
		t.Fatalf("HEAD: got %d %q", resp.StatusCode, got)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for sequential calls, want 1", n)
	}
	if _, got := do(http.MethodGet, "/close", ""); got != "bye" {
		t.Fatalf("close: got %q", got)
	}
	if _, got := do(http.MethodGet, "/y", ""); got != "GET /y " {
		t.Fatalf("after close: got %q", got)
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections after a Connection: close answer, want 2", n)
	}
}

// rawApp answers each connection's first request with answer and then does
// what after says: "close" closes the connection, "keep" keeps reading.
func rawApp(t *testing.T, answer string, closeAfter bool) (addr string, served *atomic.Int32, closed *atomic.Int32) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	served = &atomic.Int32{}
	closed = &atomic.Int32{}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer closed.Add(1)
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					served.Add(1)
					io.WriteString(c, answer)
					if closeAfter {
						return
					}
				}
			}()
		}
	}()
	return l.Addr().String(), served, closed
}

func TestInlineTransportRetriesStaleConnection(t *testing.T) {
	// The app answers with keep-alive but closes the connection right after:
	// the next call finds a dead pooled connection and must be replayed.
	addr, served, closed := rawApp(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true)
	tr := newInlineTransport(addr, http.DefaultTransport, (&net.Dialer{}).DialContext)
	defer tr.closeIdle()
	for i := range 3 {
		// Wait until the app has closed the previous connection: a call made
		// in the instant before would race the close, and a POST that meets
		// a reset after it was written is rightly not replayed.
		deadline := time.Now().Add(10 * time.Second)
		for closed.Load() < int32(i) && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/", strings.NewReader("body"))
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "ok" {
			t.Fatalf("call %d: got %q", i, b)
		}
	}
	if n := served.Load(); n != 3 {
		t.Errorf("app served %d calls, want 3 (no call twice)", n)
	}
}

func TestInlineTransportSkipsInformational(t *testing.T) {
	addr, _, _ := rawApp(t, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\ndone", false)
	tr := newInlineTransport(addr, http.DefaultTransport, (&net.Dialer{}).DialContext)
	defer tr.closeIdle()
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 || string(b) != "done" {
		t.Fatalf("got %d %q, want 201 done", resp.StatusCode, b)
	}
}

func TestInlineTransportCancel(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	tr := newInlineTransport(srv.Listener.Addr().String(), http.DefaultTransport, (&net.Dialer{}).DialContext)
	defer tr.closeIdle()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/slow", nil)
	start := time.Now()
	_, err := tr.RoundTrip(req)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("cancel took %v", d)
	}
}

func TestInlineTransportFallsBack(t *testing.T) {
	var fellBack atomic.Int32
	fb := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		fellBack.Add(1)
		return http.DefaultTransport.RoundTrip(r)
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, n)
	}))
	defer srv.Close()
	tr := newInlineTransport(srv.Listener.Addr().String(), fb, (&net.Dialer{}).DialContext)
	defer tr.closeIdle()
	for _, tc := range []struct {
		name     string
		body     io.Reader
		length   int64
		fallback bool
	}{
		{"small", strings.NewReader("abc"), 3, false},
		{"large", strings.NewReader(strings.Repeat("x", inlineMaxBody+1)), inlineMaxBody + 1, true},
		{"unknown length", io.MultiReader(strings.NewReader("abc")), -1, true},
	} {
		before := fellBack.Load()
		req, _ := http.NewRequest(http.MethodPost, srv.URL, tc.body)
		req.ContentLength = tc.length
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if got := fellBack.Load() > before; got != tc.fallback {
			t.Errorf("%s: fell back = %v, want %v", tc.name, got, tc.fallback)
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestInlineTransportReplaysOnlyWhatIsSafe: the app reads a second call on a
// kept-alive connection and drops it unanswered. A POST must fail rather than
// reach the app twice; a GET is replayed on a new connection.
func TestInlineTransportReplaysOnlyWhatIsSafe(t *testing.T) {
	for _, tc := range []struct {
		method     string
		wantErr    bool
		wantServed int32
	}{
		{http.MethodPost, true, 2},
		{http.MethodGet, false, 3},
	} {
		t.Run(tc.method, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			var served atomic.Int32
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					go func() {
						defer c.Close()
						br := bufio.NewReader(c)
						for i := 0; ; i++ {
							req, err := http.ReadRequest(br)
							if err != nil {
								return
							}
							io.Copy(io.Discard, req.Body)
							served.Add(1)
							if i == 1 {
								return // the second call on a connection is dropped unanswered
							}
							io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
						}
					}()
				}
			}()
			addr := l.Addr().String()
			tr := newInlineTransport(addr, http.DefaultTransport, (&net.Dialer{}).DialContext)
			defer tr.closeIdle()
			call := func() error {
				req, _ := http.NewRequest(tc.method, "http://"+addr+"/", strings.NewReader("b"))
				resp, err := tr.RoundTrip(req)
				if err != nil {
					return err
				}
				io.Copy(io.Discard, resp.Body)
				return resp.Body.Close()
			}
			if err := call(); err != nil {
				t.Fatalf("first call: %v", err)
			}
			err = call()
			if (err != nil) != tc.wantErr {
				t.Fatalf("second call: err = %v, want error: %v", err, tc.wantErr)
			}
			if got := served.Load(); got != tc.wantServed {
				t.Errorf("app saw %d calls, want %d", got, tc.wantServed)
			}
		})
	}
}

// FuzzAppResponse checks the lean reading of an app's answer against
// http.ReadResponse: an answer it takes must come out the same, body
// included, and leave the same bytes for the next one.
func FuzzAppResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
		"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
		"HTTP/1.1 500\r\nContent-Length: 2\r\nX-A: 1\r\nX-A: 2\r\nConnection: close\r\n\r\nab",
		"HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 200 OK\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"HTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nPragma: no-cache\r\n\r\na",
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		req := &http.Request{Method: http.MethodPost}
		head, _ := peekHead(bufio.NewReader(bytes.NewReader(in)))
		resp, ok := parseAppResponse(head)
		if !ok {
			return
		}
		br := bufio.NewReader(bytes.NewReader(in))
		got, err := readAppResponse(br, req)
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		gotBody, gotErr := io.ReadAll(got.Body)
		gotRest, _ := io.ReadAll(br)
		wbr := bufio.NewReader(bytes.NewReader(in))
		want, err := http.ReadResponse(wbr, req)
		if err != nil {
			t.Fatalf("lean took %q, net/http refuses it: %v", in, err)
		}
		wantBody, wantErr := io.ReadAll(want.Body)
		wantRest, _ := io.ReadAll(wbr)
		if got.Status != want.Status || got.StatusCode != want.StatusCode || got.Proto != want.Proto ||
			got.ContentLength != want.ContentLength || got.Close != want.Close || resp.StatusCode != want.StatusCode ||
			!reflect.DeepEqual(got.Header, want.Header) || len(want.TransferEncoding) > 0 || len(want.Trailer) > 0 {
			t.Fatalf("%q:\nlean     %q %d %s %d close %v %v\nnet/http %q %d %s %d close %v %v te %v trailer %v", in,
				got.Status, got.StatusCode, got.Proto, got.ContentLength, got.Close, got.Header,
				want.Status, want.StatusCode, want.Proto, want.ContentLength, want.Close, want.Header, want.TransferEncoding, want.Trailer)
		}
		if !bytes.Equal(gotBody, wantBody) || (gotErr == nil) != (wantErr == nil) || !bytes.Equal(gotRest, wantRest) {
			t.Fatalf("%q: body %q (%v), rest %q; net/http %q (%v), rest %q", in, gotBody, gotErr, gotRest, wantBody, wantErr, wantRest)
		}
	})
}
