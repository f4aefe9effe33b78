package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/outrigger/outrigger/nameresolution"
	"github.com/outrigger/outrigger/proxy/route"
	"github.com/outrigger/outrigger/resiliency"
	"github.com/outrigger/outrigger/telemetry"
)

// Headers the sidecars add on the mesh. The dapr-* ones reach the callee as
// daprd's do; the outrigger-* ones are for the callee's sidecar only and are
// removed before the app sees the request.
const (
	hdrCallerAppID     = "Dapr-Caller-App-Id"
	hdrCallerNamespace = "Dapr-Caller-Namespace"
	hdrCalleeAppID     = "Dapr-Callee-App-Id"
	hdrCalleeNamespace = "Outrigger-Callee-Namespace"
	hdrGRPCProxy       = "Outrigger-Grpc-Proxy"
	hdrDataTypeURL     = "Outrigger-Data-Type-Url"
)

// invocation is one outbound call in flight, carried in the request context
// from the API handler to the reverse proxy's hooks.
type invocation struct {
	// Under a retry policy: the policy, whether this attempt may be
	// followed by another, and what it came to.
	retry       *resiliency.Retry
	mayRetry    bool
	retryWanted bool
	reached     bool // an answer came from the peer
	status      int

	ep        nameresolution.Endpoint // nil once reported
	key       string                  // the consistent-hashing key
	appID     string
	namespace string
	method    string // escaped, no leading slash
	body      *limitedBody
	// builtIn is the built-in retry of a call without a policy of its
	// own (daprd's DaprBuiltInServiceRetries): an attempt that got no
	// answer is sent again, its body replayed.
	builtIn *resiliency.Retry
	replay  *replay // nil without builtIn or without a body
}

type invocationKey struct{}

var invocationPool = sync.Pool{New: func() any { return new(invocation) }}

// serveAPI serves the HTTP API, measured (daprd's HTTP server metrics) and
// traced (a span per call) when those are on.
func (s *Sidecar) serveAPI(w http.ResponseWriter, r *http.Request) {
	s.observeAPI(w, r, func(w http.ResponseWriter, r *http.Request) string {
		if s.routeAPI(w, r) {
			return invokeRoute
		}
		return apiRoute(r.URL.Path)
	})
}

// observeAPI runs serve, which answers one API call and names its route
// template, measured and traced when those are on.
func (s *Sidecar) observeAPI(w http.ResponseWriter, r *http.Request, serve func(http.ResponseWriter, *http.Request) string) {
	if s.dapr == nil && s.tracer == nil {
		serve(w, r)
		return
	}
	start := time.Now()
	r, span := s.startAPISpan(r)
	sw := &statusWriter{ResponseWriter: w}
	tmpl := serve(sw, r)
	code := sw.code()
	if s.dapr != nil {
		s.dapr.httpServed(r.Method, tmpl, code, r.ContentLength, sw.n, time.Since(start))
	}
	if span != nil {
		endAPISpan(span, r, tmpl, code)
	}
}

