package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
)

// AppConn is the sidecar's channel to its app as building blocks use it
// (the pub/sub subscriber): the same connections, API token and
// --app-max-concurrency as service invocation.
type AppConn struct{ a *appChannel }

// App is the channel to the sidecar's app; nil when it has no app port.
func (s *Sidecar) App() *AppConn {
	if s.app == nil {
		return nil
	}
	return &AppConn{a: s.app}
}

// Protocol is the app's protocol: http, h2c or grpc.
func (c *AppConn) Protocol() string { return c.a.protocol }

// WaitReady waits until calls may be delivered to the app (it is reachable
// and, with health checks on, healthy).
func (c *AppConn) WaitReady(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !c.a.ready() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// Do sends req to the app: its path and query are kept, the scheme and
// host become the app's. The response body must be closed; it holds one
// of the app's concurrency slots until then.
func (c *AppConn) Do(req *http.Request) (*http.Response, error) {
	if c.a.protocol == ProtocolGRPC {
		return nil, errors.New("proxy: the app speaks gRPC")
	}
	if err := c.a.acquire(req.Context()); err != nil {
		return nil, err
	}
	req.URL.Scheme, req.URL.Host, req.Host = "http", c.a.addr, c.a.addr
	if c.a.token != "" {
		req.Header.Set(apiTokenHeader, c.a.token)
	}
	resp, err := c.a.transport.RoundTrip(req)
	if err != nil {
		c.a.release()
		return nil, err
	}
	resp.Body = &releasingBody{ReadCloser: resp.Body, release: c.a.release}
	return resp, nil
}

// Callback is the app's AppCallback service (gRPC apps; nil otherwise).
// Calls through it should use WithToken.
func (c *AppConn) Callback() runtimev1pb.AppCallbackClient { return c.a.callback }

// WithToken adds APP_API_TOKEN to a gRPC call's context, and takes one of
// the app's concurrency slots until release is called.
func (c *AppConn) WithToken(ctx context.Context) (context.Context, func(), error) {
	if err := c.a.acquire(ctx); err != nil {
		return ctx, func() {}, err
	}
	return c.a.withToken(ctx), c.a.release, nil
}

// releasingBody gives back a concurrency slot once, when closed.
type releasingBody struct {
	io.ReadCloser
	release func()
	done    bool
}

func (b *releasingBody) Close() error {
	err := b.ReadCloser.Close()
	if !b.done {
		b.done = true
		b.release()
	}
	return err
}
