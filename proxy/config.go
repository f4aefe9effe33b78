package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	outriggerv1alpha1 "github.com/outrigger/outrigger/xds/api/v1alpha1"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"log/slog"
	"net/http"
	"time"

	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/outrigger/outrigger/mtls/acl"
	"github.com/outrigger/outrigger/resiliency"
)

// App protocols accepted by --app-protocol.
const (
	ProtocolHTTP = "http"
	ProtocolH2C  = "h2c"
	ProtocolGRPC = "grpc"
)

// Resolver is what the sidecar needs from name resolution: the mesh address
// ("host:port") of one instance of an app. nameresolution.Resolver satisfies
// it; one that is also a Balancer picks per call and hears how calls went.
type Resolver interface {
	Resolve(ctx context.Context, appID, namespace string) (string, error)
}

// Announcer makes this sidecar findable; nameresolution.Announcer satisfies it
// through AnnouncerFunc in cmd/. Announce blocks until ctx is done.
type Announcer interface {
	Announce(ctx context.Context, appID, namespace string, meshPort int) error
}

// MeshTLS gives the TLS configurations of the mesh; *svid.Manager is one.
type MeshTLS interface {
	// ServerConfig is the mesh listener's configuration.
	ServerConfig() *tls.Config
	// ClientConfig is for connections to the sidecar of appID in namespace;
	// it must accept no other identity.
	ClientConfig(appID, namespace string, sessions tls.ClientSessionCache) *tls.Config
}

// SecretsAPI is the secrets building block as the sidecar mounts it:
// /v1.0/secrets/... over HTTP, GetSecret and GetBulkSecret over gRPC.
type SecretsAPI interface {
	http.Handler
	GetSecret(context.Context, *runtimev1pb.GetSecretRequest) (*runtimev1pb.GetSecretResponse, error)
	GetBulkSecret(context.Context, *runtimev1pb.GetBulkSecretRequest) (*runtimev1pb.GetBulkSecretResponse, error)
}

// StateAPI is the state building block as the sidecar mounts it:
// /v1.0/state/... and /v1.0-alpha1/state/{store}/query over HTTP, the
// state methods over gRPC.
type StateAPI interface {
	http.Handler
	GetState(context.Context, *runtimev1pb.GetStateRequest) (*runtimev1pb.GetStateResponse, error)
	GetBulkState(context.Context, *runtimev1pb.GetBulkStateRequest) (*runtimev1pb.GetBulkStateResponse, error)
	SaveState(context.Context, *runtimev1pb.SaveStateRequest) (*emptypb.Empty, error)
	DeleteState(context.Context, *runtimev1pb.DeleteStateRequest) (*emptypb.Empty, error)
	DeleteBulkState(context.Context, *runtimev1pb.DeleteBulkStateRequest) (*emptypb.Empty, error)
	ExecuteStateTransaction(context.Context, *runtimev1pb.ExecuteStateTransactionRequest) (*emptypb.Empty, error)
	QueryStateAlpha1(context.Context, *runtimev1pb.QueryStateRequest) (*runtimev1pb.QueryStateResponse, error)
}

// PubSubAPI is the publish half of the pub/sub building block as the
// sidecar mounts it: /v1.0/publish/... over HTTP, PublishEvent and the bulk
// methods over gRPC.
type PubSubAPI interface {
	http.Handler
	PublishEvent(context.Context, *runtimev1pb.PublishEventRequest) (*emptypb.Empty, error)
	BulkPublishEvent(context.Context, *runtimev1pb.BulkPublishRequest) (*runtimev1pb.BulkPublishResponse, error)
	BulkPublishEventAlpha1(context.Context, *runtimev1pb.BulkPublishRequest) (*runtimev1pb.BulkPublishResponse, error)
	SubscribeTopicEventsAlpha1(runtimev1pb.Dapr_SubscribeTopicEventsAlpha1Server) error
}

// AppHealth configures daprd-style app health probing.
type AppHealth struct {
	Enabled   bool
	Path      string        // HTTP path probed (default /healthz)
	Interval  time.Duration // between probes (default 5s)
	Timeout   time.Duration // per probe (default 500ms)
	Threshold int           // consecutive failures before the app is unhealthy (default 3)
}

