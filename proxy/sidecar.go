// Package proxy is the sidecar's data path: the Dapr HTTP and gRPC API
// listeners, service invocation towards other sidecars over a multiplexed
// HTTP/2 mesh, the mesh listener that delivers calls to the local app, the
// app channel (HTTP/1.1, h2c or gRPC) with its concurrency limit and health
// checks, and gRPC proxying. Bodies stream end to end; nothing is buffered
// whole unless the gRPC API's message shape requires it.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/http/pprof"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	"github.com/outrigger/outrigger/proxy/rawio"
	"github.com/outrigger/outrigger/resiliency"
)

// Version is reported by the metadata API as the runtime version.
var Version = "dev"

// Ports are the ports a running sidecar listens on.
type Ports struct {
	HTTP     int
	GRPC     int
	Internal int
	Metrics  int
	Proxy    int // the explicit proxy's; 0 when it is off
	// Transparent is the transparent listener's (in the app's network
	// namespace when it has one); 0 when it is off.
	Transparent int
}

// Sidecar is one running sidecar. Create it with New and start it with Run.
type Sidecar struct {
	cfg Config
	log *slog.Logger

	app   *appChannel // nil without an app port
	peers *peers
	lb    Balancer
	// policies are the apps' retry policies and circuit breakers.
	policies *resiliency.Policies[peerKey]
	peerRP   atomic.Pointer[httputil.ReverseProxy]
	// Interception (intercept.go): the connections taken over, the server
	// of their calls, the explicit proxy, and what it knows of hosts.
	intercepted     *connQueue
	interceptServer *http.Server
	proxyServer     *http.Server
	targets         sync.Map // host -> targetEntry
	targetCount     atomic.Int64
	passOnce        sync.Once
	passRP          *httputil.ReverseProxy
	// Transparent interception (transparent.go): the app's calls to the
	// sidecar's own API that arrive there, and the virtual addresses.
	ownAPI, ownGRPC *connQueue
	virtual         *virtualHosts
	// life ends when Run returns.
	life    context.Context
	endLife context.CancelFunc
	builtIn atomic.Pointer[builtInRetry]

	apiServer  *http.Server
	meshServer *http.Server
	leanMesh   *leanH2   // the mesh's server when Config.MeshServer is MeshServerLean
	api        apiServer // apiServer, or leanH1 in front of it (Config.APIServer)
	metrics    *http.Server
	grpcServer *grpc.Server

	ready    chan struct{}
	ports    Ports
	outbound atomic.Bool

	shutdownOnce sync.Once
	shutdownCh   chan struct{}

	metaMu   sync.RWMutex
	extended map[string]string

	stats *stats
	dapr  *daprStats // nil with metrics off
	// tracer starts spans; nil with tracing off.
	tracer trace.Tracer
}

// New checks cfg and builds a sidecar; nothing listens until Run.
func New(cfg Config) (*Sidecar, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Sidecar{
		cfg:        cfg,
		log:        cfg.Logger,
		ready:      make(chan struct{}),
		shutdownCh: make(chan struct{}),
		extended:   map[string]string{"daprRuntimeVersion": Version},
		peers:      newPeers(cfg.MaxBodySize, cfg.MeshTLS),
		lb:         balancerOf(cfg.Resolver),
		tracer:     cfg.Tracer,
	}
	reg := prometheus.NewRegistry()
	s.stats = newStats(reg, cfg.AppID)
	if !cfg.MetricsDisabled {
		s.dapr = newDaprStats(reg, cfg.AppID)
	}
	s.policies = s.newPolicies()
	for _, c := range cfg.Collectors {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("proxy: metrics: %w", err)
		}
	}
	if cfg.AppPort > 0 {
		app, err := newAppChannel(&s.cfg, s.log)
		if err != nil {
			return nil, err
		}
		s.app = app
	}
	s.grpcServer = s.newGRPCServer()
	s.life, s.endLife = context.WithCancel(context.Background())
	s.intercepted = newConnQueue()
	s.interceptServer = s.newInterceptServer()
	if cfg.ExplicitProxy {
		s.proxyServer = s.newProxyServer()
	}
	if cfg.Transparent {
		s.ownAPI, s.ownGRPC = newConnQueue(), newConnQueue()
		s.virtual = &virtualHosts{path: cfg.VirtualHosts}
	}
	s.apiServer = &http.Server{
		Handler:           http.HandlerFunc(s.serveAPI),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       5 * time.Minute,
		Protocols:         h1AndH2C(),
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: 1000},
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	if cfg.ReadBufferSize > 0 {
		s.apiServer.MaxHeaderBytes = int(cfg.ReadBufferSize)
	}
	s.api = s.apiServer
	if cfg.APIServer != APIServerNetHTTP {
		s.api = newLeanH1(s.apiServer.Handler, s.apiServer, s.log)
	}
	meshProtocols := h1AndH2C()
	if cfg.MeshTLS != nil {
		meshProtocols = new(http.Protocols)
		meshProtocols.SetHTTP2(true)
	}
	s.meshServer = &http.Server{
		Handler:           http.HandlerFunc(s.serveMesh),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       10 * time.Minute,
		Protocols:         meshProtocols,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams:          1000,
			MaxReceiveBufferPerConnection: 8 << 20,
			MaxReceiveBufferPerStream:     1 << 20,
		},
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	if cfg.MeshServer != MeshServerNetHTTP {
		s.leanMesh = newLeanH2(http.HandlerFunc(s.serveMesh), s.meshServer, s.log)
	}
	if !cfg.MetricsDisabled {
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		s.metrics = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	}
	return s, nil
}

