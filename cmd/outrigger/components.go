package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/outrigger/outrigger/building-blocks/pubsub"
	pubsubinmemory "github.com/outrigger/outrigger/building-blocks/pubsub/inmemory"
	"github.com/outrigger/outrigger/building-blocks/pubsub/jetstream"
	"github.com/outrigger/outrigger/building-blocks/pubsub/mqtt3"
	"github.com/outrigger/outrigger/building-blocks/pubsub/rabbitmq"
	pubsubredis "github.com/outrigger/outrigger/building-blocks/pubsub/redis"
	"github.com/outrigger/outrigger/building-blocks/secrets"
	"github.com/outrigger/outrigger/building-blocks/secrets/localenv"
	"github.com/outrigger/outrigger/building-blocks/secrets/localfile"
	"github.com/outrigger/outrigger/building-blocks/state"
	"github.com/outrigger/outrigger/building-blocks/state/inmemory"
	"github.com/outrigger/outrigger/building-blocks/state/mysql"
	"github.com/outrigger/outrigger/building-blocks/state/postgresql"
	"github.com/outrigger/outrigger/building-blocks/state/redis"
	"github.com/outrigger/outrigger/building-blocks/state/sqlite"
	"github.com/outrigger/outrigger/components"
	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/mtls"
	"github.com/outrigger/outrigger/mtls/svid"
	"github.com/outrigger/outrigger/nameresolution/balance"
	"github.com/outrigger/outrigger/proxy"
	"github.com/outrigger/outrigger/resiliency"
	outriggerv1alpha1 "github.com/outrigger/outrigger/xds/api/v1alpha1"
	xdsclient "github.com/outrigger/outrigger/xds/client"
	"github.com/outrigger/outrigger/xds/translate"
)

