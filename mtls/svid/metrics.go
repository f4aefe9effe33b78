package svid

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/outrigger/outrigger/telemetry/daprmetrics"
)

// Reasons a request for a certificate failed (reason of the metrics'
// failures): daprd's where it has one.
const (
	reasonCSR     = "csr"          // no key or signing request could be made
	reasonToken   = "sentry_token" // the join token could not be read
	reasonConn    = "sentry_conn"  // the authority could not be reached
	reasonSign    = "sign"         // the authority refused or failed to sign
	reasonInvalid = "invalid_cert" // the authority's answer did not verify
)

// signReason is the reason of a failed SignCertificate call.
func signReason(err error) string {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return reasonConn
	}
	return reasonSign
}

// Metrics are a sidecar's certificate metrics: daprd's
// dapr_runtime_mtls_init_total (the first certificate obtained),
// dapr_runtime_mtls_init_fail_total (Start gave up, by reason),
// dapr_runtime_mtls_workload_cert_rotated_total (a renewal) and
// dapr_runtime_mtls_workload_cert_rotated_fail_total (a renewal that
// failed, by reason; it is tried again), all by app_id, and Outrigger's
// outrigger_mtls_workload_cert_expiry_timestamp_seconds, the current
// certificate's NotAfter in Unix seconds. Make one per sidecar with
// NewMetrics, register it (it is a prometheus.Collector) and give it to
// the Manager (Options.Metrics).
type Metrics struct {
	appID                                    string
	initTotal, initFail, rotated, rotateFail *prometheus.CounterVec
	expiry                                   *prometheus.GaugeVec
}

// NewMetrics makes the certificate metrics of appID.
func NewMetrics(appID string) *Metrics {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: daprmetrics.Namespace, Name: name, Help: help}, labels)
	}
	return &Metrics{
		appID:      appID,
		initTotal:  counter("runtime_mtls_init_total", "The number of successful mTLS authenticator initialization.", "app_id"),
		initFail:   counter("runtime_mtls_init_fail_total", "The number of mTLS authenticator init failures.", "app_id", "reason"),
		rotated:    counter("runtime_mtls_workload_cert_rotated_total", "The number of the successful workload certificate rotations.", "app_id"),
		rotateFail: counter("runtime_mtls_workload_cert_rotated_fail_total", "The number of the failed workload certificate rotations.", "app_id", "reason"),
		expiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "outrigger", Subsystem: "mtls", Name: "workload_cert_expiry_timestamp_seconds",
			Help: "When the sidecar's current workload certificate expires (its NotAfter), in Unix seconds.",
		}, []string{"app_id"}),
	}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
}

func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.initTotal, m.initFail, m.rotated, m.rotateFail, m.expiry}
}

func (m *Metrics) initialized() {
	if m != nil {
		m.initTotal.WithLabelValues(m.appID).Inc()
	}
}

func (m *Metrics) initFailed(reason string) {
	if m != nil {
		m.initFail.WithLabelValues(m.appID, reason).Inc()
	}
}

func (m *Metrics) renewed() {
	if m != nil {
		m.rotated.WithLabelValues(m.appID).Inc()
	}
}

func (m *Metrics) renewFailed(reason string) {
	if m != nil {
		m.rotateFail.WithLabelValues(m.appID, reason).Inc()
	}
}

func (m *Metrics) expires(notAfter time.Time) {
	if m != nil {
		m.expiry.WithLabelValues(m.appID).Set(float64(notAfter.Unix()))
	}
}
