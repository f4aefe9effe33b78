package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

// proxyClient is an HTTP client that sends everything through the
// sidecar's explicit proxy, as an app with HTTP_PROXY set does.
func proxyClient(s *Sidecar) *http.Client {
	u, _ := url.Parse("http://127.0.0.1:" + strconv.Itoa(s.Ports().Proxy))
	return &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(u)}, Timeout: 30 * time.Second}
}

// connectDialer opens gRPC's connection as grpc-go does under grpc_proxy:
// a CONNECT tunnel through the proxy to addr.
func connectDialer(proxyPort int) func(context.Context, string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", "127.0.0.1:"+strconv.Itoa(proxyPort))
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", addr, addr)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
		if err != nil {
			c.Close()
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			c.Close()
			return nil, fmt.Errorf("CONNECT %s: %s", addr, resp.Status)
		}
		if br.Buffered() > 0 {
			c.Close()
			return nil, fmt.Errorf("CONNECT %s: bytes after the answer", addr)
		}
		return c, nil
	}
}

// An app with HTTP_PROXY calls http://callee/... and the call goes over the
// mesh as an invocation: the callee's app sees its path, query, body and
// the caller's app-id; an API token on the caller's sidecar does not apply
// to it.
func TestExplicitProxyHTTP(t *testing.T) {
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_ = json.NewEncoder(w).Encode(map[string]string{
			"path": r.URL.RequestURI(), "body": string(b), "caller": r.Header.Get("Dapr-Caller-App-Id"),
			"proxyAuth": r.Header.Get("Proxy-Authorization"),
		})
	})
	srv := httptest.NewServer(app)
	t.Cleanup(srv.Close)
	res := &mapResolver{}
	callee := startSidecar(t, Config{AppID: "callee", AppPort: appPort(t, srv), Resolver: res})
	res.set("callee", "default", "127.0.0.1:"+strconv.Itoa(callee.Ports().Internal))
	waitHealthy(t, callee)
	caller := startSidecar(t, Config{AppID: "caller", Resolver: res, ExplicitProxy: true, APIToken: "secret"})
	client := proxyClient(caller)

	for _, host := range []string{"callee", "callee.default", "callee.default.svc.cluster.local", "CALLEE."} {
		req, _ := http.NewRequest(http.MethodPost, "http://"+host+"/orders/7?x=1", strings.NewReader("the body"))
		req.Header.Set("Proxy-Authorization", "Basic dXNlcjpwYXNz")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		var got map[string]string
		err = json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %d %v", host, resp.StatusCode, err)
		}
		want := map[string]string{"path": "/orders/7?x=1", "body": "the body", "caller": "caller", "proxyAuth": ""}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: the callee's app saw %s %q, want %q", host, k, got[k], v)
			}
		}
	}

	// A destination that is not an app passes through, untouched.
	direct := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "direct %s caller=%q", r.URL.Path, r.Header.Get("Dapr-Caller-App-Id"))
	}))
	t.Cleanup(direct.Close)
	resp, err := client.Get(direct.URL + "/plain")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != `direct /plain caller=""` {
		t.Fatalf("pass-through: %d %q", resp.StatusCode, b)
	}

	// A request that is not a proxy request gets a clear error.
	resp, err = http.Get("http://127.0.0.1:" + strconv.Itoa(caller.Ports().Proxy) + "/v1.0/metadata")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "proxy requests") {
		t.Fatalf("origin-form request to the proxy: %d %q", resp.StatusCode, b)
	}
}

