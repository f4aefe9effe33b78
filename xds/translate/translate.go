// Package translate turns Outrigger's typed resources (Dapr documents read
// by package config, the trust bundle, and the endpoints of running
// sidecars) into the xDS snapshot one sidecar receives. docs/xds.md is the
// mapping; in short:
//
//   - each Component, Configuration, Resiliency and Subscription that applies
//     to the node (scopes, namespace) is a TypedExtensionConfig named
//     "<kind>/<name>" whose typed_config is an xds.type.v3.TypedStruct with
//     the document's fields; secret values never travel: a secretKeyRef stays
//     a reference that the sidecar resolves through its own secret stores;
//   - the trust bundle is an SDS Secret named "trust-bundle";
//   - every app with running sidecars is a Cluster "outrigger/<namespace>/<app-id>"
//     (EDS over ADS, outlier detection), with its ClusterLoadAssignment of
//     the sidecars' mesh addresses.
package translate

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	xdstypev3 "github.com/cncf/xds/go/xds/type/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/nameresolution"
	"github.com/outrigger/outrigger/nameresolution/balance"
)

// Type URLs of Outrigger's documents inside TypedStructs.
const (
	typePrefix        = "type.outrigger.dev/outrigger.v1alpha1."
	ComponentType     = typePrefix + "Component"
	ConfigurationType = typePrefix + "Configuration"
	ResiliencyType    = typePrefix + "Resiliency"
	SubscriptionType  = typePrefix + "Subscription"
	// TrustBundleName is the SDS Secret holding the trust anchors.
	TrustBundleName = "trust-bundle"
)

// Node is the sidecar a snapshot is for.
type Node struct {
	AppID     string
	Namespace string
}

// Input is everything the control plane knows.
type Input struct {
	Resources *config.Resources
	// TrustAnchorsPEM is the trust bundle (PEM certificates).
	TrustAnchorsPEM []byte
	// Endpoints are the running sidecars.
	Endpoints []nameresolution.Instance
	// Balance is the load balancing policy and outlier detection of every
	// app's cluster (the control plane's Configuration's nameResolution);
	// zero fields take balance's defaults. Ring hash's header goes on every
	// app's invocation route as its hash_policy.
	Balance balance.AppOptions
}

// ClusterName is the xDS cluster of an app.
func ClusterName(namespace, appID string) string {
	return "outrigger/" + nameresolution.NamespaceOrDefault(namespace) + "/" + appID
}

func applies(scopes []string, namespace string, node Node) bool {
	if namespace != "" && namespace != nameresolution.NamespaceOrDefault(node.Namespace) {
		return false
	}
	return config.Applies(scopes, node.AppID)
}

// Snapshot builds node's snapshot at version and checks it for consistency.
func Snapshot(in Input, node Node, version string) (*cachev3.Snapshot, error) {
	p, err := Prepare(in)
	if err != nil {
		return nil, err
	}
	return p.Snapshot(node, version)
}

// scoped is one translated document with who may see it.
type scoped struct {
	resource  types.Resource
	scopes    []string
	namespace string
}

// Prepared is an Input translated once: what differs between nodes is only
// which documents they may see, so a change is translated once and then
// filtered per node.
type Prepared struct {
	// versions are the resources' content hashes by type URL and name,
	// computed once: go-control-plane would otherwise marshal and hash
	// every resource of every node's snapshot on every change.
	versions  map[string]map[string]string
	docs      []scoped
	secrets   []types.Resource
	clusters  []types.Resource
	endpoints []types.Resource

	// What the per-node listeners and routes are made of, and those
	// already made, by the set of documents a node sees.
	components   []config.Component
	resiliencies []*config.Resiliency
	apps         []app
	balance      balance.AppOptions
	mu           sync.Mutex
	views        map[string]*nodeView
}

const (
	routeType    = resourcev3.RouteType
	listenerType = resourcev3.ListenerType
)