// routeAPI serves one API call; byHeader is whether it was an invocation
// named only by its dapr-app-id header (its path is the app's own).
func (s *Sidecar) routeAPI(w http.ResponseWriter, r *http.Request) (byHeader bool) {
	p := r.URL.Path
	if s.cfg.EnableAPILogging {
		s.log.Info("API call", "method", r.Method, "path", p, "caller", r.RemoteAddr)
	}
	if s.cfg.APIToken != "" && !s.apiTokenOK(w, r) {
		return
	}
	if strings.HasPrefix(p, "/v1.0/") {
		switch {
		case strings.HasPrefix(p, "/v1.0/invoke/"):
			t, ok := route.FromHeaders(r.URL.EscapedPath(), r.Header)
			if !ok {
				t, ok = route.InvokePath(r.URL.EscapedPath())
			}
			if !ok {
				writeError(w, apiError{http.StatusNotFound, errCodeDirectInvoke, route.ErrNoAppID.Error()})
				return
			}
			s.invokeHTTP(w, r, t)
			return
		case strings.HasPrefix(p, "/v1.0/state/"):
			s.serveState(w, r)
			return
		case strings.HasPrefix(p, "/v1.0/publish/"):
			s.servePublish(w, r)
			return
		case strings.HasPrefix(p, "/v1.0/secrets/"):
			if s.cfg.Secrets == nil {
				writeError(w, apiError{http.StatusInternalServerError, errCodeSecretStoresNotConfigured, "secret store is not configured"})
				return
			}
			s.cfg.Secrets.ServeHTTP(w, r)
			return
		case p == "/v1.0/healthz" && r.Method == http.MethodGet:
			s.serveHealthz(w, r)
			return
		case p == "/v1.0/healthz/outbound" && r.Method == http.MethodGet:
			if !s.outbound.Load() {
				writeError(w, apiError{http.StatusInternalServerError, errCodeOutboundNotReady, "dapr outbound is not ready"})
				return
			}
			w.WriteHeader(http.StatusNoContent)
			return
		case p == "/v1.0/metadata" && r.Method == http.MethodGet:
			s.serveGetMetadata(w)
			return
		case strings.HasPrefix(p, "/v1.0/metadata/") && r.Method == http.MethodPut:
			s.servePutMetadata(w, r)
			return
		case p == "/v1.0/shutdown" && (r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodGet):
			w.WriteHeader(http.StatusNoContent)
			s.Shutdown()
			return
		}
	}
	if strings.HasPrefix(p, "/v1.0-alpha1/state/") {
		s.serveState(w, r)
		return
	}
	if strings.HasPrefix(p, "/v1.0-alpha1/publish/") {
		s.servePublish(w, r)
		return
	}
	if t, ok := route.FromHeaders(r.URL.EscapedPath(), r.Header); ok {
		s.invokeHTTP(w, r, t)
		return true
	}
	writeError(w, apiError{http.StatusNotFound, errCodeDirectInvoke, route.ErrNoAppID.Error()})
	return false
}

func (s *Sidecar) servePublish(w http.ResponseWriter, r *http.Request) {
	if s.cfg.PubSub == nil {
		writeError(w, apiError{http.StatusBadRequest, errCodePubSubNotConfigured, "pubsub is not configured"})
		return
	}
	if r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodySize)
	}
	s.cfg.PubSub.ServeHTTP(w, r)
}

func (s *Sidecar) serveState(w http.ResponseWriter, r *http.Request) {
	if s.cfg.State == nil {
		store, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/v1.0/state/"), "/v1.0-alpha1/state/"), "/")
		writeError(w, apiError{http.StatusInternalServerError, errCodeStateStoreNotConfigured, "state store " + store + " is not configured"})
		return
	}
	if r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodySize)
	}
	s.cfg.State.ServeHTTP(w, r)
}

// invokeHTTP sends one invocation to the callee's sidecar, streaming the
// request and response bodies; under a retry policy or a circuit breaker
// (the app's Resiliency) it goes through invokeWithPolicy.
func (s *Sidecar) invokeHTTP(w http.ResponseWriter, r *http.Request, t route.Target) {
	name, ns, err := route.SplitAppID(t.AppID, s.cfg.Namespace)
	if err != nil {
		writeError(w, apiError{http.StatusBadRequest, errCodeDirectInvoke, "failed to invoke, id: " + t.AppID + ", err: " + err.Error()})
		return
	}
	if r.ContentLength > s.cfg.MaxBodySize {
		writeError(w, bodyTooLargeError())
		return
	}
	if s.tracer != nil {
		nameInvokeSpan(r.Context(), name, t.Method)
	}
	run := s.appRunner(name, ns)
	run.Applied()
	// The route's timeout bounds the whole call, retries included.
	caller := r.Context()
	ctx, cancel := s.invokeContext(caller, name, ns)
	defer cancel()
	defer timedOut(run, ctx, caller)
	r = r.WithContext(ctx)
	if pol := s.policyFor(name, ns); pol != nil {
		s.invokeWithPolicy(w, r, pol, func(r *http.Request, out *invocation) { s.invokeOnce(w, r, t.AppID, name, ns, t.Method, out, nil) })
		return
	}
	// Without any policy of its own, the call has the built-in retry.
	var builtIn *resiliency.Retry
	if run == nil {
		builtIn = s.builtInRetry()
	}
	s.invokeOnce(w, r, t.AppID, name, ns, t.Method, nil, builtIn)
}

