package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"github.com/dapr/go-sdk/service/common"
	daprgrpc "github.com/dapr/go-sdk/service/grpc"
	daprhttp "github.com/dapr/go-sdk/service/http"

	"github.com/outrigger/outrigger/e2e/framework"
)

// received records what a subscriber app got, by topic.
type received struct {
	mu     sync.Mutex
	events map[string][]*common.TopicEvent
}

func (r *received) add(key string, e *common.TopicEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.events == nil {
		r.events = map[string][]*common.TopicEvent{}
	}
	r.events[key] = append(r.events[key], e)
}

func (r *received) count(topic string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events[topic])
}

func (r *received) get(topic string) []*common.TopicEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*common.TopicEvent(nil), r.events[topic]...)
}

// subscriberApp registers the test's handlers on an SDK service: orders
// (success), flaky (RETRY twice, then success), poison (always an error,
// with a dead-letter topic), its dead letters, and a declarative route.
func subscriberApp(t *testing.T, s common.Service, got *received) {
	t.Helper()
	var mu sync.Mutex
	attempts := map[string]int{}
	add := func(sub *common.Subscription, fn common.TopicEventHandler) {
		if err := s.AddTopicEventHandler(sub, fn); err != nil {
			t.Fatal(err)
		}
	}
	add(&common.Subscription{PubsubName: "pubsub", Topic: "orders", Route: "/orders"}, func(ctx context.Context, e *common.TopicEvent) (bool, error) {
		got.add("orders", e)
		return false, nil
	})
	add(&common.Subscription{PubsubName: "pubsub", Topic: "flaky", Route: "/flaky"}, func(ctx context.Context, e *common.TopicEvent) (bool, error) {
		mu.Lock()
		attempts[e.ID]++
		n := attempts[e.ID]
		mu.Unlock()
		if n <= 2 {
			return true, errors.New("not yet")
		}
		got.add("flaky", e)
		return false, nil
	})
	add(&common.Subscription{PubsubName: "pubsub", Topic: "poison", Route: "/poison", DeadLetterTopic: "poison-dead"}, func(ctx context.Context, e *common.TopicEvent) (bool, error) {
		got.add("poison", e)
		return true, errors.New("never")
	})
	add(&common.Subscription{PubsubName: "pubsub", Topic: "poison-dead", Route: "/dead"}, func(ctx context.Context, e *common.TopicEvent) (bool, error) {
		got.add("poison-dead", e)
		return false, nil
	})
	// The routes of the declarative subscription (declarativeSub). A gRPC
	// app's SDK dispatches by topic, so the app registers the same
	// subscription too; both are in the app's consumer group.
	add(&common.Subscription{PubsubName: "pubsub", Topic: "things", Route: "/widgets", Match: `event.type == "widget"`}, func(ctx context.Context, e *common.TopicEvent) (bool, error) {
		got.add("declared/widgets", e)
		return false, nil
	})
	add(&common.Subscription{PubsubName: "pubsub", Topic: "things", Route: "/other"}, func(ctx context.Context, e *common.TopicEvent) (bool, error) {
		got.add("declared/other", e)
		return false, nil
	})
}

const declarativeSub = `apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: things
spec:
  pubsubname: pubsub
  topic: things
  routes:
    rules:
    - match: event.type == "widget"
      path: /widgets
    default: /other
`

