package pubsub

import (
	"strconv"
	"time"

	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outrigger/outrigger/telemetry/daprmetrics"
)

// IngressRecorder learns how each delivery to the app ended, for metrics;
// *Metrics is one. Methods are called from many goroutines at once.
type IngressRecorder interface {
	// Delivered records one delivery of an event of topic from the pub/sub
	// component pubsubName to the app (each attempt of a retried event is
	// one): processStatus is "success", "retry" (the app failed or asked
	// for a retry) or "drop" (the app dropped it), and elapsed is how long
	// the app took.
	Delivered(pubsubName, topic, processStatus string, elapsed time.Duration)
	// BulkDelivered records one batch of a bulk subscription delivered to
	// the app: how many of its events ended in each status, and how long
	// the app took.
	BulkDelivered(pubsubName, topic string, success, retry, drop int, elapsed time.Duration)
}

// Ingress process statuses, as daprd labels them.
const (
	ingressSuccess = "success"
	ingressRetry   = "retry"
	ingressDrop    = "drop"
)

// ingressStatus is the process_status of a delivery that returned status
// and err.
func ingressStatus(status string, err error) string {
	switch {
	case err != nil:
		return ingressRetry
	case status == statusSuccess:
		return ingressSuccess
	case status == statusDrop:
		return ingressDrop
	}
	return ingressRetry
}

// recordDelivery tells the Subscriber's recorder, if any, how one delivery
// of an event of s ended (deliver's status and error).
func (sub *Subscriber) recordDelivery(s *Subscription, status string, err error, elapsed time.Duration) {
	if sub.Ingress != nil {
		sub.Ingress.Delivered(s.PubsubName, s.Topic, ingressStatus(status, err), elapsed)
	}
}

// recordStreamed tells the API's recorder, if any, how one delivery down a
// streaming subscription ended: the app's answer.
func (a *API) recordStreamed(s *Subscription, answer runtimev1pb.TopicEventResponse_TopicEventResponseStatus, elapsed time.Duration) {
	if a.Ingress == nil {
		return
	}
	ps := ingressRetry
	switch answer {
	case runtimev1pb.TopicEventResponse_SUCCESS:
		ps = ingressSuccess
	case runtimev1pb.TopicEventResponse_DROP:
		ps = ingressDrop
	}
	a.Ingress.Delivered(s.PubsubName, s.Topic, ps, elapsed)
}

// Metrics are the pub/sub components' metrics under daprd's names, with
// latencies in milliseconds:
//
//   - publishing: dapr_component_pubsub_egress_count and _latencies (one per
//     publish), dapr_component_pubsub_egress_bulk_count and _bulk_latencies
//     (one per bulk publish) and _bulk_event_count (the events a bulk
//     publish published), by app_id, component, namespace, success, topic;
//   - delivering: dapr_component_pubsub_ingress_count and _latencies (one
//     per delivery to the app), by app_id, component, namespace,
//     process_status (success, retry, drop), status and topic; and
//     dapr_component_pubsub_ingress_bulk_count, _bulk_latencies (one per
//     batch) and _bulk_event_count (its events, by process_status) for bulk
//     subscriptions.
//
// Make one per sidecar with NewMetrics and register it (it is a
// prometheus.Collector); measure publishing with WithMetrics and give it to
// the Subscriber and the API as their IngressRecorder. Topics come from
// requests, so at most maxTopicLabels distinct ones label series; later
// ones share the topic "_other".
type Metrics struct {
	appID, namespace string
	topics           daprmetrics.Bounded

	egressCount, bulkEgressCount, bulkEgressEvents    *prometheus.CounterVec
	egressLatency, bulkEgressLatency                  *prometheus.HistogramVec
	ingressCount, bulkIngressCount, bulkIngressEvents *prometheus.CounterVec
	ingressLatency, bulkIngressLatency                *prometheus.HistogramVec
	collectors                                        []prometheus.Collector
}

// maxTopicLabels bounds the distinct topics Metrics label series with.
const maxTopicLabels = 256

