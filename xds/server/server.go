// Package server is the control plane's xDS server: it serves every
// sidecar its own snapshot (package translate) over ADS, state of the world
// and incremental, with envoyproxy/go-control-plane. A sidecar proves who it
// is with its SPIFFE certificate and may ask only for its own node; its
// snapshot follows the resource folders and the registry of running
// sidecars, rebuilt and pushed within a second of a change. NACKs are
// logged and counted.
package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretgrpc "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/mtls"
	"github.com/outrigger/outrigger/nameresolution"
	"github.com/outrigger/outrigger/nameresolution/balance"
	"github.com/outrigger/outrigger/xds/registry"
	"github.com/outrigger/outrigger/xds/translate"
)

// Options configure a Server.
type Options struct {
	// ResourcesPaths are the folders of Dapr resource documents served.
	ResourcesPaths []string
	// Registry is the registry of running sidecars: the endpoints served.
	Registry *registry.Registry
	// TrustAnchors returns the current trust bundle (PEM).
	TrustAnchors func() []byte
	// Verify checks a client's TLS state and returns its proven identity.
	Verify func(tls.ConnectionState) (mtls.Identity, error)
	// Catalog, when set, is a second source of endpoints (the Consul
	// catalog): it calls update with every instance it knows whenever they
	// change, until ctx is done. Its instances are served beside the
	// registry's; one address in both is served once.
	Catalog func(ctx context.Context, update func([]nameresolution.Instance)) error
	// Balance is the load balancing and outlier detection of every app's
	// cluster.
	Balance balance.AppOptions
	// Registerer receives the server's metrics; nil leaves them unregistered.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Server is the xDS server. Create it with New, register it on a gRPC
// server, and Run it.
type Server struct {
	opts  Options
	cache cachev3.SnapshotCache
	xds   serverv3.Server
	log   *slog.Logger

	version   atomic.Uint64
	kick      chan struct{} // wakes the builder
	ready     chan struct{} // closed once the resources and the registry were read
	readyOnce sync.Once

	mu        sync.Mutex
	resources *config.Resources
	endpoints []nameresolution.Instance // registered and catalog, merged
	// registered and catalog are the two sources' latest instances.
	registered, catalog []nameresolution.Instance
	nodes               map[string]translate.Node // node id -> node, every node seen
	dirty               map[string]bool           // nodes to rebuild
	dirtyAll            bool

	inputsChanged bool                // resources or endpoints changed since prepared
	prepared      *translate.Prepared // the inputs translated, for every node
	anchors       []byte              // the bundle prepared holds
	streams       map[int64]*stream   // open streams

	pushes prometheus.Counter
	nacks  *prometheus.CounterVec
	errs   *prometheus.CounterVec
	// typePushes and typeNACKs count the responses sent and refused, by
	// type URL.
	typePushes, typeNACKs *prometheus.CounterVec
}

// xdsRegistrationTTL is the lease of a sidecar registered over xDS, renewed
// every xdsRenewEvery while its stream is up; the registration is removed
// when the stream ends, so the lease only bounds a stream that vanished
// without closing.
const (
	xdsRegistrationTTL = 90 * time.Second
	xdsRenewEvery      = 30 * time.Second
)

// nackPause is how long a stream waits after a NACK before the cache may
// answer it again.
const nackPause = time.Second

// ErrNotYourNode is the answer to a sidecar asking for another's node.
var ErrNotYourNode = errors.New("a sidecar may ask only for its own node (its SPIFFE ID)")

// New makes a server; it reads nothing until Run.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{
		opts: opts,
		log:  opts.Logger,
		// Not ADS mode: in it go-control-plane answers an EDS request only
		// when it names every cluster of the snapshot, and a sidecar asks
		// for the endpoints of the apps it calls, on demand.
		cache:     cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil),
		resources: &config.Resources{},
		ready:     make(chan struct{}),
		kick:      make(chan struct{}, 1),
		dirty:     map[string]bool{},
		nodes:     map[string]translate.Node{},
		streams:   map[int64]*stream{},
		pushes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "outrigger", Subsystem: "xds", Name: "snapshots_total", Help: "Snapshots set for sidecars.",
		}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "outrigger", Subsystem: "xds", Name: "nacks_total", Help: "Configuration refused by sidecars, by type.",
		}, []string{"type_url"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "outrigger", Subsystem: "xds", Name: "resource_errors_total", Help: "Resource files rejected (their last good version stays served).",
		}, []string{"reason"}),
	}
	s.typePushes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "outrigger", Subsystem: "xds_server", Name: "pushes_total", Help: "Responses sent to sidecars, by type.",
	}, []string{"type_url"})
	s.typeNACKs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "outrigger", Subsystem: "xds_server", Name: "nacks_total", Help: "Responses sidecars refused (NACK), by type.",
	}, []string{"type_url"})
	streams := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "outrigger", Subsystem: "xds_server", Name: "connected_streams", Help: "xDS streams open now.",
	}, func() float64 {
		s.mu.Lock()
		defer s.mu.Unlock()
		return float64(len(s.streams))
	})
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(s.pushes, s.nacks, s.errs, s.typePushes, s.typeNACKs, streams)
	}
	cb := serverv3.CallbackFuncs{
		StreamOpenFunc: func(ctx context.Context, id int64, _ string) error {
			return s.streamOpen(ctx, id, false)
		},
		DeltaStreamOpenFunc: func(ctx context.Context, id int64, _ string) error {
			return s.streamOpen(ctx, id, true)
		},
		StreamClosedFunc:      func(id int64, _ *corev3.Node) { s.streamClosed(id) },
		DeltaStreamClosedFunc: func(id int64, _ *corev3.Node) { s.streamClosed(id) },
		StreamRequestFunc: func(id int64, req *discoveryRequest) error {
			return s.request(id, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), req.GetErrorDetail())
		},
		StreamDeltaRequestFunc: func(id int64, req *deltaRequest) error {
			return s.request(id, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), req.GetErrorDetail())
		},
		StreamResponseFunc: func(_ context.Context, _ int64, _ *discoveryRequest, resp *discoverygrpc.DiscoveryResponse) {
			s.typePushes.WithLabelValues(typeLabel(resp.GetTypeUrl())).Inc()
		},
		StreamDeltaResponseFunc: func(_ int64, _ *deltaRequest, resp *discoverygrpc.DeltaDiscoveryResponse) {
			s.typePushes.WithLabelValues(typeLabel(resp.GetTypeUrl())).Inc()
		},
	}
	s.xds = serverv3.NewServer(context.Background(), s.cache, cb)
	return s
}