// invokeOnce is one attempt of an invocation. res, when not nil, carries
// the retry policy in and the attempt's outcome out; builtIn, when not nil,
// is the built-in retry of a call without a policy.
func (s *Sidecar) invokeOnce(w http.ResponseWriter, r *http.Request, target, name, ns, method string, res *invocation, builtIn *resiliency.Retry) {
	key := s.hashKey(name, ns, r.Header)
	ep, err := s.lb.Pick(r.Context(), name, ns, key)
	if err != nil {
		s.stats.outbound.WithLabelValues(name, "resolve_error").Inc()
		writeError(w, directInvokeError(target, err))
		return
	}
	inv := invocationPool.Get().(*invocation)
	*inv = invocation{ep: ep, key: key, appID: name, namespace: ns, method: method}
	if res != nil {
		inv.retry, inv.mayRetry = res.retry, res.mayRetry
	}
	inv.builtIn = builtIn
	if r.Body != nil && r.Body != http.NoBody {
		inv.body = &limitedBody{rc: r.Body, left: s.cfg.MaxBodySize}
		r.Body = inv.body
		if inv.builtIn != nil {
			inv.replay = newReplay(inv.body)
			r.Body = inv.replay.next()
		}
	}
	r = r.WithContext(context.WithValue(r.Context(), invocationKey{}, inv))
	start := time.Now()
	s.forwardToPeer(w, r)
	if inv.ep != nil {
		inv.ep.Done(nil) // never sent
	}
	if s.dapr != nil {
		st := ""
		if inv.reached {
			st = statusLabel(inv.status)
		}
		s.dapr.invoked(name, "unary", st, time.Since(start))
	}
	if res != nil {
		res.appID, res.reached, res.status, res.retryWanted = name, inv.reached, inv.status, inv.retryWanted
	}
	*inv = invocation{}
	invocationPool.Put(inv)
}

// invokeContext bounds a call to appID in namespace by its route's timeout.
func (s *Sidecar) invokeContext(ctx context.Context, appID, namespace string) (context.Context, context.CancelFunc) {
	if s.cfg.Routes != nil {
		if d := s.cfg.Routes.InvokeTimeout(appID, namespace); d > 0 {
			return context.WithTimeout(ctx, d)
		}
	}
	return ctx, func() {}
}

func (s *Sidecar) peerProxy() *httputil.ReverseProxy {
	if p := s.peerRP.Load(); p != nil {
		return p
	}
	p := &httputil.ReverseProxy{
		Rewrite:        s.rewriteToPeer,
		Transport:      peerRoundTripper{s},
		FlushInterval:  0,
		ErrorHandler:   s.peerError,
		ModifyResponse: s.countOutbound,
		BufferPool:     bufferPool{},
		ErrorLog:       nil,
	}
	s.peerRP.CompareAndSwap(nil, p)
	return s.peerRP.Load()
}

func (s *Sidecar) rewriteToPeer(pr *httputil.ProxyRequest) {
	s.addressPeer(pr.Out, pr.In.Context().Value(invocationKey{}).(*invocation))
}

