package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/outrigger/outrigger/devmode"
	"github.com/outrigger/outrigger/mtls"
	"github.com/outrigger/outrigger/mtls/svid"
	"github.com/outrigger/outrigger/nameresolution/balance"
	"github.com/outrigger/outrigger/proxy"
)

// sidecarFlags holds daprd's flags (and Outrigger's few additions) as parsed
// from one command line. The same set serves `outrigger sidecar` and
// `outrigger run`, which passes them on to the sidecar it starts.
type sidecarFlags struct {
	cfg proxy.Config
	// subscribed, when not nil, is called once the pub/sub subscriber has
	// made its first subscriptions (set by sidecarCommand, not a flag).
	subscribed func()

	resourcesPaths  stringsFlag
	logLevel        string
	logAsJSON       bool
	maxBody         quantityFlag
	maxBodyMB       int
	readBuffer      quantityFlag
	readBufferKB    int
	probeInterval   int // seconds, as daprd
	probeTimeout    int // milliseconds, as daprd
	enableMetrics   bool
	enableProfiling bool
	tcpPorts        string
	concurrency     concurrencyFlag

	nameResolution string
	// resolutionMode and balance are what nameResolver chose: the backend
	// and the balancer's options, from the flags and the Configuration.
	resolutionMode string
	balance        balance.Options
	staticFile     string
	controlPlane   string
	mdnsInterface  string

	enableMTLS        bool
	sentryAddress     string
	trustAnchorsFile  string
	trustDomain       string
	joinTokenFile     string
	workloadAPISocket string

	identity *svid.Manager // set once mTLS is up

	ignored map[string]*string
}

// daprdFlagsNotYetImplemented are daprd flags Outrigger accepts so that
// existing command lines keep working, and warns about.
var daprdFlagsNotYetImplemented = []string{
	"mode", "placement-host-address", "scheduler-host-address", "dapr-public-port", "dapr-public-listen-address",
	"dapr-graceful-shutdown-seconds", "dapr-block-shutdown-duration", "app-ssl", "unix-domain-socket", "kubeconfig", "allowed-origins",
	"dapr-listen-addresses", "components-path", "config-path",
}