// Register adds ADS and SDS to g.
func (s *Server) Register(g *grpc.Server) {
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(g, s.xds)
	secretgrpc.RegisterSecretDiscoveryServiceServer(g, s.xds)
}

// stream is what the server knows of one open xDS stream.
type stream struct {
	who        mtls.Identity      // proven by the client's certificate
	node       string             // who as a node id
	host       string             // the client's IP address
	registered *registry.Instance // the sidecar it announced, if any
	delta      bool
	opened     time.Time
	acks       int
	nacks      int
	refused    map[string]NACK // by type URL, until the type is next ACKed
}

// NACK is a configuration a sidecar refused.
type NACK struct {
	TypeURL string    `json:"typeUrl"`
	Reason  string    `json:"reason"`
	At      time.Time `json:"at"`
}

// StreamStatus is what the control plane knows of one connected sidecar.
type StreamStatus struct {
	Node      string    `json:"node"`
	Address   string    `json:"address"`
	Delta     bool      `json:"delta"`
	Connected time.Time `json:"connectedSince"`
	ACKs      int       `json:"acks"`
	NACKs     int       `json:"nacks"`
	// Refused are the sidecar's current refusals: a type it NACKed and
	// has not ACKed since (it serves its last good version of it).
	Refused []NACK `json:"refused"`
	// Registered is the mesh address registered for it over xDS, if any.
	Registered string `json:"registered,omitempty"`
}