// grpc-go under grpc_proxy opens a CONNECT tunnel to callee:port and speaks
// gRPC in it; each call is proxied to the callee's app over the mesh,
// streaming both ways. A tunnel to anything else is joined to it as TCP.
func TestExplicitProxyConnect(t *testing.T) {
	port := startGRPCApp(t)
	res := &mapResolver{}
	callee := startSidecar(t, Config{AppID: "callee", AppPort: port, AppProtocol: ProtocolGRPC, Resolver: res})
	res.set("callee", "default", "127.0.0.1:"+strconv.Itoa(callee.Ports().Internal))
	waitHealthy(t, callee)
	caller := startSidecar(t, Config{AppID: "caller", Resolver: res, ExplicitProxy: true, APIToken: "secret"})

	conn, err := grpc.NewClient("passthrough:///callee:50051", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(connectDialer(caller.Ports().Proxy)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	tc := testgrpc.NewTestServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := tc.EmptyCall(ctx, &testgrpc.Empty{}); err != nil {
		t.Fatalf("unary through the tunnel: %v", err)
	}
	interop.DoServerStreaming(ctx, tc)
	interop.DoPingPong(ctx, tc)

	// TCP pass-through: an echo server outside the mesh.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	c, err := connectDialer(caller.Ports().Proxy)(ctx, l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("raw bytes")); err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "raw bytes" {
		t.Fatalf("pass-through tunnel echoed %q, %v", got, err)
	}

	// A destination that does not answer: a clear error, at once.
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := dead.Addr().String()
	dead.Close()
	if _, err := connectDialer(caller.Ports().Proxy)(ctx, addr); err == nil || !strings.Contains(err.Error(), "502") {
		t.Fatalf("CONNECT to a closed port: %v, want 502", err)
	}
}

// meshTarget remembers hosts for a while, but a flood of distinct ones
// does not make it grow without bound.
func TestMeshTargetBounded(t *testing.T) {
	res := &mapResolver{}
	res.set("orders", "default", "127.0.0.1:1")
	s, err := New(Config{AppID: "caller", Resolver: res, MetricsDisabled: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if id, ok := s.meshTarget(ctx, "Orders.default.svc.cluster.local."); !ok || id != "orders.default" {
		t.Fatalf("meshTarget of the app: %q %v", id, ok)
	}
	for _, host := range []string{"localhost", "127.0.0.1", "::1", "a.b.c.example", ""} {
		if id, ok := s.meshTarget(ctx, host); ok {
			t.Errorf("%q is not an app, got %q", host, id)
		}
	}
	for i := range maxTargets + 10 {
		s.meshTarget(ctx, "host-"+strconv.Itoa(i))
	}
	if n := s.targetCount.Load(); n > maxTargets {
		t.Fatalf("%d hosts remembered, bound %d", n, maxTargets)
	}
	if _, ok := s.meshTarget(ctx, "orders"); !ok {
		t.Fatal("the app is no longer found after the flood")
	}
}

// A CONNECT tunnel to an app at a port InterceptTCPPorts names is carried
// as TCP to the callee's app port over the mesh, both ways, half-close
// included; at another port the same bytes meet an HTTP server, which
// answers 400.
func TestInterceptTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				b, _ := io.ReadAll(c)
				_, _ = c.Write(append([]byte("echo: "), b...))
				c.Close()
			}()
		}
	}()
	res := &mapResolver{}
	callee := startSidecar(t, Config{AppID: "callee", AppPort: l.Addr().(*net.TCPAddr).Port, Resolver: res})
	res.set("callee", "default", "127.0.0.1:"+strconv.Itoa(callee.Ports().Internal))
	waitHealthy(t, callee)
	caller := startSidecar(t, Config{AppID: "caller", Resolver: res, ExplicitProxy: true, InterceptTCPPorts: []int{5432}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	c, err := connectDialer(caller.Ports().Proxy)(ctx, "callee:5432")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("\x00\x03not http at all")); err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "echo: \x00\x03not http at all" {
		t.Fatalf("through the TCP tunnel: %q, %v", got, err)
	}

	c2, err := connectDialer(caller.Ports().Proxy)(ctx, "callee:5433")
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	_, _ = c2.Write([]byte("\x00\x03not http at all\r\n\r\n"))
	_ = c2.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, _ = io.ReadAll(c2)
	if !strings.HasPrefix(string(got), "HTTP/1.1 400") {
		t.Fatalf("non-HTTP bytes at a port not named for TCP: %q, want a 400", got)
	}
}
