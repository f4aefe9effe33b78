package proxy

import (
	"context"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/outrigger/outrigger/telemetry"
	"github.com/outrigger/outrigger/telemetry/daprmetrics"
)

// Span attribute names daprd gives its spans.
const (
	attrDaprAPI        = "dapr.api"
	attrDaprStatusCode = "dapr.status_code"
	attrDaprProtocol   = "dapr.protocol"
	attrRPCService     = "rpc.service"
	attrNetPeerName    = "net.peer.name"
	attrDBSystem       = "db.system"
	attrDBName         = "db.name"
	attrDBStatement    = "db.statement"
	attrDBConnString   = "db.connection_string"
	attrMsgSystem      = "messaging.system"
	attrMsgDestination = "messaging.destination.name"
	attrHTTPMethod     = "http.request.method"
	attrURLFull        = "url.full"
	attrServerAddress  = "server.address"
	attrServerPort     = "server.port"
)

var (
	latencyBucketsMs = daprmetrics.LatencyBuckets()
	sizeBuckets      = daprmetrics.SizeBuckets()
)

// daprStats are the request metrics under daprd's names and labels, so
// Dapr's Grafana dashboards read them: the HTTP and gRPC API servers, the
// calls to the app, and service invocation in both directions. Every label
// value is bounded: paths are the API's route templates, app-ids and gRPC
// methods past a bound share one label.
type daprStats struct {
	apps    *daprmetrics.Bounded
	methods *daprmetrics.Bounded

	httpServerCount     *prometheus.CounterVec
	httpServerLatency   *prometheus.HistogramVec
	httpServerReqBytes  prometheus.Observer
	httpServerRespBytes prometheus.Observer
	httpServer          daprmetrics.Series[httpKey, httpSeries]

	httpClientCount     *prometheus.CounterVec
	httpClientLatency   *prometheus.HistogramVec
	httpClientSentBytes *prometheus.HistogramVec
	httpClientRecvBytes prometheus.Observer
	appCalls            daprmetrics.Series[appCallKey, appCallSeries]

	grpcServerCount     *prometheus.CounterVec
	grpcServerLatency   *prometheus.HistogramVec
	grpcServerRecvBytes *prometheus.HistogramVec
	grpcServerSentBytes *prometheus.HistogramVec

	grpcClientCount   *prometheus.CounterVec
	grpcClientLatency *prometheus.HistogramVec

	siReqSent        *prometheus.CounterVec
	siReqRecv        *prometheus.CounterVec
	siResSent        *prometheus.CounterVec
	siResRecv        *prometheus.CounterVec
	siResRecvLatency *prometheus.HistogramVec
	sent             daprmetrics.Series[[2]string, prometheus.Counter]    // app, kind
	answered         daprmetrics.Series[[3]string, answeredSeries]        // app, status, kind
	delivers         daprmetrics.Series[[2]string, [2]prometheus.Counter] // caller, status: requests received, answers sent
}

type appCallKey struct {
	method string
	status int
}

type appCallSeries struct {
	count           prometheus.Counter
	latency, sentBy prometheus.Observer
}

type answeredSeries struct {
	count   prometheus.Counter
	latency prometheus.Observer
}

type httpKey struct {
	method, path string
	status       int
}

type httpSeries struct {
	count   prometheus.Counter
	latency prometheus.Observer
}

