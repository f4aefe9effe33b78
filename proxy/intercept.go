package proxy

import (
	"context"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/outrigger/outrigger/proxy/route"
)

// Interception: an app that knows nothing of Dapr calls another app by
// name (http://orders/api, or a gRPC client dialling orders:50051), and its
// sidecar carries the call over the mesh as service invocation. The
// sidecar takes such calls as an explicit HTTP proxy (the app's
// HTTP_PROXY and grpc_proxy name the proxy port): absolute-form requests,
// and CONNECT tunnels. A destination that is not an app passes through
// untouched. docs/interception.md is the user's view.

// clusterSuffix is the Kubernetes service-name suffix an app-id may carry.
const clusterSuffix = ".svc.cluster.local"

// interceptKey carries, in an intercepted connection's context, the app-id
// its calls go to.
type interceptKey struct{}

// interceptedConn is an app's connection to another app, taken over by the
// sidecar.
type interceptedConn struct {
	net.Conn
	appID string
	// r gives what was read from the connection before it was handed
	// over (a proxy's buffered bytes) and then the connection.
	r io.Reader
}

func (c *interceptedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// connQueue is a net.Listener of connections accepted elsewhere (the
// intercepted ones; the mesh's HTTP/1.1 ones under the lean server).
type connQueue struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newConnQueue() *connQueue {
	return &connQueue{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.done) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// push hands c to the server; false once the queue is closed (c is closed
// then).
func (q *connQueue) push(c net.Conn) bool {
	select {
	case q.ch <- c:
		return true
	case <-q.done:
		_ = c.Close()
		return false
	}
}

// newInterceptServer serves intercepted connections: HTTP/1.1 and HTTP/2
// (prior knowledge), the app-id from the connection.
func (s *Sidecar) newInterceptServer() *http.Server {
	return &http.Server{
		Handler:           http.HandlerFunc(s.serveIntercepted),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       5 * time.Minute,
		Protocols:         h1AndH2C(),
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: 1000},
		ErrorLog:          s.debugLog(),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if ic, ok := c.(*interceptedConn); ok {
				return context.WithValue(ctx, interceptKey{}, ic.appID)
			}
			return ctx
		},
	}
}

// serveIntercepted serves one call on an intercepted connection: gRPC is
// proxied per call, anything else is a service invocation of the path.
func (s *Sidecar) serveIntercepted(w http.ResponseWriter, r *http.Request) {
	id, _ := r.Context().Value(interceptKey{}).(string)
	if id == "" {
		writeError(w, apiError{http.StatusBadGateway, errCodeDirectInvoke, "failed to invoke: the intercepted connection has no app-id"})
		return
	}
	if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
		// The gRPC server proxies a call with dapr-app-id; the app's own
		// call carries no API token, and needs none.
		r.Header.Set(route.AppIDHeader, id)
		s.grpcServer.ServeHTTP(w, r)
		return
	}
	s.invokeIntercepted(w, r, id)
}

// invokeIntercepted is invokeHTTP of an intercepted request, measured and
// traced as an API call.
func (s *Sidecar) invokeIntercepted(w http.ResponseWriter, r *http.Request, appID string) {
	s.observeAPI(w, r, func(w http.ResponseWriter, r *http.Request) string {
		s.invokeHTTP(w, r, route.Target{AppID: appID, Method: route.CleanMethod(r.URL.EscapedPath())})
		return invokeRoute
	})
}

// meshTarget is the app-id a destination host names, if it names an app
// the sidecar can find: "orders", "orders.<namespace>" or
// "orders.<namespace>.svc.cluster.local". An address, localhost, or a name
// name resolution does not know is not an app. Answers are kept for a
// short while.
func (s *Sidecar) meshTarget(ctx context.Context, host string) (string, bool) {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "" || host == "localhost" || net.ParseIP(host) != nil {
		return "", false
	}
	host = strings.TrimSuffix(host, clusterSuffix)
	if strings.Count(host, ".") > 1 {
		return "", false
	}
	now := time.Now()
	if v, ok := s.targets.Load(host); ok {
		if e := v.(targetEntry); now.Before(e.until) {
			return host, e.ok
		}
	}
	name, ns, err := route.SplitAppID(host, s.cfg.Namespace)
	ok := err == nil
	if ok {
		rctx, cancel := context.WithTimeout(ctx, targetResolveTimeout)
		_, err = s.cfg.Resolver.Resolve(rctx, name, ns)
		cancel()
		ok = err == nil
	}
	if _, loaded := s.targets.Swap(host, targetEntry{ok: ok, until: now.Add(targetTTL)}); !loaded && s.targetCount.Add(1) > maxTargets {
		// A flood of distinct hosts: forget them all rather than grow.
		s.targets.Clear()
		s.targetCount.Store(0)
	}
	return host, ok
}

// maxTargets bounds how many hosts meshTarget remembers.
const maxTargets = 10000

const (
	// targetTTL is how long the sidecar remembers whether a host is an app.
	targetTTL = 5 * time.Second
	// targetResolveTimeout bounds the lookup of a host that may be an app.
	targetResolveTimeout = 2 * time.Second
)

type targetEntry struct {
	ok    bool
	until time.Time
}

// newProxyServer is the explicit proxy: the app's HTTP_PROXY.
func (s *Sidecar) newProxyServer() *http.Server {
	var h1 http.Protocols
	h1.SetHTTP1(true)
	return &http.Server{
		Handler:           http.HandlerFunc(s.serveProxy),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       5 * time.Minute,
		Protocols:         &h1,
		ErrorLog:          s.debugLog(),
	}
}

