package translate

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/nameresolution"
	"github.com/outrigger/outrigger/nameresolution/balance"
	outriggerv1alpha1 "github.com/outrigger/outrigger/xds/api/v1alpha1"
)

const (
	// SidecarAPIName names both the Listener that stands for a sidecar's
	// own API (an API listener whose routes come over RDS) and that
	// RouteConfiguration: the building-block routes, each bound to its
	// component, and one invocation route per app, each with the timeout,
	// retries and circuit breaker its Resiliency gives it. No app-id can
	// collide with it, since app-ids have no "/".
	SidecarAPIName = "outrigger/api"
	// DefaultInvokeRouteName names the route, last in SidecarAPIName,
	// that matches every invocation and carries the default app policies
	// (Dapr's DefaultAppRetryPolicy and the like) for calls to an app
	// without a route of its own; there is none without such policies. No
	// app-id has a "*".
	DefaultInvokeRouteName = "invoke/*"
	// invokePrefix is the path of every invocation.
	invokePrefix = "/v1.0/invoke"
	// ComponentFilterKey is the typed_per_filter_config key of a
	// building-block route's outriggerv1alpha1.ComponentRoute.
	ComponentFilterKey = "outrigger.component"
	// ResiliencyFilterKey is the typed_per_filter_config key of a route's
	// outriggerv1alpha1.Resiliency.
	ResiliencyFilterKey = "outrigger.resiliency"
	// exponentialInitialInterval is the first interval of Dapr's
	// exponential retries.
	exponentialInitialInterval = 500 * time.Millisecond
	// unlimitedRetries stands for Dapr's maxRetries -1 in Envoy's
	// num_retries (grpc-go adds one to it for its attempts, so it must
	// stay below 2^32-1).
	unlimitedRetries = math.MaxInt32
)

// buildingBlockAPIs are the HTTP paths of each building block's API, by the
// type prefix of the components that serve them; "%s" is the component's
// name. A route matches the path and everything under it.
var buildingBlockAPIs = []struct {
	typePrefix, api string
	paths           []string
}{
	{"secretstores.", "secrets", []string{"/v1.0/secrets/%s"}},
	{"state.", "state", []string{"/v1.0/state/%s", "/v1.0-alpha1/state/%s"}},
	{"pubsub.", "publish", []string{"/v1.0/publish/%s", "/v1.0-alpha1/publish/bulk/%s"}},
	{"bindings.", "bindings", []string{"/v1.0/bindings/%s"}},
	{"configuration.", "configuration", []string{"/v1.0/configuration/%s", "/v1.0-alpha1/configuration/%s"}},
	{"lock.", "lock", []string{"/v1.0-alpha1/lock/%s", "/v1.0-alpha1/unlock/%s"}},
	{"crypto.", "crypto", []string{"/v1.0-alpha1/crypto/%s"}},
}

// app is an app with running sidecars.
type app struct{ namespace, appID string }

// nodeView is what differs between nodes: the documents they may see, and
// the listeners and routes, which carry the Resiliency that applies to the
// node. Nodes that see the same documents in the same namespace share one,
// and its snapshot.
type nodeView struct {
	listeners []types.Resource
	routes    []types.Resource
	versions  map[string]map[string]string

	mu   sync.Mutex
	snap *cachev3.Snapshot
}

// view is node's view and the documents it may see, built once per
// distinct set of documents.
func (p *Prepared) view(node Node) (*nodeView, []types.Resource, error) {
	var key strings.Builder
	docs := make([]types.Resource, 0, len(p.docs))
	for i, d := range p.docs {
		if applies(d.scopes, d.namespace, node) {
			docs = append(docs, d.resource)
			key.WriteString(strconv.Itoa(i))
			key.WriteByte(',')
		}
	}
	// The namespace also decides which apps a bare app-id reaches.
	key.WriteString("|" + nameresolution.NamespaceOrDefault(node.Namespace))
	p.mu.Lock()
	defer p.mu.Unlock()
	if v, ok := p.views[key.String()]; ok {
		return v, docs, nil
	}
	var comps []config.Component
	for _, c := range p.components {
		if applies(c.Scopes, c.Namespace, node) {
			comps = append(comps, c)
		}
	}
	var rs []*config.Resiliency
	for _, r := range p.resiliencies {
		if applies(r.Scopes, r.Namespace, node) {
			rs = append(rs, r)
		}
	}
	v, err := p.buildView(node, comps, rs)
	if err != nil {
		return nil, nil, err
	}
	p.views[key.String()] = v
	return v, docs, nil
}

