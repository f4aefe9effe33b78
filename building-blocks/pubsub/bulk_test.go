package pubsub_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outrigger/outrigger/building-blocks/pubsub"
	"github.com/outrigger/outrigger/building-blocks/pubsub/inmemory"
)

// TestBulkNextBatchWhileAppBusy: while the app holds a full bulk batch, the
// next batch fills and reaches it; the sidecar does not wait for the app's
// answer before taking more from the broker. The batches fill by count
// only (the await is far longer than the test).
func TestBulkNextBatchWhileAppBusy(t *testing.T) {
	release := make(chan struct{})
	var requests atomic.Int32
	second := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /dapr/subscribe", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`[{"pubsubname":"ps","topic":"batch","route":"/bulk","bulkSubscribe":{"enabled":true,"maxMessagesCount":20,"maxAwaitDurationMs":600000}}]`))
	})
	mux.HandleFunc("POST /bulk", answerBulk(func(int) string {
		switch requests.Add(1) {
		case 1:
			<-release // the app is busy with the first batch
		case 2:
			close(second)
		}
		return "SUCCESS"
	}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	unblock := sync.OnceFunc(func() { close(release) })
	t.Cleanup(unblock)
	u, _ := url.Parse(srv.URL)

	c := newComponent(t, func(b *inmemory.Broker) pubsub.Broker { return b })
	runSubscriber(t, &pubsub.Subscriber{
		Lookup: func(name string) (*pubsub.Component, bool) { return c, name == "ps" },
		App:    httpApp{u.Host}, AppID: "app",
		Retry: pubsub.RetryPolicy{Attempts: 3, Initial: time.Millisecond},
	})
	api := &pubsub.API{AppID: "app", Lookup: func(string) (*pubsub.Component, bool) { return c, true }}
	for i := range 40 {
		if code := publish(t, api, "/v1.0/publish/ps/batch", fmt.Sprintf(`{"n":%d}`, i)); code != http.StatusNoContent {
			t.Fatalf("publish %d: %d", i, code)
		}
	}
	select {
	case <-second:
	case <-time.After(30 * time.Second):
		t.Fatalf("the second batch did not reach the app in 30 s while it held the first (%d bulk requests)", requests.Load())
	}
	unblock()
}

// answerBulk is an app's bulk route: every entry of a delivery gets the
// status status gives for its index.
func answerBulk(status func(i int) string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Entries []struct {
				EntryID string `json:"entryId"`
			} `json:"entries"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var st []string
		for i, e := range body.Entries {
			st = append(st, fmt.Sprintf(`{"entryId":%q,"status":%q}`, e.EntryID, status(i)))
		}
		_, _ = w.Write([]byte(`{"statuses":[` + strings.Join(st, ",") + `]}`))
	}
}

// runSubscriber runs sub until the test ends and returns once its
// subscriptions are in place (it sets sub.Subscribed).
func runSubscriber(t *testing.T, sub *pubsub.Subscriber) {
	t.Helper()
	subscribed := make(chan struct{})
	sub.Subscribed = func() { close(subscribed) }
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); _ = sub.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-subscribed:
	case <-time.After(30 * time.Second):
		t.Fatal("Subscribed was not called")
	}
}