func newDaprStats(reg prometheus.Registerer, appID string) *daprStats {
	cl := prometheus.Labels{"app_id": appID}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: cl}, labels)
		reg.MustRegister(v)
		return v
	}
	histogram := func(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
		v := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, ConstLabels: cl, Buckets: buckets}, labels)
		reg.MustRegister(v)
		return v
	}
	d := &daprStats{apps: newBoundedLabels(), methods: newBoundedLabels()}
	d.httpServerCount = counter("dapr_http_server_request_count", "Count of HTTP requests processed by the server.", "method", "path", "status")
	d.httpServerLatency = histogram("dapr_http_server_latency", "HTTP request end-to-end latency in server, in milliseconds.", latencyBucketsMs, "method", "path", "status")
	d.httpServerReqBytes = histogram("dapr_http_server_request_bytes", "HTTP request body size if set as ContentLength (uncompressed) in server.", sizeBuckets).WithLabelValues()
	d.httpServerRespBytes = histogram("dapr_http_server_response_bytes", "HTTP response body size (uncompressed) in server.", sizeBuckets).WithLabelValues()
	d.httpClientCount = counter("dapr_http_client_completed_count", "Count of completed requests to the app.", "method", "path", "status")
	d.httpClientLatency = histogram("dapr_http_client_roundtrip_latency", "Time between first byte of request headers sent to last byte of response received, or terminal error, in milliseconds.", latencyBucketsMs, "method", "path", "status")
	d.httpClientSentBytes = histogram("dapr_http_client_sent_bytes", "Total bytes sent in request body (not including headers).", sizeBuckets, "method", "path", "status")
	d.httpClientRecvBytes = histogram("dapr_http_client_received_bytes", "Total bytes received in response bodies (not including headers but including error responses with bodies).", sizeBuckets).WithLabelValues()
	d.grpcServerCount = counter("dapr_grpc_io_server_completed_rpcs", "Count of RPCs by method and status.", "grpc_server_method", "grpc_server_status")
	d.grpcServerLatency = histogram("dapr_grpc_io_server_server_latency", "Time between first byte of request received to last byte of response sent, or terminal error, in milliseconds.", latencyBucketsMs, "grpc_server_method", "grpc_server_status")
	d.grpcServerRecvBytes = histogram("dapr_grpc_io_server_received_bytes_per_rpc", "Total bytes received across all messages per RPC.", sizeBuckets, "grpc_server_method")
	d.grpcServerSentBytes = histogram("dapr_grpc_io_server_sent_bytes_per_rpc", "Total bytes sent in across all response messages per RPC.", sizeBuckets, "grpc_server_method")
	d.grpcClientCount = counter("dapr_grpc_io_client_completed_rpcs", "Count of RPCs to the app by method and status.", "grpc_client_method", "grpc_client_status")
	d.grpcClientLatency = histogram("dapr_grpc_io_client_roundtrip_latency", "Time between first byte of request sent to last byte of response received, or terminal error, in milliseconds.", latencyBucketsMs, "grpc_client_method", "grpc_client_status")
	d.siReqSent = counter("dapr_service_invocation_req_sent_total", "The number of requests sent via service invocation.", "destination_app_id", "type")
	d.siReqRecv = counter("dapr_service_invocation_req_recv_total", "The number of requests received via service invocation.", "source_app_id")
	d.siResSent = counter("dapr_service_invocation_res_sent_total", "The number of responses sent via service invocation.", "destination_app_id", "status")
	d.siResRecv = counter("dapr_service_invocation_res_recv_total", "The number of responses received via service invocation.", "source_app_id", "status", "type")
	d.siResRecvLatency = histogram("dapr_service_invocation_res_recv_latency_ms", "The latency of service invocation response, in milliseconds.", latencyBucketsMs, "source_app_id", "status")
	d.httpServer.New = func(k httpKey) httpSeries {
		st := statusLabel(k.status)
		return httpSeries{
			count:   d.httpServerCount.WithLabelValues(k.method, k.path, st),
			latency: d.httpServerLatency.WithLabelValues(k.method, k.path, st),
		}
	}
	d.appCalls.New = func(k appCallKey) appCallSeries {
		st := statusLabel(k.status)
		return appCallSeries{
			count:   d.httpClientCount.WithLabelValues(k.method, "", st),
			latency: d.httpClientLatency.WithLabelValues(k.method, "", st),
			sentBy:  d.httpClientSentBytes.WithLabelValues(k.method, "", st),
		}
	}
	d.sent.New = func(k [2]string) prometheus.Counter { return d.siReqSent.WithLabelValues(k[0], k[1]) }
	d.answered.New = func(k [3]string) answeredSeries {
		return answeredSeries{
			count:   d.siResRecv.WithLabelValues(k[0], k[1], k[2]),
			latency: d.siResRecvLatency.WithLabelValues(k[0], k[1]),
		}
	}
	d.delivers.New = func(k [2]string) [2]prometheus.Counter {
		return [2]prometheus.Counter{d.siReqRecv.WithLabelValues(k[0]), d.siResSent.WithLabelValues(k[0], k[1])}
	}
	return d
}