func newSidecarFlags(fs *flag.FlagSet) *sidecarFlags {
	f := &sidecarFlags{ignored: map[string]*string{}}
	c := &f.cfg
	fs.StringVar(&c.AppID, "app-id", "", "the app's id (required)")
	fs.StringVar(&c.Namespace, "namespace", envOr("NAMESPACE", "default"), "the app's namespace (or NAMESPACE)")
	fs.IntVar(&c.AppPort, "app-port", 0, "the port the app listens on (0: no app)")
	fs.StringVar(&c.AppProtocol, "app-protocol", "http", "protocol of the app: http, h2c or grpc")
	fs.StringVar(&c.AppChannelAddress, "app-channel-address", "127.0.0.1", "host the app listens on")
	fs.IntVar(&c.AppMaxConcurrency, "app-max-concurrency", -1, "most requests sent to the app at once (-1: unlimited)")
	fs.IntVar(&c.HTTPPort, "dapr-http-port", envInt("DAPR_HTTP_PORT", proxy.DefaultHTTPPort), "port of the Dapr HTTP API (or DAPR_HTTP_PORT)")
	fs.IntVar(&c.GRPCPort, "dapr-grpc-port", envInt("DAPR_GRPC_PORT", proxy.DefaultGRPCPort), "port of the Dapr gRPC API (or DAPR_GRPC_PORT)")
	fs.IntVar(&c.InternalGRPCPort, "dapr-internal-grpc-port", proxy.DefaultInternalGRPCPort, "mesh port that other sidecars call")
	fs.IntVar(&c.MetricsPort, "metrics-port", proxy.DefaultMetricsPort, "port of the Prometheus metrics endpoint")
	fs.BoolVar(&f.enableMetrics, "enable-metrics", true, "serve Prometheus metrics")
	fs.StringVar(&c.ListenAddress, "dapr-listen-address", "127.0.0.1", "host the API listeners bind")
	fs.StringVar(&c.MeshListenAddress, "dapr-internal-listen-address", "", "host the mesh listener binds (default: all interfaces)")
	fs.Var(&f.resourcesPaths, "resources-path", "folder of component and resource YAML (repeatable)")
	fs.StringVar(&c.ConfigPath, "config", "", "path of a Dapr Configuration file")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.BoolVar(&f.logAsJSON, "log-as-json", false, "write logs as JSON")
	fs.BoolVar(&c.EnableAPILogging, "enable-api-logging", false, "log every API call")
	fs.BoolVar(&f.enableProfiling, "enable-profiling", false, "serve Go's pprof profiles on --profile-port")
	fs.IntVar(&c.ProfilePort, "profile-port", 7777, "port of the pprof endpoint")
	fs.BoolVar(&c.ExplicitProxy, "enable-explicit-proxy", false, "serve an HTTP proxy on loopback (--proxy-port) for the app's HTTP_PROXY and grpc_proxy: calls to other apps by name go over the mesh (on by default under outrigger run)")
	fs.IntVar(&c.ProxyPort, "proxy-port", proxy.DefaultProxyPort, "port of the explicit proxy")
	fs.BoolVar(&c.Transparent, "enable-transparent", false, "serve the transparent listener (127.0.0.1:--transparent-port) that takes the app's outbound TCP redirected by iptables (outrigger transparent-init): calls to apps' virtual addresses go over the mesh, anything else passes through (Linux)")
	fs.IntVar(&c.TransparentPort, "transparent-port", proxy.DefaultTransparentPort, "port of the transparent listener")
	fs.StringVar(&c.AppNetns, "app-netns", "", "the app's own network namespace (a path such as /var/run/netns/NAME): the transparent listener and the connections to the app are made inside it")
	fs.StringVar(&c.VirtualHosts, "virtual-hosts", "", "hosts file whose addresses in 127.77.0.0/16 name apps (what the app's namespace resolves names with)")
	fs.StringVar(&f.tcpPorts, "intercept-tcp-ports", "", "comma-separated ports at which an intercepted connection to an app is carried as TCP to the app's port over the mesh, not served as HTTP (a database protocol, say)")
	fs.Var(&f.concurrency, "concurrency", "threads that run the sidecar's Go code at once (GOMAXPROCS); 0 leaves Go's default, every CPU the process may use. outrigger sidecar takes 1 unless the GOMAXPROCS environment variable is set; outrigger run, whose one process serves every app's sidecar, takes Go's default unless the flag is given")
	fs.StringVar(&c.MeshServer, "mesh-server", proxy.MeshServerLean, "HTTP/2 server of the mesh port: "+proxy.MeshServerLean+" (frames read on one goroutine per connection, answers written by their handlers; see docs/architecture.md) or "+proxy.MeshServerNetHTTP+" (net/http's)")
	fs.StringVar(&c.APIServer, "api-server", proxy.APIServerLean, "HTTP/1.1 server of the HTTP API port: "+proxy.APIServerLean+" (a request read, served and answered on its connection's goroutine; what it does not serve goes to net/http's; see docs/architecture.md) or "+proxy.APIServerNetHTTP+" (net/http's alone)")
	f.maxBody = quantityFlag{bytes: &c.MaxBodySize}
	c.MaxBodySize = proxy.DefaultMaxBodySize
	fs.Var(&f.maxBody, "max-body-size", "largest request body accepted, e.g. 4Mi (default 4Mi)")
	fs.IntVar(&f.maxBodyMB, "dapr-http-max-request-size", 0, "largest request body in MB (older spelling of --max-body-size)")
	f.readBuffer = quantityFlag{bytes: &c.ReadBufferSize}
	fs.Var(&f.readBuffer, "read-buffer-size", "largest request header block, e.g. 4Ki (default 4Ki)")
	fs.IntVar(&f.readBufferKB, "dapr-http-read-buffer-size", 0, "largest request header block in KB (older spelling of --read-buffer-size)")
	fs.BoolVar(&c.AppHealth.Enabled, "enable-app-health-check", false, "probe the app's health")
	fs.StringVar(&c.AppHealth.Path, "app-health-check-path", "/healthz", "HTTP path probed for app health")
	fs.IntVar(&f.probeInterval, "app-health-probe-interval", 5, "seconds between app health probes")
	fs.IntVar(&f.probeTimeout, "app-health-probe-timeout", 500, "milliseconds before an app health probe fails")
	fs.IntVar(&c.AppHealth.Threshold, "app-health-threshold", 3, "failed probes in a row before the app is unhealthy")
	fs.StringVar(&f.nameResolution, "name-resolution", "", "name resolution: mdns (daprd's default), consul, kubernetes, static, or registry (default: registry with --control-plane-address, else mdns)")
	fs.StringVar(&f.staticFile, "static-resolution-file", "", "YAML file of app addresses for --name-resolution static")
	fs.StringVar(&f.controlPlane, "control-plane-address", "", "address of the Outrigger control plane")
	fs.StringVar(&f.mdnsInterface, "mdns-interface", "", "network interface mDNS uses (default: all multicast interfaces)")
	fs.BoolVar(&f.enableMTLS, "enable-mtls", false, "mutual TLS between sidecars with a SPIFFE certificate from the control plane's CA (always on with --control-plane-address)")
	fs.StringVar(&f.sentryAddress, "sentry-address", "", "address of the certificate authority (default: the control plane's address, else "+defaultControlPlaneListen+")")
	fs.StringVar(&f.trustAnchorsFile, "trust-anchors-file", "", "PEM file of the trust anchors (or DAPR_TRUST_ANCHORS with the PEM text)")
	fs.StringVar(&f.trustDomain, "trust-domain", mtls.DefaultTrustDomain, "SPIFFE trust domain of this sidecar's identity")
	fs.StringVar(&f.joinTokenFile, "join-token-file", "", "file holding the join token that proves this app's identity to the CA (or OUTRIGGER_JOIN_TOKEN)")
	fs.StringVar(&f.workloadAPISocket, "workload-api-socket", "", "Unix socket of the SPIFFE Workload API served to the app (default $OUTRIGGER_HOME/run/<app-id>/spiffe.sock)")
	for _, name := range daprdFlagsNotYetImplemented {
		f.ignored[name] = fs.String(name, "", "daprd flag accepted for compatibility; not used yet")
	}
	return f
}

