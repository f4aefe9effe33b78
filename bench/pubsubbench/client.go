package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	dapr "github.com/dapr/go-sdk/client"
)

// pubsubName is the name of the one pub/sub component the sidecars load.
const pubsubName = "pubsub"

// payloadContentType is the content type of every publish.
const payloadContentType = "application/json"

// publisher publishes one message and waits until it is stored.
type publisher interface {
	publish(ctx context.Context, topic, id string, payload []byte) error
	close()
}

// bulkPublisher also publishes a batch of messages in one call.
type bulkPublisher interface {
	publisher
	publishBulk(ctx context.Context, topic string, ids []string, payloads [][]byte) error
}

// grpcClient is the official Dapr Go SDK over the sidecar's gRPC API: one
// connection, shared by concurrent publishers.
type grpcClient struct{ c dapr.Client }

func newGRPCClient(port int) (*grpcClient, error) {
	c, err := dapr.NewClientWithPort(strconv.Itoa(port))
	if err != nil {
		return nil, fmt.Errorf("dapr.NewClientWithPort(%d): %w", port, err)
	}
	return &grpcClient{c: c}, nil
}

func (g *grpcClient) publish(ctx context.Context, topic, _ string, payload []byte) error {
	return g.c.PublishEvent(ctx, pubsubName, topic, payload, dapr.PublishEventWithContentType(payloadContentType))
}

// publishBulk is PublishEvents (BulkPublishEvent), entry IDs the message
// IDs.
func (g *grpcClient) publishBulk(ctx context.Context, topic string, ids []string, payloads [][]byte) error {
	events := make([]any, len(ids))
	for i := range ids {
		events[i] = dapr.PublishEventsEvent{EntryID: ids[i], Data: payloads[i], ContentType: payloadContentType}
	}
	res := g.c.PublishEvents(ctx, pubsubName, topic, events)
	if res.Error != nil {
		return fmt.Errorf("%d of %d events failed: %w", len(res.FailedEvents), len(ids), res.Error)
	}
	return nil
}

func (g *grpcClient) close() { g.c.Close() }

// httpClient is the sidecar's HTTP publish API over keep-alive
// connections, up to conns of them.
type httpClient struct {
	c    *http.Client
	base string // http://127.0.0.1:PORT
}

func newHTTPClient(port, conns int) *httpClient {
	return &httpClient{
		c: &http.Client{Transport: &http.Transport{
			Proxy:               nil, // loopback only, whatever the environment says
			MaxIdleConnsPerHost: max(conns, 2),
			DisableCompression:  true,
		}},
		base: fmt.Sprintf("http://127.0.0.1:%d", port),
	}
}

// publish is POST /v1.0/publish/pubsub/{topic} with the payload as body.
func (h *httpClient) publish(ctx context.Context, topic, _ string, payload []byte) error {
	return h.post(ctx, h.base+"/v1.0/publish/"+pubsubName+"/"+url.PathEscape(topic), payload)
}

// publishBulk is POST /v1.0-alpha1/publish/bulk/pubsub/{topic} with
// [{"entryId":ID,"event":PAYLOAD,"contentType":"application/json"},...];
// the payloads are JSON already, so the body is assembled as bytes.
func (h *httpClient) publishBulk(ctx context.Context, topic string, ids []string, payloads [][]byte) error {
	n := 2
	for i := range ids {
		n += len(ids[i]) + len(payloads[i]) + 64
	}
	body := make([]byte, 0, n)
	body = append(body, '[')
	for i := range ids {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, `{"entryId":`...)
		body = strconv.AppendQuote(body, ids[i])
		body = append(body, `,"event":`...)
		body = append(body, payloads[i]...)
		body = append(body, `,"contentType":"`+payloadContentType+`"}`...)
	}
	body = append(body, ']')
	return h.post(ctx, h.base+"/v1.0-alpha1/publish/bulk/"+pubsubName+"/"+url.PathEscape(topic), body)
}

func (h *httpClient) post(ctx context.Context, u string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", payloadContentType)
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
		return fmt.Errorf("POST %s: status %d: %.300s", u, resp.StatusCode, bytes.TrimSpace(b))
	}
	return nil
}

func (h *httpClient) close() { h.c.CloseIdleConnections() }