// TestPubSubGoSDK: the official Go SDK publishes through the sidecar and the
// SDK's HTTP and gRPC services subscribe, programmatically and
// declaratively (a v2alpha1 Subscription with a CEL rule): events arrive as
// CloudEvents, RETRY redelivers, a message that always fails reaches its
// dead-letter topic after its retries.
func TestPubSubGoSDK(t *testing.T) {
	for _, proto := range []string{"http", "grpc"} {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			got := &received{}
			port := framework.StartSDKService(t, func(addr string) (common.Service, error) {
				var svc common.Service
				if proto == "http" {
					svc = daprhttp.NewService(addr)
				} else {
					var err error
					if svc, err = daprgrpc.NewService(addr); err != nil {
						return nil, err
					}
				}
				subscriberApp(t, svc, got)
				return svc, nil
			})

			res := stateStores(t, "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pubsub\nspec:\n  type: pubsub.in-memory\n  version: v1\n")
			writeFile(t, filepath.Join(res, "things.yaml"), declarativeSub)
			sc := framework.StartSidecar(t, framework.SidecarOptions{AppID: "sub-" + proto, AppPort: port, AppProtocol: proto, Args: []string{"--resources-path", res}})
			client, err := dapr.NewClientWithPort(strconv.Itoa(sc.GRPCPort))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(client.Close)
			ctx := callCtx(t)

			// The subscriptions are made once the app is up: publish until
			// the first event arrives.
			framework.WaitFor(t, "the subscriptions to be in place", func() error {
				if err := client.PublishEvent(ctx, "pubsub", "orders", map[string]any{"warmup": true}); err != nil {
					return err
				}
				time.Sleep(100 * time.Millisecond)
				if got.count("orders") == 0 {
					return errors.New("nothing delivered yet")
				}
				return nil
			})
			for i := range 10 {
				if err := client.PublishEvent(ctx, "pubsub", "orders", map[string]any{"n": i}); err != nil {
					t.Fatalf("PublishEvent: %v", err)
				}
			}
			if err := client.PublishEvent(ctx, "pubsub", "flaky", []byte("try again"), dapr.PublishEventWithContentType("text/plain")); err != nil {
				t.Fatal(err)
			}
			if err := client.PublishEvent(ctx, "pubsub", "poison", []byte("bad"), dapr.PublishEventWithContentType("text/plain")); err != nil {
				t.Fatal(err)
			}
			for _, typ := range []string{"widget", "gadget"} {
				ce := fmt.Sprintf(`{"specversion":"1.0","id":"%s-1","source":"test","type":"%s","datacontenttype":"application/json","data":{"kind":"%s"}}`, typ, typ, typ)
				if err := client.PublishEvent(ctx, "pubsub", "things", []byte(ce), dapr.PublishEventWithContentType("application/cloudevents+json")); err != nil {
					t.Fatal(err)
				}
			}
			framework.WaitFor(t, "every event to be delivered", func() error {
				for topic, want := range map[string]int{"orders": 11, "flaky": 1, "poison-dead": 1, "declared/widgets": 1, "declared/other": 1} {
					if n := got.count(topic); n < want {
						return fmt.Errorf("%s: %d of %d", topic, n, want)
					}
				}
				return nil
			})
			// The metadata API (gRPC, through the SDK) lists what is in place.
			md, err := client.GetMetadata(ctx)
			if err != nil {
				t.Fatal(err)
			}
			listed := map[string]string{}
			for _, s := range md.Subscriptions {
				listed[s.Topic] = s.DeadLetterTopic
			}
			for _, topic := range []string{"orders", "flaky", "poison", "poison-dead", "things"} {
				if _, ok := listed[topic]; !ok {
					t.Errorf("the metadata API does not list the subscription to %s: %+v", topic, md.Subscriptions)
				}
			}
			if listed["poison"] != "poison-dead" {
				t.Errorf("the metadata API gives poison's dead-letter topic as %q", listed["poison"])
			}
			e := got.get("orders")[5]
			if e.PubsubName != "pubsub" || e.SpecVersion != "1.0" || e.Source != "sub-"+proto || e.ID == "" || e.DataContentType != "application/json" {
				t.Errorf("the CloudEvent: %+v", e)
			}
			if n := got.count("poison"); n != 5 {
				t.Errorf("the poison message was delivered %d times before its dead letter, want 5 (the built-in retries)", n)
			}
			if d := got.get("poison-dead"); len(d) != 1 || !strings.Contains(fmt.Sprint(d[0].Data), "bad") {
				t.Errorf("the dead letter: %+v", d)
			}
		})
	}
}

