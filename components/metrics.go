package components

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outrigger/outrigger/telemetry/daprmetrics"
)

// Reasons a component failed to load, as daprd labels them (reason of
// dapr_runtime_component_init_fail_total).
const (
	// reasonCreation: this build has no such type or version.
	reasonCreation = "creation"
	// reasonInit: its metadata did not resolve, or its type's New failed.
	reasonInit = "init"
)

// Metrics are the component pipeline's metrics under daprd's names:
// dapr_runtime_component_loaded (app_id) counts the components built,
// dapr_runtime_component_init_total (app_id, component: the type, e.g.
// state.redis) the same by type, and dapr_runtime_component_init_fail_total
// (app_id, component, reason: creation or init, componentName) the
// failures. A component rebuilt after a change counts again; one whose
// document did not change is not rebuilt. Make one per sidecar with
// NewMetrics, register it (it is a prometheus.Collector) and give it to the
// Set (Options.Metrics).
type Metrics struct {
	appID                       string
	loaded, initTotal, initFail *prometheus.CounterVec
}

// NewMetrics makes the component metrics of appID.
func NewMetrics(appID string) *Metrics {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: daprmetrics.Namespace, Name: name, Help: help}, labels)
	}
	return &Metrics{
		appID:     appID,
		loaded:    counter("runtime_component_loaded", "The number of successfully loaded components.", "app_id"),
		initTotal: counter("runtime_component_init_total", "The number of initialized components.", "app_id", "component"),
		initFail:  counter("runtime_component_init_fail_total", "The number of component initialization failures.", "app_id", "component", "reason", "componentName"),
	}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.loaded.Describe(ch)
	m.initTotal.Describe(ch)
	m.initFail.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.loaded.Collect(ch)
	m.initTotal.Collect(ch)
	m.initFail.Collect(ch)
}

// built records a component of type typ built.
func (m *Metrics) built(typ string) {
	if m == nil {
		return
	}
	m.loaded.WithLabelValues(m.appID).Inc()
	m.initTotal.WithLabelValues(m.appID, typ).Inc()
}

// failed records component name of type typ failing for reason.
func (m *Metrics) failed(typ, reason, name string) {
	if m == nil {
		return
	}
	m.initFail.WithLabelValues(m.appID, typ, reason, name).Inc()
}
