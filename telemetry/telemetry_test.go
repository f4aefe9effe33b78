package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"
)

const parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

func TestSpecValidate(t *testing.T) {
	f := false
	good := []*Spec{
		nil,
		{SamplingRate: "1", Stdout: true},
		{SamplingRate: "0.1", Otel: &OtelSpec{Protocol: "grpc", EndpointAddress: "localhost:4317", IsSecure: &f}},
		{Otel: &OtelSpec{EndpointAddress: "http://localhost:4318/v1/traces", Headers: []string{"a=b"}, Timeout: "2s"}},
		{Zipkin: &ZipkinSpec{EndpointAddress: "http://localhost:9411/api/v2/spans"}},
	}
	for i, s := range good {
		if err := s.Validate(); err != nil {
			t.Errorf("good %d: %v", i, err)
		}
	}
	bad := map[string]*Spec{
		"samplingRate":    {SamplingRate: "often"},
		"samplingRate\"":  {SamplingRate: "1.5"},
		"protocol":        {Otel: &OtelSpec{Protocol: "udp", EndpointAddress: "x:1"}},
		"endpointAddress": {Otel: &OtelSpec{}},
		"scheme":          {Otel: &OtelSpec{EndpointAddress: "ftp://x:1"}},
		"headers[0]":      {Otel: &OtelSpec{EndpointAddress: "x:1", Headers: []string{"novalue"}}},
		"timeout":         {Otel: &OtelSpec{EndpointAddress: "x:1", Timeout: "soon"}},
	}
	for want, s := range bad {
		err := s.Validate()
		if err == nil {
			t.Errorf("%s: accepted", want)
			continue
		}
		field := strings.TrimSuffix(want, "\"")
		if field == "scheme" {
			field = "endpointAddress"
		}
		if !strings.Contains(err.Error(), field) {
			t.Errorf("%s: error %q does not name the field", want, err)
		}
	}
}

func TestOffWhenNothingExports(t *testing.T) {
	for _, s := range []*Spec{nil, {SamplingRate: "1"}, {SamplingRate: "0", Stdout: true}} {
		tr, err := New(s, Options{ServiceName: "a"})
		if err != nil {
			t.Fatal(err)
		}
		if tr.Tracer() != nil {
			t.Errorf("%+v: tracing on", s)
		}
	}
}

func TestW3CRoundTrip(t *testing.T) {
	h := http.Header{}
	h.Set("traceparent", parent)
	h.Set("tracestate", "congo=t61rcWkgMzE")
	ctx := FromHTTP(context.Background(), h)
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() || sc.TraceID().String() != "0af7651916cd43dd8448eb211c80319c" || !sc.IsSampled() {
		t.Fatalf("extracted %+v", sc)
	}
	out := http.Header{}
	ToHTTP(ctx, out)
	if out.Get("traceparent") != parent || out.Get("tracestate") != "congo=t61rcWkgMzE" {
		t.Fatalf("injected %v", out)
	}
	if tp, ts := W3C(ctx); tp != parent || ts != "congo=t61rcWkgMzE" {
		t.Fatalf("W3C = %q %q", tp, ts)
	}
	// An invalid traceparent carries nothing, and nothing is injected.
	bad := http.Header{}
	bad.Set("traceparent", "00-zz-yy-01")
	ctx = FromHTTP(context.Background(), bad)
	if trace.SpanContextFromContext(ctx).IsValid() {
		t.Fatal("invalid traceparent accepted")
	}
	keep := http.Header{"Traceparent": {"x"}}
	ToHTTP(ctx, keep)
	if keep.Get("traceparent") != "x" {
		t.Fatal("header replaced without a span")
	}
}