func (p *Prepared) buildView(node Node, comps []config.Component, rs []*config.Resiliency) (*nodeView, error) {
	routes, err := sidecarRoutes(node, withTargets(p.apps, node, rs), comps, rs, p.balance)
	if err != nil {
		return nil, err
	}
	listeners, err := listenersOf(p.apps, rs, p.balance)
	if err != nil {
		return nil, err
	}
	v := &nodeView{routes: []types.Resource{routes}, listeners: listeners, versions: map[string]map[string]string{}}
	for typeURL, list := range map[string][]types.Resource{routeType: v.routes, listenerType: v.listeners} {
		if v.versions[typeURL], err = hashAll(list); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// withTargets adds to apps those the node's Resiliency names as targets in
// its own namespace: their routes carry their policies even before (or
// without) a sidecar of theirs registering, as for a development sidecar
// that finds its peers by mDNS.
func withTargets(apps []app, node Node, rs []*config.Resiliency) []app {
	seen := make(map[app]bool, len(apps))
	for _, a := range apps {
		seen[a] = true
	}
	out := append([]app(nil), apps...)
	ns := nameresolution.NamespaceOrDefault(node.Namespace)
	for _, r := range rs {
		for _, id := range sortedNames(r.Apps) {
			a := app{namespace: ns, appID: id}
			if !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].namespace != out[j].namespace {
			return out[i].namespace < out[j].namespace
		}
		return out[i].appID < out[j].appID
	})
	return out
}

func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// sidecarRoutes is the RouteConfiguration of one sidecar's API.
func sidecarRoutes(node Node, apps []app, comps []config.Component, rs []*config.Resiliency, lb balance.AppOptions) (*routev3.RouteConfiguration, error) {
	var routes []*routev3.Route
	for _, c := range comps {
		for _, bb := range buildingBlockAPIs {
			if !strings.HasPrefix(c.Type, bb.typePrefix) {
				continue
			}
			binding, err := toAny(&outriggerv1alpha1.ComponentRoute{Api: bb.api, Component: c.Name, ComponentType: c.Type, Resource: "component/" + c.Name})
			if err != nil {
				return nil, err
			}
			filters := map[string]*anypb.Any{ComponentFilterKey: binding}
			if pol := policyOf(config.Resiliencies(rs).ComponentOutbound(c.Name, c.Type)); pol != nil {
				if filters[ResiliencyFilterKey], err = toAny(pol.typed()); err != nil {
					return nil, err
				}
			}
			for _, path := range bb.paths {
				routes = append(routes, &routev3.Route{
					Name:                 bb.api + "/" + c.Name,
					Match:                &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: fmt.Sprintf(path, c.Name)}},
					Action:               &routev3.Route_NonForwardingAction{NonForwardingAction: &routev3.NonForwardingAction{}},
					TypedPerFilterConfig: filters,
				})
			}
		}
	}
	nodeNS := nameresolution.NamespaceOrDefault(node.Namespace)
	for _, a := range apps {
		pol := resolveApp(rs, a.appID)
		action, err := invokeAction(a, pol, lb)
		if err != nil {
			return nil, err
		}
		var filters map[string]*anypb.Any
		if pol != nil {
			typed, err := toAny(pol.typed())
			if err != nil {
				return nil, err
			}
			filters = map[string]*anypb.Any{ResiliencyFilterKey: typed}
		}
		// "<app-id>" reaches the caller's own namespace; "<app-id>.<namespace>" any.
		ids := []string{a.appID + "." + a.namespace}
		if a.namespace == nodeNS {
			ids = append([]string{a.appID}, ids...)
		}
		for _, id := range ids {
			routes = append(routes, &routev3.Route{
				Name:                 "invoke/" + id,
				Match:                &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: "/v1.0/invoke/" + id + "/method"}},
				Action:               &routev3.Route_Route{Route: action},
				TypedPerFilterConfig: filters,
			})
		}
	}
	// Calls to an app without a route of its own take the default app
	// policies; the sidecar serves them (finding the app by its name
	// resolution), so the route does not forward. Last: Envoy takes the
	// first route that matches.
	// The route also carries a redefined DaprBuiltInServiceRetries.
	var defaults *outriggerv1alpha1.Resiliency
	if pol := policyOf(config.Resiliencies(rs).AppDefaults()); pol != nil {
		defaults = pol.typed()
	}
	if rp, ok := config.Resiliencies(rs).BuiltInServiceRetry(); ok {
		if defaults == nil {
			defaults = &outriggerv1alpha1.Resiliency{}
		}
		defaults.BuiltinServiceRetry = typedRetry(rp)
	}
	if defaults != nil {
		typed, err := toAny(defaults)
		if err != nil {
			return nil, err
		}
		routes = append(routes, &routev3.Route{
			Name:                 DefaultInvokeRouteName,
			Match:                &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: invokePrefix}},
			Action:               &routev3.Route_NonForwardingAction{NonForwardingAction: &routev3.NonForwardingAction{}},
			TypedPerFilterConfig: map[string]*anypb.Any{ResiliencyFilterKey: typed},
		})
	}
	return &routev3.RouteConfiguration{
		Name:         SidecarAPIName,
		VirtualHosts: []*routev3.VirtualHost{{Name: "dapr", Domains: []string{"*"}, Routes: routes}},
	}, nil
}