// config validates the parsed flags and returns the sidecar's configuration
// (without its resolver, which wiring adds).
func (f *sidecarFlags) config() (proxy.Config, *slog.Logger, error) {
	c := f.cfg
	c.ResourcesPaths = append([]string(nil), f.resourcesPaths...)
	if f.maxBodyMB != 0 && !f.maxBody.set {
		if f.maxBodyMB < 0 {
			return c, nil, usageError{fmt.Errorf("--dapr-http-max-request-size %d: must not be negative", f.maxBodyMB)}
		}
		c.MaxBodySize = int64(f.maxBodyMB) << 20
	}
	if f.readBufferKB != 0 && !f.readBuffer.set {
		if f.readBufferKB < 0 {
			return c, nil, usageError{fmt.Errorf("--dapr-http-read-buffer-size %d: must not be negative", f.readBufferKB)}
		}
		c.ReadBufferSize = int64(f.readBufferKB) << 10
	}
	if f.probeInterval <= 0 {
		return c, nil, usageError{fmt.Errorf("--app-health-probe-interval %d: must be at least 1 second", f.probeInterval)}
	}
	if f.probeTimeout <= 0 {
		return c, nil, usageError{fmt.Errorf("--app-health-probe-timeout %d: must be at least 1 millisecond", f.probeTimeout)}
	}
	if c.AppHealth.Threshold <= 0 {
		return c, nil, usageError{fmt.Errorf("--app-health-threshold %d: must be at least 1", c.AppHealth.Threshold)}
	}
	c.AppHealth.Interval = time.Duration(f.probeInterval) * time.Second
	c.AppHealth.Timeout = time.Duration(f.probeTimeout) * time.Millisecond
	c.MetricsDisabled = !f.enableMetrics
	if !f.enableProfiling {
		c.ProfilePort = 0
	}
	if c.ProxyPort < 0 || c.ProxyPort > 65535 {
		return c, nil, usageError{fmt.Errorf("--proxy-port %d: want a port from 0 to 65535", c.ProxyPort)}
	}
	if c.TransparentPort <= 0 || c.TransparentPort > 65535 {
		return c, nil, usageError{fmt.Errorf("--transparent-port %d: want a port from 1 to 65535", c.TransparentPort)}
	}
	for p := range strings.SplitSeq(f.tcpPorts, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 || n > 65535 {
			return c, nil, usageError{fmt.Errorf("--intercept-tcp-ports %q: want ports from 1 to 65535", p)}
		}
		c.InterceptTCPPorts = append(c.InterceptTCPPorts, n)
	}
	if (c.AppNetns != "" || c.VirtualHosts != "") && !c.Transparent {
		return c, nil, usageError{errors.New("--app-netns and --virtual-hosts need --enable-transparent")}
	}
	if c.AppNetns != "" {
		if _, err := os.Stat(c.AppNetns); err != nil {
			return c, nil, usageError{fmt.Errorf("--app-netns: %w", err)}
		}
		if c.AppChannelAddress != "" && c.AppChannelAddress != "127.0.0.1" {
			return c, nil, usageError{fmt.Errorf("--app-netns: the app is reached on its namespace's loopback; --app-channel-address %q does not apply", c.AppChannelAddress)}
		}
	}
	if c.AppMaxConcurrency < -1 || c.AppMaxConcurrency == 0 {
		return c, nil, usageError{fmt.Errorf("--app-max-concurrency %d: want -1 (unlimited) or a positive number", c.AppMaxConcurrency)}
	}
	logger, err := newLogger(os.Stderr, f.logLevel, f.logAsJSON, c.AppID)
	if err != nil {
		return c, nil, usageError{err}
	}
	for name, v := range f.ignored {
		if *v != "" {
			logger.Warn("daprd flag accepted but not used by this version", "flag", "--"+name, "value", *v)
		}
	}
	switch f.nameResolution {
	case "", "mdns", "registry", "kubernetes", "consul":
	case "static":
		if f.staticFile == "" {
			return c, nil, usageError{errors.New("--name-resolution static needs --static-resolution-file")}
		}
	default:
		return c, nil, usageError{fmt.Errorf("--name-resolution %q: want mdns, consul, kubernetes, static or registry", f.nameResolution)}
	}
	if f.nameResolution == "registry" && f.controlPlane == "" {
		return c, nil, usageError{errors.New("--name-resolution registry needs --control-plane-address")}
	}
	c.Logger = logger
	// Resolver is wired by the caller; validate everything else now.
	probe := c
	probe.Resolver = noResolver{}
	if err := probe.Validate(); err != nil {
		return c, nil, usageError{err}
	}
	return c, logger, nil
}