var ms = daprmetrics.Milliseconds

// httpServed records one call to the HTTP API.
func (d *daprStats) httpServed(method, path string, code int, reqBytes, respBytes int64, took time.Duration) {
	series := d.httpServer.Get(httpKey{metricMethod(method), path, code})
	series.count.Inc()
	series.latency.Observe(ms(took))
	if reqBytes > 0 {
		d.httpServerReqBytes.Observe(float64(reqBytes))
	}
	d.httpServerRespBytes.Observe(float64(respBytes))
}

// appCalled records one HTTP call to the app. Its path is not a label: an
// app's paths are the app's, unbounded, and daprd leaves it empty too.
func (d *daprStats) appCalled(method string, code int, sent, received int64, took time.Duration) {
	series := d.appCalls.Get(appCallKey{metricMethod(method), code})
	series.count.Inc()
	series.latency.Observe(ms(took))
	if sent > 0 {
		series.sentBy.Observe(float64(sent))
	}
	d.httpClientRecvBytes.Observe(float64(received))
}

// grpcServed records one call to the gRPC API (or one proxied call).
func (d *daprStats) grpcServed(method string, code codes.Code, recv, sent int, took time.Duration) {
	m := d.methods.Label(method)
	st := code.String()
	d.grpcServerCount.WithLabelValues(m, st).Inc()
	d.grpcServerLatency.WithLabelValues(m, st).Observe(ms(took))
	if recv >= 0 {
		d.grpcServerRecvBytes.WithLabelValues(m).Observe(float64(recv))
	}
	if sent >= 0 {
		d.grpcServerSentBytes.WithLabelValues(m).Observe(float64(sent))
	}
}

// grpcAppCalled records one call to a gRPC app.
func (d *daprStats) grpcAppCalled(method string, code codes.Code, took time.Duration) {
	m, st := d.methods.Label(method), code.String()
	d.grpcClientCount.WithLabelValues(m, st).Inc()
	d.grpcClientLatency.WithLabelValues(m, st).Observe(ms(took))
}

// invoked records an invocation this sidecar sent: the request, and the
// answer's status ("" when none came) and latency.
func (d *daprStats) invoked(dest, kind, status string, took time.Duration) {
	app := d.apps.Label(dest)
	d.sent.Get([2]string{app, kind}).Inc()
	if status == "" {
		return
	}
	answer := d.answered.Get([3]string{app, status, kind})
	answer.count.Inc()
	answer.latency.Observe(ms(took))
}

// delivered records an invocation this sidecar delivered to its app.
func (d *daprStats) delivered(caller, status string) {
	app := d.apps.Label(caller)
	c := d.delivers.Get([2]string{app, status})
	c[0].Inc()
	c[1].Inc()
}

// metricMethod keeps the HTTP method label to the standard verbs.
func metricMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch,
		http.MethodHead, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "_OTHER"
}

