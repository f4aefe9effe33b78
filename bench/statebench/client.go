package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	dapr "github.com/dapr/go-sdk/client"

	"github.com/outrigger/outrigger/building-blocks/state"
)

// storeName is the name of the one state store component the sidecars load.
const storeName = "statestore"

// opClient saves and reads one key at a time, the way one target reaches
// the backend.
type opClient interface {
	save(ctx context.Context, key string, value []byte) error
	// get returns the value stored at key; a missing key is an error.
	get(ctx context.Context, key string) ([]byte, error)
	close()
}

// directClient calls the repo's own store in this process. keyPrefix is
// put in front of each key as the state API would ("prefix||key"), so the
// backend sees keys of the same shape as through a sidecar.
type directClient struct {
	store     state.Store
	keyPrefix string
	strong    bool
}

func (c *directClient) save(ctx context.Context, key string, value []byte) error {
	return c.store.Set(ctx, state.SetRequest{Key: c.keyPrefix + "||" + key, Value: value, Strong: c.strong})
}

func (c *directClient) get(ctx context.Context, key string) ([]byte, error) {
	it, found, err := c.store.Get(ctx, state.GetRequest{Key: c.keyPrefix + "||" + key, Strong: c.strong})
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, errors.New("not found")
	}
	return it.Value, nil
}

func (c *directClient) close() { _ = c.store.Close() }

// grpcClient is the official Dapr Go SDK over the sidecar's gRPC API.
type grpcClient struct {
	c           dapr.Client
	consistency dapr.StateConsistency
}

func newGRPCClient(port int, strong bool) (*grpcClient, error) {
	c, err := dapr.NewClientWithPort(strconv.Itoa(port))
	if err != nil {
		return nil, fmt.Errorf("dapr.NewClientWithPort(%d): %w", port, err)
	}
	g := &grpcClient{c: c, consistency: dapr.StateConsistencyEventual}
	if strong {
		g.consistency = dapr.StateConsistencyStrong
	}
	return g, nil
}

func (g *grpcClient) save(ctx context.Context, key string, value []byte) error {
	return g.c.SaveState(ctx, storeName, key, value, nil,
		dapr.WithConcurrency(dapr.StateConcurrencyLastWrite), dapr.WithConsistency(g.consistency))
}

func (g *grpcClient) get(ctx context.Context, key string) ([]byte, error) {
	it, err := g.c.GetStateWithConsistency(ctx, storeName, key, nil, g.consistency)
	if err != nil {
		return nil, err
	}
	if it == nil || it.Etag == "" {
		// The API answers a missing key with an empty item and no ETag.
		return nil, errors.New("not found (empty answer, no ETag)")
	}
	return it.Value, nil
}

func (g *grpcClient) close() { g.c.Close() }

// httpClient is the sidecar's HTTP state API over one keep-alive
// connection.
type httpClient struct {
	c      *http.Client
	base   string // http://127.0.0.1:PORT/v1.0/state/statestore
	strong bool
}

func newHTTPClient(port int, strong bool) *httpClient {
	return &httpClient{
		c: &http.Client{Transport: &http.Transport{
			Proxy:               nil, // loopback only, whatever the environment says
			MaxIdleConnsPerHost: 2,
			DisableCompression:  true,
			ForceAttemptHTTP2:   false,
		}},
		base:   fmt.Sprintf("http://127.0.0.1:%d/v1.0/state/%s", port, storeName),
		strong: strong,
	}
}

// save posts [{"key":KEY,"value":VALUE}]; value is JSON already, and keys
// are plain ASCII the harness makes, so the body is assembled as bytes.
func (h *httpClient) save(ctx context.Context, key string, value []byte) error {
	body := make([]byte, 0, len(key)+len(value)+64)
	body = append(body, `[{"key":`...)
	body = strconv.AppendQuote(body, key)
	body = append(body, `,"value":`...)
	body = append(body, value...)
	if h.strong {
		body = append(body, `,"options":{"consistency":"strong"}`...)
	}
	body = append(body, "}]"...)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.base, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.c.Do(req)
	if err != nil {
		return err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s: status %d: %s", h.base, resp.StatusCode, bytes.TrimSpace(b))
	}
	return nil
}

func (h *httpClient) get(ctx context.Context, key string) ([]byte, error) {
	u := h.base + "/" + url.PathEscape(key)
	if h.strong {
		u += "?consistency=strong"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := h.c.Do(req)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: status %d: %s", u, resp.StatusCode, bytes.TrimSpace(b))
	}
	return b, nil
}

func (h *httpClient) close() { h.c.CloseIdleConnections() }