// addressPeer points out at the callee's sidecar and adds the invocation's
// headers.
func (s *Sidecar) addressPeer(out *http.Request, inv *invocation) {
	out.URL.Scheme = s.peers.scheme()
	out.URL.Host = inv.ep.Address()
	out.Host = out.URL.Host
	setEscapedPath(out.URL, "/"+inv.method)
	h := out.Header
	h[hdrCalleeAppID] = []string{inv.appID}
	h[hdrCalleeNamespace] = []string{inv.namespace}
	h[hdrCallerAppID] = []string{s.cfg.AppID}
	h[hdrCallerNamespace] = []string{s.cfg.Namespace}
	delete(h, hdrGRPCProxy)
	if s.tracer != nil {
		telemetry.ToHTTP(out.Context(), h)
	}
}

// forwardToPeer sends an invocation (its *invocation in r's context) to the
// callee's sidecar and writes the answer to w. It does what the reverse
// proxy (peerProxy) does with a call, without its copy of the request's
// headers and its per-call header maps: hop-by-hop headers (and those
// Connection names) dropped but "Te: trailers", X-Forwarded-* and
// Forwarded dropped, no User-Agent added, the body streamed, informational
// answers passed on, the answer's status, headers, body and trailers
// copied (copyResponse), failures to peerError. An upgrade, or a query the
// reverse proxy would re-encode, goes to the reverse proxy.
func (s *Sidecar) forwardToPeer(w http.ResponseWriter, r *http.Request) {
	if len(r.Header["Upgrade"]) > 0 || !cleanQuery(r.URL.RawQuery) {
		s.peerProxy().ServeHTTP(w, r)
		return
	}
	inv := r.Context().Value(invocationKey{}).(*invocation)
	h := make(http.Header, len(r.Header)+4)
	for k, vv := range r.Header {
		if !hopByHop(k) && !forwardedFor(k) {
			h[k] = vv
		}
	}
	dropConnectionNamed(h, r.Header["Connection"])
	if httpguts.HeaderValuesContainsToken(r.Header["Te"], "trailers") {
		h["Te"] = []string{"trailers"}
	}
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = []string{""} // net/http adds none then
	}
	u := *r.URL
	// One copy of r, with the client trace that passes on 1xx answers.
	out := r.WithContext(httptrace.WithClientTrace(r.Context(), informational(w)))
	out.URL, out.Header, out.Close = &u, h, false
	if r.ContentLength == 0 {
		out.Body = nil
	}
	s.addressPeer(out, inv)
	resp, err := peerRoundTripper{s}.RoundTrip(out)
	if err != nil {
		s.peerError(w, out, err)
		return
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		_ = resp.Body.Close()
		s.peerError(w, out, errors.New("the callee switched protocols on a call that did not ask to"))
		return
	}
	if err := s.countOutbound(resp); err != nil {
		_ = resp.Body.Close()
		s.peerError(w, out, err)
		return
	}
	if err := copyResponse(w, resp); err != nil {
		panic(http.ErrAbortHandler) // a broken answer is not passed on as a whole one
	}
}

// informational passes the callee's 1xx answers (103 Early Hints and the
// like) on to the caller, as the reverse proxy does.
func informational(w http.ResponseWriter) *httptrace.ClientTrace {
	return &httptrace.ClientTrace{Got1xxResponse: func(code int, header textproto.MIMEHeader) error {
		h := w.Header()
		for k, vv := range header {
			h[k] = vv
		}
		w.WriteHeader(code)
		clear(h)
		return nil
	}}
}

func setEscapedPath(u *url.URL, escaped string) {
	if strings.IndexByte(escaped, '%') < 0 {
		u.Path, u.RawPath = escaped, ""
		return
	}
	if p, err := url.PathUnescape(escaped); err == nil {
		u.Path, u.RawPath = p, escaped
		return
	}
	u.Path, u.RawPath = escaped, ""
}

// peerRoundTripper sends an invocation to the instance picked for it; when
// connecting fails before any of the body was read, it moves the call to
// another instance (up to maxConnectAttempts). A call under the built-in
// retry that gets no answer (the peer's sidecar unreachable, the
// connection lost, its TLS handshake failed) is sent again after the
// retry's back-off, to an instance picked anew, its body replayed. It
// reports each attempt's outcome to the balancer.
type peerRoundTripper struct{ s *Sidecar }