// componentTypes is every component type this binary is built with.
func componentTypes() (*components.Registry, error) {
	r := components.NewRegistry()
	for _, t := range []components.Type{
		storeType(localenv.Type, localenv.New),
		storeType(localfile.Type, localfile.New),
		stateType(inmemory.Type, inmemory.New),
		stateType(mysql.Type, mysql.New),
		stateType(postgresql.Type, postgresql.New, "v1", "v2"),
		stateType(redis.Type, redis.New),
		stateType(sqlite.Type, sqlite.New),
		pubsubType(pubsubinmemory.Type, pubsubinmemory.New),
		pubsubType(rabbitmq.Type, rabbitmq.New),
		pubsubType(pubsubredis.Type, pubsubredis.New),
		pubsubType(mqtt3.Type, mqtt3.New),
		pubsubType(jetstream.Type, jetstream.New),
	} {
		if err := r.Register(t); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// storeType adapts a backend's constructor to the pipeline's factory; a
// failed construction yields no component (never a typed nil).
func storeType[S io.Closer](name string, newStore func(map[string]string) (S, []string, error)) components.Type {
	return components.Type{Name: name, New: func(_ context.Context, meta map[string]string) (io.Closer, []string, error) {
		s, unknown, err := newStore(meta)
		if err != nil {
			return nil, nil, err
		}
		return s, unknown, nil
	}}
}

// stateType adapts a state backend's constructor: the state API reads its
// own metadata keys (keyPrefix, actorStateStore, ...) and the backend the
// rest.
func stateType[S state.Store](name string, newStore func(map[string]string) (S, []string, error), versions ...string) components.Type {
	return components.Type{Name: name, Versions: versions, New: func(ctx context.Context, meta map[string]string) (io.Closer, []string, error) {
		secretNames := map[string]string{}
		for k, ref := range components.SecretRefs(ctx) {
			secretNames[k] = ref.Name
		}
		c, unknown, err := state.NewComponent(meta, secretNames, newStore)
		if err != nil {
			return nil, unknown, err
		}
		return c, unknown, nil
	}}
}

// pubsubType adapts a broker's constructor: the runtime reads the topic
// scopes and the broker the rest.
func pubsubType[B pubsub.Broker](name string, newBroker func(map[string]string) (B, []string, error), versions ...string) components.Type {
	return components.Type{Name: name, Versions: versions, New: func(_ context.Context, meta map[string]string) (io.Closer, []string, error) {
		c, unknown, err := pubsub.NewComponent(meta, newBroker)
		if err != nil {
			return nil, unknown, err
		}
		return c, unknown, nil
	}}
}

// subscriptionDocs holds the declarative subscriptions of the app, parsed
// (their CEL rules compiled) when their documents are loaded, so a broken
// one is reported then, naming its file. A document that breaks on reload
// keeps its last good version.
type subscriptionDocs struct {
	// inbound follows the Resiliency documents loaded with them.
	inbound *inboundRetries
	appID   string
	mu      sync.Mutex
	good    map[string]pubsub.Subscription // last good, by namespace/name
	current atomic.Pointer[[]pubsub.Subscription]
	changed chan struct{}
}

func newSubscriptionDocs(appID string) *subscriptionDocs {
	return &subscriptionDocs{appID: appID, good: map[string]pubsub.Subscription{}, changed: make(chan struct{}, 1)}
}

// set replaces the documents; the error joins those that failed to parse.
func (s *subscriptionDocs) set(docs []config.Document) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	var out []pubsub.Subscription
	good := map[string]pubsub.Subscription{}
	for _, d := range docs {
		if !config.Applies(d.Scopes, s.appID) {
			continue
		}
		key := d.Namespace + "/" + d.Name
		sub, err := pubsub.ParseDeclarative(d.JSON, d.Source.String()+": subscription "+strconv.Quote(d.Name))
		if err != nil {
			errs = append(errs, err)
			prev, ok := s.good[key]
			if !ok {
				continue
			}
			sub = prev
		}
		good[key] = sub
		out = append(out, sub)
	}
	s.good = good
	s.current.Store(&out)
	s.notify()
	return errors.Join(errs...)
}

// notify tells the subscriber to bring its subscriptions in line.
func (s *subscriptionDocs) notify() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// list returns the declarative subscriptions of the moment.
func (s *subscriptionDocs) list() []pubsub.Subscription {
	if p := s.current.Load(); p != nil {
		return *p
	}
	return nil
}

// componentRunners applies each component's outbound Resiliency (from its
// routes) to its calls. A component without a policy is used as it is; one
// with a policy is wrapped once per instance and policy, and its circuit
// breaker lives as long as the policy is unchanged.
type componentRunners struct {
	routes   *translate.RouteTable
	policies *resiliency.Policies[string]

	// wrapped maps a component instance to its wrapper.
	wrapped sync.Map
}

func newComponentRunners(routes *translate.RouteTable, log *slog.Logger, breakerState *prometheus.GaugeVec, metrics *resiliency.Metrics) *componentRunners {
	return &componentRunners{routes: routes, policies: &resiliency.Policies[string]{
		Logger:    log,
		Metrics:   metrics,
		Direction: resiliency.Outbound,
		Target: func(name string) string {
			kind := ""
			if c, ok := routes.Routes().Component(name); ok {
				kind = config.ComponentKind(c.GetComponentType())
			}
			return resiliency.ComponentTarget(kind, name)
		},
		OnChange: func(component, policy string, from, to resiliency.State) {
			log.Warn("circuit breaker changed state", "component_name", component, "policy", policy, "from", from.String(), "to", to.String())
			breakerState.WithLabelValues(component, policy).Set(float64(to))
		},
	}}
}

// runner is the current runner of component name; nil without a policy.
func (r *componentRunners) runner(name string) *resiliency.Runner {
	return r.policies.For(name, r.routes.Routes().ComponentResiliency(name))
}

// state is sc under its outbound policy, when it has one.
func (r *componentRunners) state(name string, sc *state.Component) *state.Component {
	return wrapOnce(r, name, sc, state.WithResiliency)
}

// pubsub is pc with its publishes under its outbound policy, when it has
// one.
func (r *componentRunners) pubsub(name string, pc *pubsub.Component) *pubsub.Component {
	return wrapOnce(r, name, pc, pubsub.WithResiliency)
}

// wrapOnce is component c of name wrapped by wrap with its outbound
// runner, when it has a policy; the wrapped component is made once per
// instance (a lookup takes no lock). The runner is asked at each call, so
// a changed policy applies without a new wrapper. Instances replaced by a
// reload stay in the map: one small entry per reload.
func wrapOnce[C any](r *componentRunners, name string, c *C, wrap func(*C, func() *resiliency.Runner) *C) *C {
	if r.routes.Routes().ComponentResiliency(name) == nil {
		return c
	}
	if w, ok := r.wrapped.Load(c); ok {
		return w.(*C)
	}
	w, _ := r.wrapped.LoadOrStore(c, wrap(c, func() *resiliency.Runner { return r.runner(name) }))
	return w.(*C)
}

// inboundRetries holds the retry of deliveries from each pub/sub component
// (the Resiliency documents' components.<name>.inbound, else Dapr's pub/sub
// inbound defaults), for the subscriber.
type inboundRetries struct {
	appID string
	log   *slog.Logger
	cur   atomic.Pointer[inboundPolicies]
	// breakers are the components' inbound circuit breakers, by component
	// name: one each, kept while its policy is unchanged. A delivery reads
	// it without a lock; breakerMu orders the making of new ones.
	breakers  sync.Map // string -> *inboundBreaker
	breakerMu sync.Mutex
	// observers are the delivery policies' metric recorders, by
	// observerKey; set forgets them with the rules they were made for.
	observers sync.Map
	// metrics counts the documents applied (dapr_resiliency_loaded); every
	// set of Resiliency documents the sidecar takes passes through set.
	metrics *resiliency.Metrics
}

// inboundPolicies are the policies of deliveries: by the name of each
// component a Resiliency names (nil: none, the built-in retries), and for
// every other one the pub/sub inbound defaults (nil: none).
type inboundPolicies struct {
	named    map[string]*deliveryRule
	defaults *deliveryRule
}

// deliveryRule is a component's inbound policy: its retry and timeout (nil:
// the built-in retries) and its circuit breaker (nil: none).
type deliveryRule struct {
	retry   *pubsub.RetryPolicy
	breaker *config.CircuitBreakerPolicy
	// source names the documents the policies came from
	// ("resiliency/<name>", comma-separated), for the metrics.
	source string
}

// inboundBreaker is one component's breaker and the policy it was made of.
type inboundBreaker struct {
	policy  config.CircuitBreakerPolicy
	breaker *resiliency.Breaker
}

// set reads the Resiliency documents that apply to the app.
func (r *inboundRetries) set(docs []config.Document) {
	var rs config.Resiliencies
	for _, d := range docs {
		if !config.Applies(d.Scopes, r.appID) {
			continue
		}
		res, err := config.ParseResiliency(d)
		if err != nil {
			r.log.Error("resiliency not applied to deliveries", "err", err)
			continue
		}
		rs = append(rs, res)
		r.metrics.Loaded(res.Name)
	}
	rs.Sort()
	cur := &inboundPolicies{named: map[string]*deliveryRule{}}
	for _, res := range rs {
		for name := range res.Components {
			cur.named[name] = newDeliveryRule(rs.ComponentInbound(name, "pubsub"))
		}
	}
	cur.defaults = newDeliveryRule(rs.ComponentDefaults("pubsub", config.Inbound))
	r.cur.Store(cur)
	r.observers.Clear()
}

func newDeliveryRule(p config.Policy, ok bool) *deliveryRule {
	if !ok {
		return nil
	}
	rule := &deliveryRule{retry: deliveryPolicy(p, ok), breaker: p.CircuitBreaker}
	if rule.retry == nil && rule.breaker == nil {
		return nil
	}
	sources := make([]string, len(p.Sources))
	for i, name := range p.Sources {
		sources[i] = "resiliency/" + name
	}
	rule.source = strings.Join(sources, ",")
	return rule
}

// breaker is component name's inbound breaker under policy p: the one it
// has while p is unchanged, else a new one (closed).
func (r *inboundRetries) breaker(name, source string, p config.CircuitBreakerPolicy) *resiliency.Breaker {
	if v, ok := r.breakers.Load(name); ok && v.(*inboundBreaker).policy == p {
		return v.(*inboundBreaker).breaker
	}
	r.breakerMu.Lock()
	defer r.breakerMu.Unlock()
	if v, ok := r.breakers.Load(name); ok && v.(*inboundBreaker).policy == p {
		return v.(*inboundBreaker).breaker
	}
	b, err := resiliency.NewBreaker(&outriggerv1alpha1.CircuitBreaker{
		Name: p.Name, MaxRequests: p.MaxRequests, Interval: durationpb.New(p.Interval), Timeout: durationpb.New(p.Timeout), Trip: p.Trip,
	}, func(policy string, from, to resiliency.State) {
		// The metrics first: whoever reads the log line finds them updated.
		r.metrics.BreakerChanged(source, resiliency.Inbound, inboundTarget(name), to)
		r.log.Warn("circuit breaker of deliveries changed state", "pubsub", name, "policy", policy, "from", from.String(), "to", to.String())
	})
	if err != nil {
		// The trip compiled at load; this does not happen.
		r.log.Error("an inbound circuit breaker cannot be used", "pubsub", name, "err", err)
		return nil
	}
	r.breakers.Store(name, &inboundBreaker{policy: p, breaker: b})
	return b
}

// deliveryPolicy is the retry and timeout of deliveries under p; nil when
// it has neither (the built-in retries).
func deliveryPolicy(p config.Policy, ok bool) *pubsub.RetryPolicy {
	if !ok || (p.Retry == nil && p.Timeout == 0) {
		return nil
	}
	out := &pubsub.RetryPolicy{Timeout: p.Timeout} // zero fields: the built-in retries
	if rp := p.Retry; rp != nil {
		out.Attempts, out.Initial, out.Max = rp.MaxRetries+1, rp.Duration, rp.Duration
		if rp.MaxRetries < 0 {
			out.Attempts = -1
		}
		if rp.Policy == "exponential" {
			// Dapr's exponential back-off starts at 500 ms.
			out.Initial, out.Max = 500*time.Millisecond, rp.MaxInterval
		}
	}
	return out
}

// get is the subscriber's Inbound.
func (r *inboundRetries) get(pubsubName string) (pubsub.RetryPolicy, bool) {
	cur := r.cur.Load()
	if cur == nil {
		return pubsub.RetryPolicy{}, false
	}
	rule, named := cur.named[pubsubName]
	if !named {
		rule = cur.defaults
	}
	if rule == nil {
		return pubsub.RetryPolicy{}, false
	}
	var p pubsub.RetryPolicy // zero fields: the built-in retries
	if rule.retry != nil {
		p = *rule.retry
	}
	var breaker *resiliency.Breaker
	if rule.breaker != nil {
		if breaker = r.breaker(pubsubName, rule.source, *rule.breaker); breaker != nil {
			p.Breaker = breaker
		}
	}
	if r.metrics != nil {
		p.Observer = r.observer(pubsubName, rule, breaker)
	}
	return p, true
}

// observerKey names one component's delivery policy as last built.
type observerKey struct {
	name    string
	rule    *deliveryRule
	breaker *resiliency.Breaker
}

// observer is what records component name's deliveries under rule in
// daprd's dapr_resiliency_* metrics: built once per rule (its series are
// looked up then), not per delivery.
func (r *inboundRetries) observer(name string, rule *deliveryRule, b *resiliency.Breaker) *resiliency.Runner {
	key := observerKey{name, rule, b}
	if v, ok := r.observers.Load(key); ok {
		return v.(*resiliency.Runner)
	}
	timeout := rule.retry != nil && rule.retry.Timeout > 0
	retry := rule.retry != nil && rule.retry.Attempts != 0
	run := r.metrics.Observer(rule.source, resiliency.Inbound, inboundTarget(name), timeout, retry, b)
	v, _ := r.observers.LoadOrStore(key, run)
	return v.(*resiliency.Runner)
}

// inboundTarget is the metrics' target of a pub/sub component's
// deliveries, as daprd names it.
func inboundTarget(name string) string { return resiliency.ComponentTarget("Pubsub", name) }

// secretValue reads one key of a secret from a live secret store, for
// secretKeyRef.
func secretValue(ctx context.Context, store io.Closer, name, key string) (string, error) {
	s, ok := store.(secrets.Store)
	if !ok {
		return "", fmt.Errorf("component is not a secret store")
	}
	values, err := s.GetSecret(ctx, name, nil)
	if err != nil {
		return "", err
	}
	v, ok := values[key]
	if !ok {
		return "", fmt.Errorf("secret %q has no key %q", name, key)
	}
	return v, nil
}

// xdsSource is the control plane as a source for the sidecar: of its
// components when it has no --resources-path of its own (a folder given with
// a control plane, as under `outrigger run --resources-path`, stays the
// source), and of the endpoints of other apps when its name resolution is
// the control plane's.
type xdsSource struct {
	address    string
	identity   *svid.Manager
	components bool
	endpoints  bool
	// balance configures the balancer over the endpoints.
	balance balance.Options
}

// start runs the xDS client and waits for the first answer (components
// applied with start-up rules: a broken one fails the start unless
// spec.ignoreErrors); changes keep coming in the background.
func (x *xdsSource) start(ctx context.Context, set *components.Set, routes *translate.RouteTable, subDocs *subscriptionDocs, cfg *proxy.Config, logger *slog.Logger) (func(), error) {
	log := logger.With("component", "xds")
	firstErr := make(chan error, 1)
	opts := xdsclient.Options{
		Address:   x.address,
		Node:      x.identity.Identity().String(),
		TLS:       x.identity.ControlPlaneTLS,
		Endpoints: x.endpoints,
		// The trust bundle follows root rotations between renewals.
		TrustBundle: func(pem []byte) error {
			anchors, err := mtls.ParseCertsPEM(pem)
			if err != nil {
				return err
			}
			return x.identity.SetTrustAnchors(anchors)
		},
		Logger:  log,
		Metrics: xdsclient.NewMetrics(cfg.AppID),
	}
	cfg.Collectors = append(cfg.Collectors, opts.Metrics)
	if x.components {
		opts.Apply = func(res *config.Resources) error {
			subDocs.inbound.set(res.Resiliencies)
			subErr := subDocs.set(res.Subscriptions)
			err := set.Apply(context.WithoutCancel(ctx), res.Components)
			subDocs.notify() // a replaced component is subscribed to again
			return errors.Join(subErr, err)
		}
		opts.Routes = func(rc *routev3.RouteConfiguration) error {
			rt, err := translate.NewRoutes(rc)
			if err != nil {
				return err
			}
			routes.Set(rt)
			return nil
		}
		opts.Applied = func(version string, err error) {
			select {
			case firstErr <- err:
			default:
			}
			if err == nil {
				log.Debug("configuration applied", "version", version)
			}
		}
	} else {
		firstErr <- nil
	}
	client := xdsclient.New(opts)
	if x.endpoints {
		// Found and findable through the control plane: endpoints over
		// EDS, and registration over the authenticated xDS stream rather
		// than the registry's plain HTTP.
		// The control plane's cluster of each app carries its policy and
		// outlier detection; the sidecar's Configuration gives the rest.
		opts := x.balance
		opts.ForApp = client.AppOptions
		lb := balance.New(client, opts)
		cfg.Resolver = balancedResolver{lb, nil}
		cfg.Announcer = client
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	ready := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); _ = client.Run(runCtx, ready) }()
	stop := func() {
		if lb, ok := cfg.Resolver.(balancedResolver); ok && x.endpoints {
			_ = lb.Close()
		}
		cancel()
		<-done
	}
	select {
	case <-ready:
		if err := <-firstErr; err != nil {
			stop()
			return func() {}, fmt.Errorf("components from the control plane: %w", err)
		}
		return stop, nil
	case <-time.After(certificateTimeout):
		stop()
		return func() {}, fmt.Errorf("no configuration from the control plane at %s within %s", x.address, certificateTimeout)
	case <-ctx.Done():
		stop()
		return func() {}, ctx.Err()
	}
}