// invokeAction forwards to the app's cluster with its timeout and retries
// in Envoy's fields, and ring hash's header as the route's hash_policy
// (where Envoy and grpc-go's xDS client read it; the cluster says only
// RING_HASH).
func invokeAction(a app, pol *policy, lb balance.AppOptions) (*routev3.RouteAction, error) {
	action := &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: ClusterName(a.namespace, a.appID)},
		// Zero turns Envoy's default 15 s route timeout off: Dapr has none.
		Timeout: durationpb.New(0),
	}
	if lb.Policy == balance.RingHash && lb.HashHeader != "" {
		action.HashPolicy = []*routev3.RouteAction_HashPolicy{{
			PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: lb.HashHeader}},
		}}
	}
	if pol == nil {
		return action, nil
	}
	if pol.timeout > 0 {
		action.Timeout = durationpb.New(pol.timeout)
		// grpc-go reads the deadline from here rather than from timeout.
		action.MaxStreamDuration = &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: durationpb.New(pol.timeout)}
	}
	if pol.retry != nil {
		action.RetryPolicy = envoyRetry(*pol.retry)
	}
	return action, nil
}

// policy is one target's resolved policies.
type policy struct {
	// source is "resiliency/<name>"; several, separated by commas, when
	// default policies come from more than one document.
	source    string
	timeout   time.Duration
	retry     *config.RetryPolicy
	breaker   *config.CircuitBreakerPolicy
	cacheSize int
}

// policyOf is p (resolved by package config from the Resiliency documents,
// which are sorted by name) as the routes carry it; nil when !ok.
func policyOf(p config.Policy, ok bool) *policy {
	if !ok {
		return nil
	}
	sources := make([]string, len(p.Sources))
	for i, name := range p.Sources {
		sources[i] = "resiliency/" + name
	}
	return &policy{source: strings.Join(sources, ","), timeout: p.Timeout, retry: p.Retry, breaker: p.CircuitBreaker, cacheSize: p.CircuitBreakerCacheSize}
}

// resolveApp is the policy of calls to appID: its target's, else the
// default app policies.
func resolveApp(rs []*config.Resiliency, appID string) *policy {
	return policyOf(config.Resiliencies(rs).App(appID))
}

// typed is the policy as Outrigger's own message.
func (pol *policy) typed() *outriggerv1alpha1.Resiliency {
	out := &outriggerv1alpha1.Resiliency{Source: pol.source}
	if pol.timeout > 0 {
		out.Timeout = durationpb.New(pol.timeout)
	}
	if rp := pol.retry; rp != nil {
		out.Retry = typedRetry(*rp)
	}
	if cb := pol.breaker; cb != nil {
		out.CircuitBreaker = &outriggerv1alpha1.CircuitBreaker{
			Name: cb.Name, MaxRequests: cb.MaxRequests, Interval: durationpb.New(cb.Interval),
			Timeout: durationpb.New(cb.Timeout), Trip: cb.Trip, CacheSize: uint32(pol.cacheSize),
		}
	}
	return out
}

// grpcRetryOn are the gRPC codes Envoy's retry_on can name.
var grpcRetryOn = map[int]string{1: "cancelled", 4: "deadline-exceeded", 8: "resource-exhausted", 13: "internal", 14: "unavailable"}

// envoyRetry is the nearest Envoy RetryPolicy to a Dapr retry policy: the
// same count, a back-off with the same bounds (Envoy and grpc-go add
// jitter, Dapr's constant policy has none), and the status codes Envoy can
// name. Dapr's maxRetries 0 is no retry at all.
func envoyRetry(rp config.RetryPolicy) *routev3.RetryPolicy {
	if rp.MaxRetries == 0 {
		return nil
	}
	n := uint32(unlimitedRetries)
	if rp.MaxRetries > 0 {
		n = uint32(rp.MaxRetries)
	}
	base, max := rp.Duration, rp.Duration
	if rp.Policy == "exponential" {
		base, max = exponentialInitialInterval, rp.MaxInterval
	}
	base = maxDuration(base, time.Millisecond)
	max = maxDuration(max, base)
	on := []string{"reset", "connect-failure"}
	out := &routev3.RetryPolicy{
		NumRetries:   wrapperspb.UInt32(n),
		RetryBackOff: &routev3.RetryPolicy_RetryBackOff{BaseInterval: durationpb.New(base), MaxInterval: durationpb.New(max)},
	}
	if rp.HTTPStatusCodes == "" {
		on = append(on, "5xx")
	} else {
		on = append(on, "retriable-status-codes")
		for _, code := range expandCodes(rp.HTTPStatusCodes) {
			out.RetriableStatusCodes = append(out.RetriableStatusCodes, uint32(code))
		}
	}
	grpcCodes := []int{1, 4, 8, 13, 14}
	if rp.GRPCStatusCodes != "" {
		grpcCodes = expandCodes(rp.GRPCStatusCodes)
	}
	for _, code := range grpcCodes {
		if name, ok := grpcRetryOn[code]; ok {
			on = append(on, name)
		}
	}
	out.RetryOn = strings.Join(on, ",")
	return out
}

func maxDuration(a, b time.Duration) time.Duration {
	if a > b {
		return a
	}
	return b
}

// expandCodes lists the codes of "429,500-503" (checked by package config).
func expandCodes(s string) []int {
	var out []int
	for _, part := range strings.Split(s, ",") {
		a, b, isRange := strings.Cut(strings.TrimSpace(part), "-")
		from, err := strconv.Atoi(strings.TrimSpace(a))
		if err != nil {
			continue
		}
		to := from
		if isRange {
			if to, err = strconv.Atoi(strings.TrimSpace(b)); err != nil {
				continue
			}
		}
		for c := from; c <= to; c++ {
			out = append(out, c)
		}
	}
	sort.Ints(out)
	return out
}