// TestPublishErrors: daprd's answers to bad publishes.
func TestPublishErrors(t *testing.T) {
	t.Parallel()
	res := stateStores(t, "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pubsub\nspec:\n  type: pubsub.in-memory\n  version: v1\n  metadata:\n  - name: publishingScopes\n    value: \"pub-errors=allowed\"\n")
	sc := framework.StartSidecar(t, framework.SidecarOptions{AppID: "pub-errors", Args: []string{"--resources-path", res}})
	resp, body := call(t, http.MethodPost, sc.URL("/v1.0/publish/nope/t"), strings.NewReader("x"), nil)
	wantDaprError(t, resp, body, http.StatusNotFound, "ERR_PUBSUB_NOT_FOUND")
	resp, body = call(t, http.MethodPost, sc.URL("/v1.0/publish/pubsub/denied"), strings.NewReader("x"), nil)
	wantDaprError(t, resp, body, http.StatusForbidden, "ERR_PUBSUB_FORBIDDEN")
	resp, body = call(t, http.MethodPost, sc.URL("/v1.0/publish/pubsub/allowed"), strings.NewReader("{"), http.Header{"Content-Type": {"application/cloudevents+json"}})
	wantDaprError(t, resp, body, http.StatusBadRequest, "ERR_PUBSUB_CLOUD_EVENTS_SER")
	resp, body = call(t, http.MethodPost, sc.URL("/v1.0/publish/pubsub/allowed?metadata.rawPayload=maybe"), strings.NewReader("x"), nil)
	wantDaprError(t, resp, body, http.StatusBadRequest, "ERR_PUBSUB_REQUEST_METADATA")
	if resp, body := call(t, http.MethodPost, sc.URL("/v1.0/publish/pubsub/allowed"), strings.NewReader(`{"a":1}`), http.Header{"Content-Type": {"application/json"}}); resp.StatusCode != http.StatusNoContent {
		t.Errorf("an allowed publish: %d %s", resp.StatusCode, body)
	}
	resp, body = call(t, http.MethodPost, sc.URL("/v1.0-alpha1/publish/bulk/pubsub/allowed"), strings.NewReader(`[{"entryId":"1","event":"a","contentType":"text/plain"},{"entryId":"2","event":{"b":2},"contentType":"application/json"}]`), nil)
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("bulk publish: %d %s", resp.StatusCode, body)
	}
	resp, body = call(t, http.MethodPost, sc.URL("/v1.0-alpha1/publish/bulk/pubsub/allowed"), strings.NewReader(`[{"event":"a"}]`), nil)
	wantDaprError(t, resp, body, http.StatusBadRequest, "ERR_PUBSUB_EVENTS_SER")
	// Bodies that are not an array of entries, and JSON nested too deep.
	for _, bad := range []string{`{"entryId":"1"}`, `[{"entryId":1,"event":"a"}]`, `[{"entryId":"1","event":"a","metadata":{"k":2}}]`, `[{"entryId":"1"`, strings.Repeat("[", 1<<20)} {
		resp, body = call(t, http.MethodPost, sc.URL("/v1.0-alpha1/publish/bulk/pubsub/allowed"), strings.NewReader(bad), nil)
		wantDaprError(t, resp, body, http.StatusBadRequest, "ERR_PUBSUB_EVENTS_SER")
	}
	// A JSON payload nested too deep is published as text, and the sidecar
	// serves on.
	if resp, body := call(t, http.MethodPost, sc.URL("/v1.0/publish/pubsub/allowed"), strings.NewReader(strings.Repeat("[", 1<<20)), http.Header{"Content-Type": {"application/json"}}); resp.StatusCode != http.StatusNoContent {
		t.Errorf("a deep JSON publish: %d %s", resp.StatusCode, body)
	}
	if resp, body := call(t, http.MethodGet, sc.URL("/v1.0/healthz"), nil, nil); resp.StatusCode != http.StatusNoContent {
		t.Errorf("healthz after bad input: %d %s", resp.StatusCode, body)
	}
}