// apiRoute is the route template of an API path: the path label of the
// HTTP server metrics and the span's API name.
func apiRoute(p string) string {
	switch {
	case strings.HasPrefix(p, "/v1.0/invoke/"):
		return "/v1.0/invoke/{id}/method/*"
	case strings.HasPrefix(p, "/v1.0/state/"):
		if strings.Count(p, "/") > 3 {
			return "/v1.0/state/{storeName}/*"
		}
		return "/v1.0/state/{storeName}"
	case strings.HasPrefix(p, "/v1.0-alpha1/state/"):
		return "/v1.0-alpha1/state/{storeName}/*"
	case strings.HasPrefix(p, "/v1.0/publish/bulk/"):
		return "/v1.0/publish/bulk/{pubsubname}/{topic}"
	case strings.HasPrefix(p, "/v1.0-alpha1/publish/bulk/"):
		return "/v1.0-alpha1/publish/bulk/{pubsubname}/{topic}"
	case strings.HasPrefix(p, "/v1.0/publish/"):
		return "/v1.0/publish/{pubsubname}/{topic}"
	case strings.HasPrefix(p, "/v1.0/secrets/"):
		return "/v1.0/secrets/{secretStoreName}/*"
	case p == "/v1.0/healthz", p == "/v1.0/healthz/outbound", p == "/v1.0/metadata", p == "/v1.0/shutdown":
		return p
	case strings.HasPrefix(p, "/v1.0/metadata/"):
		return "/v1.0/metadata/{key}"
	}
	return "_other"
}

// invokeRoute is the route label of an invocation made by a plain request
// with dapr-app-id.
const invokeRoute = "/v1.0/invoke/{id}/method/*"

// startAPISpan starts the span of one HTTP API call, a child of the
// caller's trace context. Health checks get none, as in daprd.
func (s *Sidecar) startAPISpan(r *http.Request) (*http.Request, trace.Span) {
	if s.tracer == nil || strings.HasPrefix(r.URL.Path, "/v1.0/healthz") {
		return r, nil
	}
	ctx := telemetry.FromHTTP(r.Context(), r.Header)
	ctx, span := s.tracer.Start(ctx, r.URL.Path, trace.WithSpanKind(trace.SpanKindClient))
	return r.WithContext(ctx), span
}

// endAPISpan gives a sampled span daprd's attributes and ends it.
func endAPISpan(span trace.Span, r *http.Request, route string, code int) {
	if span.IsRecording() {
		p := r.URL.Path
		attrs := []attribute.KeyValue{
			attribute.String(attrDaprProtocol, "http"),
			attribute.String(attrDaprAPI, r.Method+" "+p),
			attribute.Int(attrDaprStatusCode, code),
			attribute.String(attrHTTPMethod, r.Method),
			attribute.String(attrURLFull, r.RequestURI),
		}
		if host, port, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			attrs = append(attrs, attribute.String(attrServerAddress, host), attribute.String(attrServerPort, port))
		}
		switch {
		case strings.HasPrefix(route, "/v1.0/state/"), strings.HasPrefix(route, "/v1.0-alpha1/state/"):
			attrs = append(attrs, attribute.String(attrDBSystem, "state"), attribute.String(attrDBConnString, "state"),
				attribute.String(attrDBName, pathSegment(p, 2)), attribute.String(attrDBStatement, r.Method+" "+p))
		case strings.Contains(route, "/publish/bulk/"):
			attrs = append(attrs, attribute.String(attrMsgSystem, "pubsub"), attribute.String(attrMsgDestination, pathSegment(p, 4)))
		case strings.Contains(route, "/publish/"):
			attrs = append(attrs, attribute.String(attrMsgSystem, "pubsub"), attribute.String(attrMsgDestination, pathSegment(p, 3)))
		case strings.HasPrefix(route, "/v1.0/secrets/"):
			attrs = append(attrs, attribute.String(attrDBSystem, "secrets"), attribute.String(attrDBName, pathSegment(p, 2)))
		}
		span.SetAttributes(attrs...)
		setHTTPSpanStatus(span, code)
	}
	span.End()
}

// pathSegment is the i-th segment of p ("/a/b/c": 0 is "a").
func pathSegment(p string, i int) string {
	for seg := range strings.SplitSeq(strings.TrimPrefix(p, "/"), "/") {
		if i == 0 {
			return seg
		}
		i--
	}
	return ""
}

