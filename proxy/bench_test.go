package proxy

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// BenchmarkInvokeHTTP measures one 1 KiB invocation through two in-process
// sidecars (HTTP/1.1 client -> caller -> h2c mesh -> callee -> HTTP/1.1 app).
func BenchmarkInvokeHTTP(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 1024)
	app := echoBody
	caller, _ := pairB(b, app)
	url := "http://127.0.0.1:" + strconv.Itoa(caller.Ports().HTTP) + "/v1.0/invoke/callee/method/echo"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	postInParallel(b, client, url, body)
}

// echoBody is the benchmarks' app: it reads the whole request body, then
// writes it back. (io.Copy(w, r.Body) would not do: once net/http's
// HTTP/1.1 server has sent the response header it closes the request body,
// and ReadFrom sends the header after the first 512 bytes.)
var echoBody = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	_, _ = w.Write(b)
})

// postInParallel posts body to url from every benchmark goroutine; an
// answer other than 200 fails the benchmark.
func postInParallel(b *testing.B, client *http.Client, url string, body []byte) {
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Post(url, "application/octet-stream", bytes.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || n != int64(len(body)) {
				b.Errorf("status %d, %d bytes back of %d", resp.StatusCode, n, len(body))
				return
			}
		}
	})
}

// BenchmarkDirect is the same call without sidecars, the baseline.
func BenchmarkDirect(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 1024)
	srv := http.Server{Handler: echoBody}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Close()
	url := "http://" + l.Addr().String() + "/echo"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	postInParallel(b, client, url, body)
}

// BenchmarkInvokeObserved is BenchmarkInvokeHTTP with the observability
// switched: bare (metrics off, no tracing), metrics (the default), and
// traced (metrics on, tracing at 10% into an exporter that discards), so
// their cost shows as a difference of ns/op.
func BenchmarkInvokeObserved(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 1024)
	app := echoBody
	for _, c := range []struct {
		name   string
		mutate func(*Config)
	}{
		{"bare", func(c *Config) { c.MetricsDisabled = true }},
		{"metrics", func(*Config) {}},
		{"traced", func(c *Config) {
			tp := sdktrace.NewTracerProvider(
				sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.1))),
				sdktrace.WithBatcher(discardExporter{}),
			)
			b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
			c.Tracer = tp.Tracer("bench")
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			srv := httptest.NewServer(app)
			b.Cleanup(srv.Close)
			res := &mapResolver{}
			ccfg := Config{AppID: "callee", AppPort: appPort(b, srv), Resolver: res}
			c.mutate(&ccfg)
			callee := startSidecar(b, ccfg)
			res.set("callee", "default", "127.0.0.1:"+strconv.Itoa(callee.Ports().Internal))
			rcfg := Config{AppID: "caller", Resolver: res}
			c.mutate(&rcfg)
			caller := startSidecar(b, rcfg)
			waitHealthy(b, callee)
			url := "http://127.0.0.1:" + strconv.Itoa(caller.Ports().HTTP) + "/v1.0/invoke/callee/method/echo"
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			b.ReportAllocs()
			b.ResetTimer()
			postInParallel(b, client, url, body)
		})
	}
}

type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }
