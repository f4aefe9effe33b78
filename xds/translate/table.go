package translate

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/nameresolution"
	outriggerv1alpha1 "github.com/outrigger/outrigger/xds/api/v1alpha1"
)

// Routes is a sidecar's RouteConfiguration read for lookups.
type Routes struct {
	invoke     map[string]InvokeRoute    // by cluster name
	byApp      map[[2]string]InvokeRoute // by namespace and app-id: a lookup without building the name
	components map[string]*outriggerv1alpha1.ComponentRoute
	// componentPolicy is each component's outbound Resiliency.
	componentPolicy map[string]*outriggerv1alpha1.Resiliency
	// defaultInvoke is the route of calls to an app without one of its
	// own (DefaultInvokeRouteName); nil without default app policies.
	defaultInvoke *InvokeRoute
	// builtInRetry is a redefined DaprBuiltInServiceRetries; nil for Dapr's.
	builtInRetry *outriggerv1alpha1.Retry
	// hashing is whether any route has a hash header, so calls skip the
	// lookup when none has.
	hashing bool
}

// InvokeRoute is what the routes say of calls to one app.
type InvokeRoute struct {
	Cluster string
	// Timeout bounds the whole call; zero is none.
	Timeout time.Duration
	// Resiliency is Dapr's exact policy (nil without one).
	Resiliency *outriggerv1alpha1.Resiliency
	// HashHeader is the request header whose value consistent hashing
	// takes (the route's hash_policy); empty for none.
	HashHeader string
}