// Prepare translates in.
func Prepare(in Input) (*Prepared, error) {
	p := &Prepared{views: map[string]*nodeView{}}
	var errs []error
	add := func(r types.Resource, scopes []string, ns string, err error) {
		if err != nil {
			errs = append(errs, err)
			return
		}
		p.docs = append(p.docs, scoped{resource: r, scopes: scopes, namespace: ns})
	}
	if in.Resources != nil {
		for _, c := range in.Resources.Components {
			r, err := componentConfig(c)
			add(r, c.Scopes, c.Namespace, err)
		}
		for _, c := range in.Resources.Configurations {
			r, err := documentConfig("configuration/"+c.Metadata.Name, ConfigurationType, config.Document{JSON: c.JSON, Source: c.Source})
			add(r, nil, c.Metadata.Namespace, err)
		}
		p.components = in.Resources.Components
		for _, d := range in.Resources.Resiliencies {
			r, err := documentConfig("resiliency/"+d.Name, ResiliencyType, d)
			add(r, d.Scopes, d.Namespace, err)
			typed, err := config.ParseResiliency(d)
			if err != nil {
				errs = append(errs, fmt.Errorf("translate: resiliency/%s: %w", d.Name, err))
				continue
			}
			p.resiliencies = append(p.resiliencies, typed)
		}
		sort.SliceStable(p.resiliencies, func(i, j int) bool { return p.resiliencies[i].Name < p.resiliencies[j].Name })
		for _, d := range in.Resources.Subscriptions {
			r, err := documentConfig("subscription/"+d.Name, SubscriptionType, d)
			add(r, d.Scopes, d.Namespace, err)
		}
	}
	if len(in.TrustAnchorsPEM) > 0 {
		p.secrets = append(p.secrets, &tlsv3.Secret{
			Name: TrustBundleName,
			Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: in.TrustAnchorsPEM}},
			}},
		})
	}
	var err error
	if p.clusters, p.endpoints, err = clustersOf(in.Endpoints, in.Balance); err != nil {
		errs = append(errs, err)
	}
	p.apps = appsOf(in.Endpoints)
	p.balance = in.Balance
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	p.versions = map[string]map[string]string{}
	docs := make([]types.Resource, 0, len(p.docs))
	for _, d := range p.docs {
		docs = append(docs, d.resource)
	}
	for typeURL, rs := range map[string][]types.Resource{
		resourcev3.ExtensionConfigType: docs, resourcev3.SecretType: p.secrets, resourcev3.ClusterType: p.clusters,
		resourcev3.EndpointType: p.endpoints,
	} {
		if p.versions[typeURL], err = hashAll(rs); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// hashAll is the content hash of each resource, by name, as go-control-plane
// computes it.
func hashAll(rs []types.Resource) (map[string]string, error) {
	m := make(map[string]string, len(rs))
	for _, r := range rs {
		b, err := cachev3.MarshalResource(r)
		if err != nil {
			return nil, err
		}
		m[cachev3.GetResourceName(r)] = cachev3.HashResource(b)
	}
	return m, nil
}

// appsOf lists the apps of the running sidecars, sorted.
func appsOf(instances []nameresolution.Instance) []app {
	seen := map[app]bool{}
	var out []app
	for _, inst := range instances {
		a := app{namespace: nameresolution.NamespaceOrDefault(inst.Namespace), appID: inst.AppID}
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
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

// Snapshot is node's snapshot of the prepared resources, checked for
// consistency. Nodes that see the same documents get the same snapshot
// (go-control-plane only reads it): the first of them gives it its
// version, and the later ones' version is ignored. A snapshot must not be
// changed once returned.
func (p *Prepared) Snapshot(node Node, version string) (*cachev3.Snapshot, error) {
	view, docs, err := p.view(node)
	if err != nil {
		return nil, err
	}
	view.mu.Lock()
	defer view.mu.Unlock()
	if view.snap != nil {
		return view.snap, nil
	}
	// Every type served is present, even empty: a type absent from a
	// snapshot has no version, and a first request (version "") would then
	// wait for a change instead of getting its (empty) answer.
	res := map[resourcev3.Type][]types.Resource{
		resourcev3.ExtensionConfigType: docs,
		resourcev3.SecretType:          nonNil(p.secrets),
		resourcev3.ClusterType:         nonNil(p.clusters),
		resourcev3.EndpointType:        nonNil(p.endpoints),
		listenerType:                   view.listeners,
		routeType:                      view.routes,
	}
	snap, err := cachev3.NewSnapshot(version, res)
	if err != nil {
		return nil, err
	}
	if err := snap.Consistent(); err != nil {
		return nil, fmt.Errorf("translate: inconsistent snapshot: %w", err)
	}
	// The version map of exactly this snapshot's resources, from the hashes
	// made once in Prepare.
	snap.VersionMap = make(map[string]map[string]string, len(snap.Resources))
	for i, rs := range snap.Resources {
		typeURL, err := cachev3.GetResponseTypeURL(types.ResponseType(i))
		if err != nil {
			return nil, err
		}
		versions := p.versions[typeURL]
		if v, ok := view.versions[typeURL]; ok {
			versions = v
		}
		m := make(map[string]string, len(rs.Items))
		for name := range rs.Items {
			m[name] = versions[name]
		}
		snap.VersionMap[typeURL] = m
	}
	view.snap = snap
	return snap, nil
}

func nonNil(rs []types.Resource) []types.Resource {
	if rs == nil {
		return []types.Resource{}
	}
	return rs
}

// componentConfig is a Component as a TypedExtensionConfig.
func componentConfig(c config.Component) (types.Resource, error) {
	meta := make([]any, 0, len(c.Metadata))
	for _, m := range c.Metadata {
		item := map[string]any{"name": m.Name}
		switch {
		case m.SecretKeyRef != nil:
			item["secretKeyRef"] = map[string]any{"name": m.SecretKeyRef.Name, "key": m.SecretKeyRef.Key}
		case m.EnvRef != "":
			item["envRef"] = m.EnvRef
		default:
			item["value"] = m.Value
		}
		meta = append(meta, item)
	}
	scopes := make([]any, 0, len(c.Scopes))
	for _, s := range c.Scopes {
		scopes = append(scopes, s)
	}
	fields := map[string]any{
		"name":         c.Name,
		"namespace":    c.Namespace,
		"type":         c.Type,
		"version":      c.Version,
		"metadata":     meta,
		"scopes":       scopes,
		"secretStore":  c.SecretStore,
		"initTimeout":  durationString(c.InitTimeout),
		"ignoreErrors": c.IgnoreErrors,
		"source":       c.Source.String(),
	}
	return typedConfig("component/"+c.Name, ComponentType, fields)
}

func durationString(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

func documentConfig(name, typeURL string, d config.Document) (types.Resource, error) {
	var fields map[string]any
	if err := json.Unmarshal(d.JSON, &fields); err != nil {
		return nil, fmt.Errorf("translate: %s: %w", name, err)
	}
	fields["source"] = d.Source.String()
	return typedConfig(name, typeURL, fields)
}

func typedConfig(name, typeURL string, fields map[string]any) (types.Resource, error) {
	s, err := structpb.NewStruct(fields)
	if err != nil {
		return nil, fmt.Errorf("translate: %s: %w", name, err)
	}
	ts, err := toAny(&xdstypev3.TypedStruct{TypeUrl: typeURL, Value: s})
	if err != nil {
		return nil, err
	}
	return &corev3.TypedExtensionConfig{Name: name, TypedConfig: ts}, nil
}

// CertificateProvider is the certificate-provider instance a proxyless
// client's bootstrap must define (grpc-go's file_watcher over the SVID it
// got from the CA): the clusters' TLS takes its certificate and roots
// from it.
const CertificateProvider = "outrigger"

// upstreamTLS is how a proxyless client reaches a sidecar's mesh port:
// mutual TLS with its own SVID and the trust bundle, from the certificate
// provider.
func upstreamTLS() (*corev3.TransportSocket, error) {
	ctx := &tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{InstanceName: CertificateProvider, CertificateName: "default"},
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			CaCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{InstanceName: CertificateProvider, CertificateName: "default"},
		}},
	}}
	a, err := toAny(ctx)
	if err != nil {
		return nil, err
	}
	return &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a}}, nil
}

