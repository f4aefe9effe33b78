package proxy

import (
	"context"
	"crypto/subtle"
	"net/http"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// apiTokenHeader carries DAPR_API_TOKEN from the app to the sidecar and
// APP_API_TOKEN from the sidecar to the app, as in Dapr.
const apiTokenHeader = "dapr-api-token"

// apiTokenOK checks an HTTP API call's token (daprd exempts GET of the two
// health endpoints) and answers 401 when it is wrong. The token is removed
// so it never travels on.
func (s *Sidecar) apiTokenOK(w http.ResponseWriter, r *http.Request) bool {
	got := r.Header.Get(apiTokenHeader)
	if !tokenEqual(got, s.cfg.APIToken) {
		if r.Method == http.MethodGet && (r.URL.Path == "/v1.0/healthz" || r.URL.Path == "/v1.0/healthz/outbound") {
			return true
		}
		s.stats.apiAuthFailures.Inc()
		s.log.Warn("API call refused: wrong or missing dapr-api-token", "method", r.Method, "path", r.URL.Path, "caller", r.RemoteAddr)
		// daprd's exact answer (plain text, not its error JSON), which the
		// SDKs expect.
		http.Error(w, "invalid api token", http.StatusUnauthorized)
		return false
	}
	r.Header.Del(apiTokenHeader)
	return true
}

func tokenEqual(got, want string) bool {
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// checkAPIToken is the gRPC side of the token check: Unauthenticated, as
// daprd answers, and the token removed from the metadata.
func (s *Sidecar) checkAPIToken(ctx context.Context, method string) (context.Context, error) {
	if s.cfg.APIToken == "" {
		return ctx, nil
	}
	if _, ok := ctx.Value(interceptKey{}).(string); ok {
		// An app's own call to another app, taken over by this sidecar:
		// the app knows nothing of a token.
		return ctx, nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get(apiTokenHeader)
	switch {
	case len(vals) == 0:
		s.stats.apiAuthFailures.Inc()
		s.log.Warn("gRPC call refused: missing dapr-api-token", "method", method)
		return ctx, status.Error(codes.Unauthenticated, "missing api token in request metadata")
	case !tokenEqual(vals[0], s.cfg.APIToken):
		s.stats.apiAuthFailures.Inc()
		s.log.Warn("gRPC call refused: wrong dapr-api-token", "method", method)
		return ctx, status.Error(codes.Unauthenticated, "authentication error: api token mismatch")
	}
	md = md.Copy()
	md.Delete(apiTokenHeader)
	return metadata.NewIncomingContext(ctx, md), nil
}

func (s *Sidecar) apiTokenUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := s.checkAPIToken(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (s *Sidecar) apiTokenStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := s.checkAPIToken(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	if ctx != ss.Context() {
		ss = &contextStream{ServerStream: ss, ctx: ctx}
	}
	return handler(srv, ss)
}

// contextStream replaces a server stream's context.
type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (c *contextStream) Context() context.Context { return c.ctx }
