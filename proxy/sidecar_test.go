package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outrigger/outrigger/nameresolution"
)

// mapResolver resolves from a map; tests fill it as sidecars come up.
type mapResolver struct {
	mu    sync.Mutex
	addrs map[string]string
}

func (m *mapResolver) Resolve(_ context.Context, appID, ns string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if a, ok := m.addrs[appID+"."+ns]; ok {
		return a, nil
	}
	return "", fmt.Errorf("%w: %s.%s", nameresolution.ErrNotFound, appID, ns)
}

func (m *mapResolver) set(appID, ns, addr string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.addrs == nil {
		m.addrs = map[string]string{}
	}
	m.addrs[appID+"."+ns] = addr
}

// startSidecar runs a sidecar in-process on free ports until the test ends.
func startSidecar(t testing.TB, cfg Config) *Sidecar {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	cfg.MetricsDisabled = true
	if cfg.MeshServer == "" {
		// scripts/test.sh runs the package again against the lean mesh server.
		cfg.MeshServer = os.Getenv("OUTRIGGER_TEST_MESH_SERVER")
	}
	if cfg.APIServer == "" {
		// scripts/test.sh runs the package again against net/http's API server.
		cfg.APIServer = os.Getenv("OUTRIGGER_TEST_API_SERVER")
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("sidecar %s: %v", cfg.AppID, err)
		}
	})
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatalf("sidecar %s stopped: %v", cfg.AppID, err)
	case <-time.After(10 * time.Second):
		t.Fatal("sidecar not ready")
	}
	return s
}

func appPort(t testing.TB, srv *httptest.Server) int {
	t.Helper()
	_, p, _ := net.SplitHostPort(srv.Listener.Addr().String())
	n, _ := strconv.Atoi(p)
	return n
}

func waitHealthy(t testing.TB, s *Sidecar) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(s.Ports().HTTP) + "/v1.0/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("sidecar never became healthy")
}

func pair(t testing.TB, app http.Handler, mutate func(*Config)) (caller, callee *Sidecar) {
	t.Helper()
	srv := httptest.NewServer(app)
	t.Cleanup(srv.Close)
	res := &mapResolver{}
	ccfg := Config{AppID: "callee", AppPort: appPort(t, srv), Resolver: res}
	if mutate != nil {
		mutate(&ccfg)
	}
	callee = startSidecar(t, ccfg)
	res.set("callee", "default", "127.0.0.1:"+strconv.Itoa(callee.Ports().Internal))
	caller = startSidecar(t, Config{AppID: "caller", Resolver: res, MaxBodySize: ccfg.MaxBodySize})
	waitHealthy(t, callee)
	return caller, callee
}

func TestInvokeHTTP(t *testing.T) {
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Seen-Path", r.URL.Path)
		w.Header().Set("X-Seen-Query", r.URL.RawQuery)
		w.Header().Set("X-Seen-Caller", r.Header.Get("dapr-caller-app-id"))
		w.Header().Set("X-Seen-Callee", r.Header.Get("dapr-callee-app-id"))
		w.Header().Set("X-Seen-Internal", r.Header.Get(hdrCalleeNamespace))
		if r.URL.Path == "/missing" {
			http.Error(w, "nope", http.StatusNotFound)
			return
		}
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(append([]byte(r.Method+":"), body...))
	})
	caller, _ := pair(t, app, nil)
	base := "http://127.0.0.1:" + strconv.Itoa(caller.Ports().HTTP)

	req, _ := http.NewRequest(http.MethodPut, base+"/v1.0/invoke/callee/method/api/items?x=1&y=2", strings.NewReader("hello"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || string(body) != "PUT:hello" {
		t.Fatalf("got %d %q, want 201 PUT:hello", resp.StatusCode, body)
	}
	for k, want := range map[string]string{"X-Seen-Path": "/api/items", "X-Seen-Query": "x=1&y=2", "X-Seen-Caller": "caller", "X-Seen-Callee": "callee", "X-Seen-Internal": ""} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}

	// dapr-app-id header form.
	req, _ = http.NewRequest(http.MethodPost, base+"/api/items", strings.NewReader("h"))
	req.Header.Set("dapr-app-id", "callee")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || string(body) != "POST:h" {
		t.Fatalf("header form: got %d %q", resp.StatusCode, body)
	}

	// 404 passed through.
	resp, err = http.Get(base + "/v1.0/invoke/callee.default/method/missing")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "nope") {
		t.Fatalf("404: got %d %q", resp.StatusCode, body)
	}

	// Unknown app.
	resp, err = http.Get(base + "/v1.0/invoke/ghost/method/x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(string(body), `"errorCode":"ERR_DIRECT_INVOKE"`) {
		t.Fatalf("unknown app: got %d %q", resp.StatusCode, body)
	}
}

func TestBodyLimit(t *testing.T) {
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, n)
	})
	caller, _ := pair(t, app, func(c *Config) { c.MaxBodySize = 1 << 20 })
	url := "http://127.0.0.1:" + strconv.Itoa(caller.Ports().HTTP) + "/v1.0/invoke/callee/method/count"
	for _, tc := range []struct {
		name    string
		body    io.Reader
		want    int
		wantMsg string
	}{
		{"fits", bytes.NewReader(make([]byte, 1<<20)), 200, "1048576"},
		{"too large, known length", bytes.NewReader(make([]byte, 1<<20+1)), 413, "ERR_DIRECT_INVOKE"},
		{"too large, chunked", io.MultiReader(bytes.NewReader(make([]byte, 2<<20))), 413, "ERR_DIRECT_INVOKE"},
	} {
		resp, err := http.Post(url, "application/octet-stream", tc.body)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want || !strings.Contains(string(b), tc.wantMsg) {
			t.Errorf("%s: got %d %q, want %d containing %q", tc.name, resp.StatusCode, b, tc.want, tc.wantMsg)
		}
	}
}

func TestAppDown(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	port := appPort(t, srv)
	res := &mapResolver{}
	callee := startSidecar(t, Config{AppID: "callee", AppPort: port, Resolver: res})
	res.set("callee", "default", "127.0.0.1:"+strconv.Itoa(callee.Ports().Internal))
	waitHealthy(t, callee)
	srv.Close()
	caller := startSidecar(t, Config{AppID: "caller", Resolver: res})
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(caller.Ports().HTTP) + "/v1.0/invoke/callee/method/x")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 500 || !strings.Contains(string(b), "ERR_DIRECT_INVOKE") {
		t.Fatalf("got %d %q", resp.StatusCode, b)
	}
}

var _ = errors.New

func pairB(b *testing.B, app http.Handler) (caller, callee *Sidecar) { return pair(b, app, nil) }
