package secrets

import (
	"context"
	"time"

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
type Metrics struct{ *daprmetrics.Operations }

// NewMetrics makes the metrics of the secret stores of appID in namespace.
func NewMetrics(appID, namespace string) *Metrics {
	return &Metrics{daprmetrics.NewOperations("secret", "secret", appID, namespace)}
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
	s.m.Record(s.name, opGet, err == nil, time.Since(start))
	return v, err
}

func (s *measuredStore) BulkGetSecret(ctx context.Context, metadata map[string]string) (map[string]map[string]string, error) {
	start := time.Now()
	v, err := s.inner.BulkGetSecret(ctx, metadata)
	s.m.Record(s.name, opBulkGet, err == nil, time.Since(start))
	return v, err
}

func (s *measuredStore) Close() error { return nil }

var _ Store = (*measuredStore)(nil)