func setHTTPSpanStatus(span trace.Span, code int) {
	if code >= 400 {
		span.SetStatus(otelcodes.Error, http.StatusText(code))
	}
}

// nameInvokeSpan names an invocation's span as daprd does and marks its
// target; a no-op for an unsampled span.
func nameInvokeSpan(ctx context.Context, appID, method string) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	span.SetName("CallLocal/" + appID + "/" + method)
	span.SetAttributes(attribute.String(attrRPCService, "ServiceInvocation"), attribute.String(attrNetPeerName, appID))
}

// startMeshSpan starts the span of a call this sidecar delivers to its
// app, a child of the calling sidecar's span, and hands its trace context
// to the app in place of the caller's.
func (s *Sidecar) startMeshSpan(r *http.Request, grpcProxy bool) (*http.Request, trace.Span) {
	ctx := telemetry.FromHTTP(r.Context(), r.Header)
	name := "CallLocal/" + s.cfg.AppID + r.URL.Path
	if grpcProxy {
		name = r.URL.Path
	}
	ctx, span := s.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer))
	if span.IsRecording() {
		span.SetAttributes(attribute.String(attrRPCService, "ServiceInvocation"), attribute.String(attrNetPeerName, s.cfg.AppID),
			attribute.String(attrDaprProtocol, "http"))
	}
	// The app gets the span's context in the headers; nothing downstream
	// reads it from the request's context, so the request is not copied.
	telemetry.ToHTTP(ctx, r.Header)
	return r, span
}

// observeUnary measures and traces every call to the gRPC API. The trace
// context the app sent (traceparent, or grpc-trace-bin) is carried on even
// with tracing off.
func (s *Sidecar) observeUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		ctx = telemetry.FromGRPC(ctx, md)
	}
	var span trace.Span
	if s.tracer != nil {
		ctx, span = s.tracer.Start(ctx, info.FullMethod, trace.WithSpanKind(trace.SpanKindClient))
	}
	resp, err := handler(ctx, req)
	code := status.Code(err)
	if s.dapr != nil {
		recv, sent := -1, -1
		if m, ok := req.(proto.Message); ok {
			recv = proto.Size(m)
		}
		if m, ok := resp.(proto.Message); ok && err == nil {
			sent = proto.Size(m)
		}
		s.dapr.grpcServed(info.FullMethod, code, recv, sent, time.Since(start))
	}
	if span != nil {
		endGRPCSpan(span, info.FullMethod, code)
	}
	return resp, err
}

// observeStream measures and traces streams: proxied gRPC calls and the
// streaming API methods.
func (s *Sidecar) observeStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	ctx := ss.Context()
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		ctx = telemetry.FromGRPC(ctx, md)
	}
	var span trace.Span
	if s.tracer != nil {
		ctx, span = s.tracer.Start(ctx, info.FullMethod, trace.WithSpanKind(trace.SpanKindClient))
	}
	if ctx != ss.Context() {
		ss = &contextStream{ServerStream: ss, ctx: ctx}
	}
	err := handler(srv, ss)
	code := status.Code(err)
	if s.dapr != nil {
		s.dapr.grpcServed(info.FullMethod, code, -1, -1, time.Since(start))
	}
	if span != nil {
		endGRPCSpan(span, info.FullMethod, code)
	}
	return err
}

func endGRPCSpan(span trace.Span, method string, code codes.Code) {
	if span.IsRecording() {
		span.SetAttributes(
			attribute.String(attrDaprProtocol, "grpc"),
			attribute.String(attrDaprAPI, method),
			attribute.Int(attrDaprStatusCode, int(code)),
			attribute.String("rpc.system", "grpc"),
		)
		if code != codes.OK {
			span.SetStatus(otelcodes.Error, code.String())
		}
	}
	span.End()
}
