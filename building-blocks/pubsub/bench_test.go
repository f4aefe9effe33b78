package pubsub_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/outrigger/outrigger/building-blocks/pubsub"
)

// discardBroker takes every message and keeps none: the benchmarks below
// measure the API's own work.
type discardBroker struct{}

func (discardBroker) Publish(context.Context, string, pubsub.Message) error { return nil }
func (discardBroker) BulkPublish(context.Context, string, []pubsub.Message) error {
	return nil
}
func (discardBroker) Subscribe(context.Context, pubsub.SubscribeRequest, pubsub.Handler) error {
	return nil
}
func (discardBroker) Features() pubsub.Features { return pubsub.Features{} }
func (discardBroker) Close() error              { return nil }

// bulkBody is an HTTP bulk publish of n JSON events of about size bytes,
// the shape bench/pubsubbench sends.
func bulkBody(n, size int) []byte {
	var b bytes.Buffer
	b.WriteByte('[')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		id := fmt.Sprintf("m-%06d", i)
		fmt.Fprintf(&b, `{"entryId":%q,"event":{"id":%q,"pad":"%s"},"contentType":"application/json"}`,
			id, id, strings.Repeat("abcdefghijklmnopqrstuvwxyz", size/26))
	}
	b.WriteByte(']')
	return b.Bytes()
}

// BenchmarkHTTPBulkPublish: one bulk publish of 100 events of 1 KiB, from
// the request to the broker's call.
func BenchmarkHTTPBulkPublish(b *testing.B) {
	c, _, err := pubsub.NewComponent(map[string]string{}, func(map[string]string) (pubsub.Broker, []string, error) {
		return discardBroker{}, nil, nil
	})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	api := &pubsub.API{AppID: "bench", Lookup: func(string) (*pubsub.Component, bool) { return c, true }}
	body := bulkBody(100, 1024)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		api.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1.0-alpha1/publish/bulk/ps/t", bytes.NewReader(body)))
		if w.Code != http.StatusNoContent {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}
