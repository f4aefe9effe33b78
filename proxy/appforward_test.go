package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http/httpguts"
)

// scriptedApp is an HTTP/1.1 app on a real socket that records each
// request's head as it arrived and answers with the raw bytes its script
// gives for the path.
type scriptedApp struct {
	ln     net.Listener
	mu     sync.Mutex
	heads  []string
	script func(path string, conn net.Conn, bw *bufio.Writer)
}

func startScriptedApp(t *testing.T, script func(path string, conn net.Conn, bw *bufio.Writer)) *scriptedApp {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &scriptedApp{ln: ln, script: script}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go a.serve(c)
		}
	}()
	return a
}

func (a *scriptedApp) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	bw := bufio.NewWriter(c)
	for {
		tp := textproto.NewReader(br)
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		var head strings.Builder
		head.WriteString(line + "\n")
		length := 0
		for {
			l, err := tp.ReadLine()
			if err != nil {
				return
			}
			if l == "" {
				break
			}
			head.WriteString(l + "\n")
			if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(k, "Content-Length") {
				length, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
		if _, err := io.CopyN(io.Discard, br, int64(length)); err != nil {
			return
		}
		a.mu.Lock()
		a.heads = append(a.heads, head.String())
		a.mu.Unlock()
		path := strings.Fields(line)[1]
		a.script(path, c, bw)
		if bw.Flush() != nil || strings.HasPrefix(path, "/break") {
			return
		}
	}
}

func (a *scriptedApp) lastHead() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.heads) == 0 {
		return ""
	}
	return a.heads[len(a.heads)-1]
}

func (a *scriptedApp) port() int { return a.ln.Addr().(*net.TCPAddr).Port }

// h2cClient calls a sidecar's mesh port as another sidecar does.
func h2cClient() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p}, Timeout: 10 * time.Second}
}

// TestForwardToApp checks what the callee's sidecar writes to an HTTP/1.1
// app and passes back from it, calling its mesh port directly so that no
// caller sidecar cleans the request first.
func TestForwardToApp(t *testing.T) {
	release := make(chan struct{})
	app := startScriptedApp(t, func(path string, c net.Conn, bw *bufio.Writer) {
		switch {
		case strings.HasPrefix(path, "/plain"):
			bw.WriteString("HTTP/1.1 201 Created\r\nContent-Length: 2\r\nConnection: X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nX-Kept: yes\r\n\r\nok")
		case path == "/trailers":
			bw.WriteString("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n3\r\nabc\r\n0\r\nX-Sum: 3\r\n\r\n")
		case path == "/stream":
			bw.WriteString("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
			bw.Flush()
			<-release // the test has read the first part
			bw.WriteString("4\r\nlast\r\n0\r\n\r\n")
		case path == "/break":
			bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
		case path == "/break-chunked":
			bw.WriteString("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
		}
	})
	callee := startSidecar(t, Config{AppID: "callee", AppPort: app.port(), AppAPIToken: "app-secret", Resolver: &mapResolver{}})
	waitHealthy(t, callee)
	mesh := "http://127.0.0.1:" + strconv.Itoa(callee.Ports().Internal)
	client := h2cClient()
	call := func(method, path string, body string, h http.Header) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, mesh+path, strings.NewReader(body))
		if body == "" {
			req.Body = http.NoBody
		}
		for k, vv := range h {
			req.Header[k] = vv
		}
		req.Header.Set("dapr-callee-app-id", "callee")
		req.Header.Set("dapr-caller-app-id", "caller")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		return resp
	}

	resp := call(http.MethodPost, "/plain/a%2Fb?x=1&y=%20z", "hello", http.Header{
		"X-Forwarded-For":     {"10.0.0.1"},
		"Forwarded":           {"for=10.0.0.1"},
		"Proxy-Authorization": {"Basic c2VjcmV0"},
		"Te":                  {"trailers"},
		"Dapr-Api-Token":      {"from-the-caller"},
		"X-Multi":             {"one", "two"},
		"User-Agent":          {"tester/1"},
	})
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || string(body) != "ok" {
		t.Fatalf("plain: got %d %q", resp.StatusCode, body)
	}
	if resp.Header.Get("X-Kept") != "yes" || resp.Header.Get("X-Hop") != "" || resp.Header.Get("Keep-Alive") != "" {
		t.Errorf("plain: answer's headers %v: want X-Kept, and neither the hop-by-hop Keep-Alive nor X-Hop that Connection names", resp.Header)
	}
	head := app.lastHead()
	lines := strings.Split(strings.TrimSpace(head), "\n")
	if lines[0] != "POST /plain/a%2Fb?x=1&y=%20z HTTP/1.1" {
		t.Errorf("request line %q", lines[0])
	}
	want := []string{
		"Host: 127.0.0.1:" + strconv.Itoa(app.port()),
		"Content-Length: 5",
		"Te: trailers",
		"Dapr-Api-Token: app-secret",
		"X-Multi: one",
		"X-Multi: two",
		"User-Agent: tester/1",
		"Dapr-Caller-App-Id: caller",
		"Dapr-Callee-App-Id: callee",
	}
	for _, w := range want {
		if !strings.Contains(head, w+"\n") {
			t.Errorf("the app did not get %q in\n%s", w, head)
		}
	}
	for _, gone := range []string{"X-Forwarded-For", "Forwarded", "Proxy-Authorization", "from-the-caller"} {
		if strings.Contains(head, gone) {
			t.Errorf("the app got %q in\n%s", gone, head)
		}
	}
	if strings.Index(head, "X-Multi: one") > strings.Index(head, "X-Multi: two") {
		t.Errorf("X-Multi's values out of order in\n%s", head)
	}

	// No body, no User-Agent: no Content-Length on a GET, no default agent.
	resp = call(http.MethodGet, "/plain", "", http.Header{"User-Agent": {""}})
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if head := app.lastHead(); strings.Contains(head, "Content-Length") || strings.Contains(head, "User-Agent") {
		t.Errorf("GET without body or agent: the app got\n%s", head)
	}

	// Trailers come back.
	resp = call(http.MethodGet, "/trailers", "", nil)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(body) != "abc" || resp.Trailer.Get("X-Sum") != "3" {
		t.Errorf("trailers: got %q (%v), trailer %v", body, err, resp.Trailer)
	}

	// A body of unknown length is passed on as it comes.
	resp = call(http.MethodGet, "/stream", "", nil)
	first := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "first" {
		t.Fatalf("stream: first part %q, %v", first, err)
	}
	close(release)
	rest, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(rest) != "last" {
		t.Errorf("stream: rest %q, %v", rest, err)
	}

	// An answer that breaks off is not passed on as a whole one: the
	// stream is reset, before or after the head has gone.
	for _, path := range []string{"/break", "/break-chunked"} {
		req, _ := http.NewRequest(http.MethodGet, mesh+path, nil)
		req.Header.Set("dapr-callee-app-id", "callee")
		if resp, err := client.Do(req); err == nil {
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil {
				t.Errorf("%s: read %q and no error; want the stream reset", path, body)
			}
		}
	}

	// A query the reverse proxy rewrites still reaches the app.
	resp = call(http.MethodGet, "/plain?a=1;b=2", "", nil)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Errorf("semicolon query: status %d", resp.StatusCode)
	}
}