// ListenerName is the Listener a proxyless gRPC client resolves for
// xds:///<name>: the app-id in the default namespace, "<app-id>.<namespace>"
// otherwise (Dapr's form of a namespaced app-id).
func ListenerName(namespace, appID string) string {
	ns := nameresolution.NamespaceOrDefault(namespace)
	if ns == nameresolution.DefaultNamespace {
		return appID
	}
	return appID + "." + ns
}

// clusterBalancing is a cluster's lb_policy and outlier_detection for lb.
// Outlier detection off (a negative count) is no outlier_detection at all.
func clusterBalancing(lb balance.AppOptions) (clusterv3.Cluster_LbPolicy, *clusterv3.OutlierDetection) {
	policy := clusterv3.Cluster_ROUND_ROBIN
	switch lb.Policy {
	case balance.LeastRequest:
		policy = clusterv3.Cluster_LEAST_REQUEST
	case balance.RingHash:
		policy = clusterv3.Cluster_RING_HASH
	}
	o := lb.Outlier
	if o.ConsecutiveFailures < 0 {
		return policy, nil
	}
	o.Defaults()
	return policy, &clusterv3.OutlierDetection{
		// Envoy counts 5xx and locally originated failures together here,
		// as the sidecar's balancer does.
		Consecutive_5Xx:    wrapperspb.UInt32(uint32(o.ConsecutiveFailures)),
		BaseEjectionTime:   durationpb.New(o.BaseEjection),
		MaxEjectionTime:    durationpb.New(o.MaxEjection),
		MaxEjectionPercent: wrapperspb.UInt32(uint32(o.MaxEjectionPercent)),
	}
}