// listenersOf makes, for each app, the API listener a proxyless gRPC client
// (grpc-go's xds resolver) asks for: an HTTP connection manager with an
// inline route sending every call to the app's cluster, with the timeout
// and retries the client's Resiliency gives that app; and the Listener of
// the sidecar's own API, whose routes come over RDS.
func listenersOf(apps []app, rs []*config.Resiliency, lb balance.AppOptions) ([]types.Resource, error) {
	router, err := toAny(&routerv3.Router{})
	if err != nil {
		return nil, err
	}
	filters := []*hcmv3.HttpFilter{{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router}}}
	listener := func(name string, hcm *hcmv3.HttpConnectionManager) (types.Resource, error) {
		hcm.HttpFilters = filters
		api, err := toAny(hcm)
		if err != nil {
			return nil, err
		}
		return &listenerv3.Listener{Name: name, ApiListener: &listenerv3.ApiListener{ApiListener: api}}, nil
	}
	var out []types.Resource
	for _, a := range apps {
		name := ListenerName(a.namespace, a.appID)
		action, err := invokeAction(a, resolveApp(rs, a.appID), lb)
		if err != nil {
			return nil, err
		}
		l, err := listener(name, &hcmv3.HttpConnectionManager{
			RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
				Name: "route/" + name,
				VirtualHosts: []*routev3.VirtualHost{{
					Name:    name,
					Domains: []string{"*"},
					Routes: []*routev3.Route{{
						Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: ""}},
						Action: &routev3.Route_Route{Route: action},
					}},
				}},
			}},
		})
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	// The sidecar's own API: a filter chain whose HTTP connection manager
	// takes its routes over RDS (go-control-plane's consistency check
	// follows references from filter chains, not from API listeners). It
	// has no address: the sidecar's flags give it.
	sidecarHCM, err := toAny(&hcmv3.HttpConnectionManager{
		StatPrefix: "outrigger_api",
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			RouteConfigName: SidecarAPIName,
			ConfigSource: &corev3.ConfigSource{
				ResourceApiVersion:    corev3.ApiVersion_V3,
				ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
			},
		}},
		HttpFilters: filters,
	})
	if err != nil {
		return nil, err
	}
	out = append(out, &listenerv3.Listener{Name: SidecarAPIName, FilterChains: []*listenerv3.FilterChain{{
		Filters: []*listenerv3.Filter{{Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: sidecarHCM}}},
	}}})
	sort.Slice(out, func(i, j int) bool { return out[i].(*listenerv3.Listener).Name < out[j].(*listenerv3.Listener).Name })
	return out, nil
}

// ParseComponentRoute reads the binding of a building-block route.
func ParseComponentRoute(r *routev3.Route) (*outriggerv1alpha1.ComponentRoute, error) {
	return typedFilter(r, ComponentFilterKey, &outriggerv1alpha1.ComponentRoute{})
}

// ParseResiliency reads the Resiliency of a route, nil when it has none.
func ParseResiliency(r *routev3.Route) (*outriggerv1alpha1.Resiliency, error) {
	return typedFilter(r, ResiliencyFilterKey, &outriggerv1alpha1.Resiliency{})
}

func typedFilter[M proto.Message](r *routev3.Route, key string, m M) (M, error) {
	var zero M
	a, ok := r.GetTypedPerFilterConfig()[key]
	if !ok {
		return zero, nil
	}
	if err := a.UnmarshalTo(m); err != nil {
		return zero, fmt.Errorf("route %q: %s: %w", r.GetName(), key, err)
	}
	return m, nil
}

// typedRetry is a retry policy as Outrigger's own message.
func typedRetry(rp config.RetryPolicy) *outriggerv1alpha1.Retry {
	r := &outriggerv1alpha1.Retry{
		Name: rp.Name, MaxRetries: int32(rp.MaxRetries),
		HttpStatusCodes: rp.HTTPStatusCodes, GrpcStatusCodes: rp.GRPCStatusCodes,
	}
	if rp.Policy == "exponential" {
		r.Backoff = outriggerv1alpha1.Retry_EXPONENTIAL
		r.MaxInterval = durationpb.New(rp.MaxInterval)
	} else {
		r.Duration = durationpb.New(rp.Duration)
	}
	return r
}