// Config is everything a sidecar needs; cmd/outrigger fills it from daprd's flags.
type Config struct {
	AppID     string
	Namespace string

	// AppPort is the app's port; 0 means the sidecar has no app to call.
	AppPort           int
	AppProtocol       string // http, h2c or grpc
	AppChannelAddress string // host of the app (default 127.0.0.1)
	AppMaxConcurrency int    // 0 or less: unlimited
	AppHealth         AppHealth

	// ListenAddress is the host the API listeners (HTTP, gRPC, metrics) bind (default 127.0.0.1).
	ListenAddress string
	// MeshListenAddress is the host the mesh listener binds (default: all interfaces).
	MeshListenAddress string

	HTTPPort         int // Dapr HTTP API (3500)
	GRPCPort         int // Dapr gRPC API (50001)
	InternalGRPCPort int // mesh port other sidecars call (50002)
	MetricsPort      int // Prometheus metrics (9090); 0 with MetricsDisabled

	// ReservedPorts are ports a listener on a free port (0) passes over:
	// ports other processes bind later, such as the apps' ports of a run
	// file. The sidecar's own AppPort is always passed over, since its app
	// may start after it.
	ReservedPorts []int

	MetricsDisabled bool
	// Collectors are served on the metrics port beside the sidecar's own
	// (the building blocks' and the components' metrics).
	Collectors []prometheus.Collector
	// ResiliencyMetrics records the invocation policies' use under daprd's
	// names (nil: not recorded); the caller registers it in Collectors.
	ResiliencyMetrics *resiliency.Metrics
	// Tracer starts the sidecar's spans; nil turns tracing off (the
	// callers' trace context is still carried on).
	Tracer trace.Tracer

	// ProfilePort, when not zero, serves Go's pprof profiles (daprd's --enable-profiling).
	ProfilePort int

	// ExplicitProxy serves an HTTP proxy on ProxyPort (0: a free one), on
	// loopback, for the app's HTTP_PROXY and grpc_proxy: calls to other
	// apps by name go over the mesh, anything else passes through.
	ExplicitProxy bool
	ProxyPort     int

	// Transparent serves the transparent listener on 127.0.0.1 at
	// TransparentPort (DefaultTransparentPort when 0): the app's outbound
	// TCP, redirected there by iptables, is routed by its original
	// destination (docs/interception.md).
	Transparent     bool
	TransparentPort int
	// AppNetns, when set, is the app's own network namespace (a path such
	// as /var/run/netns/NAME): the transparent listener and the
	// connections to the app are made inside it, everything else from the
	// sidecar's namespace.
	AppNetns string
	// VirtualHosts is a hosts file whose addresses in 127.77.0.0/16 name
	// apps (the app's namespace resolves names with it).
	VirtualHosts string
	// InterceptTCPPorts are the ports at which an intercepted connection
	// to an app (transparent, or a CONNECT tunnel) is carried as TCP to
	// the app's port rather than served as HTTP.
	InterceptTCPPorts []int

	ResourcesPaths []string
	ConfigPath     string

	MaxBodySize      int64 // bytes (default 4 MiB)
	ReadBufferSize   int64 // bytes of request headers accepted (default 4 KiB as daprd)
	EnableAPILogging bool

	// MeshServer is the HTTP/2 server of the mesh port: MeshServerLean
	// (empty: the default, see leanH2) or MeshServerNetHTTP.
	MeshServer string
	// APIServer is the HTTP/1.1 server of the HTTP API port: APIServerLean
	// (empty: the default, see leanH1) or APIServerNetHTTP.
	APIServer string

	// MeshTLS, when set, puts mutual TLS under the mesh: the mesh port then
	// accepts only TLS 1.3 connections with a certificate of the trust
	// domain, and calls to another app accept only that app's identity.
	// Nil keeps daprd's plain h2c mesh.
	MeshTLS MeshTLS
	// AccessControl is the Configuration's accessControl, enforced on every
	// call this sidecar delivers to its app; nil allows every call.
	AccessControl *acl.Policy
	// APIToken, when set, is demanded of the app in the dapr-api-token header
	// or metadata on every API call but the health checks (DAPR_API_TOKEN).
	APIToken string
	// AppAPIToken, when set, is sent to the app as dapr-api-token on every
	// call the sidecar makes to it (APP_API_TOKEN).
	AppAPIToken string

	// Secrets serves the secrets building block; nil answers daprd's "secret
	// store is not configured".
	Secrets SecretsAPI
	// State serves the state building block; nil answers daprd's "state
	// store is not configured".
	State StateAPI
	// PubSub serves publishing; nil answers daprd's "pubsub is not
	// configured".
	PubSub PubSubAPI
	// Background runs beside the servers once they listen, until the
	// sidecar stops (the pub/sub subscriber runs here).
	Background []func(ctx context.Context, s *Sidecar)
	// Components lists the loaded components for the metadata API.
	Components func() []*runtimev1pb.RegisteredComponents
	// Subscriptions lists the pub/sub subscriptions in place for the
	// metadata API.
	Subscriptions func() []*runtimev1pb.PubsubSubscription

	// Routes gives the policies of calls to other apps, from the sidecar's
	// routes (over xDS, or built from its own folder); nil sets none.
	Routes InvokeRoutes

	// Resolver finds other apps. Required.
	Resolver Resolver
	// HashHeader names the request header (gRPC metadata key) whose value
	// a consistent-hashing balancer hashes, for apps whose route names none.
	HashHeader string
	// Announcer, if set, is started once the listeners are up.
	Announcer Announcer

	Logger *slog.Logger
}

