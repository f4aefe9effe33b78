package resiliency

import (
	"context"
	"errors"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outrigger/outrigger/telemetry/daprmetrics"
)

// Policy kinds and flow directions as daprd labels its resiliency metrics.
const (
	policyTimeout = "timeout"
	policyRetry   = "retry"
	policyBreaker = "circuitbreaker"

	// Outbound is a call the sidecar makes (to another app, to a
	// component); Inbound a delivery it makes to its app.
	Outbound = "outbound"
	Inbound  = "inbound"
)

// breakerStates are the states dapr_resiliency_cb_state has a series of.
var breakerStates = [...]State{Closed, HalfOpen, Open}

// Metrics are daprd's resiliency metrics: dapr_resiliency_loaded (documents
// loaded), dapr_resiliency_count (each call a policy applied to),
// dapr_resiliency_activations_total (a retry made, a timeout fired, a
// breaker changing state) and dapr_resiliency_cb_state (1 on a breaker's
// current state, 0 on the others), labelled with the document's name,
// the policy kind, the flow direction and the target ("app_<id>",
// "<Kind>_<component>"). It is a prometheus.Collector; nil records nothing.
type Metrics struct {
	appID, namespace string
	loaded           *prometheus.CounterVec
	count            *prometheus.CounterVec
	activations      *prometheus.CounterVec
	cbState          *prometheus.GaugeVec
	targets          daprmetrics.Bounded
}

// NewMetrics makes the resiliency metrics of appID in namespace.
func NewMetrics(appID, namespace string) *Metrics {
	labels := []string{"app_id", "name", "policy", "namespace", "flow_direction", "target", "status"}
	return &Metrics{
		appID: appID, namespace: namespace,
		loaded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: daprmetrics.Namespace, Name: "resiliency_loaded",
			Help: "Number of resiliency policies loaded.",
		}, []string{"app_id", "name", "namespace"}),
		count: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: daprmetrics.Namespace, Name: "resiliency_count",
			Help: "Number of times a resiliency policyKey has been applied to a building block.",
		}, labels),
		activations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: daprmetrics.Namespace, Name: "resiliency_activations_total",
			Help: "Number of times a resiliency policyKey has been activated in a building block after a failure or after a state change.",
		}, labels),
		cbState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: daprmetrics.Namespace, Name: "resiliency_cb_state",
			Help: "A resiliency policy's current CircuitBreakerState state. 0 is closed, 1 is half-open, 2 is open, and -1 is unknown.",
		}, labels),
		// Targets are app-ids and component names; app-ids come from
		// requests.
		targets: daprmetrics.Bounded{Max: 100},
	}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.loaded.Describe(ch)
	m.count.Describe(ch)
	m.activations.Describe(ch)
	m.cbState.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.loaded.Collect(ch)
	m.count.Collect(ch)
	m.activations.Collect(ch)
	m.cbState.Collect(ch)
}

// Loaded counts a Resiliency document applied.
func (m *Metrics) Loaded(name string) {
	if m != nil {
		m.loaded.WithLabelValues(m.appID, name, m.namespace).Inc()
	}
}

// AppTarget is the target label of calls to appID.
func AppTarget(appID string) string { return "app_" + appID }

// ComponentTarget is the target label of a component named name of kind
// (daprd's Statestore, Pubsub, ...).
func ComponentTarget(kind, name string) string { return kind + "_" + name }

// observer reports one target's policy use to Metrics. Its fixed series
// are looked up once, when its runner is built, not on each call.
type observer struct {
	m                 *Metrics
	name, dir, target string
	cb                bool
	// The counts and activations of the timeout and retry; nil for a kind
	// the policy lacks.
	timeoutCount, retryCount     prometheus.Counter
	timeoutActivated, retryFired prometheus.Counter
}

func (m *Metrics) observer(source, dir, target string, timeout, retry, cb bool) *observer {
	if m == nil {
		return nil
	}
	// The source is "resiliency/<name>", or several joined by commas when
	// default policies come from several documents.
	var names []string
	for s := range strings.SplitSeq(source, ",") {
		names = append(names, strings.TrimPrefix(strings.TrimSpace(s), "resiliency/"))
	}
	o := &observer{m: m, name: strings.Join(names, ","), dir: dir, target: m.targets.Label(target), cb: cb}
	if timeout {
		o.timeoutCount = m.count.WithLabelValues(o.labels(policyTimeout, "")...)
		o.timeoutActivated = m.activations.WithLabelValues(o.labels(policyTimeout, "")...)
	}
	if retry {
		o.retryCount = m.count.WithLabelValues(o.labels(policyRetry, "")...)
		o.retryFired = m.activations.WithLabelValues(o.labels(policyRetry, "")...)
	}
	return o
}

func (o *observer) labels(policy, status string) []string {
	return []string{o.m.appID, o.name, policy, o.m.namespace, o.dir, o.target, status}
}

// applied counts one call the target's policies applied to.
func (o *observer) applied(b *Breaker) {
	if o == nil {
		return
	}
	if o.timeoutCount != nil {
		o.timeoutCount.Inc()
	}
	if o.retryCount != nil {
		o.retryCount.Inc()
	}
	if o.cb && b != nil {
		o.m.count.WithLabelValues(o.labels(policyBreaker, b.State().String())...).Inc()
	}
}

// breakerChanged records a breaker's new state.
func (o *observer) breakerChanged(to State) {
	if o == nil {
		return
	}
	o.m.activations.WithLabelValues(o.labels(policyBreaker, to.String())...).Inc()
	for _, s := range breakerStates {
		v := 0.0
		if s == to {
			v = 1
		}
		o.m.cbState.WithLabelValues(o.labels(policyBreaker, s.String())...).Set(v)
	}
}

// Applied records that one call is made under r's policies (daprd's
// dapr_resiliency_count); callers that run their own attempts, rather than
// Do, call it once per call.
func (r *Runner) Applied() {
	if r != nil {
		r.obs.applied(r.Breaker)
	}
}

// Retrying records a retry about to be made.
func (r *Runner) Retrying() {
	if r != nil && r.obs != nil && r.obs.retryFired != nil {
		r.obs.retryFired.Inc()
	}
}

// TimedOut records an attempt the policy's timeout cut.
func (r *Runner) TimedOut() {
	if r != nil && r.obs != nil && r.obs.timeoutActivated != nil {
		r.obs.timeoutActivated.Inc()
	}
}

// timedOut is whether err is the attempt's own timeout firing (not the
// caller's deadline).
func timedOut(attempt, caller context.Context, err error) bool {
	return errors.Is(err, context.DeadlineExceeded) && attempt.Err() != nil && caller.Err() == nil
}

// Observer is a Runner that only records: the policies of one target (its
// source, "resiliency/<name>"; dir, Inbound or Outbound; target, as
// AppTarget or ComponentTarget makes it) for a caller that runs its own
// attempts and calls Applied, Retrying and TimedOut itself. b is the
// target's breaker, if it has one; nil m gives a Runner that records
// nothing.
func (m *Metrics) Observer(source, dir, target string, timeout, retry bool, b *Breaker) *Runner {
	return &Runner{Breaker: b, obs: m.observer(source, dir, target, timeout, retry, b != nil)}
}

// BreakerChanged records the new state of a breaker a caller made itself
// (for the target Observer names).
func (m *Metrics) BreakerChanged(source, dir, target string, to State) {
	m.observer(source, dir, target, false, false, true).breakerChanged(to)
}
