package client

import (
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics count the configuration updates the client took and refused:
// outrigger_xds_client_updates_total by app_id, type_url and result ("ack"
// or "nack"). Make one per sidecar with NewMetrics, register it (it is a
// prometheus.Collector) and give it to the client (Options.Metrics).
type Metrics struct {
	appID   string
	updates *prometheus.CounterVec
}

// NewMetrics makes the xDS client metrics of appID.
func NewMetrics(appID string) *Metrics {
	return &Metrics{appID: appID, updates: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "outrigger", Subsystem: "xds_client", Name: "updates_total",
		Help: "Configuration updates from the control plane, by type and result: ack (applied) or nack (refused; the last good one serves on).",
	}, []string{"app_id", "type_url", "result"})}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) { m.updates.Describe(ch) }

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) { m.updates.Collect(ch) }

// update records one response of typeURL, applied or refused.
func (m *Metrics) update(typeURL string, applied bool) {
	if m == nil {
		return
	}
	result := "ack"
	if !applied {
		result = "nack"
	}
	m.updates.WithLabelValues(m.appID, typeLabel(typeURL), result).Inc()
}

// typeLabel is typeURL when it is one of the xDS types, else "_other": a
// type URL comes off the wire, so it labels a series only from a known set.
func typeLabel(typeURL string) string {
	switch typeURL {
	case resourcev3.ExtensionConfigType, resourcev3.SecretType, resourcev3.RouteType, resourcev3.ClusterType,
		resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RuntimeType, resourcev3.ScopedRouteType,
		resourcev3.VirtualHostType:
		return typeURL
	}
	return "_other"
}
