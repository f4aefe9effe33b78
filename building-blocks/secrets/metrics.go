package secrets

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outrigger/outrigger/telemetry/daprmetrics"
)

// Operations as daprd labels them (operation of dapr_component_secret_*).
const (
	opGet     = "get"
	opBulkGet = "bulk_get"
)

// Metrics are the secret stores' metrics under daprd's names:
// dapr_component_secret_count and dapr_component_secret_latencies (in
// milliseconds), by app_id, component (the store's name), namespace,
// operation (get, bulk_get) and success. Make one per sidecar with
// NewMetrics, register it (it is a prometheus.Collector) and measure each
// store with WithMetrics.
type Metrics struct {
	appID, namespace string
	count            *prometheus.CounterVec
	latency          *prometheus.HistogramVec
}

// NewMetrics makes the metrics of the secret stores of appID in namespace.
func NewMetrics(appID, namespace string) *Metrics {
	labels := []string{"app_id", "component", "namespace", "operation", "success"}
	return &Metrics{
		appID: appID, namespace: namespace,
		count: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: daprmetrics.Namespace, Name: "component_secret_count",
			Help: "The number of operations performed on the secret component.",
		}, labels),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: daprmetrics.Namespace, Name: "component_secret_latencies",
			Help:    "The latency of the response from the secret component.",
			Buckets: daprmetrics.LatencyBuckets(),
		}, labels),
	}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.count.Describe(ch)
	m.latency.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.count.Collect(ch)
	m.latency.Collect(ch)
}

func (m *Metrics) record(component, op string, err error, start time.Time) {
	values := []string{m.appID, component, m.namespace, op, strconv.FormatBool(err == nil)}
	m.count.WithLabelValues(values...).Inc()
	m.latency.WithLabelValues(values...).Observe(daprmetrics.Milliseconds(time.Since(start)))
}

// WithMetrics is s with every call counted and timed in m under the
// component name name: GetSecret as get, BulkGetSecret as bulk_get; a call
// succeeds when the store returns no error (a key it does not hold is a
// failure), as daprd counts. Closing it leaves s open: s belongs to its
// owner.
func WithMetrics(s Store, name string, m *Metrics) Store {
	return &measuredStore{inner: s, name: name, m: m}
}

type measuredStore struct {
	inner Store
	name  string
	m     *Metrics
}

func (s *measuredStore) GetSecret(ctx context.Context, key string, metadata map[string]string) (map[string]string, error) {
	start := time.Now()
	v, err := s.inner.GetSecret(ctx, key, metadata)
	s.m.record(s.name, opGet, err, start)
	return v, err
}

func (s *measuredStore) BulkGetSecret(ctx context.Context, metadata map[string]string) (map[string]map[string]string, error) {
	start := time.Now()
	v, err := s.inner.BulkGetSecret(ctx, metadata)
	s.m.record(s.name, opBulkGet, err, start)
	return v, err
}

func (s *measuredStore) Close() error { return nil }

var _ Store = (*measuredStore)(nil)