// TestPubSubStreaming: the Go SDK's streaming subscription
// (SubscribeTopicEventsAlpha1): events come down the stream, and an event
// the app asks to retry comes back.
func TestPubSubStreaming(t *testing.T) {
	t.Parallel()
	res := stateStores(t, "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pubsub\nspec:\n  type: pubsub.in-memory\n  version: v1\n")
	sc := framework.StartSidecar(t, framework.SidecarOptions{AppID: "streamer", Args: []string{"--resources-path", res}})
	client, err := dapr.NewClientWithPort(strconv.Itoa(sc.GRPCPort))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	ctx := callCtx(t)

	// One goroutine receives and answers (the SDK's SubscribeWithHandler
	// races its own Close against answers in flight).
	sub, err := client.Subscribe(ctx, dapr.SubscriptionOptions{PubsubName: "pubsub", Topic: "stream"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := client.PublishEvent(ctx, "pubsub", "stream", map[string]any{"n": i}); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]int{}
	retried := false
	deadline := time.Now().Add(30 * time.Second)
	for len(got) < 10 && time.Now().Before(deadline) {
		msg, err := sub.Receive()
		if err != nil {
			t.Fatalf("Receive: %v", err)
		}
		var body map[string]any
		_ = json.Unmarshal(msg.RawData, &body)
		id := fmt.Sprint(body["n"])
		if id == "3" && !retried {
			retried = true
			if err := msg.Retry(); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got[id]++
		if err := msg.Success(); err != nil {
			t.Fatal(err)
		}
	}
	if err := sub.Close(); err != nil {
		t.Logf("closing the stream: %v", err)
	}
	for i := range 10 {
		if got[strconv.Itoa(i)] != 1 {
			t.Errorf("event %d delivered %d times", i, got[strconv.Itoa(i)])
		}
	}
	if !retried {
		t.Error("event 3 was never offered for a retry")
	}
	// Another subscription on a topic the app may not use is refused.
	if _, err := client.Subscribe(ctx, dapr.SubscriptionOptions{PubsubName: "nope", Topic: "x"}); err == nil {
		t.Error("a stream on an unknown pub/sub was accepted")
	}
}

// TestPubSubBulk: bulk publish through the Go SDK (PublishEvents) and bulk
// subscribe (bulkSubscribe in the app's subscription): the app gets batches
// of at most maxMessagesCount in daprd's bulk shape, and an entry it
// answers RETRY for comes back.
func TestPubSubBulk(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	got := map[string]int{}
	var sizes []int
	retried := false
	mux := http.NewServeMux()
	mux.HandleFunc("/dapr/subscribe", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`[{"pubsubname":"pubsub","topic":"batch","route":"/batch","bulkSubscribe":{"enabled":true,"maxMessagesCount":10,"maxAwaitDurationMs":200}}]`))
	})
	mux.HandleFunc("/batch", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Entries []struct {
				EntryID string         `json:"entryId"`
				Event   map[string]any `json:"event"`
			} `json:"entries"`
			Topic string `json:"topic"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Topic != "batch" {
			http.Error(w, "bad batch", http.StatusBadRequest)
			return
		}
		type status struct {
			EntryID string `json:"entryId"`
			Status  string `json:"status"`
		}
		var out struct {
			Statuses []status `json:"statuses"`
		}
		mu.Lock()
		sizes = append(sizes, len(body.Entries))
		for _, e := range body.Entries {
			n := fmt.Sprint(e.Event["data"].(map[string]any)["n"])
			if n == "7" && !retried {
				retried = true
				out.Statuses = append(out.Statuses, status{e.EntryID, "RETRY"})
				continue
			}
			got[n]++
			out.Statuses = append(out.Statuses, status{e.EntryID, "SUCCESS"})
		}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
	l := framework.Listen(t)
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })

	res := stateStores(t, "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pubsub\nspec:\n  type: pubsub.in-memory\n  version: v1\n")
	sc := framework.StartSidecar(t, framework.SidecarOptions{AppID: "bulker", AppPort: l.Addr().(*net.TCPAddr).Port, Args: []string{"--resources-path", res}})
	client, err := dapr.NewClientWithPort(strconv.Itoa(sc.GRPCPort))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	// The subscription is made once the app is up: publish until a first
	// event arrives.
	framework.WaitFor(t, "the bulk subscription", func() error {
		if err := client.PublishEvent(callCtx(t), "pubsub", "batch", map[string]any{"n": "warm"}); err != nil {
			return err
		}
		time.Sleep(300 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		if got["warm"] == 0 {
			return errors.New("nothing delivered yet")
		}
		return nil
	})
	events := make([]any, 25)
	for i := range events {
		events[i] = map[string]any{"n": i}
	}
	if res := client.PublishEvents(callCtx(t), "pubsub", "batch", events); res.Error != nil || len(res.FailedEvents) > 0 {
		t.Fatalf("PublishEvents: %v (%d failed)", res.Error, len(res.FailedEvents))
	}
	framework.WaitFor(t, "every event in batches", func() error {
		mu.Lock()
		defer mu.Unlock()
		for i := range 25 {
			if got[strconv.Itoa(i)] == 0 {
				return fmt.Errorf("event %d not yet (batches %v)", i, sizes)
			}
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	largest := 0
	for _, n := range sizes {
		largest = max(largest, n)
	}
	if largest > 10 || largest < 2 || !retried {
		t.Errorf("batch sizes %v (want at most 10, some above 1); retried %v", sizes, retried)
	}
}
