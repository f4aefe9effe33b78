// Package registry resolves apps through the Outrigger control plane's
// registry (package xds/registry) and announces sidecars to it. It is the
// name resolution of development mode: every `outrigger run` on a machine
// talks to one development control process, so apps find each other with no
// multicast.
//
// A Resolver keeps a copy of the whole registry, filled by one long-poll that
// the control plane answers on every change, so Resolve answers from memory
// and never waits on the network once the first copy has arrived. When the
// control plane goes away the copy is kept and the long-poll retried. An
// Announcer registers its instance under a random id and renews the lease
// with the same idempotent put, so it registers again on its own after the
// control plane restarts; it deletes the registration when it stops.
package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/outrigger/outrigger/xds/registry"
)

// Defaults of the options.
const (
	// DefaultTTL is the lease an Announcer asks for; it renews every third of it.
	DefaultTTL = 15 * time.Second
	// DefaultWait is how long one long-poll of a Resolver lasts.
	DefaultWait = 30 * time.Second
)

// Backoff bounds between attempts after the control plane failed to answer.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 2 * time.Second
)

// Option configures a Resolver or an Announcer.
type Option func(*options)

type options struct {
	logger *slog.Logger
	client *http.Client
	ttl    time.Duration
	wait   time.Duration
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithHTTPClient sets the HTTP client used to reach the control plane. It
// must not set a Timeout shorter than the long-poll wait plus a few seconds.
func WithHTTPClient(c *http.Client) Option { return func(o *options) { o.client = c } }

// WithTTL sets the lease an Announcer asks for (default DefaultTTL).
func WithTTL(d time.Duration) Option { return func(o *options) { o.ttl = d } }

// WithWait sets how long one long-poll of a Resolver lasts (default DefaultWait).
func WithWait(d time.Duration) Option { return func(o *options) { o.wait = d } }

func newOptions(opts []Option) options {
	o := options{ttl: DefaultTTL, wait: DefaultWait}
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	if o.client == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = nil // the control plane is local or on the cluster network, never behind a proxy
		t.MaxIdleConnsPerHost = 4
		o.client = &http.Client{Transport: t}
	}
	if o.ttl <= 0 {
		o.ttl = DefaultTTL
	}
	if o.wait <= 0 {
		o.wait = DefaultWait
	}
	return o
}

// baseURL turns a control-plane address ("host:port" or a URL) into the
// URL the registry paths hang from.
func baseURL(addr string) string {
	addr = strings.TrimRight(strings.TrimSpace(addr), "/")
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return addr
}

// Ping checks that a registry answers at addr (a control-plane address,
// "host:port") and returns its epoch.
func Ping(ctx context.Context, addr string) (string, error) {
	o := newOptions(nil)
	defer o.client.CloseIdleConnections()
	var hs registry.HealthStatus
	if err := do(ctx, o.client, http.MethodGet, baseURL(addr)+registry.PathHealthz, nil, &hs); err != nil {
		return "", err
	}
	if hs.Status != "ok" {
		return "", fmt.Errorf("nameresolution/registry: control plane at %s reports status %q", addr, hs.Status)
	}
	return hs.Epoch, nil
}

// statusError is an answer of the registry other than success.
type statusError struct {
	status int
	code   string
	msg    string
}

func (e *statusError) Error() string {
	if e.code != "" {
		return fmt.Sprintf("control plane answered %d %s: %s", e.status, e.code, e.msg)
	}
	return fmt.Sprintf("control plane answered %d: %s", e.status, e.msg)
}

// permanent reports whether err is a refusal that retrying does not cure.
func permanent(err error) bool {
	var se *statusError
	return errors.As(err, &se) && se.status >= 400 && se.status < 500 && se.status != http.StatusTooManyRequests && se.status != http.StatusRequestTimeout
}

// do sends one request with an optional JSON body and decodes a JSON answer
// into out (when out is not nil and the answer has a body).
func do(ctx context.Context, c *http.Client, method, u string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		se := &statusError{status: resp.StatusCode, msg: strings.TrimSpace(string(data))}
		var er registry.ErrorResponse
		if json.Unmarshal(data, &er) == nil && er.ErrorCode != "" {
			se.code, se.msg = er.ErrorCode, er.Message
		}
		return se
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decoding the control plane's answer: %w", err)
		}
	}
	return nil
}

// sleep waits for d or until ctx is done, and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func nextBackoff(d time.Duration) time.Duration {
	if d == 0 {
		return minBackoff
	}
	return min(2*d, maxBackoff)
}

func instancesURL(base string, q url.Values) string {
	u := base + registry.PathInstances
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}