func h1AndH2C() *http.Protocols {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return &p
}

// apiServer serves the HTTP API on a listener (*http.Server or leanH1).
type apiServer interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
}

// Ready is closed once every listener is up (Ports is then valid).
func (s *Sidecar) Ready() <-chan struct{} { return s.ready }

// Ports returns the bound ports; valid after Ready is closed.
func (s *Sidecar) Ports() Ports { return s.ports }

// apiServerName is the HTTP API port's server, as --api-server names it.
func (s *Sidecar) apiServerName() string {
	if _, ok := s.api.(*leanH1); ok {
		return APIServerLean
	}
	return APIServerNetHTTP
}

// meshServerName is the mesh port's HTTP/2 server, as --mesh-server names it.
func (s *Sidecar) meshServerName() string {
	if s.leanMesh != nil {
		return MeshServerLean
	}
	return MeshServerNetHTTP
}

// Shutdown asks a running sidecar to stop, as /v1.0/shutdown does.
func (s *Sidecar) Shutdown() {
	s.shutdownOnce.Do(func() { close(s.shutdownCh) })
}

// Run listens on every port and serves until ctx is done or a shutdown is
// requested; it then drains in-flight requests (bounded) and returns nil.
// An error means a listener could not be opened.
func (s *Sidecar) Run(ctx context.Context) error {
	start := time.Now()
	lc := net.ListenConfig{}
	reserved := s.reservedPorts()
	listen := func(host string, port int, what string) (net.Listener, error) {
		l, err := listenPassingOver(reserved, port, func() (net.Listener, error) {
			return lc.Listen(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		})
		if err != nil {
			return nil, fmt.Errorf("%s listener: %w", what, err)
		}
		return l, nil
	}
	var listeners []net.Listener
	closeAll := func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}
	httpL, err := listen(s.cfg.ListenAddress, s.cfg.HTTPPort, "HTTP API")
	if err != nil {
		return err
	}
	listeners = append(listeners, httpL)
	grpcL, err := listen(s.cfg.ListenAddress, s.cfg.GRPCPort, "gRPC API")
	if err != nil {
		closeAll()
		return err
	}
	listeners = append(listeners, grpcL)
	meshL, err := listen(s.cfg.MeshListenAddress, s.cfg.InternalGRPCPort, "mesh")
	if err != nil {
		closeAll()
		return err
	}
	listeners = append(listeners, meshL)
	// Raw writes (rawio) on every connection of the API and mesh
	// listeners; the mesh's also gather a message's frames into one write.
	httpL, grpcL = rawio.Listener{Listener: httpL}, rawio.Listener{Listener: grpcL}
	var meshServeL net.Listener = coalescingListener{rawio.Listener{Listener: meshL}}
	if s.cfg.MeshTLS != nil {
		meshServeL = s.newMeshListener(meshServeL)
	}
	if s.cfg.ProfilePort > 0 {
		pl, err := listen(s.cfg.ListenAddress, s.cfg.ProfilePort, "profiling")
		if err != nil {
			closeAll()
			return err
		}
		listeners = append(listeners, pl)
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		ps := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = ps.Serve(pl) }()
		defer ps.Close()
	}
	var metricsL net.Listener
	if s.metrics != nil {
		metricsL, err = listen(s.cfg.ListenAddress, s.cfg.MetricsPort, "metrics")
		if err != nil {
			closeAll()
			return err
		}
	}
	var proxyL net.Listener
	if s.proxyServer != nil {
		// The app's own proxy: loopback only, whatever the API binds.
		proxyL, err = listen("127.0.0.1", s.cfg.ProxyPort, "explicit proxy")
		if err != nil {
			if metricsL != nil {
				_ = metricsL.Close()
			}
			closeAll()
			return err
		}
	}
	s.ports = Ports{HTTP: portOf(httpL), GRPC: portOf(grpcL), Internal: portOf(meshL)}
	if metricsL != nil {
		s.ports.Metrics = portOf(metricsL)
	}
	if proxyL != nil {
		s.ports.Proxy = portOf(proxyL)
	}
	var transparentL net.Listener
	if s.cfg.Transparent {
		if transparentL, err = listenIn(ctx, s.cfg.AppNetns, s.transparentAddr()); err != nil {
			for _, l := range []net.Listener{metricsL, proxyL} {
				if l != nil {
					_ = l.Close()
				}
			}
			closeAll()
			return fmt.Errorf("transparent listener: %w", err)
		}
		s.ports.Transparent = portOf(transparentL)
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	serveErr := make(chan error, 8)
	serve := func(name string, fn func() error) {
		wg.Go(func() {
			if err := fn(); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, grpc.ErrServerStopped) && !errors.Is(err, net.ErrClosed) {
				serveErr <- fmt.Errorf("%s: %w", name, err)
			}
		})
	}
	serve("HTTP API", func() error { return s.api.Serve(httpL) })
	serve("gRPC API", func() error { return s.grpcServer.Serve(grpcL) })
	if s.leanMesh != nil {
		leanL := net.Listener(rawio.Listener{Listener: meshL})
		if s.cfg.MeshTLS != nil {
			leanL = s.newMeshListener(leanL)
		}
		serve("mesh", func() error { return s.leanMesh.Serve(leanL) })
		go func() { <-runCtx.Done(); _ = meshL.Close() }()
	} else {
		serve("mesh", func() error { return s.meshServer.Serve(meshServeL) })
	}
	if metricsL != nil {
		serve("metrics", func() error { return s.metrics.Serve(metricsL) })
	}
	serve("interception", func() error { return s.interceptServer.Serve(s.intercepted) })
	if proxyL != nil {
		serve("explicit proxy", func() error { return s.proxyServer.Serve(proxyL) })
	}
	if transparentL != nil {
		serve("transparent", func() error { return s.serveTransparent(transparentL) })
		serve("HTTP API (app namespace)", func() error { return s.api.Serve(s.ownAPI) })
		serve("gRPC API (app namespace)", func() error { return s.grpcServer.Serve(s.ownGRPC) })
	}
	// Other sidecars learn of this one only once its app answers, as daprd
	// becomes ready only once the app's port is open.
	appUp := make(chan struct{})
	if s.app != nil {
		wg.Go(func() {
			s.app.waitReachable(runCtx)
			close(appUp)
			if s.cfg.AppHealth.Enabled {
				s.app.probeHealth(runCtx)
			}
		})
	} else {
		close(appUp)
	}
	for _, bg := range s.cfg.Background {
		wg.Go(func() { bg(runCtx, s) })
	}
	s.outbound.Store(true)
	close(s.ready)
	s.log.Info("sidecar is up", "namespace", s.cfg.Namespace,
		"http_port", s.ports.HTTP, "grpc_port", s.ports.GRPC, "internal_grpc_port", s.ports.Internal,
		"metrics_port", s.ports.Metrics, "proxy_port", s.ports.Proxy, "transparent_port", s.ports.Transparent, "app_port", s.cfg.AppPort, "app_protocol", s.cfg.AppProtocol,
		"mesh_server", s.meshServerName(), "api_server", s.apiServerName(), "threads", runtime.GOMAXPROCS(0), "startup", time.Since(start).String())
	if s.cfg.Announcer != nil {
		wg.Go(func() {
			select {
			case <-appUp:
			case <-runCtx.Done():
				return
			}
			if err := s.cfg.Announcer.Announce(runCtx, s.cfg.AppID, s.cfg.Namespace, s.ports.Internal); err != nil && runCtx.Err() == nil {
				s.log.Error("announcing this sidecar failed; other apps cannot find it", "err", err)
			}
		})
	}

	var runErr error
	select {
	case <-ctx.Done():
	case <-s.shutdownCh:
		s.log.Info("shutdown requested through the API")
	case runErr = <-serveErr:
	}
	s.outbound.Store(false)
	s.log.Info("sidecar stopping")
	// A stop that hangs says where: every goroutine's stack in the log.
	hung := time.AfterFunc(stopStackAfter, func() {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		s.log.Error("the sidecar has not stopped yet; its goroutines follow", "after", stopStackAfter.String(), "stacks", string(buf))
	})
	defer hung.Stop()
	cancel()
	shCtx, shCancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer shCancel()
	var swg sync.WaitGroup
	mesh := s.meshServer
	if s.leanMesh != nil {
		mesh = nil // leanH2 shuts its fallback down itself
		swg.Go(func() { _ = s.leanMesh.Shutdown(shCtx) })
	}
	swg.Go(func() { _ = s.api.Shutdown(shCtx) }) // leanH1 shuts its fallback down itself
	for _, srv := range []*http.Server{mesh, s.metrics, s.proxyServer, s.interceptServer} {
		if srv == nil {
			continue
		}
		swg.Go(func() { _ = srv.Shutdown(shCtx) })
	}
	swg.Go(func() {
		done := make(chan struct{})
		go func() { s.grpcServer.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-shCtx.Done():
			s.grpcServer.Stop()
		}
	})
	swg.Wait()
	s.endLife() // pass-through tunnels close
	_ = s.intercepted.Close()
	if transparentL != nil {
		_ = transparentL.Close()
		_ = s.ownAPI.Close()
		_ = s.ownGRPC.Close()
	}
	wg.Wait()
	s.peers.close()
	if s.app != nil {
		s.app.close()
	}
	return runErr
}

