package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"sync/atomic"
	"time"

	commonv1pb "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/outrigger/outrigger/proxy/rawio"
)

// errAppUnhealthy is daprd's message for calls to an app that failed its health checks.
var errAppUnhealthy = errors.New("app is not in a healthy state")

// appChannel is the sidecar's connection to its own app: HTTP/1.1, h2c or
// gRPC, with the concurrency limit of --app-max-concurrency and the app's
// health as probed.
type appChannel struct {
	protocol string
	addr     string // host:port
	log      *slog.Logger

	transport *http.Transport        // HTTP/1.1 or h2c towards the app
	inline    *inlineTransport       // small HTTP/1.1 calls, on the calling goroutine
	proxy     *httputil.ReverseProxy // streams requests to the app
	conn      *grpc.ClientConn       // gRPC apps only
	callback  runtimev1pb.AppCallbackClient
	health    runtimev1pb.AppCallbackHealthCheckClient

	sem chan struct{} // nil: unlimited

	// dial connects to the app (inside its network namespace when it has
	// one of its own).
	dial func(ctx context.Context, network, addr string) (net.Conn, error)

	token string // APP_API_TOKEN, sent as dapr-api-token on every call to the app

	reachable atomic.Bool // the app's port accepted a connection
	healthy   atomic.Bool // last health verdict (true when checks are off and the app is reachable)
	checks    AppHealth
}

func newAppChannel(cfg *Config, log *slog.Logger) (*appChannel, error) {
	a := &appChannel{
		protocol: cfg.AppProtocol,
		addr:     net.JoinHostPort(cfg.AppChannelAddress, strconv.Itoa(cfg.AppPort)),
		log:      log,
		checks:   cfg.AppHealth,
		token:    cfg.AppAPIToken,
	}
	if cfg.AppMaxConcurrency > 0 {
		a.sem = make(chan struct{}, cfg.AppMaxConcurrency)
	}
	dial := appDialer(cfg, &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second})
	a.dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return rawio.Wrap(c), nil // raw writes (rawio)
	}
	a.transport = &http.Transport{
		Proxy:                 nil,
		DialContext:           a.dial,
		MaxIdleConns:          0,
		MaxIdleConnsPerHost:   1024,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		ResponseHeaderTimeout: 0,
		WriteBufferSize:       32 << 10,
		ReadBufferSize:        32 << 10,
	}
	if cfg.AppProtocol == ProtocolH2C || cfg.AppProtocol == ProtocolGRPC {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		a.transport.Protocols = &p
		a.transport.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: 1000}
	}
	var rt http.RoundTripper = a.transport
	if cfg.AppProtocol == ProtocolHTTP {
		a.inline = newInlineTransport(a.addr, a.transport, a.dial)
		rt = a.inline
	}
	a.proxy = &httputil.ReverseProxy{
		Rewrite:       a.rewrite,
		Transport:     rt,
		FlushInterval: 0,
		ErrorHandler:  a.proxyError,
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		BufferPool:    bufferPool{},
	}
	if cfg.AppProtocol == ProtocolGRPC {
		conn, err := grpc.NewClient(a.addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(int(cfg.MaxBodySize)), grpc.MaxCallSendMsgSize(int(cfg.MaxBodySize))),
			grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return a.dial(ctx, "tcp", addr) }),
		)
		if err != nil {
			return nil, fmt.Errorf("proxy: app channel to %s: %w", a.addr, err)
		}
		a.conn = conn
		a.callback = runtimev1pb.NewAppCallbackClient(conn)
		a.health = runtimev1pb.NewAppCallbackHealthCheckClient(conn)
	}
	return a, nil
}

func (a *appChannel) close() {
	a.transport.CloseIdleConnections()
	if a.inline != nil {
		a.inline.closeIdle()
	}
	if a.conn != nil {
		_ = a.conn.Close()
	}
}

func (a *appChannel) rewrite(pr *httputil.ProxyRequest) {
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = a.addr
	pr.Out.Host = a.addr
	if a.token != "" {
		pr.Out.Header.Set(apiTokenHeader, a.token)
	} else {
		pr.Out.Header.Del(apiTokenHeader)
	}
}

func (a *appChannel) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	if isGRPCRequest(r) {
		writeGRPCError(w, 14, "app channel: "+err.Error()) // Unavailable
		return
	}
	if tooLarge(err) {
		writeError(w, bodyTooLargeError())
		return
	}
	a.log.Debug("app call failed", "path", r.URL.Path, "err", err)
	writeError(w, apiError{http.StatusInternalServerError, errCodeDirectInvoke, "failed to invoke app: " + err.Error()})
}

// acquire takes a concurrency slot, waiting while the app is at its limit.
func (a *appChannel) acquire(ctx context.Context) error {
	if a.sem == nil {
		return nil
	}
	select {
	case a.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (a *appChannel) release() {
	if a.sem != nil {
		<-a.sem
	}
}

// ready reports whether calls may be delivered to the app.
func (a *appChannel) ready() bool { return a.reachable.Load() && a.healthy.Load() }

// withToken adds APP_API_TOKEN to a gRPC call's metadata.
func (a *appChannel) withToken(ctx context.Context) context.Context {
	if a.token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, apiTokenHeader, a.token)
}

// invokeGRPC delivers an invocation to a gRPC app through AppCallback/OnInvoke.
func (a *appChannel) invokeGRPC(ctx context.Context, req *commonv1pb.InvokeRequest) (*commonv1pb.InvokeResponse, error) {
	return a.callback.OnInvoke(a.withToken(ctx), req)
}

// waitReachable polls the app's port until it accepts a connection, then
// marks the app reachable (and healthy, when health checks are off).
func (a *appChannel) waitReachable(ctx context.Context) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		c, err := a.dial(dctx, "tcp", a.addr)
		cancel()
		if err == nil {
			_ = c.Close()
			a.reachable.Store(true)
			if !a.checks.Enabled {
				a.healthy.Store(true)
			}
			a.log.Info("app is reachable", "address", a.addr, "protocol", a.protocol)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// probeHealth runs daprd-style health checks until ctx is done: every
// interval one probe with a timeout; threshold failures in a row make the
// app unhealthy, one success makes it healthy again.
func (a *appChannel) probeHealth(ctx context.Context) {
	t := time.NewTicker(a.checks.Interval)
	defer t.Stop()
	failures := 0
	client := &http.Client{Transport: a.transport, Timeout: a.checks.Timeout}
	for {
		err := a.probeOnce(ctx, client)
		switch {
		case err == nil:
			failures = 0
			if !a.healthy.Swap(true) {
				a.log.Info("app is healthy")
			}
		case ctx.Err() != nil:
			return
		default:
			failures++
			if failures >= a.checks.Threshold && a.healthy.Swap(false) {
				a.log.Warn("app is unhealthy", "err", err, "failures", failures)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *appChannel) probeOnce(ctx context.Context, client *http.Client) error {
	ctx, cancel := context.WithTimeout(ctx, a.checks.Timeout)
	defer cancel()
	if a.protocol == ProtocolGRPC {
		_, err := a.health.HealthCheck(a.withToken(ctx), &emptypb.Empty{})
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a.addr+a.checks.Path, nil)
	if err == nil && a.token != "" {
		req.Header.Set(apiTokenHeader, a.token)
	}
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("health check %s answered %d", a.checks.Path, resp.StatusCode)
	}
	return nil
}