// ClusterBalancing reads back what clusterBalancing wrote: the app options
// a sidecar's balancer takes from a cluster.
func ClusterBalancing(c *clusterv3.Cluster) balance.AppOptions {
	var o balance.AppOptions
	switch c.GetLbPolicy() {
	case clusterv3.Cluster_LEAST_REQUEST:
		o.Policy = balance.LeastRequest
	case clusterv3.Cluster_RING_HASH:
		o.Policy = balance.RingHash
	default:
		o.Policy = balance.RoundRobin
	}
	od := c.GetOutlierDetection()
	if od == nil {
		o.Outlier.ConsecutiveFailures = -1
		return o
	}
	if v := od.GetConsecutive_5Xx(); v != nil {
		o.Outlier.ConsecutiveFailures = int(v.GetValue())
	}
	if d := od.GetBaseEjectionTime(); d != nil {
		o.Outlier.BaseEjection = d.AsDuration()
	}
	if d := od.GetMaxEjectionTime(); d != nil {
		o.Outlier.MaxEjection = d.AsDuration()
	}
	if v := od.GetMaxEjectionPercent(); v != nil {
		o.Outlier.MaxEjectionPercent = int(v.GetValue())
	}
	return o
}

// clustersOf makes one EDS cluster per app with its load assignment.
func clustersOf(instances []nameresolution.Instance, lb balance.AppOptions) (clusters, assignments []types.Resource, err error) {
	policy, outlier := clusterBalancing(lb)
	tlsSocket, err := upstreamTLS()
	if err != nil {
		return nil, nil, err
	}
	byCluster := map[string][]nameresolution.Instance{}
	for _, inst := range instances {
		name := ClusterName(inst.Namespace, inst.AppID)
		byCluster[name] = append(byCluster[name], inst)
	}
	names := make([]string, 0, len(byCluster))
	for n := range byCluster {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		insts := byCluster[name]
		sort.Slice(insts, func(i, j int) bool { return insts[i].Address() < insts[j].Address() })
		clusters = append(clusters, &clusterv3.Cluster{
			Name:                 name,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
			EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{
				EdsConfig: &corev3.ConfigSource{
					ResourceApiVersion:    corev3.ApiVersion_V3,
					ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
				},
			},
			ConnectTimeout:   durationpb.New(5 * time.Second),
			TransportSocket:  tlsSocket,
			LbPolicy:         policy,
			OutlierDetection: outlier,
		})
		lbs := make([]*endpointv3.LbEndpoint, 0, len(insts))
		for _, inst := range insts {
			lbs = append(lbs, &endpointv3.LbEndpoint{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
						Address:       inst.Host,
						PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(inst.Port)},
					}}},
				}},
				HealthStatus: corev3.HealthStatus_HEALTHY,
			})
		}
		assignments = append(assignments, &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			// One locality with an id and a weight: grpc-go refuses
			// localities without them.
			Endpoints: []*endpointv3.LocalityLbEndpoints{{
				Locality:            &corev3.Locality{Region: "outrigger", Zone: nameresolution.NamespaceOrDefault(insts[0].Namespace)},
				LoadBalancingWeight: wrapperspb.UInt32(1),
				LbEndpoints:         lbs,
			}},
		})
	}
	return clusters, assignments, nil
}

