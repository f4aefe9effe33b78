package daprmetrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Operations are daprd's metrics of one kind of component's operations:
// dapr_component_<kind>_count and dapr_component_<kind>_latencies (in
// milliseconds), by app_id, component (its name), namespace, operation and
// success. It is a prometheus.Collector.
type Operations struct {
	appID, namespace string
	count            *prometheus.CounterVec
	latency          *prometheus.HistogramVec
}

// NewOperations makes the metrics of kind ("state", "secret", ...) for the
// components of appID in namespace; noun is the kind as daprd's help text
// says it ("state", "secret").
func NewOperations(kind, noun, appID, namespace string) *Operations {
	labels := []string{"app_id", "component", "namespace", "operation", "success"}
	return &Operations{
		appID: appID, namespace: namespace,
		count: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "component_" + kind + "_count",
			Help: "The number of operations performed on the " + noun + " component.",
		}, labels),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "component_" + kind + "_latencies",
			Help:    "The latency of the response from the " + noun + " component.",
			Buckets: LatencyBuckets(),
		}, labels),
	}
}

// Describe implements prometheus.Collector.
func (o *Operations) Describe(ch chan<- *prometheus.Desc) {
	o.count.Describe(ch)
	o.latency.Describe(ch)
}

// Collect implements prometheus.Collector.
func (o *Operations) Collect(ch chan<- prometheus.Metric) {
	o.count.Collect(ch)
	o.latency.Collect(ch)
}

// Record counts one operation op of component and its latency.
func (o *Operations) Record(component, op string, ok bool, elapsed time.Duration) {
	values := []string{o.appID, component, o.namespace, op, strconv.FormatBool(ok)}
	o.count.WithLabelValues(values...).Inc()
	o.latency.WithLabelValues(values...).Observe(Milliseconds(elapsed))
}
