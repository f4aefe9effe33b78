package telemetry

import (
	"context"
	"encoding/base64"
	"net/http"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"
)

// Header and metadata names of the trace context.
const (
	TraceparentHeader = "traceparent"
	TracestateHeader  = "tracestate"
	// GRPCTraceBinKey is the binary trace context gRPC clients of the
	// OpenCensus era (and daprd) send.
	GRPCTraceBinKey = "grpc-trace-bin"
)

var w3c = propagation.TraceContext{}

// FromHTTP returns ctx carrying the caller's trace context from h (W3C
// traceparent and tracestate), if it has a valid one.
func FromHTTP(ctx context.Context, h http.Header) context.Context {
	if len(h[canonicalTraceparent]) == 0 {
		return ctx
	}
	return w3c.Extract(ctx, headerCarrier(h))
}

// FromW3C returns ctx carrying the trace context of a traceparent and
// tracestate pair (as a CloudEvent carries them), if it is valid.
func FromW3C(ctx context.Context, traceparent, tracestate string) context.Context {
	if traceparent == "" {
		return ctx
	}
	c := propagation.MapCarrier{TraceparentHeader: traceparent}
	if tracestate != "" {
		c[TracestateHeader] = tracestate
	}
	return w3c.Extract(ctx, c)
}

// FromGRPC returns ctx carrying the caller's trace context from gRPC
// metadata: traceparent and tracestate, else grpc-trace-bin.
func FromGRPC(ctx context.Context, md metadata.MD) context.Context {
	if v := md.Get(TraceparentHeader); len(v) > 0 {
		c := propagation.MapCarrier{TraceparentHeader: v[0]}
		if s := md.Get(TracestateHeader); len(s) > 0 {
			c[TracestateHeader] = s[0]
		}
		return w3c.Extract(ctx, c)
	}
	if v := md.Get(GRPCTraceBinKey); len(v) > 0 {
		if sc, ok := DecodeBinary([]byte(v[0])); ok {
			return trace.ContextWithRemoteSpanContext(ctx, sc)
		}
	}
	return ctx
}

// ToHTTP writes the trace context of ctx's span into h, replacing the
// caller's (grpc-trace-bin too, where a proxied gRPC call carries it);
// without a valid one h is left as it is.
func ToHTTP(ctx context.Context, h http.Header) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	delete(h, canonicalTracestate) // the span's own, or none
	w3c.Inject(ctx, headerCarrier(h))
	if _, ok := h["Grpc-Trace-Bin"]; ok {
		// A proxied gRPC call's binary form, as gRPC writes it on the wire.
		h["Grpc-Trace-Bin"] = []string{base64.RawStdEncoding.EncodeToString(EncodeBinary(trace.SpanContextFromContext(ctx)))}
	}
}

// ToGRPC writes the trace context of ctx's span into md: traceparent and
// tracestate, and grpc-trace-bin where the caller sent that form.
func ToGRPC(ctx context.Context, md metadata.MD) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return
	}
	delete(md, TracestateHeader)
	w3c.Inject(ctx, grpcCarrier(md))
	if _, ok := md[GRPCTraceBinKey]; ok {
		md[GRPCTraceBinKey] = []string{string(EncodeBinary(sc))}
	}
}

// W3C returns the traceparent and tracestate of ctx's span ("" when it has
// none).
func W3C(ctx context.Context) (traceparent, tracestate string) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return "", ""
	}
	c := propagation.MapCarrier{}
	w3c.Inject(ctx, c)
	return c[TraceparentHeader], c[TracestateHeader]
}

const (
	canonicalTraceparent = "Traceparent"
	canonicalTracestate  = "Tracestate"
)

// headerCarrier is propagation.HeaderCarrier without the key
// canonicalisation (an allocation per call) for the two W3C fields.
type headerCarrier http.Header

func (c headerCarrier) Get(k string) string {
	switch k {
	case TraceparentHeader:
		k = canonicalTraceparent
	case TracestateHeader:
		k = canonicalTracestate
	default:
		return http.Header(c).Get(k)
	}
	if v := c[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (c headerCarrier) Set(k, v string) {
	switch k {
	case TraceparentHeader:
		c[canonicalTraceparent] = []string{v}
	case TracestateHeader:
		c[canonicalTracestate] = []string{v}
	default:
		http.Header(c).Set(k, v)
	}
}

func (c headerCarrier) Keys() []string { return propagation.HeaderCarrier(c).Keys() }

// grpcCarrier writes W3C fields into gRPC metadata.
type grpcCarrier metadata.MD

func (c grpcCarrier) Get(k string) string {
	if v := metadata.MD(c).Get(k); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (c grpcCarrier) Set(k, v string) { metadata.MD(c).Set(k, v) }

func (c grpcCarrier) Keys() []string {
	out := make([]string, 0, len(c))
	for k := range c {
		out = append(out, k)
	}
	return out
}

// The binary trace context (OpenCensus's format, which grpc-trace-bin
// carries): a version byte 0, then fields each led by its id: 0 the 16-byte
// trace id, 1 the 8-byte span id, 2 the one-byte trace options (bit 0:
// sampled).
const (
	binVersion      = 0
	binTraceIDField = 0
	binSpanIDField  = 1
	binOptionsField = 2
	binLen          = 1 + 1 + 16 + 1 + 8 + 1 + 1
)

// EncodeBinary is sc in the grpc-trace-bin form.
func EncodeBinary(sc trace.SpanContext) []byte {
	b := make([]byte, 0, binLen)
	b = append(b, binVersion, binTraceIDField)
	tid, sid := sc.TraceID(), sc.SpanID()
	b = append(b, tid[:]...)
	b = append(b, binSpanIDField)
	b = append(b, sid[:]...)
	b = append(b, binOptionsField, byte(sc.TraceFlags()&trace.FlagsSampled))
	return b
}

// DecodeBinary reads a grpc-trace-bin value; ok is false unless it holds a
// valid trace id and span id. Fields it does not know end the parse, as the
// format asks, keeping what came before.
func DecodeBinary(b []byte) (trace.SpanContext, bool) {
	if len(b) == 0 || b[0] != binVersion {
		return trace.SpanContext{}, false
	}
	b = b[1:]
	var cfg trace.SpanContextConfig
	for len(b) > 0 {
		switch b[0] {
		case binTraceIDField:
			if len(b) < 17 {
				return trace.SpanContext{}, false
			}
			copy(cfg.TraceID[:], b[1:17])
			b = b[17:]
		case binSpanIDField:
			if len(b) < 9 {
				return trace.SpanContext{}, false
			}
			copy(cfg.SpanID[:], b[1:9])
			b = b[9:]
		case binOptionsField:
			if len(b) < 2 {
				return trace.SpanContext{}, false
			}
			cfg.TraceFlags = trace.TraceFlags(b[1]) & trace.FlagsSampled
			b = b[2:]
		default:
			b = nil
		}
	}
	cfg.Remote = true
	sc := trace.NewSpanContext(cfg)
	return sc, sc.IsValid()
}