// FromExtensionConfigs turns the TypedExtensionConfigs a sidecar received
// back into resources. An unknown type URL or a malformed document is an
// error naming the resource (the sidecar NACKs it).
func FromExtensionConfigs(configs []*corev3.TypedExtensionConfig) (*config.Resources, error) {
	res := &config.Resources{}
	var errs []error
	for _, ec := range configs {
		var ts xdstypev3.TypedStruct
		if err := ec.GetTypedConfig().UnmarshalTo(&ts); err != nil {
			errs = append(errs, fmt.Errorf("%s: not a TypedStruct: %w", ec.GetName(), err))
			continue
		}
		b, err := ts.GetValue().MarshalJSON()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ec.GetName(), err))
			continue
		}
		switch ts.GetTypeUrl() {
		case ComponentType:
			c, err := componentFromJSON(b)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", ec.GetName(), err))
				continue
			}
			res.Components = append(res.Components, c)
		case ConfigurationType:
			cfg, err := config.ParseJSONConfiguration(b)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", ec.GetName(), err))
				continue
			}
			res.Configurations = append(res.Configurations, cfg)
		case ResiliencyType, SubscriptionType:
			d := config.Document{JSON: b}
			var head struct {
				Kind     string `json:"kind"`
				Metadata struct {
					Name      string `json:"name"`
					Namespace string `json:"namespace"`
				} `json:"metadata"`
				Scopes []string `json:"scopes"`
			}
			if err := json.Unmarshal(b, &head); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", ec.GetName(), err))
				continue
			}
			d.Kind, d.Name, d.Namespace, d.Scopes = head.Kind, head.Metadata.Name, head.Metadata.Namespace, head.Scopes
			if ts.GetTypeUrl() == ResiliencyType {
				res.Resiliencies = append(res.Resiliencies, d)
			} else {
				res.Subscriptions = append(res.Subscriptions, d)
			}
		default:
			errs = append(errs, fmt.Errorf("%s: unknown type %q", ec.GetName(), ts.GetTypeUrl()))
		}
	}
	return res, errors.Join(errs...)
}

// componentJSON is a Component as componentConfig writes it.
type componentJSON struct {
	Name         string   `json:"name"`
	Namespace    string   `json:"namespace"`
	Type         string   `json:"type"`
	Version      string   `json:"version"`
	Scopes       []string `json:"scopes"`
	SecretStore  string   `json:"secretStore"`
	InitTimeout  string   `json:"initTimeout"`
	IgnoreErrors bool     `json:"ignoreErrors"`
	Source       string   `json:"source"`
	Metadata     []struct {
		Name         string               `json:"name"`
		Value        *string              `json:"value"`
		EnvRef       string               `json:"envRef"`
		SecretKeyRef *config.SecretKeyRef `json:"secretKeyRef"`
	} `json:"metadata"`
}

func componentFromJSON(b []byte) (config.Component, error) {
	var j componentJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return config.Component{}, err
	}
	if j.Name == "" || j.Type == "" || j.Version == "" {
		return config.Component{}, errors.New("a component needs name, type and version")
	}
	c := config.Component{
		Name: j.Name, Namespace: j.Namespace, Type: j.Type, Version: j.Version, Scopes: j.Scopes,
		SecretStore: j.SecretStore, IgnoreErrors: j.IgnoreErrors, Source: config.Source{File: j.Source},
	}
	if j.InitTimeout != "" {
		d, err := time.ParseDuration(j.InitTimeout)
		if err != nil {
			return c, fmt.Errorf("initTimeout %q: %w", j.InitTimeout, err)
		}
		c.InitTimeout = d
	}
	for _, m := range j.Metadata {
		item := config.MetadataItem{Name: m.Name, EnvRef: m.EnvRef, SecretKeyRef: m.SecretKeyRef}
		if m.Value != nil {
			item.Value = *m.Value
		}
		c.Metadata = append(c.Metadata, item)
	}
	return c, nil
}

// toAny packs m with a deterministic encoding. anypb.New's encoding of a
// map (a Struct's fields, a route's typed_per_filter_config) changes from
// one call to the next, which would change the resource's hash on every
// rebuild and make the delta protocol resend every resource on every
// change.
func toAny(m proto.Message) (*anypb.Any, error) {
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		return nil, err
	}
	return a, nil
}