// NewRoutes reads rc. A route whose Outrigger payload does not decode, or
// an invocation route that names no cluster, is an error (the sidecar
// NACKs the configuration).
func NewRoutes(rc *routev3.RouteConfiguration) (*Routes, error) {
	rt := &Routes{invoke: map[string]InvokeRoute{}, byApp: map[[2]string]InvokeRoute{}, components: map[string]*outriggerv1alpha1.ComponentRoute{}, componentPolicy: map[string]*outriggerv1alpha1.Resiliency{}}
	var errs []error
	for _, vh := range rc.GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			pol, err := ParseResiliency(r)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			switch {
			case r.GetNonForwardingAction() != nil && r.GetMatch().GetPathSeparatedPrefix() == invokePrefix:
				// Every invocation: the default app policies, and the
				// built-in retry of apps without any.
				rt.builtInRetry = pol.GetBuiltinServiceRetry()
				if pol.GetTimeout() == nil && pol.GetRetry() == nil && pol.GetCircuitBreaker() == nil {
					continue
				}
				ir := InvokeRoute{Timeout: pol.GetTimeout().AsDuration(), Resiliency: pol}
				if ir.Timeout < 0 {
					errs = append(errs, fmt.Errorf("route %q: negative timeout", r.GetName()))
					continue
				}
				rt.defaultInvoke = &ir
			case r.GetNonForwardingAction() != nil:
				binding, err := ParseComponentRoute(r)
				if err != nil || binding == nil {
					errs = append(errs, fmt.Errorf("route %q: a building-block route needs its %s: %v", r.GetName(), ComponentFilterKey, err))
					continue
				}
				rt.components[binding.GetComponent()] = binding
				if pol != nil {
					rt.componentPolicy[binding.GetComponent()] = pol
				}
			case r.GetRoute() != nil:
				a := r.GetRoute()
				if a.GetCluster() == "" {
					errs = append(errs, fmt.Errorf("route %q forwards to no cluster", r.GetName()))
					continue
				}
				ir := InvokeRoute{Cluster: a.GetCluster(), Timeout: a.GetTimeout().AsDuration(), Resiliency: pol, HashHeader: hashHeader(a)}
				rt.hashing = rt.hashing || ir.HashHeader != ""
				if pol.GetTimeout() != nil {
					ir.Timeout = pol.GetTimeout().AsDuration()
				}
				if ir.Timeout < 0 {
					errs = append(errs, fmt.Errorf("route %q: negative timeout", r.GetName()))
					continue
				}
				rt.invoke[ir.Cluster] = ir
				if parts := strings.SplitN(ir.Cluster, "/", 3); len(parts) == 3 && parts[0] == "outrigger" {
					rt.byApp[[2]string{parts[1], parts[2]}] = ir
				}
			default:
				errs = append(errs, fmt.Errorf("route %q: unsupported action", r.GetName()))
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return rt, nil
}

// Invoke is the route of calls to appID in namespace: the app's own, else
// the route of the default app policies (with no Cluster), when there are
// such policies.
func (rt *Routes) Invoke(appID, namespace string) (InvokeRoute, bool) {
	if rt == nil {
		return InvokeRoute{}, false
	}
	r, ok := rt.byApp[[2]string{nameresolution.NamespaceOrDefault(namespace), appID}]
	if !ok && len(rt.byApp) != len(rt.invoke) {
		r, ok = rt.invoke[ClusterName(namespace, appID)] // a cluster named otherwise
	}
	if !ok && rt.defaultInvoke != nil {
		return *rt.defaultInvoke, true
	}
	return r, ok
}

// hashHeader is the header of a's first header hash policy: the only kind
// the sidecar hashes on. Header names are case-insensitive; gRPC metadata
// keys are lower case, so the name is kept lower case.
func hashHeader(a *routev3.RouteAction) string {
	for _, hp := range a.GetHashPolicy() {
		if h := hp.GetHeader().GetHeaderName(); h != "" {
			return strings.ToLower(h)
		}
	}
	return ""
}

// Component is the binding of a component's building-block routes.
func (rt *Routes) Component(name string) (*outriggerv1alpha1.ComponentRoute, bool) {
	if rt == nil {
		return nil, false
	}
	c, ok := rt.components[name]
	return c, ok
}

// ComponentResiliency is the outbound Resiliency of calls to a component;
// nil for none.
func (rt *Routes) ComponentResiliency(name string) *outriggerv1alpha1.Resiliency {
	if rt == nil {
		return nil
	}
	return rt.componentPolicy[name]
}

// RouteTable holds a sidecar's current Routes; it is safe for concurrent
// use, and a nil table or one never set has no routes.
type RouteTable struct{ cur atomic.Pointer[Routes] }

// Set replaces the routes.
func (t *RouteTable) Set(rt *Routes) { t.cur.Store(rt) }

// Routes is the current routes (nil before the first Set).
func (t *RouteTable) Routes() *Routes {
	if t == nil {
		return nil
	}
	return t.cur.Load()
}

// InvokeResiliency is the Resiliency of calls to appID in namespace (the
// default app policies for an app without a route of its own); nil for
// none.
func (t *RouteTable) InvokeResiliency(appID, namespace string) *outriggerv1alpha1.Resiliency {
	r, _ := t.Routes().Invoke(appID, nameresolution.NamespaceOrDefault(namespace))
	return r.Resiliency
}

// BuiltInServiceRetry is DaprBuiltInServiceRetries as a Resiliency
// document redefines it; nil keeps Dapr's.
func (t *RouteTable) BuiltInServiceRetry() *outriggerv1alpha1.Retry {
	if rt := t.Routes(); rt != nil {
		return rt.builtInRetry
	}
	return nil
}

// InvokeHashHeader is the header whose value picks the instance of appID
// in namespace under consistent hashing, from the app's route; empty when
// the route names none.
func (t *RouteTable) InvokeHashHeader(appID, namespace string) string {
	rt := t.Routes()
	if rt == nil || !rt.hashing {
		return ""
	}
	r, _ := rt.Invoke(appID, nameresolution.NamespaceOrDefault(namespace))
	return r.HashHeader
}

// InvokeTimeout is the timeout of calls to appID in namespace (the default
// app timeout for an app without a route of its own); zero is none.
func (t *RouteTable) InvokeTimeout(appID, namespace string) time.Duration {
	r, _ := t.Routes().Invoke(appID, nameresolution.NamespaceOrDefault(namespace))
	return r.Timeout
}

// LocalRoutes is the route configuration a sidecar without a control plane
// builds from its own resources: the same translation the control plane
// makes, for node, without endpoints (apps come from its Resiliency
// targets; calls to any other app take the default app policies, when
// there are any, from the route DefaultInvokeRouteName).
func LocalRoutes(res *config.Resources, node Node) (*routev3.RouteConfiguration, error) {
	p, err := Prepare(Input{Resources: res})
	if err != nil {
		return nil, err
	}
	snap, err := p.Snapshot(node, "local")
	if err != nil {
		return nil, err
	}
	rc, ok := snap.GetResources(resourcev3.RouteType)[SidecarAPIName].(*routev3.RouteConfiguration)
	if !ok {
		return nil, errors.New("translate: no " + SidecarAPIName + " routes")
	}
	return rc, nil
}