func TestWriteAppRequest(t *testing.T) {
	for _, tc := range []struct {
		name, method string
		header       http.Header
		body         string
		direct       bool
		want         []string
		not          []string
	}{
		{name: "line breaks", method: "POST", header: http.Header{"X-A": {"a\r\nInjected: 1"}, "Bad Name": {"v"}}, direct: true,
			want: []string{"X-A: a  Injected: 1\r\n", "Content-Length: 0\r\n"}, not: []string{"Bad Name", "\r\nInjected"}},
		{name: "delete without body", method: "DELETE", header: http.Header{}, direct: true, not: []string{"Content-Length"}},
		{name: "reverse proxy's request", method: "PUT", header: http.Header{"Te": {"trailers"}, "Trailer": {"X"}, "User-Agent": {""}, "Dapr-Api-Token": {"t"}}, body: "abc",
			want: []string{"Te: trailers\r\n", "Content-Length: 3\r\n", "Dapr-Api-Token: t\r\n"}, not: []string{"Trailer:", "User-Agent"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, "http://x/p?q=1", nil)
			req.Header = tc.header
			var buf bytes.Buffer
			bw := bufio.NewWriter(&buf)
			if err := writeAppRequest(bw, req, "app:1", []byte(tc.body), "", tc.direct); err != nil {
				t.Fatal(err)
			}
			bw.Flush()
			got := buf.String()
			if !strings.HasPrefix(got, tc.method+" /p?q=1 HTTP/1.1\r\nHost: app:1\r\n") || !strings.HasSuffix(got, "\r\n\r\n"+tc.body) {
				t.Errorf("got %q", got)
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("no %q in %q", w, got)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(got, n) {
					t.Errorf("%q in %q", n, got)
				}
			}
		})
	}
}

func TestCleanQuery(t *testing.T) {
	for q, want := range map[string]bool{"": true, "a=1&b=%20": true, "a=1;b=2": false, "a=%2": false, "a=%zz": false, "a=%": false} {
		if got := cleanQuery(q); got != want {
			t.Errorf("cleanQuery(%q) = %v, want %v", q, got, want)
		}
	}
}

