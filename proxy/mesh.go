package proxy

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	commonv1pb "github.com/dapr/dapr/pkg/proto/common/v1"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/outrigger/outrigger/mtls"
	"github.com/outrigger/outrigger/mtls/acl"
)

// serveMesh receives calls from other sidecars and delivers them to the app:
// gRPC proxying as HTTP/2 frames to the app's gRPC server, invocations to an
// HTTP or h2c app as a streamed request, and invocations to a gRPC app
// through AppCallback/OnInvoke.
func (s *Sidecar) serveMesh(w http.ResponseWriter, r *http.Request) {
	// A proxied gRPC call: marked by the calling sidecar, or from a
	// proxyless gRPC client (xDS), which sends no invocation headers.
	grpcProxy := isGRPCRequest(r) && (r.Header.Get(hdrGRPCProxy) != "" || r.Header.Get(hdrCalleeAppID) == "")
	caller := r.Header.Get(hdrCallerAppID)
	var proven *acl.Caller
	if s.cfg.MeshTLS != nil {
		// The caller is who its certificate says, whatever it wrote.
		id, err := mtls.PeerIdentity(r.TLS)
		if err != nil {
			s.stats.meshRefused.WithLabelValues("no_identity").Inc()
			s.refuse(w, grpcProxy, "no proven identity: "+err.Error())
			return
		}
		if caller != "" && caller != id.AppID {
			s.log.Warn("a caller claimed another app-id; using its proven identity", "claimed", caller, "proven", id.String())
		}
		caller = id.AppID
		r.Header[hdrCallerAppID] = []string{id.AppID}
		r.Header[hdrCallerNamespace] = []string{id.Namespace}
		proven = &acl.Caller{TrustDomain: id.TrustDomain.Name(), Namespace: id.Namespace, AppID: id.AppID}
	}
	if s.cfg.AccessControl != nil && !s.allowed(w, r, proven, grpcProxy) {
		return
	}
	if s.app == nil {
		s.stats.inbound.WithLabelValues(caller, "no_app").Inc()
		if grpcProxy {
			writeGRPCError(w, 12, "app "+s.cfg.AppID+" has no app port") // Unimplemented
			return
		}
		writeError(w, apiError{http.StatusInternalServerError, errCodeDirectInvoke, "app channel is not initialized"})
		return
	}
	if !s.app.ready() {
		s.stats.inbound.WithLabelValues(caller, "unhealthy").Inc()
		if grpcProxy {
			writeGRPCError(w, 14, errAppUnhealthy.Error()) // Unavailable
			return
		}
		writeError(w, directInvokeError(s.cfg.AppID, errAppUnhealthy))
		return
	}
	if r.Header.Get(hdrTCPTunnel) != "" && !grpcProxy {
		s.serveTunnel(w, r, caller)
		return
	}
	if r.ContentLength > s.cfg.MaxBodySize {
		writeError(w, bodyTooLargeError())
		return
	}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &limitedBody{rc: r.Body, left: s.cfg.MaxBodySize}
	}
	if err := s.app.acquire(r.Context()); err != nil {
		return // the caller went away while waiting for a slot
	}
	defer s.app.release()

	h := r.Header
	h.Del(apiTokenHeader) // never the caller's; the app's own is added on the app channel
	delete(h, hdrCalleeNamespace)
	delete(h, hdrGRPCProxy)
	if grpcProxy && s.app.protocol != ProtocolGRPC {
		writeGRPCError(w, 12, "app "+s.cfg.AppID+" does not speak gRPC") // Unimplemented
		return
	}
	start := time.Now()
	var span trace.Span
	if s.tracer != nil {
		r, span = s.startMeshSpan(r, grpcProxy)
	}
	sw := statusWriter{ResponseWriter: w}
	switch {
	case grpcProxy:
		s.stats.inbound.WithLabelValues(caller, "grpc").Inc()
		s.app.proxy.ServeHTTP(&sw, r)
	case s.app.protocol == ProtocolGRPC:
		s.invokeGRPCApp(&sw, r)
	default:
		delete(h, hdrDataTypeURL)
		if !s.app.forward(&sw, r) {
			s.app.proxy.ServeHTTP(&sw, r)
		}
		s.stats.inbound.WithLabelValues(caller, statusLabel(sw.code())).Inc()
	}
	code := sw.code()
	if s.dapr != nil {
		s.dapr.delivered(caller, statusLabel(code))
		if !grpcProxy && s.app.protocol != ProtocolGRPC {
			s.dapr.appCalled(r.Method, code, r.ContentLength, sw.n, time.Since(start))
		}
	}
	if span != nil {
		if span.IsRecording() {
			span.SetAttributes(attribute.Int(attrDaprStatusCode, code))
			setHTTPSpanStatus(span, code)
		}
		span.End()
	}
}

// allowed applies the access-control policy to a call and answers a
// refused one: 403 with daprd's message for invocations, PermissionDenied
// for proxied gRPC.
func (s *Sidecar) allowed(w http.ResponseWriter, r *http.Request, caller *acl.Caller, grpcProxy bool) bool {
	operation, verb, isHTTP := r.URL.Path, r.Method, true
	if grpcProxy {
		verb, isHTTP = "", false
	} else if s.app != nil && s.app.protocol == ProtocolGRPC {
		isHTTP = false
	}
	d := s.cfg.AccessControl.Decide(caller, operation, verb, isHTTP)
	src := ""
	if caller != nil {
		src = caller.AppID
	}
	action := "allow"
	if !d.Allowed {
		action = "deny"
	}
	s.stats.aclDecisions.WithLabelValues(src, action, d.Scope).Inc()
	if d.Allowed {
		return true
	}
	who := "an unidentified caller"
	if caller != nil {
		who = "spiffe://" + caller.TrustDomain + "/ns/" + caller.Namespace + "/" + caller.AppID
	}
	msg := fmt.Sprintf("access control policy has denied access to id: %s operation: %s verb: %s", who, strings.TrimPrefix(operation, "/"), verbFromMethod(verb))
	s.log.Info("call refused by the access-control policy", "caller", who, "operation", operation, "verb", verb, "reason", d.Reason)
	if grpcProxy {
		writeGRPCError(w, int(codes.PermissionDenied), msg)
		return false
	}
	writeError(w, apiError{http.StatusForbidden, errCodeDirectInvoke, "failed to invoke, id: " + s.cfg.AppID + ", err: rpc error: code = PermissionDenied desc = " + msg})
	return false
}