func (p peerRoundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	inv, _ := r.Context().Value(invocationKey{}).(*invocation)
	if inv == nil || inv.ep == nil {
		return p.s.peers.RoundTrip(r)
	}
	t := p.s.peers.transport(inv.appID, inv.namespace)
	for attempt, retries := 1, 0; ; attempt++ {
		move := attempt < maxConnectAttempts
		if inv.body != nil {
			inv.body.hold.Store(move || inv.builtIn.Allowed(retries))
		}
		resp, err := t.RoundTrip(r)
		if err != nil && move && connectFailed(err) && r.Context().Err() == nil &&
			(inv.body == nil || (inv.replay == nil && !inv.body.read.Load()) || inv.replay.replayable()) {
			if next := p.resend(r, inv, err, "connecting failed; trying another instance"); next != nil {
				r = next
				continue
			}
		}
		if err != nil && inv.builtIn.Allowed(retries) && p.s.builtInRetries(r, inv, err) {
			retries++
			if !p.s.pause(r.Context(), inv.builtIn.Backoff(retries)) {
				err = context.Cause(r.Context())
			} else if next := p.resend(r, inv, err, "no answer; retrying (built-in retry)"); next != nil {
				p.s.stats.retries.WithLabelValues(inv.appID).Inc()
				r = next
				attempt = 0 // the new attempt may try every instance again
				continue
			}
		}
		inv.replay.stop()
		if inv.body != nil {
			inv.body.hold.Store(false)
			if err != nil {
				_ = inv.body.Close()
			}
		}
		if inv.ep != nil {
			status := 0
			if resp != nil {
				status = resp.StatusCode
			}
			inv.ep.Done(callOutcome(r.Context(), status, err))
			inv.ep = nil
		}
		return resp, err
	}
}

// resend is r for another attempt, at an instance picked anew, its body
// replayed; nil when no instance can be picked. The failed attempt's
// outcome goes to the balancer.
func (p peerRoundTripper) resend(r *http.Request, inv *invocation, err error, why string) *http.Request {
	if inv.ep != nil {
		inv.ep.Done(err)
		inv.ep = nil
	}
	ep, perr := p.s.lb.Pick(r.Context(), inv.appID, inv.namespace, inv.key)
	if perr != nil {
		return nil
	}
	p.s.log.Debug(why, "app_id", inv.appID, "err", err, "next", ep.Address())
	inv.ep = ep
	next := *r
	u := *r.URL
	u.Host = ep.Address()
	next.URL, next.Host = &u, u.Host
	if inv.replay != nil {
		next.Body = inv.replay.next()
	}
	return &next
}

func (s *Sidecar) countOutbound(resp *http.Response) error {
	if inv, ok := resp.Request.Context().Value(invocationKey{}).(*invocation); ok {
		s.stats.outbound.WithLabelValues(inv.appID, statusLabel(resp.StatusCode)).Inc()
		inv.reached, inv.status = true, resp.StatusCode
		if inv.mayRetry && inv.retry.RetriesHTTP(resp.StatusCode) {
			inv.retryWanted = true
			return errRetry // not written: the next attempt answers
		}
	}
	return nil
}

func (s *Sidecar) peerError(w http.ResponseWriter, r *http.Request, err error) {
	inv, _ := r.Context().Value(invocationKey{}).(*invocation)
	if errors.Is(err, errRetry) {
		return
	}
	if inv != nil && inv.mayRetry && r.Context().Err() == nil && !(inv.body != nil && inv.body.exceeded.Load()) {
		// No answer (the peer unreachable, the connection lost): the
		// policy's next attempt.
		s.stats.outbound.WithLabelValues(inv.appID, "error").Inc()
		inv.retryWanted = true
		return
	}
	if inv != nil && inv.body != nil && inv.body.exceeded.Load() {
		writeError(w, bodyTooLargeError())
		return
	}
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		// The caller went away; nobody reads an answer.
		return
	}
	appID := ""
	if inv != nil {
		appID = inv.appID
		s.stats.outbound.WithLabelValues(appID, "error").Inc()
	}
	s.log.Debug("invocation failed", "app_id", appID, "err", err)
	writeError(w, directInvokeError(appID, err))
}