// defaultConcurrency is how many threads run a sidecar's Go code at once
// unless --concurrency or GOMAXPROCS says otherwise. One: a sidecar's work
// is a chain of short hand-offs between goroutines (the API server's, the
// mesh client's reader, the app channel's), and with a second processor
// idle the runtime wakes another thread for each, which on a small or
// virtual machine costs more than the work. Measured on 2 CPUs: less CPU
// per request and less added latency (docs/benchmarks.md). Linkerd's proxy
// and Envoy as Istio's sidecar are held to one or two worker threads the
// same way.
const defaultConcurrency = 1

// concurrencyFlag is --concurrency: a count of threads, remembering whether
// it was given.
type concurrencyFlag struct {
	n   int
	set bool
}

func (c *concurrencyFlag) String() string {
	if c == nil || !c.set {
		return strconv.Itoa(defaultConcurrency)
	}
	return strconv.Itoa(c.n)
}

func (c *concurrencyFlag) Set(s string) error {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 0 {
		return fmt.Errorf("%q: want 0 (Go's default: every CPU) or a positive number of threads", s)
	}
	c.n, c.set = n, true
	return nil
}

// procs is the GOMAXPROCS the sidecar sets, given the environment's
// GOMAXPROCS; 0 leaves the runtime's own choice. The flag wins, then the
// environment, then the default.
func (c *concurrencyFlag) procs(env string) int {
	switch {
	case c.set:
		return c.n
	case env != "":
		return 0
	default:
		return defaultConcurrency
	}
}