// stopStackAfter is how long a stop may take before the sidecar logs its
// goroutines' stacks (its servers get 5 s; components' Close comes after).
const stopStackAfter = 20 * time.Second

// reservedPorts are the ports no free-port listener may take: the app's
// and Config.ReservedPorts.
func (s *Sidecar) reservedPorts() map[int]bool {
	reserved := map[int]bool{}
	for _, p := range s.cfg.ReservedPorts {
		reserved[p] = true
	}
	if s.cfg.AppPort > 0 {
		reserved[s.cfg.AppPort] = true
	}
	return reserved
}

// maxPassedOver bounds the free ports a listener takes and gives back
// because they are reserved.
const maxPassedOver = 64

// listenPassingOver calls listen, which binds port. For a free port (0) it
// keeps the listener only if the kernel's choice is not reserved; a
// reserved one stays bound until another is found, so the kernel does not
// hand it out again, and is then closed. An app that binds its port after
// its sidecar started would otherwise find the sidecar there.
func listenPassingOver(reserved map[int]bool, port int, listen func() (net.Listener, error)) (net.Listener, error) {
	if port != 0 || len(reserved) == 0 {
		return listen()
	}
	var held []net.Listener
	defer func() {
		for _, l := range held {
			_ = l.Close()
		}
	}()
	for range maxPassedOver {
		l, err := listen()
		if err != nil {
			return nil, err
		}
		if !reserved[portOf(l)] {
			return l, nil
		}
		held = append(held, l)
	}
	return nil, fmt.Errorf("every free port the system offered was reserved (%d tries)", maxPassedOver)
}

func portOf(l net.Listener) int {
	if a, ok := l.Addr().(*net.TCPAddr); ok {
		return a.Port
	}
	return 0
}
