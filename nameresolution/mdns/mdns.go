// Package mdns finds Outrigger sidecars on a LAN with multicast DNS
// (DNS-SD over mDNS, RFC 6762/6763).
//
// Every sidecar is an instance of one service type, ServiceType. An
// Announcer answers queries for it (with github.com/hashicorp/mdns's
// server) with the sidecar's mesh port, its IPv4 and IPv6 addresses and TXT
// records carrying its app-id and namespace; it announces the instance
// unsolicited when it starts and sends goodbye packets (TTL 0) when it is
// withdrawn, which hashicorp/mdns does not do.
//
// A Resolver keeps a cache of every instance on the link. It listens on the
// mDNS groups the whole time it runs (hashicorp/mdns's client listens only
// while a query is under way, and passes on neither TTLs nor goodbyes, so
// the Resolver has a client of its own, on github.com/miekg/dns): it learns
// an instance from announcements and from the answers to the queries it sends
// every refresh interval, keeps it for the answer's TTL (at most its own),
// and drops it at once on a goodbye. Resolving an app in the cache never
// waits on the network; only the first Resolve of an unseen app queries and
// waits for an answer. As a nameresolution.Watcher it reports every live
// instance of an app to a balancer.
//
// Answers are checked before they are believed: records about other
// services, malformed TXT records, a port of 0, an instance name that does
// not match its app-id and packets with too many records are dropped,
// counted (Stats) and logged at most once per reason every half minute.
// Limits on the instances per app and in all bound the memory a flood of
// bogus answers can take.
//
// mDNS multicasts on the local link: use it for bare sidecars on one LAN.
// Development mode resolves through the development control process and
// does not multicast.
package mdns

import (
	"fmt"
	"log"
	"log/slog"
	"net"
	"time"
)

const (
	// ServiceType is the DNS-SD service type every Outrigger sidecar announces.
	ServiceType = "_outrigger._tcp"
	// domain is the mDNS domain.
	domain = "local."
	// serviceName is the name resolvers query, in canonical form.
	serviceName = ServiceType + "." + domain

	// TXT record keys.
	txtVersion   = "txtvers=1"
	txtAppID     = "appid="
	txtNamespace = "namespace="

	// txtMax is the longest string a TXT record holds.
	txtMax = 255
)

// Defaults of the resolver's options.
const (
	DefaultRefreshInterval = 10 * time.Second
	DefaultResolveTimeout  = time.Second
	// The default TTL is DefaultTTLFactor refresh intervals.
	DefaultTTLFactor = 3
	// DefaultMaxInstancesPerApp is how many instances of one app a
	// Resolver keeps at most (see WithLimits).
	DefaultMaxInstancesPerApp = 128
	// DefaultMaxInstances is how many instances a Resolver keeps at most,
	// all apps together (see WithLimits).
	DefaultMaxInstances = 1024
)

// Option configures an Announcer or a Resolver. Options that concern only
// one of them are ignored by the other.
type Option func(*config)

type config struct {
	iface          *net.Interface
	logger         *slog.Logger
	refresh        time.Duration
	ttl            time.Duration
	resolveTimeout time.Duration
	maxPerApp      int
	maxTotal       int
	preferIPv6     bool
}

func newConfig(opts []Option) config {
	c := config{
		refresh:        DefaultRefreshInterval,
		resolveTimeout: DefaultResolveTimeout,
		maxPerApp:      DefaultMaxInstancesPerApp,
		maxTotal:       DefaultMaxInstances,
	}
	for _, o := range opts {
		o(&c)
	}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	if c.ttl == 0 {
		c.ttl = DefaultTTLFactor * c.refresh
	}
	return c
}

// validateResolver checks the options a Resolver uses.
func (c config) validateResolver() error {
	switch {
	case c.refresh <= 0:
		return fmt.Errorf("refresh interval %v is not positive", c.refresh)
	case c.resolveTimeout <= 0:
		return fmt.Errorf("resolve timeout %v is not positive", c.resolveTimeout)
	case c.ttl < 2*c.refresh:
		return fmt.Errorf("TTL %v is shorter than two refresh intervals (%v)", c.ttl, 2*c.refresh)
	case c.maxPerApp < 1:
		return fmt.Errorf("limit of %d instances per app is not positive", c.maxPerApp)
	case c.maxTotal < c.maxPerApp:
		return fmt.Errorf("limit of %d instances in all is below the limit per app (%d)", c.maxTotal, c.maxPerApp)
	}
	return nil
}

// stdLogger bridges hashicorp/mdns's *log.Logger to slog at debug level: it
// reports expected conditions (no IPv6 on a host, a closed socket) as errors.
func (c config) stdLogger() *log.Logger {
	return slog.NewLogLogger(c.logger.Handler(), slog.LevelDebug)
}

// WithInterface makes mDNS use one network interface: the Announcer listens
// and advertises addresses there, the Resolver joins the mDNS groups and
// sends its queries there. The default is the system's multicast interface,
// and for an Announcer without an instance host, the addresses of every
// multicast interface that is up.
func WithInterface(iface *net.Interface) Option {
	return func(c *config) { c.iface = iface }
}

// WithLogger sets the logger. The default discards.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.logger = l }
}

// WithRefreshInterval sets how often the Resolver queries the link to
// refresh its cache (default DefaultRefreshInterval). Resolver only.
func WithRefreshInterval(d time.Duration) Option {
	return func(c *config) { c.refresh = d }
}

// WithTTL sets how long the Resolver keeps an instance that no longer
// answers (default DefaultTTLFactor refresh intervals; at least two): the
// longest it keeps an answer, whatever the answer's own TTL. Resolver only.
func WithTTL(d time.Duration) Option {
	return func(c *config) { c.ttl = d }
}

// WithResolveTimeout bounds how long the first Resolve of an app the
// Resolver has not seen waits for an answer before it reports
// nameresolution.ErrNotFound, and how long Watch waits before it reports
// that such an app has no instance (default DefaultResolveTimeout).
// Resolver only.
func WithResolveTimeout(d time.Duration) Option {
	return func(c *config) { c.resolveTimeout = d }
}

// WithLimits bounds the cache: at most perApp instances of one app and
// total instances in all (defaults DefaultMaxInstancesPerApp and
// DefaultMaxInstances). An instance that would go over a limit is dropped,
// counted and logged; those already known are kept. Resolver only.
func WithLimits(perApp, total int) Option {
	return func(c *config) { c.maxPerApp, c.maxTotal = perApp, total }
}

// WithPreferIPv6 makes the Resolver report an instance's IPv6 address when
// the instance has one; by default it reports the IPv4 address, and the
// IPv6 address of an instance without IPv4. Resolver only.
func WithPreferIPv6(prefer bool) Option {
	return func(c *config) { c.preferIPv6 = prefer }
}
