// Package client is the sidecar's xDS client: one incremental (delta) ADS
// stream to the control plane over mutual TLS. It subscribes to the
// sidecar's extension configs (components and documents), to its routes,
// to the list of clusters (which apps exist), and, on demand, to the
// endpoints of each app the sidecar calls: the first call to an app-id subscribes to its
// ClusterLoadAssignment. Each response is applied; an ACK follows a change
// that applied, a NACK with the reason one that did not, and the sidecar
// keeps serving its last good configuration. When the control plane goes
// away the client reconnects with backoff while the sidecar serves on.
package client

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/nameresolution"
	"github.com/outrigger/outrigger/nameresolution/balance"
	"github.com/outrigger/outrigger/xds/translate"
)

// Options configure the client.
type Options struct {
	// Address is the control plane's host:port.
	Address string
	// Node is this sidecar's node id: its SPIFFE ID.
	Node string
	// TLS is the connection's TLS (the sidecar's certificate, the control
	// plane's identity checked). Required.
	TLS func() *tls.Config
	// Apply applies the sidecar's resources; an error NACKs them. Nil does
	// not subscribe to them (the sidecar reads its own folder).
	Apply func(*config.Resources) error
	// Applied, when set, learns of every ACK (version) and NACK (error) of
	// the resources Apply took.
	Applied func(version string, err error)
	// Routes, when set, subscribes to the sidecar's route configuration
	// (translate.SidecarAPIName) and is given it on every change; an error
	// NACKs it.
	Routes func(*routev3.RouteConfiguration) error
	// Endpoints subscribes to clusters and endpoints, for Watch.
	Endpoints bool
	// TrustBundle, when set, subscribes to the SDS trust bundle and is
	// given its anchors (PEM) on every change; an error NACKs them.
	TrustBundle func(pem []byte) error
	Logger      *slog.Logger
	// Metrics, when set, count the updates ACKed and NACKed.
	Metrics *Metrics
}

// Client is the xDS client; create it with New and Run it.
type Client struct {
	o Options

	mu        sync.Mutex
	clusters  map[string]bool               // cluster names the control plane has; nil until the first CDS answer
	balancing map[string]balance.AppOptions // cluster -> its lb_policy and outlier_detection
	endpoints map[string][]string           // cluster -> mesh addresses
	wanted    map[string]bool               // clusters subscribed on demand
	changed   chan struct{}                 // closed and replaced on any CDS/EDS change
	subscribe chan struct{}                 // a new name to subscribe (buffered 1)

	meshPort    atomic.Int64  // announced mesh port, carried in the node metadata
	nodeChanged chan struct{} // the node metadata changed (buffered 1)
}

// New makes a client.
func New(o Options) *Client {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Client{
		o:           o,
		endpoints:   map[string][]string{},
		wanted:      map[string]bool{},
		changed:     make(chan struct{}),
		subscribe:   make(chan struct{}, 1),
		nodeChanged: make(chan struct{}, 1),
	}
}