// refuse answers a mesh call that cannot be served at all.
func (s *Sidecar) refuse(w http.ResponseWriter, grpcProxy bool, msg string) {
	if grpcProxy {
		writeGRPCError(w, int(codes.PermissionDenied), msg)
		return
	}
	writeError(w, apiError{http.StatusForbidden, errCodeDirectInvoke, msg})
}

// invokeGRPCApp turns an invocation into AppCallback/OnInvoke for a gRPC app.
func (s *Sidecar) invokeGRPCApp(w http.ResponseWriter, r *http.Request) {
	caller := r.Header.Get(hdrCallerAppID)
	body, err := io.ReadAll(r.Body)
	if err != nil {
		if tooLarge(err) {
			writeError(w, bodyTooLargeError())
			return
		}
		writeError(w, apiError{http.StatusBadRequest, errCodeDirectInvoke, "failed reading the request body: " + err.Error()})
		return
	}
	method := strings.TrimPrefix(r.URL.Path, "/")
	req := &commonv1pb.InvokeRequest{
		Method:      method,
		Data:        &anypb.Any{TypeUrl: r.Header.Get(hdrDataTypeURL), Value: body},
		ContentType: r.Header.Get("Content-Type"),
		HttpExtension: &commonv1pb.HTTPExtension{
			Verb:        verbFromMethod(r.Method),
			Querystring: r.URL.RawQuery,
		},
	}
	ctx := metadata.NewOutgoingContext(r.Context(), headersToMetadata(r.Header))
	start := time.Now()
	resp, err := s.app.invokeGRPC(ctx, req)
	if s.dapr != nil {
		s.dapr.grpcAppCalled("/dapr.proto.runtime.v1.AppCallback/OnInvoke", status.Code(err), time.Since(start))
	}
	if err != nil {
		st := status.Convert(err)
		code := httpStatusFromGRPC(st.Code())
		s.stats.inbound.WithLabelValues(caller, statusLabel(code)).Inc()
		js, _ := protojson.Marshal(st.Proto())
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write(js)
		return
	}
	s.stats.inbound.WithLabelValues(caller, "200").Inc()
	hdr := w.Header()
	if ct := resp.GetContentType(); ct != "" {
		hdr.Set("Content-Type", ct)
	}
	if tu := resp.GetData().GetTypeUrl(); tu != "" {
		hdr.Set(hdrDataTypeURL, tu)
	}
	data := resp.GetData().GetValue()
	hdr.Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	_, _ = io.Copy(w, bytes.NewReader(data))
}

var verbs = map[string]commonv1pb.HTTPExtension_Verb{
	http.MethodGet: commonv1pb.HTTPExtension_GET, http.MethodHead: commonv1pb.HTTPExtension_HEAD,
	http.MethodPost: commonv1pb.HTTPExtension_POST, http.MethodPut: commonv1pb.HTTPExtension_PUT,
	http.MethodDelete: commonv1pb.HTTPExtension_DELETE, http.MethodConnect: commonv1pb.HTTPExtension_CONNECT,
	http.MethodOptions: commonv1pb.HTTPExtension_OPTIONS, http.MethodTrace: commonv1pb.HTTPExtension_TRACE,
	http.MethodPatch: commonv1pb.HTTPExtension_PATCH,
}

func verbFromMethod(m string) commonv1pb.HTTPExtension_Verb {
	if v, ok := verbs[m]; ok {
		return v
	}
	return commonv1pb.HTTPExtension_NONE
}

// methodFromVerb is the HTTP method for an InvokeService verb; NONE is POST.
func methodFromVerb(v commonv1pb.HTTPExtension_Verb) string {
	if v == commonv1pb.HTTPExtension_NONE {
		return http.MethodPost
	}
	return v.String()
}

// headersToMetadata carries HTTP headers to gRPC metadata, leaving out the
// ones gRPC sets itself.
func headersToMetadata(h http.Header) metadata.MD {
	md := make(metadata.MD, len(h))
	for k, vs := range h {
		lk := strings.ToLower(k)
		switch {
		case lk == "content-type", lk == "content-length", lk == "user-agent", lk == "te", lk == "host",
			lk == "connection", lk == "accept-encoding", strings.HasPrefix(lk, "grpc-"), strings.HasPrefix(lk, "outrigger-"):
			continue
		}
		md[lk] = vs
	}
	return md
}

// isGRPCRequest reports whether r is a gRPC call (HTTP/2 with a gRPC content type).
func isGRPCRequest(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return r.ProtoMajor == 2 && strings.HasPrefix(ct, "application/grpc")
}

// writeGRPCError answers a gRPC call with a trailers-only error.
func writeGRPCError(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "application/grpc")
	h.Set("Grpc-Status", strconv.Itoa(code))
	h.Set("Grpc-Message", url.PathEscape(msg))
	w.WriteHeader(http.StatusOK)
}

// statusWriter remembers the status an http.Handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
	n      int64 // body bytes written
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

// Flush keeps streaming responses streaming through the wrapper.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}
