// Package daprmetrics holds what Outrigger's Dapr-named metrics share with
// daprd's, so that dashboards made for daprd work unchanged: the namespace,
// the default latency and size buckets and their units, the count and
// latency pair of a kind of component's operations (Operations), the
// bound on label values that come from requests (Bounded), and a cache of
// metric vectors' children for the request path (Series).
//
// daprd records OpenCensus views and exports them to Prometheus under the
// namespace "dapr": the count view component/state/count becomes the
// counter dapr_component_state_count (no _total suffix is added), and the
// distribution view component/state/latencies the histogram
// dapr_component_state_latencies, in milliseconds, over LatencyBuckets
// (github.com/dapr/dapr pkg/diagnostics and pkg/config MetricSpec). Every
// series carries app_id as a label, not a constant label. The packages that
// own the metrics (building-blocks/state, building-blocks/pubsub, ...) name
// them by these rules; docs/observability.md lists them.
package daprmetrics

import "time"

// Namespace is the prefix of every Dapr-named metric.
const Namespace = "dapr"

// LatencyBuckets returns daprd's default latency buckets, in milliseconds
// (its Configuration's metrics.latencyDistributionBuckets when unset). Each
// call returns a new slice.
func LatencyBuckets() []float64 {
	return []float64{1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 30, 40, 50, 65, 80, 100, 130, 160, 200, 250, 300, 400, 500, 650, 800, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000}
}

// SizeBuckets returns daprd's buckets of body sizes, in bytes. Each call
// returns a new slice.
func SizeBuckets() []float64 {
	return []float64{1 << 10, 2 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20, 256 << 20, 1 << 30, 4 << 30}
}

// Milliseconds is d in milliseconds, the unit of daprd's latencies. Unlike
// daprd, which truncates to whole milliseconds and leaves out a call that
// took less than one, the fraction is kept.
func Milliseconds(d time.Duration) float64 {
	return float64(d) / float64(time.Millisecond)
}
