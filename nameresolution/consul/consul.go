// Package consul resolves app-ids through a HashiCorp Consul agent and
// registers sidecars with it, reading the same nameResolution.configuration
// as Dapr's consul resolver (see Metadata).
//
// An app is a Consul service named after its app-id. Every instance carries
// its sidecar's mesh port in the service meta key daprPortMetaKey
// (DAPR_PORT by default) and its namespace in OUTRIGGER_NAMESPACE (absent:
// the default namespace). A Watcher follows an app's passing instances with
// blocking queries on /v1/health/service/<app-id>, so a change reaches the
// caller within a second; balance.New turns it into a Resolver. An Announcer
// registers the sidecar with a health check on its health URL, keeps the
// registration alive across agent restarts and deregisters it when the
// announcement ends.
package consul

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/hashicorp/consul/api"
)

// MetaNamespace is the service meta key holding an instance's namespace.
// An instance without it is in nameresolution.DefaultNamespace.
const MetaNamespace = "OUTRIGGER_NAMESPACE"

// Defaults of the options.
const (
	// DefaultWaitTime bounds one blocking query when neither
	// queryOptions.waitTime nor client.waitTime is set.
	DefaultWaitTime = 30 * time.Second
	// DefaultMaxBackoff caps the pause between two attempts while the
	// agent cannot be reached.
	DefaultMaxBackoff = 3 * time.Second
	// DefaultCheckInterval is how often the agent probes the sidecar's
	// health URL.
	DefaultCheckInterval = time.Second
	// DefaultDeregisterCriticalAfter is how long the sidecar's check may
	// stay critical before the agent removes the registration.
	DefaultDeregisterCriticalAfter = time.Minute
	// DefaultResyncInterval is how often an announcer makes sure the agent
	// still has its registration.
	DefaultResyncInterval = 2 * time.Second
)

// minBackoff is the first pause after a failure.
const minBackoff = 100 * time.Millisecond

// requestSlack is added to a blocking query's wait (and Consul's jitter of
// up to wait/16) to bound the request, so a hung agent is noticed.
const requestSlack = 10 * time.Second

// Option configures a Watcher or an Announcer.
type Option func(*options)

type options struct {
	logger          *slog.Logger
	maxBackoff      time.Duration
	healthURL       string
	checkInterval   time.Duration
	deregisterAfter time.Duration
	resync          time.Duration
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithMaxBackoff caps the pause between two attempts while the agent cannot
// be reached (default DefaultMaxBackoff).
func WithMaxBackoff(d time.Duration) Option { return func(o *options) { o.maxBackoff = d } }

// WithHealthURL is the sidecar's health URL (as
// http://127.0.0.1:3500/v1.0/healthz), which the agent probes with GET to
// tell whether the registered instance is alive. Announcer only. Without
// it the registration carries a TTL check that the announcer itself keeps
// passing, so an instance whose sidecar died still goes critical.
func WithHealthURL(u string) Option { return func(o *options) { o.healthURL = u } }

// WithCheckInterval sets how often the agent probes the health URL
// (default DefaultCheckInterval; Consul's minimum is 1s). Announcer only.
func WithCheckInterval(d time.Duration) Option { return func(o *options) { o.checkInterval = d } }

// WithDeregisterCriticalAfter sets how long the sidecar's check may stay
// critical before the agent drops the registration (default
// DefaultDeregisterCriticalAfter). Announcer only.
func WithDeregisterCriticalAfter(d time.Duration) Option {
	return func(o *options) { o.deregisterAfter = d }
}

// WithResyncInterval sets how often an announcer checks that the agent still
// has its registration, and registers again if it forgot it (default
// DefaultResyncInterval). Announcer only.
func WithResyncInterval(d time.Duration) Option { return func(o *options) { o.resync = d } }

func newOptions(opts []Option) options {
	o := options{}
	for _, f := range opts {
		f(&o)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	if o.maxBackoff <= 0 {
		o.maxBackoff = DefaultMaxBackoff
	}
	if o.checkInterval <= 0 {
		o.checkInterval = DefaultCheckInterval
	}
	if o.deregisterAfter <= 0 {
		o.deregisterAfter = DefaultDeregisterCriticalAfter
	}
	if o.resync <= 0 {
		o.resync = DefaultResyncInterval
	}
	return o
}

// newClient validates md and makes the consul client it describes.
func newClient(md Metadata) (*api.Client, error) {
	if err := md.Validate(); err != nil {
		return nil, err
	}
	c, err := api.NewClient(md.Client.apiConfig())
	if err != nil {
		return nil, fmt.Errorf("nameresolution/consul: client: %v", err)
	}
	return c, nil
}

// nextBackoff doubles the pause up to limit, with a little jitter so that
// many watchers do not retry in step.
func nextBackoff(prev, limit time.Duration) time.Duration {
	d := 2 * prev
	if d < minBackoff {
		d = minBackoff
	}
	d = min(d, limit)
	return d - time.Duration(rand.Int64N(int64(d)/5+1))
}