func TestGRPCTraceBin(t *testing.T) {
	ctx := FromW3C(context.Background(), parent, "")
	sc := trace.SpanContextFromContext(ctx)
	bin := EncodeBinary(sc)
	if len(bin) != binLen {
		t.Fatalf("len %d", len(bin))
	}
	got, ok := DecodeBinary(bin)
	if !ok || got.TraceID() != sc.TraceID() || got.SpanID() != sc.SpanID() || !got.IsSampled() {
		t.Fatalf("decoded %+v ok=%v", got, ok)
	}
	md := metadata.MD{GRPCTraceBinKey: {string(bin)}}
	if c := trace.SpanContextFromContext(FromGRPC(context.Background(), md)); c.TraceID() != sc.TraceID() {
		t.Fatalf("FromGRPC(bin) = %+v", c)
	}
	// traceparent wins over grpc-trace-bin.
	other := FromW3C(context.Background(), "00-11111111111111111111111111111111-2222222222222222-00", "")
	md[TraceparentHeader] = []string{"00-11111111111111111111111111111111-2222222222222222-00"}
	if c := trace.SpanContextFromContext(FromGRPC(context.Background(), md)); c.TraceID() != trace.SpanContextFromContext(other).TraceID() {
		t.Fatalf("traceparent not preferred: %+v", c)
	}
	// ToGRPC rewrites both forms.
	ToGRPC(ctx, md)
	if md.Get(TraceparentHeader)[0] != parent {
		t.Fatalf("traceparent %v", md.Get(TraceparentHeader))
	}
	if !bytes.Equal([]byte(md.Get(GRPCTraceBinKey)[0]), bin) {
		t.Fatal("grpc-trace-bin not rewritten")
	}
	for _, b := range [][]byte{nil, {1}, {0, 0, 1, 2}, {0, 1, 1}, make([]byte, binLen)} {
		if _, ok := DecodeBinary(b); ok {
			t.Errorf("DecodeBinary(%v) accepted", b)
		}
	}
}

func FuzzDecodeBinary(f *testing.F) {
	sc := trace.SpanContextFromContext(FromW3C(context.Background(), parent, ""))
	f.Add(EncodeBinary(sc))
	f.Add([]byte{0, 2, 1})
	f.Add([]byte{0, 9})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := DecodeBinary(b)
		if !ok {
			return
		}
		again, ok2 := DecodeBinary(EncodeBinary(got))
		if !ok2 || again.TraceID() != got.TraceID() || again.SpanID() != got.SpanID() || again.TraceFlags() != got.TraceFlags() {
			t.Fatalf("round trip of %x: %+v then %+v", b, got, again)
		}
	})
}

func TestStdoutSpans(t *testing.T) {
	var out syncBuffer
	tr, err := New(&Spec{SamplingRate: "1", Stdout: true}, Options{ServiceName: "checkout", Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	ctx := FromW3C(context.Background(), parent, "")
	_, span := tr.Tracer().Start(ctx, "CallLocal/cart/add")
	span.End()
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Name        string
		SpanContext struct{ TraceID string }
		Parent      struct{ SpanID string }
		Resource    []struct {
			Key   string
			Value struct{ Value any }
		}
	}
	if err := json.NewDecoder(strings.NewReader(out.String())).Decode(&got); err != nil {
		t.Fatalf("stdout %q: %v", out.String(), err)
	}
	if got.Name != "CallLocal/cart/add" || got.SpanContext.TraceID != "0af7651916cd43dd8448eb211c80319c" || got.Parent.SpanID != "b7ad6b7169203331" {
		t.Fatalf("span %+v", got)
	}
	found := false
	for _, kv := range got.Resource {
		found = found || (kv.Key == "service.name" && kv.Value.Value == "checkout")
	}
	if !found {
		t.Fatalf("service.name missing: %+v", got.Resource)
	}
	if n := testutil.ToFloat64(tr.stats.exported); n != 1 {
		t.Fatalf("exported %v", n)
	}
}

// stuckExporter holds every export until released: a collector that
// accepts connections and never answers.
type stuckExporter struct{ release chan struct{} }

func (e stuckExporter) ExportSpans(ctx context.Context, _ []sdktrace.ReadOnlySpan) error {
	<-e.release
	return context.DeadlineExceeded
}
func (stuckExporter) Shutdown(context.Context) error { return nil }

func TestQueueDropsAndCountsWithoutBlocking(t *testing.T) {
	exp := stuckExporter{release: make(chan struct{})}
	stats := newQueueStats("a")
	q := newSpanQueue(exp, 8, stats, nil)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(q))
	tracer := tp.Tracer("t")
	start := time.Now()
	const n = 5000
	for range n {
		_, s := tracer.Start(context.Background(), "x")
		s.End()
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("ending %d spans took %v with the exporter stuck", n, d)
	}
	dropped := testutil.ToFloat64(stats.queueFull)
	// At most the queue and one batch in the exporter's hands are kept.
	if dropped < n-8-maxBatch {
		t.Fatalf("dropped %v of %d with a queue of 8", dropped, n)
	}
	close(exp.release)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	kept := n - dropped
	if failed := testutil.ToFloat64(stats.failed); failed != kept {
		t.Fatalf("export_failed %v, want the %v spans that were queued", failed, kept)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
