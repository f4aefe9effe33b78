// Package telemetry is the sidecar's OpenTelemetry tracing: the
// Configuration's tracing section, a tracer provider that exports spans by
// OTLP (gRPC or HTTP) or to stdout and samples as daprd samples, the W3C
// trace context and grpc-trace-bin propagation the sidecars speak, and a span
// queue that drops and counts spans rather than wait when a collector is slow
// or down, so tracing never holds up a request.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// DefaultSamplingRate is daprd's rate when samplingRate is not set.
const DefaultSamplingRate = 1e-4

// Spec is a Configuration's tracing section, in daprd's shape.
type Spec struct {
	// SamplingRate is the share of new traces sampled, "0" to "1"; empty
	// is DefaultSamplingRate. A trace the caller sampled stays sampled.
	SamplingRate string `yaml:"samplingRate" json:"samplingRate,omitempty"`
	// Stdout writes each span to the sidecar's standard output.
	Stdout bool `yaml:"stdout" json:"stdout,omitempty"`
	// Otel exports spans by OTLP.
	Otel *OtelSpec `yaml:"otel" json:"otel,omitempty"`
	// Zipkin is accepted so daprd's files load; Outrigger does not export
	// to Zipkin (a Zipkin collector takes OTLP through the OpenTelemetry
	// Collector).
	Zipkin *ZipkinSpec `yaml:"zipkin" json:"zipkin,omitempty"`
}

// OtelSpec is the otel part of the tracing section.
type OtelSpec struct {
	// Protocol is "grpc" or "http" (the default, as daprd).
	Protocol string `yaml:"protocol" json:"protocol,omitempty"`
	// EndpointAddress is host:port, or a URL (http:// for an insecure
	// collector, https:// for a secure one; a URL path replaces
	// /v1/traces for HTTP).
	EndpointAddress string `yaml:"endpointAddress" json:"endpointAddress,omitempty"`
	// IsSecure, true unless set false, asks for TLS to the collector.
	IsSecure *bool `yaml:"isSecure" json:"isSecure,omitempty"`
	// Headers are "name=value" pairs sent with every export.
	Headers []string `yaml:"headers" json:"headers,omitempty"`
	// Timeout bounds one export ("10s" unless set).
	Timeout string `yaml:"timeout" json:"timeout,omitempty"`
}

// ZipkinSpec is the zipkin part of the tracing section.
type ZipkinSpec struct {
	EndpointAddress string `yaml:"endpointAddress" json:"endpointAddress,omitempty"`
}

// Rate is the sampling rate the section asks for.
func (s *Spec) Rate() (float64, error) {
	if s == nil || s.SamplingRate == "" {
		return DefaultSamplingRate, nil
	}
	f, err := strconv.ParseFloat(s.SamplingRate, 64)
	if err != nil || f < 0 || f > 1 {
		return 0, fmt.Errorf("spec.tracing.samplingRate %q: want a number from 0 to 1", s.SamplingRate)
	}
	return f, nil
}

// Validate checks the section; an error names the field.
func (s *Spec) Validate() error {
	if s == nil {
		return nil
	}
	if _, err := s.Rate(); err != nil {
		return err
	}
	if o := s.Otel; o != nil {
		switch o.Protocol {
		case "", "http", "grpc":
		default:
			return fmt.Errorf("spec.tracing.otel.protocol %q: want grpc or http", o.Protocol)
		}
		if o.EndpointAddress == "" {
			return errors.New("spec.tracing.otel.endpointAddress: required when otel is set")
		}
		if _, _, err := o.endpoint(); err != nil {
			return err
		}
		for i, h := range o.Headers {
			if k, _, ok := strings.Cut(h, "="); !ok || strings.TrimSpace(k) == "" {
				return fmt.Errorf("spec.tracing.otel.headers[%d] %q: want name=value", i, h)
			}
		}
		if _, err := o.timeout(); err != nil {
			return err
		}
	}
	return nil
}

// endpoint is the collector's host:port and whether to use TLS.
func (o *OtelSpec) endpoint() (hostPort string, secure bool, err error) {
	secure = o.IsSecure == nil || *o.IsSecure
	addr := o.EndpointAddress
	if strings.Contains(addr, "://") {
		u, perr := url.Parse(addr)
		if perr != nil || u.Host == "" {
			return "", false, fmt.Errorf("spec.tracing.otel.endpointAddress %q: not a URL or host:port", addr)
		}
		switch u.Scheme {
		case "http":
			secure = false
		case "https":
			secure = true
		default:
			return "", false, fmt.Errorf("spec.tracing.otel.endpointAddress %q: scheme must be http or https", addr)
		}
		return u.Host, secure, nil
	}
	if strings.ContainsAny(addr, "/ ") {
		return "", false, fmt.Errorf("spec.tracing.otel.endpointAddress %q: not a URL or host:port", addr)
	}
	return addr, secure, nil
}

// urlPath is the HTTP path of an endpoint given as a URL with a path.
func (o *OtelSpec) urlPath() string {
	if u, err := url.Parse(o.EndpointAddress); err == nil && strings.Contains(o.EndpointAddress, "://") && u.Path != "" && u.Path != "/" {
		return u.Path
	}
	return ""
}