// NewMetrics makes the pub/sub metrics of appID in namespace.
func NewMetrics(appID, namespace string) *Metrics {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: daprmetrics.Namespace, Name: name, Help: help}, labels)
	}
	histogram := func(name, help string, labels ...string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: daprmetrics.Namespace, Name: name, Help: help, Buckets: daprmetrics.LatencyBuckets(),
		}, labels)
	}
	egress := []string{"app_id", "component", "namespace", "success", "topic"}
	ingress := []string{"app_id", "component", "namespace", "process_status", "topic", "status"}
	bulkIngress := []string{"app_id", "component", "namespace", "process_status", "topic"}
	m := &Metrics{
		appID: appID, namespace: namespace,
		topics: daprmetrics.Bounded{Max: maxTopicLabels},

		egressCount:       counter("component_pubsub_egress_count", "The number of outgoing messages published to the pub/sub component.", egress...),
		egressLatency:     histogram("component_pubsub_egress_latencies", "The latency of the response from the pub/sub component.", egress...),
		bulkEgressCount:   counter("component_pubsub_egress_bulk_count", "The number of bulk publish calls to the pub/sub component.", egress...),
		bulkEgressEvents:  counter("component_pubsub_egress_bulk_event_count", "The number of outgoing messages to the pub/sub component published through bulk publish API.", egress...),
		bulkEgressLatency: histogram("component_pubsub_egress_bulk_latencies", "The latency of the response for the bulk publish call from the pub/sub component.", egress...),

		ingressCount:       counter("component_pubsub_ingress_count", "The number of incoming messages arriving from the pub/sub component.", ingress...),
		ingressLatency:     histogram("component_pubsub_ingress_latencies", "The consuming app event processing latency.", ingress...),
		bulkIngressCount:   counter("component_pubsub_ingress_bulk_count", "The number of incoming bulk subscribe calls arriving from the bulk pub/sub component.", bulkIngress...),
		bulkIngressEvents:  counter("component_pubsub_ingress_bulk_event_count", "Total number of incoming messages arriving from the bulk pub/sub component via Bulk Subscribe.", bulkIngress...),
		bulkIngressLatency: histogram("component_pubsub_ingress_bulk_latencies", "The consuming app event processing latency for the bulk pub/sub component.", bulkIngress...),
	}
	m.collectors = []prometheus.Collector{
		m.egressCount, m.egressLatency, m.bulkEgressCount, m.bulkEgressEvents, m.bulkEgressLatency,
		m.ingressCount, m.ingressLatency, m.bulkIngressCount, m.bulkIngressEvents, m.bulkIngressLatency,
	}
	return m
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors {
		c.Collect(ch)
	}
}

// published records one publish.
func (m *Metrics) published(component, topic string, ok bool, elapsed time.Duration) {
	values := []string{m.appID, component, m.namespace, strconv.FormatBool(ok), m.topics.Label(topic)}
	m.egressCount.WithLabelValues(values...).Inc()
	m.egressLatency.WithLabelValues(values...).Observe(daprmetrics.Milliseconds(elapsed))
}

// bulkPublished records one bulk publish, of which events were published
// (ok is false when any failed).
func (m *Metrics) bulkPublished(component, topic string, ok bool, events int, elapsed time.Duration) {
	topic = m.topics.Label(topic)
	values := []string{m.appID, component, m.namespace, strconv.FormatBool(ok), topic}
	m.bulkEgressCount.WithLabelValues(values...).Inc()
	m.bulkEgressLatency.WithLabelValues(values...).Observe(daprmetrics.Milliseconds(elapsed))
	if events > 0 {
		// As daprd: the events published, under success "true" even when
		// the call as a whole failed.
		m.bulkEgressEvents.WithLabelValues(m.appID, component, m.namespace, "true", topic).Add(float64(events))
	}
}

// Delivered implements IngressRecorder. The status label is the process
// status, as daprd's default; daprd alone labels an event the app itself
// answered DROP for with status "success".
func (m *Metrics) Delivered(pubsubName, topic, processStatus string, elapsed time.Duration) {
	values := []string{m.appID, pubsubName, m.namespace, processStatus, m.topics.Label(topic), processStatus}
	m.ingressCount.WithLabelValues(values...).Inc()
	m.ingressLatency.WithLabelValues(values...).Observe(daprmetrics.Milliseconds(elapsed))
}

// BulkDelivered implements IngressRecorder, as daprd records a bulk
// delivery: the batch and its latency with an empty process_status, and
// its events by status under daprd's upper-case process_status (SUCCESS,
// RETRY, DROP).
func (m *Metrics) BulkDelivered(pubsubName, topic string, success, retry, drop int, elapsed time.Duration) {
	topic = m.topics.Label(topic)
	m.bulkIngressCount.WithLabelValues(m.appID, pubsubName, m.namespace, "", topic).Inc()
	m.bulkIngressLatency.WithLabelValues(m.appID, pubsubName, m.namespace, "", topic).Observe(daprmetrics.Milliseconds(elapsed))
	for st, n := range map[string]int{statusSuccess: success, statusRetry: retry, statusDrop: drop} {
		if n > 0 {
			m.bulkIngressEvents.WithLabelValues(m.appID, pubsubName, m.namespace, st, topic).Add(float64(n))
		}
	}
}

var _ IngressRecorder = (*Metrics)(nil)