// Status lists the open streams, by node.
func (s *Server) Status() []StreamStatus {
	s.mu.Lock()
	out := make([]StreamStatus, 0, len(s.streams))
	for _, st := range s.streams {
		ss := StreamStatus{Node: st.node, Address: st.host, Delta: st.delta, Connected: st.opened, ACKs: st.acks, NACKs: st.nacks, Refused: []NACK{}}
		for _, n := range st.refused {
			ss.Refused = append(ss.Refused, n)
		}
		sort.Slice(ss.Refused, func(i, j int) bool { return ss.Refused[i].TypeURL < ss.Refused[j].TypeURL })
		if st.registered != nil {
			ss.Registered = net.JoinHostPort(st.registered.Host, strconv.Itoa(st.registered.Port))
		}
		out = append(out, ss)
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Node != out[j].Node {
			return out[i].Node < out[j].Node
		}
		return out[i].Connected.Before(out[j].Connected)
	})
	return out
}

// StatusPath is where the control plane serves StatusHandler.
const StatusPath = "/xds/status"

// StatusHandler serves Status as JSON: the control plane's view of every
// connected sidecar and of what it refused.
func (s *Server) StatusHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			http.Error(w, "GET only", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"streams": s.Status()})
	})
}

// streamOpen records the caller's proven identity for the stream.
func (s *Server) streamOpen(ctx context.Context, id int64, delta bool) error {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return errors.New("no peer")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || s.opts.Verify == nil {
		return errors.New("xDS needs mutual TLS with the sidecar's certificate")
	}
	who, err := s.opts.Verify(ti.State)
	if err != nil {
		s.log.Warn("xDS stream refused: client certificate", "from", p.Addr.String(), "err", err)
		return fmt.Errorf("client certificate: %w", err)
	}
	// Served through net/http, the peer's address is a string.
	host, _, _ := net.SplitHostPort(p.Addr.String())
	s.mu.Lock()
	s.streams[id] = &stream{who: who, node: who.String(), host: host, delta: delta, opened: time.Now(), refused: map[string]NACK{}}
	s.mu.Unlock()
	return nil
}

func (s *Server) streamClosed(id int64) {
	s.mu.Lock()
	st := s.streams[id]
	delete(s.streams, id)
	s.mu.Unlock()
	if st != nil && st.registered != nil && s.opts.Registry != nil {
		s.opts.Registry.Deregister(st.registered.ID)
	}
}

// MeshPortKey is the node metadata field in which a sidecar announces its
// mesh port over xDS. The control plane registers it at the address the
// stream comes from, under the identity its certificate proves: no
// unauthenticated registration, and it ends with the stream.
const MeshPortKey = "outrigger.meshPort"

// announce registers the sidecar of a stream once its node names a mesh port.
func (s *Server) announce(id int64, st *stream, node *corev3.Node) {
	if s.opts.Registry == nil {
		return
	}
	port := int(node.GetMetadata().GetFields()[MeshPortKey].GetNumberValue())
	if port <= 0 || port > 65535 || st.host == "" {
		return
	}
	s.mu.Lock()
	done := st.registered != nil
	s.mu.Unlock()
	if done {
		return
	}
	inst, _, err := s.opts.Registry.Register(registry.Instance{
		ID: fmt.Sprintf("xds-%d-%s", id, st.who.AppID), AppID: st.who.AppID, Namespace: st.who.Namespace, Host: st.host, Port: port,
	}, xdsRegistrationTTL)
	if err != nil {
		s.log.Warn("xDS: registering a sidecar failed", "node", st.node, "err", err)
		return
	}
	s.mu.Lock()
	st.registered = &inst
	s.mu.Unlock()
}

// renewRegistrations keeps the leases of the sidecars registered over xDS
// alive while their streams are up.
func (s *Server) renewRegistrations(ctx context.Context) {
	t := time.NewTicker(xdsRenewEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		var insts []registry.Instance
		for _, st := range s.streams {
			if st.registered != nil {
				insts = append(insts, *st.registered)
			}
		}
		s.mu.Unlock()
		for _, inst := range insts {
			if _, _, err := s.opts.Registry.Register(inst, xdsRegistrationTTL); err != nil {
				s.log.Warn("xDS: renewing a registration failed", "app_id", inst.AppID, "err", err)
			}
		}
	}
}

