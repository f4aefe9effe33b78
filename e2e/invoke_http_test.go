package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outrigger/outrigger/e2e/framework"
)

const (
	traceID     = "4bf92f3577b34da6a3ce929d0e0e4736"
	traceparent = "00-" + traceID + "-00f067aa0ba902b7-01"
)

// TestInvokeHTTP drives every HTTP form of service invocation through two
// sidecars to an HTTP/1.1 app.
func TestInvokeHTTP(t *testing.T) {
	t.Parallel()
	app := framework.StartHTTPApp(t, framework.HTTPAppOptions{})
	_, caller := pair(t, framework.SidecarOptions{AppPort: app.Port}, framework.SidecarOptions{})

	t.Run("verbs", func(t *testing.T) {
		const query = "x=1&y=two%20words&x=3&empty=&status=201"
		for _, verb := range []string{"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"} {
			t.Run(verb, func(t *testing.T) {
				var body io.Reader
				sent := ""
				hdr := http.Header{
					"X-Custom":    {"v1"},
					"X-Multi":     {"a", "b"},
					"Traceparent": {traceparent},
				}
				if verb != "GET" && verb != "HEAD" {
					sent = "the body of a " + verb
					body = strings.NewReader(sent)
					hdr.Set("Content-Type", "text/plain; charset=utf-8")
				}
				resp, got := call(t, verb, caller.URL("/v1.0/invoke/callee/method/echo/a/b/c?"+query), body, hdr)
				if resp.StatusCode != http.StatusCreated {
					t.Fatalf("status %d, want the app's 201; body %q", resp.StatusCode, truncate(got))
				}
				if m := resp.Header.Get("X-Echo-Method"); m != verb {
					t.Errorf("response header X-Echo-Method %q, want %q", m, verb)
				}
				if n := resp.Header.Get("X-App-Name"); n != "e2e-http-app" {
					t.Errorf("response header X-App-Name %q, want the app's e2e-http-app", n)
				}
				if verb == "HEAD" {
					if len(got) != 0 {
						t.Errorf("HEAD answered a body of %d bytes", len(got))
					}
					return
				}
				e := echoOf(t, got)
				if e.Method != verb {
					t.Errorf("app saw method %q, want %q", e.Method, verb)
				}
				if e.Path != "/echo/a/b/c" {
					t.Errorf("app saw path %q, want /echo/a/b/c", e.Path)
				}
				if e.RawQuery != query {
					t.Errorf("app saw query %q, want %q", e.RawQuery, query)
				}
				if e.Body != sent {
					t.Errorf("app saw body %q, want %q", e.Body, sent)
				}
				h := http.Header(e.Header)
				if v := h.Get("X-Custom"); v != "v1" {
					t.Errorf("app saw X-Custom %q, want v1", v)
				}
				if v := h.Values("X-Multi"); !slices.Equal(v, []string{"a", "b"}) {
					t.Errorf("app saw X-Multi %q, want [a b]", v)
				}
				if sent != "" {
					if v := h.Get("Content-Type"); v != "text/plain; charset=utf-8" {
						t.Errorf("app saw Content-Type %q, want text/plain; charset=utf-8", v)
					}
				}
				wantDaprHeaders(t, h, "caller", "callee")
				wantTrace(t, h.Get("Traceparent"))
			})
		}
	})

	t.Run("app-id with namespace", func(t *testing.T) {
		resp, got := call(t, http.MethodPost, caller.URL("/v1.0/invoke/callee.default/method/echo/ns?q=1"), strings.NewReader("ns"), nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d, body %q, want 200", resp.StatusCode, truncate(got))
		}
		e := echoOf(t, got)
		if e.Path != "/echo/ns" || e.RawQuery != "q=1" || e.Body != "ns" {
			t.Errorf("app saw %s %s?%s body %q, want /echo/ns?q=1 body ns", e.Method, e.Path, e.RawQuery, e.Body)
		}
		wantDaprHeaders(t, e.Header, "caller", "callee")
	})

	t.Run("dapr-app-id header", func(t *testing.T) {
		hdr := http.Header{"Dapr-App-Id": {"callee"}, "X-Custom": {"hdr"}}
		resp, got := call(t, http.MethodPut, caller.URL("/echo/plain/request?k=v&k=w"), strings.NewReader("plain"), hdr)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d, body %q, want 200", resp.StatusCode, truncate(got))
		}
		e := echoOf(t, got)
		if e.Method != http.MethodPut || e.Path != "/echo/plain/request" || e.RawQuery != "k=v&k=w" || e.Body != "plain" {
			t.Errorf("app saw %s %s?%s body %q, want PUT /echo/plain/request?k=v&k=w body plain", e.Method, e.Path, e.RawQuery, e.Body)
		}
		h := http.Header(e.Header)
		if v := h.Get("X-Custom"); v != "hdr" {
			t.Errorf("app saw X-Custom %q, want hdr", v)
		}
		if v, ok := h["Dapr-App-Id"]; ok {
			t.Errorf("app saw dapr-app-id %q; the sidecar removes it, as daprd does", v)
		}
		wantDaprHeaders(t, h, "caller", "callee")
	})

	t.Run("basic auth app-id", func(t *testing.T) {
		req, err := http.NewRequestWithContext(callCtx(t), http.MethodGet, caller.URL("/echo/basic?b=1"), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth("dapr-app-id", "callee")
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		got, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d, body %q, want 200", resp.StatusCode, truncate(got))
		}
		e := echoOf(t, got)
		if e.Method != http.MethodGet || e.Path != "/echo/basic" || e.RawQuery != "b=1" {
			t.Errorf("app saw %s %s?%s, want GET /echo/basic?b=1", e.Method, e.Path, e.RawQuery)
		}
		wantDaprHeaders(t, e.Header, "caller", "callee")
	})

	t.Run("callee 404 and 500 pass through", func(t *testing.T) {
		for _, code := range []int{404, 500} {
			for _, form := range []struct {
				name, path string
				hdr        http.Header
			}{
				{"invoke path", fmt.Sprintf("/v1.0/invoke/callee/method/fail/%d", code), nil},
				{"dapr-app-id", fmt.Sprintf("/fail/%d", code), http.Header{"Dapr-App-Id": {"callee"}}},
			} {
				t.Run(fmt.Sprintf("%d %s", code, form.name), func(t *testing.T) {
					resp, got := call(t, http.MethodPost, caller.URL(form.path), strings.NewReader("x"), form.hdr)
					if resp.StatusCode != code {
						t.Errorf("status %d, want the app's %d", resp.StatusCode, code)
					}
					if want := fmt.Sprintf(`{"error":"the app says %d"}`, code); string(got) != want {
						t.Errorf("body %q, want the app's %q", got, want)
					}
					if v := resp.Header.Get("X-App-Error"); v != fmt.Sprint(code) {
						t.Errorf("header X-App-Error %q, want the app's %d", v, code)
					}
					if v := resp.Header.Get("Content-Type"); v != "application/json" {
						t.Errorf("Content-Type %q, want the app's application/json", v)
					}
				})
			}
		}
	})

	t.Run("hop-by-hop headers", func(t *testing.T) {
		// A raw request, so that every hop-by-hop header goes out as written.
		conn, err := net.DialTimeout("tcp", caller.HTTPAddr(), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(callTimeout))
		raw := "POST /v1.0/invoke/callee/method/hop HTTP/1.1\r\n" +
			"Host: " + caller.HTTPAddr() + "\r\n" +
			"Connection: keep-alive, X-Hop-Custom\r\n" +
			"Keep-Alive: timeout=5\r\n" +
			"X-Hop-Custom: must not pass\r\n" +
			"Proxy-Authorization: Basic Zm9vOmJhcg==\r\n" +
			"Proxy-Connection: keep-alive\r\n" +
			"TE: gzip\r\n" +
			"Trailer: X-Trailer-Value\r\n" +
			"Upgrade: bogus/1\r\n" +
			"Transfer-Encoding: chunked\r\n" +
			"X-End-To-End: kept\r\n" +
			"Traceparent: " + traceparent + "\r\n" +
			"\r\n" +
			"6\r\nhello \r\n5\r\nworld\r\n0\r\nX-Trailer-Value: t\r\n\r\n"
		if _, err := io.WriteString(conn, raw); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d, body %q, want 200", resp.StatusCode, truncate(got))
		}
		e := echoOf(t, got)
		if e.Body != "hello world" {
			t.Errorf("app saw body %q, want hello world", e.Body)
		}
		h := http.Header(e.Header)
		for _, name := range []string{"Keep-Alive", "X-Hop-Custom", "Proxy-Authorization", "Proxy-Connection", "Te", "Trailer", "Upgrade", "Transfer-Encoding"} {
			if v, ok := h[name]; ok {
				t.Errorf("app saw hop-by-hop request header %s: %q", name, v)
			}
		}
		for _, v := range h.Values("Connection") {
			if strings.Contains(strings.ToLower(v), "x-hop-custom") {
				t.Errorf("app saw Connection %q naming the caller's hop-by-hop header", v)
			}
		}
		wantTrace(t, h.Get("Traceparent"))
		if v := h.Get("X-End-To-End"); v != "kept" {
			t.Errorf("app saw X-End-To-End %q, want kept", v)
		}
		for _, name := range []string{"X-Resp-Hop", "Keep-Alive", "Proxy-Authenticate", "Proxy-Connection", "Upgrade"} {
			if v, ok := resp.Header[name]; ok {
				t.Errorf("caller got the app's hop-by-hop response header %s: %q", name, v)
			}
		}
		for _, v := range resp.Header.Values("Connection") {
			if strings.Contains(strings.ToLower(v), "x-resp-hop") {
				t.Errorf("caller got Connection %q naming the app's hop-by-hop header", v)
			}
		}
		if v := resp.Header.Get("X-Resp-End-To-End"); v != "kept" {
			t.Errorf("caller got X-Resp-End-To-End %q, want the app's kept", v)
		}
	})
}