// serveProxy serves one request to the explicit proxy: CONNECT opens a
// tunnel, an absolute-form request is forwarded; either goes over the mesh
// when its host is an app, and straight to its destination otherwise.
func (s *Sidecar) serveProxy(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		s.proxyConnect(w, r)
		return
	}
	if r.URL.Host == "" {
		s.stats.intercepted.WithLabelValues("request", "error").Inc()
		writeError(w, apiError{http.StatusBadRequest, errCodeDirectInvoke, "the proxy port takes proxy requests (an absolute URL, or CONNECT); the Dapr API is on the HTTP port"})
		return
	}
	removeProxyHeaders(r.Header)
	if id, ok := s.meshTarget(r.Context(), r.URL.Hostname()); ok {
		s.stats.intercepted.WithLabelValues("request", "mesh").Inc()
		r.URL.Scheme, r.URL.Host = "", ""
		s.invokeIntercepted(w, r, id)
		return
	}
	s.stats.intercepted.WithLabelValues("request", "passthrough").Inc()
	s.passthroughProxy().ServeHTTP(w, r)
}

// removeProxyHeaders drops what a client says to its proxy only.
func removeProxyHeaders(h http.Header) {
	h.Del("Proxy-Connection")
	h.Del("Proxy-Authorization")
}

// passthroughProxy forwards requests for destinations outside the mesh
// as they are.
func (s *Sidecar) passthroughProxy() *httputil.ReverseProxy {
	s.passOnce.Do(func() {
		s.passRP = &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.Out.URL = pr.In.URL
				pr.Out.Host = pr.In.Host
			},
			// Never through another proxy from the environment: this
			// sidecar is the app's proxy.
			Transport: &http.Transport{
				DialContext:           (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
				MaxIdleConnsPerHost:   16,
				IdleConnTimeout:       90 * time.Second,
				ResponseHeaderTimeout: 0,
			},
			ErrorLog: s.debugLog(),
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				s.log.Debug("pass-through request failed", "host", r.URL.Host, "err", err)
				writeError(w, apiError{http.StatusBadGateway, errCodeDirectInvoke, "the destination " + r.URL.Host + " did not answer: " + err.Error()})
			},
		}
	})
	return s.passRP
}

// proxyConnect opens a CONNECT tunnel: to an app, its connection is served
// as intercepted (gRPC per call, or HTTP); to anything else, it is joined
// to a connection to the destination.
func (s *Sidecar) proxyConnect(w http.ResponseWriter, r *http.Request) {
	host, portText, err := net.SplitHostPort(r.Host)
	if err != nil {
		s.stats.intercepted.WithLabelValues("connect", "error").Inc()
		writeError(w, apiError{http.StatusBadRequest, errCodeDirectInvoke, "CONNECT needs host:port: " + err.Error()})
		return
	}
	id, toApp := s.meshTarget(r.Context(), host)
	var upstream net.Conn
	if !toApp {
		d := net.Dialer{Timeout: 10 * time.Second}
		if upstream, err = d.DialContext(r.Context(), "tcp", r.Host); err != nil {
			s.stats.intercepted.WithLabelValues("connect", "error").Inc()
			writeError(w, apiError{http.StatusBadGateway, errCodeDirectInvoke, "the destination " + r.Host + " did not answer: " + err.Error()})
			return
		}
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		if upstream != nil {
			_ = upstream.Close()
		}
		writeError(w, apiError{http.StatusInternalServerError, errCodeDirectInvoke, "the connection cannot be taken over"})
		return
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		if upstream != nil {
			_ = upstream.Close()
		}
		return
	}
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		_ = conn.Close()
		if upstream != nil {
			_ = upstream.Close()
		}
		return
	}
	var in io.Reader = conn
	if n := brw.Reader.Buffered(); n > 0 {
		in = io.MultiReader(io.LimitReader(brw.Reader, int64(n)), conn)
	}
	if toApp {
		s.stats.intercepted.WithLabelValues("connect", "mesh").Inc()
		if port, _ := strconv.Atoi(portText); s.tcpPort(port) {
			s.tunnelToApp(conn, in, id)
			return
		}
		s.intercepted.push(&interceptedConn{Conn: conn, appID: id, r: in})
		return
	}
	s.stats.intercepted.WithLabelValues("connect", "passthrough").Inc()
	s.pipe(conn, in, upstream)
}

// pipe joins an app's connection (read through in) to upstream until
// either side is done; the sidecar's stop closes both.
func (s *Sidecar) pipe(app net.Conn, in io.Reader, upstream net.Conn) {
	done := make(chan struct{})
	stop := context.AfterFunc(s.life, func() { _ = app.Close(); _ = upstream.Close() })
	go func() {
		_, _ = io.Copy(upstream, in)
		closeWrite(upstream)
		close(done)
	}()
	_, _ = io.Copy(app, upstream)
	closeWrite(app)
	<-done
	stop()
	_ = app.Close()
	_ = upstream.Close()
}

// closeWrite half-closes c where it can, so the peer sees the end of
// what was sent while its answer still flows.
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	_ = c.Close()
}

// debugLog is a log.Logger for a server's own complaints (a client's bad
// TLS record and the like): debug level.
func (s *Sidecar) debugLog() *log.Logger {
	return slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)
}
