package proxy

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outrigger/outrigger/telemetry/daprmetrics"
)

// stats are the sidecar's Prometheus metrics for service invocation.
type stats struct {
	outbound *appCounter // calls this sidecar made for its app
	inbound  *appCounter // calls this sidecar delivered to its app

	apiAuthFailures prometheus.Counter     // API calls refused for a wrong dapr-api-token
	meshRefused     *prometheus.CounterVec // mesh connections refused, by reason
	aclDecisions    *prometheus.CounterVec // access-control decisions, by caller, action and scope

	retries *prometheus.CounterVec // invocation attempts a retry policy sent again, by target app
	breaker *prometheus.GaugeVec   // circuit breaker state of calls to an app: 0 closed, 1 half open, 2 open

	intercepted *prometheus.CounterVec // the app's calls the sidecar took over, by kind and where they went
}

func newStats(reg prometheus.Registerer, appID string) *stats {
	outbound, inbound := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace:   "outrigger",
		Subsystem:   "service_invocation",
		Name:        "requests_sent_total",
		Help:        "Service invocation requests sent to other apps, by target app and status.",
		ConstLabels: prometheus.Labels{"app_id": appID},
	}, []string{"dest_app_id", "status"}),
		prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace:   "outrigger",
			Subsystem:   "service_invocation",
			Name:        "requests_received_total",
			Help:        "Service invocation requests delivered to this app, by calling app and status.",
			ConstLabels: prometheus.Labels{"app_id": appID},
		}, []string{"src_app_id", "status"})
	s := &stats{outbound: newAppCounter(outbound), inbound: newAppCounter(inbound)}
	s.apiAuthFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "outrigger", Subsystem: "api", Name: "auth_failures_total",
		Help:        "API calls refused because dapr-api-token was missing or wrong.",
		ConstLabels: prometheus.Labels{"app_id": appID},
	})
	s.meshRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "outrigger", Subsystem: "mtls", Name: "handshake_failures_total",
		Help:        "Connections to the mesh port refused: plain text, or a certificate that did not verify.",
		ConstLabels: prometheus.Labels{"app_id": appID},
	}, []string{"reason"})
	s.aclDecisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "outrigger", Subsystem: "acl", Name: "decisions_total",
		Help:        "Access-control decisions on calls to this app, by proven caller, action and the policy scope that decided.",
		ConstLabels: prometheus.Labels{"app_id": appID},
	}, []string{"src_app_id", "action", "scope"})
	s.retries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "outrigger", Subsystem: "resiliency", Name: "retries_total",
		Help:        "Service invocation attempts sent again by the target app's retry policy, or by the built-in retry of apps without one.",
		ConstLabels: prometheus.Labels{"app_id": appID},
	}, []string{"dest_app_id"})
	s.breaker = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "outrigger", Subsystem: "resiliency", Name: "circuit_breaker_state",
		Help:        "State of the circuit breaker of calls to an app: 0 closed, 1 half open, 2 open.",
		ConstLabels: prometheus.Labels{"app_id": appID},
	}, []string{"dest_app_id", "policy"})
	s.intercepted = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "outrigger", Subsystem: "interception", Name: "requests_total",
		Help:        "The app's calls the sidecar took over (kind: request, an HTTP request to its explicit proxy; connect, a CONNECT tunnel), by where they went: mesh (to an app), passthrough (to their own destination) or error.",
		ConstLabels: prometheus.Labels{"app_id": appID},
	}, []string{"kind", "route"})
	reg.MustRegister(outbound, inbound, s.apiAuthFailures, s.meshRefused, s.aclDecisions, s.retries, s.breaker, s.intercepted)
	return s
}

// statusLabel avoids an allocation for the common statuses.
func statusLabel(code int) string {
	switch code {
	case 200:
		return "200"
	case 204:
		return "204"
	case 404:
		return "404"
	case 500:
		return "500"
	}
	return strconv.Itoa(code)
}

// maxAppLabels bounds the distinct app-ids one counter labels its series
// with; later ones share the series of otherAppLabel. App-ids come from
// requests (a URL, a caller's header), so without a bound a flood of
// made-up ones would grow the metrics without end.
const maxAppLabels = 100

const (
	otherAppLabel      = daprmetrics.OtherLabel // app-ids past maxAppLabels
	unresolvedAppLabel = "_unresolved"          // calls to an app-id no instance was found for
)

// newBoundedLabels is a bound on app-id (or method) label values.
func newBoundedLabels() *daprmetrics.Bounded { return &daprmetrics.Bounded{Max: maxAppLabels} }

// appCounter is a counter by app-id and status whose app-ids are bounded.
type appCounter struct {
	labels   *daprmetrics.Bounded
	children daprmetrics.Series[[2]string, prometheus.Counter] // app label, status
}

func newAppCounter(vec *prometheus.CounterVec) *appCounter {
	c := &appCounter{labels: newBoundedLabels()}
	c.children.New = func(k [2]string) prometheus.Counter { return vec.WithLabelValues(k[0], k[1]) }
	return c
}

// WithLabelValues is the counter of app and status; an app-id that did not
// resolve, or one past the bound, is counted under a shared label.
func (c *appCounter) WithLabelValues(app, status string) prometheus.Counter {
	if status == "resolve_error" {
		app = unresolvedAppLabel
	}
	return c.children.Get([2]string{c.labels.Label(app), status})
}