// Run keeps the ADS stream up until ctx is done. Ready (if not nil) is
// closed after the first response was applied or refused.
func (c *Client) Run(ctx context.Context, ready chan<- struct{}) error {
	backoff := 100 * time.Millisecond
	var once sync.Once
	onResponse := func() {
		once.Do(func() {
			if ready != nil {
				close(ready)
			}
		})
	}
	for ctx.Err() == nil {
		got, err := c.stream(ctx, onResponse)
		if ctx.Err() != nil {
			return nil
		}
		if got {
			backoff = 100 * time.Millisecond
		}
		c.o.Logger.Warn("xDS stream to the control plane ended; serving the last good configuration and reconnecting", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
	return nil
}

// typeState is what the client holds of one type: the resources it last
// accepted, by name.
type typeState struct {
	accepted map[string]*anypb.Any
}

// stream runs one incremental (delta) ADS stream; got says whether any
// response arrived. Each answer carries only what changed; the client
// applies the whole resulting set of its type, and keeps the set it last
// accepted when an answer is refused.
func (c *Client) stream(ctx context.Context, onResponse func()) (got bool, err error) {
	conn, err := grpc.NewClient(c.o.Address, grpc.WithTransportCredentials(credentials.NewTLS(c.o.TLS())))
	if err != nil {
		return false, err
	}
	defer conn.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ads, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(sctx)
	if err != nil {
		return false, err
	}
	node := c.node()
	states := map[string]*typeState{}
	subscribed := map[string]bool{} // EDS names asked for on this stream
	var firstType string            // a type this stream subscribed to
	subscribe := func(typeURL string, names []string) error {
		if states[typeURL] == nil {
			states[typeURL] = &typeState{accepted: map[string]*anypb.Any{}}
		}
		if firstType == "" {
			firstType = typeURL
		}
		return ads.Send(&discoverygrpc.DeltaDiscoveryRequest{Node: node, TypeUrl: typeURL, ResourceNamesSubscribe: names})
	}
	if c.o.Apply != nil {
		if err := subscribe(resourcev3.ExtensionConfigType, []string{"*"}); err != nil {
			return false, err
		}
	}
	if c.o.TrustBundle != nil {
		if err := subscribe(resourcev3.SecretType, []string{translate.TrustBundleName}); err != nil {
			return false, err
		}
	}
	if c.o.Routes != nil {
		if err := subscribe(resourcev3.RouteType, []string{translate.SidecarAPIName}); err != nil {
			return false, err
		}
	}
	subscribeEndpoints := func() error {
		var fresh []string
		for _, n := range c.wantedNames() {
			if !subscribed[n] {
				fresh = append(fresh, n)
				subscribed[n] = true
			}
		}
		if len(fresh) == 0 {
			return nil
		}
		return subscribe(resourcev3.EndpointType, fresh)
	}
	if c.o.Endpoints {
		if err := subscribe(resourcev3.ClusterType, []string{"*"}); err != nil {
			return false, err
		}
		if err := subscribeEndpoints(); err != nil {
			return false, err
		}
	}

	// The reading goroutine hands each response to the loop below, which
	// also watches ctx itself: a stop that comes while a response waits for
	// the loop ends the reader, and nothing else would tell the loop.
	responses := make(chan *discoverygrpc.DeltaDiscoveryResponse)
	recvErr := make(chan error, 1)
	go func() {
		for {
			r, err := ads.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case responses <- r:
			case <-sctx.Done():
				return
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return got, nil
		case err := <-recvErr:
			if status.Code(err) == codes.Canceled && ctx.Err() != nil {
				return got, nil
			}
			return got, err
		case <-c.subscribe:
			if err := subscribeEndpoints(); err != nil {
				return got, err
			}
		case <-c.nodeChanged:
			// The control plane reads the node of every request: a request
			// that changes no subscription carries the new metadata.
			node = c.node()
			if firstType != "" {
				if err := ads.Send(&discoverygrpc.DeltaDiscoveryRequest{Node: node, TypeUrl: firstType}); err != nil {
					return got, err
				}
			}
		case resp := <-responses:
			got = true
			typeURL := resp.GetTypeUrl()
			c.o.Logger.Debug("xDS response", "type_url", typeURL, "version", resp.GetSystemVersionInfo(), "changed", len(resp.GetResources()), "removed", len(resp.GetRemovedResources()))
			st := states[typeURL]
			if st == nil {
				st = &typeState{accepted: map[string]*anypb.Any{}}
				states[typeURL] = st
			}
			next := make(map[string]*anypb.Any, len(st.accepted)+len(resp.GetResources()))
			for k, v := range st.accepted {
				next[k] = v
			}
			for _, r := range resp.GetResources() {
				next[r.GetName()] = r.GetResource()
			}
			for _, name := range resp.GetRemovedResources() {
				delete(next, name)
			}
			names := make([]string, 0, len(next))
			for k := range next {
				names = append(names, k)
			}
			sort.Strings(names)
			full := &discoverygrpc.DiscoveryResponse{TypeUrl: typeURL, VersionInfo: resp.GetSystemVersionInfo()}
			for _, k := range names {
				full.Resources = append(full.Resources, next[k])
			}
			applyErr := c.apply(full)
			c.o.Metrics.update(typeURL, applyErr == nil)
			ack := &discoverygrpc.DeltaDiscoveryRequest{Node: node, TypeUrl: typeURL, ResponseNonce: resp.GetNonce()}
			if applyErr == nil {
				st.accepted = next
			} else {
				c.o.Logger.Error("configuration from the control plane refused (NACK); keeping the last good one", "type_url", typeURL, "err", applyErr)
				ack.ErrorDetail = &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: applyErr.Error()}
			}
			if typeURL == resourcev3.ExtensionConfigType && c.o.Applied != nil {
				c.o.Applied(resp.GetSystemVersionInfo(), applyErr)
			}
			// Ready once the components arrived, or, without them, at the
			// first answer of any kind.
			if typeURL == resourcev3.ExtensionConfigType || c.o.Apply == nil {
				onResponse()
			}
			if err := ads.Send(ack); err != nil {
				return got, err
			}
		}
	}
}

func (c *Client) apply(resp *discoverygrpc.DiscoveryResponse) error {
	switch resp.GetTypeUrl() {
	case resourcev3.ExtensionConfigType:
		configs := make([]*corev3.TypedExtensionConfig, 0, len(resp.GetResources()))
		for _, a := range resp.GetResources() {
			var ec corev3.TypedExtensionConfig
			if err := a.UnmarshalTo(&ec); err != nil {
				return fmt.Errorf("a resource is not a TypedExtensionConfig: %w", err)
			}
			configs = append(configs, &ec)
		}
		res, err := translate.FromExtensionConfigs(configs)
		if err != nil {
			return err
		}
		return c.o.Apply(res)
	case resourcev3.SecretType:
		for _, a := range resp.GetResources() {
			var sec tlsv3.Secret
			if err := a.UnmarshalTo(&sec); err != nil {
				return fmt.Errorf("a resource is not a Secret: %w", err)
			}
			if sec.GetName() != translate.TrustBundleName || c.o.TrustBundle == nil {
				continue
			}
			return c.o.TrustBundle(sec.GetValidationContext().GetTrustedCa().GetInlineBytes())
		}
		return nil
	case resourcev3.RouteType:
		for _, a := range resp.GetResources() {
			var rc routev3.RouteConfiguration
			if err := a.UnmarshalTo(&rc); err != nil {
				return fmt.Errorf("a resource is not a RouteConfiguration: %w", err)
			}
			if rc.GetName() != translate.SidecarAPIName || c.o.Routes == nil {
				continue
			}
			return c.o.Routes(&rc)
		}
		return nil
	case resourcev3.ClusterType:
		names := map[string]bool{}
		balancing := map[string]balance.AppOptions{}
		for _, a := range resp.GetResources() {
			var cl clusterv3.Cluster
			if err := a.UnmarshalTo(&cl); err != nil {
				return fmt.Errorf("a resource is not a Cluster: %w", err)
			}
			names[cl.GetName()] = true
			balancing[cl.GetName()] = translate.ClusterBalancing(&cl)
		}
		c.mu.Lock()
		c.clusters = names
		c.balancing = balancing
		for name := range c.endpoints {
			if !names[name] {
				delete(c.endpoints, name)
			}
		}
		c.notifyLocked()
		c.mu.Unlock()
		return nil
	case resourcev3.EndpointType:
		got := map[string][]string{}
		for _, a := range resp.GetResources() {
			var cla endpointv3.ClusterLoadAssignment
			if err := a.UnmarshalTo(&cla); err != nil {
				return fmt.Errorf("a resource is not a ClusterLoadAssignment: %w", err)
			}
			var addrs []string
			for _, loc := range cla.GetEndpoints() {
				for _, lb := range loc.GetLbEndpoints() {
					sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
					if sa == nil || lb.GetHealthStatus() == corev3.HealthStatus_UNHEALTHY {
						continue
					}
					host := sa.GetAddress()
					if host == "" {
						host = "127.0.0.1"
					}
					addrs = append(addrs, net.JoinHostPort(host, strconv.FormatUint(uint64(sa.GetPortValue()), 10)))
				}
			}
			sort.Strings(addrs)
			got[cla.GetClusterName()] = addrs
		}
		c.mu.Lock()
		// A cluster exists exactly when its app has sidecars (translate makes
		// both from the same endpoints), so a name absent from this answer is
		// one not answered yet; CDS removes the apps that are gone.
		for name, addrs := range got {
			c.endpoints[name] = addrs
		}
		c.notifyLocked()
		c.mu.Unlock()
		return nil
	}
	return fmt.Errorf("unexpected type %q", resp.GetTypeUrl())
}

// node is this sidecar's node: its SPIFFE ID and, once announced, its
// mesh port.
func (c *Client) node() *corev3.Node {
	n := &corev3.Node{Id: c.o.Node, UserAgentName: "outrigger"}
	if port := c.meshPort.Load(); port > 0 {
		n.Metadata = &structpb.Struct{Fields: map[string]*structpb.Value{
			meshPortKey: structpb.NewNumberValue(float64(port)),
		}}
	}
	return n
}

// meshPortKey is xds/server's MeshPortKey (the client does not import the server).
const meshPortKey = "outrigger.meshPort"

// Announce makes this sidecar findable through the control plane: its
// mesh port travels in the node metadata of its xDS stream, and the control
// plane registers it at the stream's address under its proven identity,
// until the stream ends. It blocks until ctx is done (proxy.Announcer).
func (c *Client) Announce(ctx context.Context, _, _ string, meshPort int) error {
	c.meshPort.Store(int64(meshPort))
	select {
	case c.nodeChanged <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return nil
}

func (c *Client) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *Client) wantedNames() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := make([]string, 0, len(c.wanted))
	for n := range c.wanted {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// AppOptions is the load balancing policy and outlier detection the
// control plane gives appID's cluster, for the balancer (balance.Options'
// ForApp).
func (c *Client) AppOptions(appID, namespace string) (balance.AppOptions, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	o, ok := c.balancing[translate.ClusterName(namespace, appID)]
	return o, ok
}

// Watch reports the endpoints of appID in namespace from EDS, once the
// control plane sent them (an app whose cluster the control plane does not
// list has none) and after every change, until ctx is done: the client as a
// nameresolution.Watcher, for a balancer.
func (c *Client) Watch(ctx context.Context, appID, namespace string, update func([]nameresolution.Instance)) error {
	ns := nameresolution.NamespaceOrDefault(namespace)
	name := translate.ClusterName(namespace, appID)
	for {
		c.mu.Lock()
		addrs := c.endpoints[name]
		listed := c.clusters != nil
		known := !listed || c.clusters[name]
		subscribed := c.wanted[name]
		if !subscribed && known {
			c.wanted[name] = true
		}
		changed := c.changed
		c.mu.Unlock()
		if !subscribed && known {
			select {
			case c.subscribe <- struct{}{}:
			default:
			}
		}
		if len(addrs) > 0 || (listed && !known) {
			insts := make([]nameresolution.Instance, 0, len(addrs))
			for _, a := range addrs {
				host, port, err := net.SplitHostPort(a)
				if err != nil {
					continue
				}
				p, err := strconv.Atoi(port)
				if err != nil {
					continue
				}
				insts = append(insts, nameresolution.Instance{AppID: appID, Namespace: ns, Host: host, Port: p})
			}
			update(insts)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil
		}
	}
}