func (s *Sidecar) serveHealthz(w http.ResponseWriter, r *http.Request) {
	if !s.outbound.Load() {
		writeError(w, apiError{http.StatusInternalServerError, errCodeHealthNotReady, "dapr is not ready: [outbound]"})
		return
	}
	if s.app != nil && !s.app.reachable.Load() {
		writeError(w, apiError{http.StatusInternalServerError, errCodeHealthNotReady, "dapr is not ready: [app-channel]"})
		return
	}
	if q := r.URL.RawQuery; q != "" {
		if v := r.URL.Query(); v.Has("appid") && v.Get("appid") != s.cfg.AppID {
			writeError(w, apiError{http.StatusInternalServerError, errCodeHealthAppIDMismatch, "dapr app-id does not match"})
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// metadataJSON is the HTTP metadata API's answer, in daprd's JSON shape.
type metadataJSON struct {
	ID                      string             `json:"id"`
	RuntimeVersion          string             `json:"runtimeVersion,omitempty"`
	EnabledFeatures         []string           `json:"enabledFeatures,omitempty"`
	Extended                map[string]string  `json:"extended,omitempty"`
	Components              []componentJSON    `json:"components,omitempty"`
	Subscriptions           []subscriptionJSON `json:"subscriptions,omitempty"`
	AppConnectionProperties *appConnJSON       `json:"appConnectionProperties,omitempty"`
	ActorRuntime            actorRuntimeJSON   `json:"actorRuntime"`
}

type componentJSON struct {
	Name         string   `json:"name"`
	Type         string   `json:"type"`
	Version      string   `json:"version"`
	Capabilities []string `json:"capabilities,omitempty"`
}

type subscriptionJSON struct {
	PubsubName      string             `json:"pubsubname"`
	Topic           string             `json:"topic"`
	Metadata        map[string]string  `json:"metadata,omitempty"`
	Rules           []subscriptionRule `json:"rules,omitempty"`
	DeadLetterTopic string             `json:"deadLetterTopic"`
	Type            string             `json:"type"`
}

type subscriptionRule struct {
	Match string `json:"match,omitempty"`
	Path  string `json:"path,omitempty"`
}

type appConnJSON struct {
	Port           int32          `json:"port,omitempty"`
	Protocol       string         `json:"protocol,omitempty"`
	ChannelAddress string         `json:"channelAddress,omitempty"`
	MaxConcurrency int32          `json:"maxConcurrency,omitempty"`
	Health         *appHealthJSON `json:"health,omitempty"`
}

type appHealthJSON struct {
	HealthCheckPath     string `json:"healthCheckPath,omitempty"`
	HealthProbeInterval string `json:"healthProbeInterval,omitempty"`
	HealthProbeTimeout  string `json:"healthProbeTimeout,omitempty"`
	HealthThreshold     int32  `json:"healthThreshold,omitempty"`
}

type actorRuntimeJSON struct {
	RuntimeStatus string `json:"runtimeStatus"`
	HostReady     bool   `json:"hostReady"`
}

func (s *Sidecar) serveGetMetadata(w http.ResponseWriter) {
	m := s.metadata()
	out := metadataJSON{
		ID:             m.GetId(),
		RuntimeVersion: m.GetRuntimeVersion(),
		Extended:       m.GetExtendedMetadata(),
		ActorRuntime:   actorRuntimeJSON{RuntimeStatus: "DISABLED"},
	}
	for _, c := range m.GetRegisteredComponents() {
		out.Components = append(out.Components, componentJSON{Name: c.GetName(), Type: c.GetType(), Version: c.GetVersion(), Capabilities: c.GetCapabilities()})
	}
	for _, sub := range m.GetSubscriptions() {
		sj := subscriptionJSON{PubsubName: sub.GetPubsubName(), Topic: sub.GetTopic(), Metadata: sub.GetMetadata(), DeadLetterTopic: sub.GetDeadLetterTopic(), Type: sub.GetType().String()}
		for _, r := range sub.GetRules().GetRules() {
			sj.Rules = append(sj.Rules, subscriptionRule{Match: r.GetMatch(), Path: r.GetPath()})
		}
		out.Subscriptions = append(out.Subscriptions, sj)
	}
	if acp := m.GetAppConnectionProperties(); acp != nil {
		out.AppConnectionProperties = &appConnJSON{
			Port: acp.GetPort(), Protocol: acp.GetProtocol(), ChannelAddress: acp.GetChannelAddress(), MaxConcurrency: acp.GetMaxConcurrency(),
		}
		if h := acp.GetHealth(); h != nil {
			out.AppConnectionProperties.Health = &appHealthJSON{
				HealthCheckPath: h.GetHealthCheckPath(), HealthProbeInterval: h.GetHealthProbeInterval(),
				HealthProbeTimeout: h.GetHealthProbeTimeout(), HealthThreshold: h.GetHealthThreshold(),
			}
		}
	}
	body, _ := json.Marshal(out)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

func (s *Sidecar) servePutMetadata(w http.ResponseWriter, r *http.Request) {
	key := strings.TrimPrefix(r.URL.Path, "/v1.0/metadata/")
	if key == "" || strings.Contains(key, "/") {
		writeError(w, apiError{http.StatusBadRequest, errCodeMalformedRequest, "metadata key must be one non-empty path segment"})
		return
	}
	val, err := io.ReadAll(io.LimitReader(r.Body, 64<<10+1))
	if err != nil {
		writeError(w, apiError{http.StatusBadRequest, errCodeMetadataSet, "failed reading the metadata value: " + err.Error()})
		return
	}
	if len(val) > 64<<10 {
		writeError(w, apiError{http.StatusRequestEntityTooLarge, errCodeMetadataSet, "metadata value is larger than 64 KiB"})
		return
	}
	s.setExtended(key, string(val))
	w.WriteHeader(http.StatusNoContent)
}

func (s *Sidecar) setExtended(key, val string) {
	s.metaMu.Lock()
	s.extended[key] = val
	s.metaMu.Unlock()
}

// limitedBody is a request body that fails once it has given more than its
// limit, remembering that it did so the error can become a 413.
type limitedBody struct {
	rc       io.ReadCloser
	left     int64
	exceeded atomic.Bool
	// read is set by the first Read: the body may have been sent, so the
	// call cannot move to another instance.
	read atomic.Bool
	// hold makes Close a no-op while a failed connection may be retried
	// (a transport closes the body of a request it failed).
	hold atomic.Bool
}

var errBodyTooLarge = errors.New("request body is larger than --max-body-size")

func (b *limitedBody) Read(p []byte) (int, error) {
	if !b.read.Load() {
		b.read.Store(true)
	}
	if b.left < 0 {
		return 0, errBodyTooLarge
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		b.exceeded.Store(true)
		return n - 1, errBodyTooLarge
	}
	return n, err
}

func (b *limitedBody) Close() error {
	if b.hold.Load() {
		return nil
	}
	return b.rc.Close()
}

func bodyTooLargeError() apiError {
	return apiError{http.StatusRequestEntityTooLarge, errCodeDirectInvoke, "failed to invoke: " + errBodyTooLarge.Error()}
}

func tooLarge(err error) bool {
	var mbe *http.MaxBytesError
	return errors.Is(err, errBodyTooLarge) || errors.As(err, &mbe)
}

// bufferPool lends the reverse proxies their copy buffers.
type bufferPool struct{}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *(copyBuffers.Get().(*[]byte)) }
func (bufferPool) Put(b []byte) { copyBuffers.Put(&b) }