// request checks the node of a request and builds its first snapshot.
func (s *Server) request(id int64, node *corev3.Node, typeURL, nonce string, nack interface{ GetMessage() string }) error {
	s.mu.Lock()
	st := s.streams[id]
	s.mu.Unlock()
	// A client may send its node on the first request only (Envoy's
	// set_node_on_first_message_only); later ones then carry none.
	if st == nil || (node.GetId() != "" && node.GetId() != st.node) {
		proven := ""
		if st != nil {
			proven = st.node
		}
		s.log.Warn("xDS request refused", "node", node.GetId(), "proven", proven)
		return ErrNotYourNode
	}
	proven := st.node
	s.announce(id, st, node)
	msg := nack.GetMessage()
	s.mu.Lock()
	switch {
	case msg != "":
		st.nacks++
		st.refused[typeURL] = NACK{TypeURL: typeURL, Reason: msg, At: time.Now()}
	case nonce != "":
		st.acks++
		delete(st.refused, typeURL)
	}
	s.mu.Unlock()
	if msg != "" {
		s.nacks.WithLabelValues(typeLabel(typeURL)).Inc()
		s.typeNACKs.WithLabelValues(typeLabel(typeURL)).Inc()
		s.log.Warn("a sidecar refused its configuration (NACK)", "node", proven, "type_url", typeURL, "reason", msg)
		// The cache answers a NACK (which carries the last version the
		// client accepted) with the same snapshot at once; pausing this
		// stream bounds that loop to one refusal a second.
		time.Sleep(nackPause)
	}
	n := translate.Node{AppID: st.who.AppID, Namespace: st.who.Namespace}
	s.mu.Lock()
	_, known := s.nodes[proven]
	s.nodes[proven] = n
	s.mu.Unlock()
	if !known {
		// The builder sets its first snapshot; the cache answers this
		// request then. Callbacks never set snapshots themselves: setting
		// one can wait for a stream to take a response, and that stream may
		// be the one running this callback.
		s.markDirty(proven)
	}
	return nil
}

// markDirty asks the builder to rebuild node ("" for every node).
func (s *Server) markDirty(node string) {
	s.mu.Lock()
	if node == "" {
		s.dirtyAll = true
	} else {
		s.dirty[node] = true
	}
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// build is the only goroutine that sets snapshots, so they are set in the
// order they were built. It starts once the folders and the registry were
// first read, so an early node does not get an empty snapshot.
func (s *Server) build(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		}
		s.mu.Lock()
		nodes := map[string]translate.Node{}
		for id, n := range s.nodes {
			if s.dirtyAll || s.dirty[id] {
				nodes[id] = n
			}
		}
		s.dirtyAll = false
		s.dirty = map[string]bool{}
		s.mu.Unlock()
		p := s.prepare()
		if p == nil {
			continue
		}
		for id, n := range nodes {
			s.setSnapshot(id, n, p)
		}
	}
}

// setSnapshot builds and sets one node's snapshot; only build calls it.
func (s *Server) setSnapshot(nodeID string, n translate.Node, p *translate.Prepared) {
	version := strconv.FormatUint(s.version.Add(1), 10)
	snap, err := p.Snapshot(n, version)
	if err != nil {
		s.errs.WithLabelValues("translate").Inc()
		s.log.Error("xDS snapshot not built; the node keeps its last one", "node", nodeID, "err", err)
		return
	}
	if err := s.cache.SetSnapshot(context.Background(), nodeID, snap); err != nil {
		s.log.Error("xDS snapshot not set", "node", nodeID, "err", err)
		return
	}
	s.pushes.Inc()
}

// prepare translates the inputs once for every node's snapshot; it is
// redone only when the resources, the endpoints or the trust bundle changed.
func (s *Server) prepare() *translate.Prepared {
	var anchors []byte
	if s.opts.TrustAnchors != nil {
		anchors = s.opts.TrustAnchors()
	}
	s.mu.Lock()
	stale := s.inputsChanged || s.prepared == nil || !bytes.Equal(anchors, s.anchors)
	in := translate.Input{Resources: s.resources, Endpoints: s.endpoints, TrustAnchorsPEM: anchors, Balance: s.opts.Balance}
	s.inputsChanged = false
	prev := s.prepared
	s.mu.Unlock()
	if !stale {
		return prev
	}
	p, err := translate.Prepare(in)
	if err != nil {
		s.errs.WithLabelValues("translate").Inc()
		s.log.Error("xDS resources not translated; sidecars keep their last snapshot", "err", err)
		return prev
	}
	s.mu.Lock()
	s.prepared, s.anchors = p, anchors
	s.mu.Unlock()
	return p
}