func (o *OtelSpec) timeout() (time.Duration, error) {
	if o.Timeout == "" {
		return 10 * time.Second, nil
	}
	d, err := time.ParseDuration(o.Timeout)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("spec.tracing.otel.timeout %q: want a positive duration such as 10s", o.Timeout)
	}
	return d, nil
}

func (o *OtelSpec) headers() map[string]string {
	if len(o.Headers) == 0 {
		return nil
	}
	m := make(map[string]string, len(o.Headers))
	for _, h := range o.Headers {
		k, v, _ := strings.Cut(h, "=")
		m[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return m
}

// Tracing is a sidecar's tracer and its exporters. The zero value, and the
// one New returns when the section exports nowhere or samples nothing, is
// off: Tracer is nil and callers only pass trace context on.
type Tracing struct {
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
	queues []*spanQueue
	stats  *queueStats
}

// Options are what New needs besides the section.
type Options struct {
	// ServiceName names the spans' service (the app-id).
	ServiceName string
	// Namespace is reported as service.namespace.
	Namespace string
	// Stdout is where stdout spans go (os.Stdout when nil).
	Stdout io.Writer
	Logger *slog.Logger
}

// New builds the tracer the section describes. It does not connect to a
// collector: exports happen in the background, and a collector that is
// down costs the spans, never a request.
func New(spec *Spec, opts Options) (*Tracing, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	t := &Tracing{stats: newQueueStats(opts.ServiceName)}
	if spec == nil {
		return t, nil
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if spec.Zipkin != nil && spec.Zipkin.EndpointAddress != "" {
		logger.Warn("tracing.zipkin is not supported; send spans by tracing.otel (a Zipkin backend can take them through the OpenTelemetry Collector)", "endpoint", spec.Zipkin.EndpointAddress)
	}
	rate, _ := spec.Rate()
	var exporters []sdktrace.SpanExporter
	if o := spec.Otel; o != nil {
		exp, err := otlpExporter(o)
		if err != nil {
			return nil, err
		}
		exporters = append(exporters, exp)
	}
	if spec.Stdout {
		w := opts.Stdout
		if w == nil {
			w = os.Stdout
		}
		exp, err := stdouttrace.New(stdouttrace.WithWriter(w))
		if err != nil {
			return nil, fmt.Errorf("tracing: stdout exporter: %w", err)
		}
		exporters = append(exporters, exp)
	}
	if rate == 0 || len(exporters) == 0 {
		return t, nil
	}
	attrs := []attribute.KeyValue{attribute.String("service.name", opts.ServiceName)}
	if opts.Namespace != "" {
		attrs = append(attrs, attribute.String("service.namespace", opts.Namespace))
	}
	popts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(resource.NewSchemaless(attrs...)),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(rate))),
	}
	for _, exp := range exporters {
		q := newSpanQueue(exp, defaultQueueSize, t.stats, logger)
		t.queues = append(t.queues, q)
		popts = append(popts, sdktrace.WithSpanProcessor(q))
	}
	t.tp = sdktrace.NewTracerProvider(popts...)
	t.tracer = t.tp.Tracer("github.com/outrigger/outrigger")
	return t, nil
}

func otlpExporter(o *OtelSpec) (sdktrace.SpanExporter, error) {
	hostPort, secure, err := o.endpoint()
	if err != nil {
		return nil, err
	}
	timeout, err := o.timeout()
	if err != nil {
		return nil, err
	}
	var client otlptrace.Client
	if o.Protocol == "grpc" {
		opts := []otlptracegrpc.Option{
			otlptracegrpc.WithEndpoint(hostPort),
			otlptracegrpc.WithTimeout(timeout),
			// The queue drops what a slow collector cannot take; the
			// exporter must not hold a batch for a minute of retries.
			otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: false}),
		}
		if !secure {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
		if h := o.headers(); h != nil {
			opts = append(opts, otlptracegrpc.WithHeaders(h))
		}
		client = otlptracegrpc.NewClient(opts...)
	} else {
		opts := []otlptracehttp.Option{
			otlptracehttp.WithEndpoint(hostPort),
			otlptracehttp.WithTimeout(timeout),
			otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: false}),
		}
		if !secure {
			opts = append(opts, otlptracehttp.WithInsecure())
		}
		if p := o.urlPath(); p != "" {
			opts = append(opts, otlptracehttp.WithURLPath(p))
		}
		if h := o.headers(); h != nil {
			opts = append(opts, otlptracehttp.WithHeaders(h))
		}
		client = otlptracehttp.NewClient(opts...)
	}
	// New starts the client; neither client dials before its first export.
	exp, err := otlptrace.New(context.Background(), client)
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	return exp, nil
}

// Tracer is the tracer spans start from; nil when tracing is off.
func (t *Tracing) Tracer() trace.Tracer {
	if t == nil {
		return nil
	}
	return t.tracer
}

// Collectors are the tracing metrics: spans exported and dropped.
func (t *Tracing) Collectors() []prometheus.Collector {
	if t == nil || t.stats == nil {
		return nil
	}
	return []prometheus.Collector{t.stats.exported, t.stats.dropped}
}

// Shutdown exports what is queued (bounded by ctx) and stops the exporters.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil || t.tp == nil {
		return nil
	}
	return t.tp.Shutdown(ctx)
}