type noResolver struct{}

func (noResolver) Resolve(context.Context, string, string) (string, error) {
	return "", errors.New("no resolver")
}

func newLogger(w io.Writer, level string, asJSON bool, appID string) (*slog.Logger, error) {
	var lv slog.Level
	switch strings.ToLower(level) {
	case "debug":
		lv = slog.LevelDebug
	case "info", "":
		lv = slog.LevelInfo
	case "warn", "warning":
		lv = slog.LevelWarn
	case "error", "fatal":
		lv = slog.LevelError
	default:
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	var h slog.Handler
	if asJSON {
		h = slog.NewJSONHandler(w, opts)
	} else {
		h = slog.NewTextHandler(w, opts)
	}
	l := slog.New(h)
	if appID != "" {
		l = l.With("app_id", appID)
	}
	return l, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func envInt(name string, def int) int {
	if v := os.Getenv(name); v != "" {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
	}
	return def
}

// parseSidecarFlags parses args as `outrigger sidecar` does.
func parseSidecarFlags(name string, args []string) (*sidecarFlags, *flag.FlagSet, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	f := newSidecarFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, fs, err
		}
		return nil, fs, usageError{err}
	}
	return f, fs, nil
}

func sidecarCommand(ctx context.Context, args []string) error {
	f, fs, err := parseSidecarFlags("outrigger sidecar", args)
	if err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	cfg, logger, err := f.config()
	if err != nil {
		return err
	}
	if n := f.concurrency.procs(os.Getenv("GOMAXPROCS")); n > 0 {
		runtime.GOMAXPROCS(n)
	}
	resolver, announcer, err := f.nameResolver(&cfg, logger)
	if err != nil {
		return err
	}
	defer resolver.Close()
	cfg.Resolver = resolver
	cfg.Announcer = announcer
	home, _ := devmode.DefaultHome()
	subscribed := make(chan struct{})
	var once sync.Once
	f.subscribed = func() { once.Do(func() { close(subscribed) }) }
	stopParts, err := f.startSidecarParts(ctx, &cfg, home, logger)
	if err != nil {
		return err
	}
	defer stopParts()
	// Once serving, and once its app answers and the subscriber has read
	// the app's subscriptions and subscribed (the app channel's first
	// exchanges are start-up too), the process lets go of the pages of its
	// binary that start-up faulted in (pages_linux.go). A collection
	// first: the one start-up's allocations call for reads the type
	// information of every object on the heap, scattered over the
	// read-only data, and would fault most of it back in right after the
	// release.
	cfg.Background = append(cfg.Background, func(ctx context.Context, sc *proxy.Sidecar) {
		if app := sc.App(); app != nil {
			if app.WaitReady(ctx) != nil {
				return // stopped before the app answered
			}
			// The subscriber starts once the app answers; a broker that
			// is slow to take the subscriptions does not hold the
			// release back for long.
			select {
			case <-subscribed:
			case <-time.After(5 * time.Second):
			case <-ctx.Done():
				return
			}
		}
		runtime.GC()
		n, err := releaseStartupPages()
		if err != nil {
			logger.Warn("releasing the binary's start-up pages failed", "err", err)
			return
		}
		logger.Debug("released the binary's start-up pages", "mapped_bytes", n)
	})
	sc, err := proxy.New(cfg)
	if err != nil {
		return err
	}
	return sc.Run(ctx)
}