// Defaults for fields left zero.
const (
	DefaultHTTPPort         = 3500
	DefaultGRPCPort         = 50001
	DefaultInternalGRPCPort = 50002
	DefaultMetricsPort      = 9090
	DefaultProxyPort        = 3128 // the explicit proxy's: HTTP proxies' customary port
	DefaultMaxBodySize      = 4 << 20
	DefaultNamespace        = "default"
)

func (c *Config) setDefaults() {
	if c.Namespace == "" {
		c.Namespace = DefaultNamespace
	}
	if c.AppProtocol == "" {
		c.AppProtocol = ProtocolHTTP
	}
	if c.AppChannelAddress == "" {
		c.AppChannelAddress = "127.0.0.1"
	}
	if c.ListenAddress == "" {
		c.ListenAddress = "127.0.0.1"
	}
	if c.MaxBodySize == 0 {
		c.MaxBodySize = DefaultMaxBodySize
	}
	if c.AppHealth.Path == "" {
		c.AppHealth.Path = "/healthz"
	}
	if c.AppHealth.Interval == 0 {
		c.AppHealth.Interval = 5 * time.Second
	}
	if c.AppHealth.Timeout == 0 {
		c.AppHealth.Timeout = 500 * time.Millisecond
	}
	if c.AppHealth.Threshold == 0 {
		c.AppHealth.Threshold = 3
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports the first thing wrong with c, naming the flag.
func (c *Config) Validate() error {
	var errs []error
	if c.AppID == "" {
		errs = append(errs, errors.New("--app-id is required"))
	}
	switch c.AppProtocol {
	case ProtocolHTTP, ProtocolH2C, ProtocolGRPC, "":
	default:
		errs = append(errs, fmt.Errorf("--app-protocol %q: want http, h2c or grpc", c.AppProtocol))
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"--app-port", c.AppPort}, {"--dapr-http-port", c.HTTPPort}, {"--dapr-grpc-port", c.GRPCPort}, {"--dapr-internal-grpc-port", c.InternalGRPCPort}, {"--metrics-port", c.MetricsPort}} {
		if p.v < 0 || p.v > 65535 {
			errs = append(errs, fmt.Errorf("%s %d: want a port between 0 and 65535", p.name, p.v))
		}
	}
	switch c.MeshServer {
	case "", MeshServerNetHTTP, MeshServerLean:
	default:
		errs = append(errs, fmt.Errorf("--mesh-server %q: want %s or %s", c.MeshServer, MeshServerNetHTTP, MeshServerLean))
	}
	switch c.APIServer {
	case "", APIServerNetHTTP, APIServerLean:
	default:
		errs = append(errs, fmt.Errorf("--api-server %q: want %s or %s", c.APIServer, APIServerNetHTTP, APIServerLean))
	}
	if c.MaxBodySize < 0 {
		errs = append(errs, fmt.Errorf("--max-body-size %d: must not be negative", c.MaxBodySize))
	}
	if c.AppHealth.Interval < 0 || c.AppHealth.Timeout < 0 || c.AppHealth.Threshold < 0 {
		errs = append(errs, errors.New("app health probe interval, timeout and threshold must not be negative"))
	}
	if c.Resolver == nil {
		errs = append(errs, errors.New("proxy: a name resolver is required"))
	}
	return errors.Join(errs...)
}

// InvokeRoutes is what service invocation needs of the sidecar's routes.
type InvokeRoutes interface {
	// InvokeTimeout bounds a whole call to appID in namespace (the
	// Resiliency timeout of that app); zero is no bound.
	InvokeTimeout(appID, namespace string) time.Duration
	// InvokeResiliency is the app's Resiliency (its retry and circuit
	// breaker); nil for none.
	InvokeResiliency(appID, namespace string) *outriggerv1alpha1.Resiliency
	// BuiltInServiceRetry is DaprBuiltInServiceRetries as a Resiliency
	// document redefines it, the retry of calls to apps without a
	// policy; nil keeps Dapr's.
	BuiltInServiceRetry() *outriggerv1alpha1.Retry
	// InvokeHashHeader is the header whose value consistent hashing takes
	// for calls to appID (the route's hash_policy); empty leaves
	// HashHeader.
	InvokeHashHeader(appID, namespace string) string
}