// TestForwardToPeer checks what a caller's sidecar passes on of an
// invocation and of its answer, end to end through both sidecars: the
// client writes its request by hand so that its headers are exactly
// these.
func TestForwardToPeer(t *testing.T) {
	app := startScriptedApp(t, func(path string, c net.Conn, bw *bufio.Writer) {
		switch path {
		case "/trailers":
			bw.WriteString("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\nX-Kept: yes\r\n\r\n3\r\nabc\r\n0\r\nX-Sum: 3\r\n\r\n")
		default:
			bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	res := &mapResolver{}
	callee := startSidecar(t, Config{AppID: "callee", AppPort: app.port(), Resolver: res})
	res.set("callee", "default", "127.0.0.1:"+strconv.Itoa(callee.Ports().Internal))
	caller := startSidecar(t, Config{AppID: "caller", Resolver: res})
	waitHealthy(t, callee)

	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(caller.Ports().HTTP))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	send := func(raw string) *http.Response {
		t.Helper()
		if _, err := io.WriteString(c, raw); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}

	resp := send("POST /v1.0/invoke/callee/method/echo?x=1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n" +
		"Connection: keep-alive, X-Custom\r\nX-Custom: 1\r\nKeep-Alive: timeout=5\r\nTe: trailers, deflate\r\n" +
		"Proxy-Authorization: Basic c2VjcmV0\r\nX-Forwarded-For: 10.0.0.1\r\nX-Kept: yes\r\n\r\nhello")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "ok" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	head := app.lastHead()
	if !strings.HasPrefix(head, "POST /echo?x=1 HTTP/1.1\n") {
		t.Errorf("request line in\n%s", head)
	}
	for _, w := range []string{"X-Kept: yes", "Te: trailers", "Dapr-Caller-App-Id: caller", "Dapr-Callee-App-Id: callee", "Content-Length: 5"} {
		if !strings.Contains(head, w+"\n") {
			t.Errorf("the app did not get %q in\n%s", w, head)
		}
	}
	for _, gone := range []string{"X-Custom", "Keep-Alive", "Proxy-Authorization", "X-Forwarded-For", "deflate", "User-Agent"} {
		if strings.Contains(head, gone) {
			t.Errorf("the app got %q in\n%s", gone, head)
		}
	}

	resp = send("GET /v1.0/invoke/callee/method/trailers HTTP/1.1\r\nHost: localhost\r\nTe: trailers\r\n\r\n")
	body, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(body) != "abc" || resp.Header.Get("X-Kept") != "yes" || resp.Trailer.Get("X-Sum") != "3" {
		t.Errorf("trailers: got %q (%v), header %v, trailer %v", body, err, resp.Header, resp.Trailer)
	}
}

// FuzzWriteAppRequest checks that whatever the headers, the app reads
// exactly one request, with no header the caller did not send and the body
// intact.
func FuzzWriteAppRequest(f *testing.F) {
	f.Add(uint8(0), "/p?q=1", "X-A", "v", []byte("body"), true)
	f.Add(uint8(1), "/", "X-A", "a\r\nInjected: 1", []byte{}, true)
	f.Add(uint8(2), "/%2F?x=%20", "Dapr-Api-Token", "t", []byte("x"), false)
	f.Add(uint8(3), "/", "Te", "trailers", []byte(nil), true)
	f.Fuzz(func(t *testing.T, m uint8, uri, name, value string, body []byte, direct bool) {
		methods := []string{"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"}
		method := methods[int(m)%len(methods)]
		u, err := url.ParseRequestURI(uri)
		if err != nil || u.Scheme != "" || u.Opaque != "" || !strings.HasPrefix(uri, "/") {
			return // a mesh request's path is absolute
		}
		req := &http.Request{Method: method, URL: u, Header: http.Header{name: {value}}}
		var buf bytes.Buffer
		bw := bufio.NewWriter(&buf)
		if err := writeAppRequest(bw, req, "app:1", body, "tok", direct); err != nil {
			t.Fatal(err)
		}
		bw.Flush()
		got, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(buf.Bytes())))
		sanitized := textproto.TrimString(strings.NewReplacer("\r", " ", "\n", " ").Replace(value))
		if err != nil {
			if httpguts.ValidHeaderFieldValue(sanitized) && httpguts.ValidHeaderFieldName(name) {
				t.Fatalf("the app cannot read %q: %v", buf.String(), err)
			}
			return
		}
		if got.Method != method || got.Host != "app:1" || got.URL.Path != u.Path || got.URL.Query().Encode() != u.Query().Encode() {
			t.Fatalf("read %s %s (host %s) from %q", got.Method, got.URL.RequestURI(), got.Host, buf.String())
		}
		allowed := map[string]bool{"Content-Length": true, "User-Agent": true, "Te": true, "Dapr-Api-Token": true, http.CanonicalHeaderKey(name): true}
		for k := range got.Header {
			if !allowed[k] {
				t.Fatalf("the app read header %q the caller never sent, from %q", k, buf.String())
			}
		}
		b, err := io.ReadAll(got.Body)
		if err != nil || !bytes.Equal(b, body) && len(body) > 0 {
			t.Fatalf("body %q (%v), sent %q", b, err, body)
		}
	})
}