// wantDaprHeaders checks the headers the sidecars add for the callee.
func wantDaprHeaders(t *testing.T, h http.Header, caller, callee string) {
	t.Helper()
	for name, want := range map[string]string{
		"Dapr-Caller-App-Id":    caller,
		"Dapr-Callee-App-Id":    callee,
		"Dapr-Caller-Namespace": "default",
	} {
		if v := h.Values(name); len(v) != 1 || v[0] != want {
			t.Errorf("app saw %s %q, want [%s]", name, v, want)
		}
	}
}

// wantTrace checks that a traceparent the callee saw continues the client's
// trace: same version and trace id (a sidecar may start a span of its own,
// which changes the parent id).
func wantTrace(t *testing.T, tp string) {
	t.Helper()
	parts := strings.Split(tp, "-")
	if len(parts) != 4 || parts[0] != "00" || parts[1] != traceID || len(parts[2]) != 16 || len(parts[3]) != 2 {
		t.Errorf("app saw traceparent %q, want one continuing trace %s (client sent %s)", tp, traceID, traceparent)
	}
}

// TestInvokeH2C invokes an app that speaks only h2c (HTTP/2 with prior knowledge).
func TestInvokeH2C(t *testing.T) {
	t.Parallel()
	app := framework.StartHTTPApp(t, framework.HTTPAppOptions{H2C: true})
	_, caller := pair(t, framework.SidecarOptions{AppPort: app.Port, AppProtocol: "h2c"}, framework.SidecarOptions{})

	resp, got := call(t, http.MethodPost, caller.URL("/v1.0/invoke/callee/method/echo/h2c?z=9"), strings.NewReader("over h2c"),
		http.Header{"X-Custom": {"h2"}, "Traceparent": {traceparent}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, body %q, want 200", resp.StatusCode, truncate(got))
	}
	e := echoOf(t, got)
	if e.Proto != "HTTP/2.0" {
		t.Errorf("app saw protocol %q, want HTTP/2.0", e.Proto)
	}
	if e.Method != http.MethodPost || e.Path != "/echo/h2c" || e.RawQuery != "z=9" || e.Body != "over h2c" {
		t.Errorf("app saw %s %s?%s body %q, want POST /echo/h2c?z=9 body %q", e.Method, e.Path, e.RawQuery, e.Body, "over h2c")
	}
	if v := http.Header(e.Header).Get("X-Custom"); v != "h2" {
		t.Errorf("app saw X-Custom %q, want h2", v)
	}
	wantDaprHeaders(t, e.Header, "caller", "callee")
	wantTrace(t, http.Header(e.Header).Get("Traceparent"))

	// A streamed answer of unknown length, 4 MiB, byte-exact.
	const n = 4 << 20
	resp, got = call(t, http.MethodGet, caller.URL(fmt.Sprintf("/v1.0/invoke/callee/method/stream?n=%d&seed=3", n)), nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stream: status %d, want 200", resp.StatusCode)
	}
	c := framework.NewCountingHash()
	_, _ = c.Write(got)
	if c.N != n || c.SHA256() != framework.PatternSHA256(3, n) {
		t.Errorf("stream: got %d bytes (sha256 %s), want %d bytes (sha256 %s)", c.N, c.SHA256(), n, framework.PatternSHA256(3, n))
	}

	resp, got = call(t, http.MethodDelete, caller.URL("/v1.0/invoke/callee/method/fail/404"), nil, nil)
	if resp.StatusCode != http.StatusNotFound || string(got) != `{"error":"the app says 404"}` || resp.Header.Get("X-App-Error") != "404" {
		t.Errorf("fail/404: %d %q X-App-Error %q, want the app's 404 answer", resp.StatusCode, got, resp.Header.Get("X-App-Error"))
	}
}