// pushAll has every known node's snapshot rebuilt.
func (s *Server) pushAll() { s.markDirty("") }

// Run reads the resource folders and the registry, and pushes every change
// until ctx is done.
func (s *Server) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	if len(s.opts.ResourcesPaths) > 0 {
		w, res, err := config.NewResourceWatcher(s.opts.ResourcesPaths)
		if w == nil {
			return err
		}
		if err != nil {
			s.errs.WithLabelValues("resources").Inc()
			s.log.Error("resources rejected", "err", err)
		}
		s.mu.Lock()
		s.resources = res
		s.mu.Unlock()
		wg.Go(func() {
			_ = w.Run(ctx, func(res *config.Resources, err error) {
				if err != nil {
					s.errs.WithLabelValues("resources").Inc()
					s.log.Error("resources rejected; their last good version stays served", "err", err)
				}
				if res == nil {
					return
				}
				s.mu.Lock()
				s.resources = res
				s.inputsChanged = true
				s.mu.Unlock()
				s.pushAll()
			})
		})
	}
	markReady := func() { s.readyOnce.Do(func() { close(s.ready) }) }
	if s.opts.Registry == nil {
		markReady()
	} else {
		wg.Go(func() { s.renewRegistrations(ctx) })
		wg.Go(func() {
			epoch, index := "", uint64(0)
			for ctx.Err() == nil {
				snap := s.opts.Registry.Wait(ctx, epoch, index)
				if ctx.Err() != nil {
					return
				}
				epoch, index = snap.Epoch, snap.Index
				eps := make([]nameresolution.Instance, 0, len(snap.Instances))
				for _, in := range snap.Instances {
					eps = append(eps, nameresolution.Instance{AppID: in.AppID, Namespace: in.Namespace, Host: in.Host, Port: in.Port})
				}
				s.mu.Lock()
				s.registered = eps
				s.mergeEndpointsLocked()
				s.mu.Unlock()
				markReady()
				s.pushAll()
			}
		})
	}
	if s.opts.Catalog != nil {
		wg.Go(func() {
			err := s.opts.Catalog(ctx, func(insts []nameresolution.Instance) {
				s.mu.Lock()
				s.catalog = insts
				s.mergeEndpointsLocked()
				s.mu.Unlock()
				s.pushAll()
			})
			if err != nil && ctx.Err() == nil {
				s.log.Error("the catalog of endpoints stopped", "err", err)
			}
		})
	}
	wg.Go(func() {
		select {
		case <-s.ready:
		case <-ctx.Done():
			return
		}
		s.markDirty("")
		s.build(ctx)
	})
	<-ctx.Done()
	return nil
}

// mergeEndpointsLocked serves the registry's instances and the catalog's,
// each address once.
func (s *Server) mergeEndpointsLocked() {
	seen := make(map[string]bool, len(s.registered)+len(s.catalog))
	eps := make([]nameresolution.Instance, 0, len(s.registered)+len(s.catalog))
	for _, src := range [][]nameresolution.Instance{s.registered, s.catalog} {
		for _, in := range src {
			k := nameresolution.NamespaceOrDefault(in.Namespace) + "/" + in.AppID + "/" + in.Address()
			if seen[k] {
				continue
			}
			seen[k] = true
			eps = append(eps, in)
		}
	}
	s.endpoints = eps
	s.inputsChanged = true
}

type (
	discoveryRequest = discoverygrpc.DiscoveryRequest
	deltaRequest     = discoverygrpc.DeltaDiscoveryRequest
)

// typeLabel is typeURL when it is one of the xDS types, else "_other": a
// type URL comes from the client, so it labels a series only from a known
// set.
func typeLabel(typeURL string) string {
	switch typeURL {
	case resourcev3.ExtensionConfigType, resourcev3.SecretType, resourcev3.RouteType, resourcev3.ClusterType,
		resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RuntimeType, resourcev3.ScopedRouteType,
		resourcev3.VirtualHostType:
		return typeURL
	}
	return "_other"
}
