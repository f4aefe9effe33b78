package proxy

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// stats are the sidecar's Prometheus metrics for service invocation.
type stats struct {
	outbound *prometheus.CounterVec // calls this sidecar made for its app
	inbound  *prometheus.CounterVec // calls this sidecar delivered to its app
}

func newStats(reg prometheus.Registerer, appID string) *stats {
	s := &stats{
		outbound: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace:   "outrigger",
			Subsystem:   "service_invocation",
			Name:        "requests_sent_total",
			Help:        "Service invocation requests sent to other apps, by target app and status.",
			ConstLabels: prometheus.Labels{"app_id": appID},
		}, []string{"dest_app_id", "status"}),
		inbound: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace:   "outrigger",
			Subsystem:   "service_invocation",
			Name:        "requests_received_total",
			Help:        "Service invocation requests delivered to this app, by calling app and status.",
			ConstLabels: prometheus.Labels{"app_id": appID},
		}, []string{"src_app_id", "status"}),
	}
	reg.MustRegister(s.outbound, s.inbound)
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
