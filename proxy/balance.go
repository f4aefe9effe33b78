package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"

	"google.golang.org/grpc/metadata"

	"github.com/outrigger/outrigger/nameresolution"
)

// Balancer is a Resolver that picks an instance for each call and hears
// how the call went, so it can spread calls by load and leave out an
// instance that keeps failing; *balance.Balancer is one. A Resolver that is
// not a Balancer is asked for an address per call and told nothing.
type Balancer interface {
	Pick(ctx context.Context, appID, namespace, key string) (nameresolution.Endpoint, error)
}

// maxConnectAttempts bounds how many instances one call tries when
// connecting fails, before the call fails.
const maxConnectAttempts = 3

// addressEndpoint is an instance a plain Resolver gave.
type addressEndpoint string

func (a addressEndpoint) Address() string { return string(a) }
func (addressEndpoint) Done(error)        {}

// addressPicker makes a Balancer of a plain Resolver.
type addressPicker struct{ r Resolver }

func (p addressPicker) Pick(ctx context.Context, appID, namespace, _ string) (nameresolution.Endpoint, error) {
	addr, err := p.r.Resolve(ctx, appID, namespace)
	if err != nil {
		return nil, err
	}
	return addressEndpoint(addr), nil
}

// balancer is the sidecar's view of its resolver.
func balancerOf(r Resolver) Balancer {
	if b, ok := r.(Balancer); ok {
		return b
	}
	return addressPicker{r}
}

// hashHeader is the header consistent hashing takes for calls to appID in
// namespace: the app's route's (the control plane's hash_policy), else the
// sidecar's own Configuration's.
func (s *Sidecar) hashHeader(appID, namespace string) string {
	if s.cfg.Routes != nil {
		if h := s.cfg.Routes.InvokeHashHeader(appID, namespace); h != "" {
			return h
		}
	}
	return s.cfg.HashHeader
}

// hashKey is the value consistent hashing uses for a call to appID.
func (s *Sidecar) hashKey(appID, namespace string, h http.Header) string {
	if name := s.hashHeader(appID, namespace); name != "" {
		return h.Get(name)
	}
	return ""
}

// hashKeyMD is hashKey for a gRPC call's metadata.
func (s *Sidecar) hashKeyMD(appID, namespace string, md metadata.MD) string {
	if name := s.hashHeader(appID, namespace); name != "" {
		if v := md.Get(name); len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

// connectFailed reports whether err is a failure to connect to the peer,
// before anything of the request was sent: another instance may be tried.
func connectFailed(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// callOutcome is what a finished call tells the balancer: an error for a
// call that did not reach a working sidecar (no connection, a timeout, or an
// answer of 502, 503 or 504 from the sidecar there); nil otherwise. A call
// the caller cancelled says nothing about the instance.
func callOutcome(ctx context.Context, status int, err error) error {
	switch {
	case err != nil && errors.Is(err, context.Canceled) && ctx.Err() == context.Canceled:
		return nil
	case err != nil:
		return err
	case status == http.StatusBadGateway || status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout:
		return errPeerUnavailable
	}
	return nil
}

var errPeerUnavailable = errors.New("the peer sidecar answered that it cannot serve")