// startComponents loads the components of --resources-path, watches the
// folders so an edit is live within a second, and mounts the building
// blocks' APIs on cfg. A component that fails at start fails the sidecar
// unless it sets spec.ignoreErrors, as in daprd.
// subscribed, when not nil, is called once the pub/sub subscriber has made
// its first subscriptions.
func startComponents(ctx context.Context, cfg *proxy.Config, doc *config.Configuration, xds *xdsSource, subscribed func(), logger *slog.Logger) (stop func(), err error) {
	stop = func() {}
	reg, err := componentTypes()
	if err != nil {
		return stop, err
	}
	log := logger.With("component", "components")
	metrics := newComponentMetrics(cfg)
	set := components.NewSet(components.Options{
		AppID: cfg.AppID, Namespace: cfg.Namespace, Registry: reg, Secret: secretValue, Logger: log,
		Metrics: metrics.components,
	})
	policy, err := doc.SecretsPolicy()
	if err != nil {
		return stop, usageError{fmt.Errorf("--config %s: %w", cfg.ConfigPath, err)}
	}
	cfg.Secrets = &secrets.API{
		Lookup: func(name string) (secrets.Store, bool) {
			c, ok := set.Get(name)
			if !ok || c.Type.Block() != "secretstores" {
				return nil, false
			}
			s, ok := c.Instance.(secrets.Store)
			if !ok {
				return nil, false
			}
			return metrics.secretStore(name, s), true
		},
		Configured: func() bool { return len(set.List("secretstores")) > 0 },
		Policy:     policy,
		Logger:     logger,
	}
	// The routes of service invocation (the Resiliency of each app) come
	// from where the components come from.
	routes := &translate.RouteTable{}
	cfg.Routes = routes
	breakerState := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "outrigger", Subsystem: "resiliency", Name: "component_circuit_breaker_state",
		Help:        "State of the circuit breaker of calls to a component: 0 closed, 1 half open, 2 open.",
		ConstLabels: prometheus.Labels{"app_id": cfg.AppID},
	}, []string{"component", "policy"})
	runners := newComponentRunners(routes, log, breakerState, metrics.resiliency)
	cfg.Collectors = append(cfg.Collectors, breakerState)
	cfg.State = &state.API{
		Lookup: func(name string) (*state.Component, bool) {
			c, ok := set.Get(name)
			if !ok || c.Type.Block() != "state" {
				return nil, false
			}
			sc, ok := c.Instance.(*state.Component)
			if !ok {
				return nil, false
			}
			return metrics.stateStore(name, runners.state(name, sc)), true
		},
		Configured: func() bool { return len(set.List("state")) > 0 },
		AppID:      cfg.AppID,
		// daprd prefixes keys with the namespace (keyPrefix: namespace) only
		// when NAMESPACE is set, as on Kubernetes.
		Namespace: os.Getenv("NAMESPACE"),
		Logger:    logger,
	}
	pubsubLookup := func(name string) (*pubsub.Component, bool) {
		c, ok := set.Get(name)
		if !ok || c.Type.Block() != "pubsub" {
			return nil, false
		}
		pc, ok := c.Instance.(*pubsub.Component)
		return pc, ok
	}
	pubsubAPI := &pubsub.API{
		// Publishing runs under the component's outbound policy.
		Lookup: func(name string) (*pubsub.Component, bool) {
			pc, ok := pubsubLookup(name)
			if !ok {
				return nil, false
			}
			return metrics.broker(name, runners.pubsub(name, pc)), true
		},
		Configured: func() bool { return len(set.List("pubsub")) > 0 },
		AppID:      cfg.AppID,
		Logger:     logger,
		Ingress:    metrics.pubsub,
		Tracer:     cfg.Tracer,
	}
	cfg.PubSub = pubsubAPI
	subDocs := newSubscriptionDocs(cfg.AppID)
	inbound := &inboundRetries{appID: cfg.AppID, log: log, metrics: metrics.resiliency}
	subDocs.inbound = inbound
	sub := &pubsub.Subscriber{
		Lookup: pubsubLookup, AppID: cfg.AppID,
		Inbound:     inbound.get,
		Declarative: subDocs.list,
		Changed:     subDocs.changed,
		Ingress:     metrics.pubsub,
		Tracer:      cfg.Tracer,
		Logger:      logger.With("component", "subscriber"),
		Subscribed:  subscribed,
	}
	cfg.Background = append(cfg.Background, func(ctx context.Context, sc *proxy.Sidecar) {
		app := sc.App()
		if app == nil {
			return // no app port: nothing to deliver to
		}
		sub.App = app
		_ = sub.Run(ctx)
	})
	cfg.Subscriptions = func() []*runtimev1pb.PubsubSubscription {
		var out []*runtimev1pb.PubsubSubscription
		for _, s := range append(sub.Active(), pubsubAPI.Streams()...) {
			out = append(out, s.MetadataProto())
		}
		return out
	}
	cfg.Components = func() []*runtimev1pb.RegisteredComponents {
		var out []*runtimev1pb.RegisteredComponents
		for _, c := range set.List("") {
			rc := &runtimev1pb.RegisteredComponents{Name: c.Doc.Name, Type: c.Doc.Type, Version: c.Doc.Version}
			if sc, ok := c.Instance.(*state.Component); ok {
				rc.Capabilities = sc.Capabilities()
			}
			out = append(out, rc)
		}
		return out
	}
	stopXDS := func() {}
	if xds != nil {
		if stopXDS, err = xds.start(ctx, set, routes, subDocs, cfg, logger); err != nil {
			return stop, err
		}
		if xds.components {
			return func() { stopXDS(); _ = set.Close() }, nil
		}
	}
	if len(cfg.ResourcesPaths) == 0 {
		return stopXDS, nil
	}
	watcher, res, loadErr := config.NewResourceWatcher(cfg.ResourcesPaths)
	if watcher == nil || loadErr != nil {
		// daprd refuses to start on a component file it cannot read.
		stopXDS()
		return stop, usageError{fmt.Errorf("--resources-path: %w", loadErr)}
	}
	subDocs.inbound.set(res.Resiliencies)
	if err := subDocs.set(res.Subscriptions); err != nil {
		// As a component file it cannot read, daprd's start fails.
		stopXDS()
		return stop, usageError{fmt.Errorf("--resources-path: %w", err)}
	}
	if err := set.Apply(ctx, res.Components); err != nil {
		stopXDS()
		return stop, fmt.Errorf("components: %w", err)
	}
	node := translate.Node{AppID: cfg.AppID, Namespace: cfg.Namespace}
	if err := setLocalRoutes(routes, res, node); err != nil {
		stopXDS()
		return stop, usageError{fmt.Errorf("--resources-path: %w", err)}
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = watcher.Run(runCtx, func(res *config.Resources, err error) {
			if err != nil {
				log.Error("resources: keeping the last good version of what failed", "err", err)
			}
			if res == nil {
				return
			}
			subDocs.inbound.set(res.Resiliencies)
			if err := subDocs.set(res.Subscriptions); err != nil {
				log.Error("subscriptions: keeping the last good version of what failed", "err", err)
			}
			if err := set.Apply(runCtx, res.Components); err != nil {
				log.Error("components: keeping the last good version of what failed", "err", err)
			}
			subDocs.notify() // a replaced component is subscribed to again
			if err := setLocalRoutes(routes, res, node); err != nil {
				log.Error("routes: keeping the last good version", "err", err)
			}
		})
	}()
	return func() { cancel(); <-done; stopXDS(); _ = set.Close() }, nil
}

// setLocalRoutes builds the sidecar's routes from its own resources, with
// the control plane's translation.
func setLocalRoutes(table *translate.RouteTable, res *config.Resources, node translate.Node) error {
	rc, err := translate.LocalRoutes(res, node)
	if err != nil {
		return err
	}
	rt, err := translate.NewRoutes(rc)
	if err != nil {
		return err
	}
	table.Set(rt)
	return nil
}
