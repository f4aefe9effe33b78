package main

import (
	"sync"

	"github.com/outrigger/outrigger/building-blocks/pubsub"
	"github.com/outrigger/outrigger/building-blocks/secrets"
	"github.com/outrigger/outrigger/building-blocks/state"
	"github.com/outrigger/outrigger/components"
	"github.com/outrigger/outrigger/proxy"
	"github.com/outrigger/outrigger/resiliency"
)

// componentMetrics are one sidecar's metrics of its components, under
// daprd's names (docs/observability.md), and the wrappers that record them.
type componentMetrics struct {
	components *components.Metrics
	state      *state.Metrics
	pubsub     *pubsub.Metrics
	secrets    *secrets.Metrics
	// resiliency is shared with the sidecar's invocation policies
	// (cfg.ResiliencyMetrics).
	resiliency *resiliency.Metrics

	// wrapped maps a component instance (or its resiliency wrapper) to its
	// measured wrapper.
	wrapped sync.Map
}

// newComponentMetrics makes the metrics and serves them on cfg's /metrics.
func newComponentMetrics(cfg *proxy.Config) *componentMetrics {
	m := &componentMetrics{
		components: components.NewMetrics(cfg.AppID),
		state:      state.NewMetrics(cfg.AppID, cfg.Namespace),
		pubsub:     pubsub.NewMetrics(cfg.AppID, cfg.Namespace),
		secrets:    secrets.NewMetrics(cfg.AppID, cfg.Namespace),
		resiliency: resiliency.NewMetrics(cfg.AppID, cfg.Namespace),
	}
	cfg.ResiliencyMetrics = m.resiliency
	cfg.Collectors = append(cfg.Collectors, m.components, m.state, m.pubsub, m.secrets, m.resiliency)
	return m
}

// stateStore is sc measured as the state store name. Give it sc with its
// resiliency, so a call and its retries are measured once, as daprd does.
func (m *componentMetrics) stateStore(name string, sc *state.Component) *state.Component {
	return measureOnce(&m.wrapped, sc, func(c *state.Component) *state.Component { return state.WithMetrics(c, name, m.state) })
}

// broker is pc with its publishes measured as the pub/sub name (give it
// pc with its resiliency).
func (m *componentMetrics) broker(name string, pc *pubsub.Component) *pubsub.Component {
	return measureOnce(&m.wrapped, pc, func(c *pubsub.Component) *pubsub.Component { return pubsub.WithMetrics(c, name, m.pubsub) })
}

// secretStore is s measured as the secret store name.
func (m *componentMetrics) secretStore(name string, s secrets.Store) secrets.Store {
	return measureOnce(&m.wrapped, s, func(s secrets.Store) secrets.Store { return secrets.WithMetrics(s, name, m.secrets) })
}

// measureOnce is c wrapped by wrap, made once per instance (a lookup takes
// no lock). Instances replaced by a reload stay in the map: one small entry
// per reload, as wrapOnce's.
func measureOnce[C comparable](wrapped *sync.Map, c C, wrap func(C) C) C {
	if w, ok := wrapped.Load(c); ok {
		return w.(C)
	}
	w, _ := wrapped.LoadOrStore(c, wrap(c))
	return w.(C)
}
