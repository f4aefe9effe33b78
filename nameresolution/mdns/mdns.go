// Package mdns finds Outrigger sidecars on a LAN with multicast DNS
// (DNS-SD over mDNS, RFC 6762/6763), using github.com/hashicorp/mdns.
//
// Every sidecar is an instance of one service type, ServiceType. An
// Announcer answers queries for it with the sidecar's mesh address and TXT
// records carrying its app-id and namespace. A Resolver browses the service
// type in the background and keeps a cache of every instance it has seen, so
// resolving an app it has seen never waits on the network; only the first
// Resolve of an unseen app browses, and it returns as soon as a matching
// answer arrives. Instances that stop answering age out of the cache.
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
)

// maxBrowseWindow bounds how long one background browse listens for answers.
// hashicorp/mdns sends its query once and collects answers until the window
// closes; answers on a LAN come within milliseconds.
const maxBrowseWindow = time.Second

// Option configures an Announcer or a Resolver. Options that concern only
// one of them are ignored by the other.
type Option func(*config)

type config struct {
	iface          *net.Interface
	logger         *slog.Logger
	refresh        time.Duration
	ttl            time.Duration
	resolveTimeout time.Duration
}

func newConfig(opts []Option) config {
	c := config{refresh: DefaultRefreshInterval, resolveTimeout: DefaultResolveTimeout}
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
	}
	return nil
}

// stdLogger bridges hashicorp/mdns's *log.Logger to slog at debug level: it
// reports expected conditions (no IPv6 on a host, a closed socket) as errors.
func (c config) stdLogger() *log.Logger {
	return slog.NewLogLogger(c.logger.Handler(), slog.LevelDebug)
}

// WithInterface makes mDNS use one network interface: the Announcer listens
// and advertises addresses there, the Resolver sends its queries there. The
// default is the system's multicast interface, and for an Announcer without
// an instance host, the addresses of every multicast interface that is up.
func WithInterface(iface *net.Interface) Option {
	return func(c *config) { c.iface = iface }
}

// WithLogger sets the logger. The default discards.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.logger = l }
}

// WithRefreshInterval sets how often the Resolver browses in the background
// to refresh its cache (default DefaultRefreshInterval). Resolver only.
func WithRefreshInterval(d time.Duration) Option {
	return func(c *config) { c.refresh = d }
}

// WithTTL sets how long the Resolver keeps an instance that no longer
// answers (default DefaultTTLFactor refresh intervals; at least two).
// Resolver only.
func WithTTL(d time.Duration) Option {
	return func(c *config) { c.ttl = d }
}

// WithResolveTimeout bounds how long the first Resolve of an app the
// Resolver has not seen waits for an answer before it reports
// nameresolution.ErrNotFound (default DefaultResolveTimeout). Resolver only.
func WithResolveTimeout(d time.Duration) Option {
	return func(c *config) { c.resolveTimeout = d }
}
