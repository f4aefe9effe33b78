package pubsub_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/outrigger/outrigger/building-blocks/pubsub"
	"github.com/outrigger/outrigger/building-blocks/pubsub/inmemory"
	"github.com/outrigger/outrigger/telemetry/daprmetrics/daprmetricstest"
)

// singleBroker hides the broker's BulkPublish, and fails every publish to
// topic "refused".
type singleBroker struct{ pubsub.Broker }

func (b singleBroker) Publish(ctx context.Context, topic string, msg pubsub.Message) error {
	if topic == "refused" {
		return errors.New("the broker refused")
	}
	return b.Broker.Publish(ctx, topic, msg)
}

func newComponent(t *testing.T, broker func(*inmemory.Broker) pubsub.Broker) *pubsub.Component {
	t.Helper()
	c, _, err := pubsub.NewComponent(map[string]string{}, func(map[string]string) (pubsub.Broker, []string, error) {
		b, _, err := inmemory.New(nil)
		if err != nil {
			return nil, nil, err
		}
		return broker(b), nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func publish(t *testing.T, api *pubsub.API, path, body string) int {
	t.Helper()
	w := httptest.NewRecorder()
	api.ServeHTTP(w, httptest.NewRequest(http.MethodPost, path, strings.NewReader(body)))
	return w.Code
}

// TestMetricsEgress: a publish is one egress; a bulk publish is one bulk
// egress whether the broker publishes in bulk or one by one, and its
// published events are counted; a refused publish fails.
func TestMetricsEgress(t *testing.T) {
	m := pubsub.NewMetrics("app", "ns")
	comps := map[string]*pubsub.Component{
		"bulky":  pubsub.WithMetrics(newComponent(t, func(b *inmemory.Broker) pubsub.Broker { return b }), "bulky", m),
		"single": pubsub.WithMetrics(newComponent(t, func(b *inmemory.Broker) pubsub.Broker { return singleBroker{b} }), "single", m),
	}
	api := &pubsub.API{AppID: "app", Lookup: func(name string) (*pubsub.Component, bool) { c, ok := comps[name]; return c, ok }}
	for range 3 {
		if code := publish(t, api, "/v1.0/publish/bulky/orders", `{"a":1}`); code != http.StatusNoContent {
			t.Fatalf("publish: %d", code)
		}
	}
	if code := publish(t, api, "/v1.0/publish/single/refused", `{"a":1}`); code == http.StatusNoContent {
		t.Fatal("a refused publish answered 204")
	}
	entries := `[{"entryId":"1","event":{"a":1},"contentType":"application/json"},{"entryId":"2","event":{"b":2},"contentType":"application/json"}]`
	for _, name := range []string{"bulky", "single"} {
		if code := publish(t, api, "/v1.0-alpha1/publish/bulk/"+name+"/orders", entries); code != http.StatusNoContent {
			t.Fatalf("bulk publish to %s: %d", name, code)
		}
	}
	if code := publish(t, api, "/v1.0-alpha1/publish/bulk/single/refused", entries); code != http.StatusInternalServerError {
		t.Fatalf("a refused bulk publish: %d", code)
	}

	series := func(name, comp, success, topic string) string {
		return name + "{app_id=app,component=" + comp + ",namespace=ns,success=" + success + ",topic=" + topic + "}"
	}
	want := map[string]float64{
		series("dapr_component_pubsub_egress_count", "bulky", "true", "orders"):        3,
		series("dapr_component_pubsub_egress_latencies", "bulky", "true", "orders"):    3,
		series("dapr_component_pubsub_egress_count", "single", "false", "refused"):     1,
		series("dapr_component_pubsub_egress_latencies", "single", "false", "refused"): 1,

		series("dapr_component_pubsub_egress_bulk_count", "bulky", "true", "orders"):        1,
		series("dapr_component_pubsub_egress_bulk_latencies", "bulky", "true", "orders"):    1,
		series("dapr_component_pubsub_egress_bulk_event_count", "bulky", "true", "orders"):  2,
		series("dapr_component_pubsub_egress_bulk_count", "single", "true", "orders"):       1,
		series("dapr_component_pubsub_egress_bulk_latencies", "single", "true", "orders"):   1,
		series("dapr_component_pubsub_egress_bulk_event_count", "single", "true", "orders"): 2,
		series("dapr_component_pubsub_egress_bulk_count", "single", "false", "refused"):     1,
		series("dapr_component_pubsub_egress_bulk_latencies", "single", "false", "refused"): 1,
	}
	wantExactly(t, daprmetricstest.Gather(t, m), want)
}

func wantExactly(t *testing.T, got, want map[string]float64) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected series %s = %v", k, v)
		}
	}
}

// TestMetricsTopicsBounded: topics past the bound share the series of
// "_other".
func TestMetricsTopicsBounded(t *testing.T) {
	m := pubsub.NewMetrics("app", "ns")
	c := pubsub.WithMetrics(newComponent(t, func(b *inmemory.Broker) pubsub.Broker { return b }), "ps", m)
	for i := range 1000 {
		if err := c.Broker.Publish(t.Context(), fmt.Sprintf("t-%d", i), pubsub.Message{Data: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	got := daprmetricstest.Gather(t, m)
	n, other := 0, 0.0
	for k, v := range got {
		if strings.HasPrefix(k, "dapr_component_pubsub_egress_count{") {
			n++
			if strings.Contains(k, "topic=_other") {
				other = v
			}
		}
	}
	if n != 257 || other != 1000-256 {
		t.Errorf("%d series (want 257), %v under _other (want 744)", n, other)
	}
}

// httpApp is a pubsub.App over an HTTP server.
type httpApp struct{ host string }

func (a httpApp) Protocol() string                { return "http" }
func (a httpApp) WaitReady(context.Context) error { return nil }
func (a httpApp) Do(req *http.Request) (*http.Response, error) {
	req.URL.Scheme, req.URL.Host = "http", a.host
	return http.DefaultClient.Do(req)
}
func (a httpApp) Callback() runtimev1pb.AppCallbackClient { return nil }
func (a httpApp) WithToken(ctx context.Context) (context.Context, func(), error) {
	return ctx, func() {}, nil
}

// TestMetricsIngress: each delivery to the app is recorded once, with
// daprd's process_status: success, retry (each attempt the app asked to be
// retried), drop; a bulk subscription's batches are recorded by batch and
// by event.
func TestMetricsIngress(t *testing.T) {
	var mu sync.Mutex
	tries := map[string]int{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /dapr/subscribe", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`[{"pubsubname":"ps","topic":"orders","route":"/ok"},
			{"pubsubname":"ps","topic":"flaky","route":"/flaky"},
			{"pubsubname":"ps","topic":"unwanted","route":"/drop"},
			{"pubsubname":"ps","topic":"batch","route":"/bulk","bulkSubscribe":{"enabled":true,"maxMessagesCount":2,"maxAwaitDurationMs":50}}]`))
	})
	mux.HandleFunc("POST /ok", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("POST /flaky", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		tries["flaky"]++
		n := tries["flaky"]
		mu.Unlock()
		if n == 1 {
			_, _ = w.Write([]byte(`{"status":"RETRY"}`))
		}
	})
	mux.HandleFunc("POST /drop", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(`{"status":"DROP"}`)) })
	mux.HandleFunc("POST /bulk", answerBulk(func(i int) string {
		if i == 1 {
			return "DROP"
		}
		return "SUCCESS"
	}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)

	m := pubsub.NewMetrics("app", "ns")
	c := newComponent(t, func(b *inmemory.Broker) pubsub.Broker { return b })
	sub := &pubsub.Subscriber{
		Lookup: func(name string) (*pubsub.Component, bool) { return c, name == "ps" },
		App:    httpApp{u.Host}, AppID: "app",
		Retry:   pubsub.RetryPolicy{Attempts: 3, Initial: time.Millisecond},
		Ingress: m,
	}
	// Subscribed says the first subscriptions are in place, all of them.
	runSubscriber(t, sub)
	deadline := time.Now().Add(30 * time.Second)
	if n := len(sub.Active()); n != 4 {
		t.Fatalf("%d subscriptions when Subscribed was called, want 4: %v", n, sub.Active())
	}
	api := &pubsub.API{AppID: "app", Lookup: func(string) (*pubsub.Component, bool) { return c, true }}
	for _, topic := range []string{"orders", "orders", "flaky", "unwanted", "batch", "batch"} {
		if code := publish(t, api, "/v1.0/publish/ps/"+topic, `{"a":1}`); code != http.StatusNoContent {
			t.Fatalf("publish to %s: %d", topic, code)
		}
	}

	series := func(name, ps, topic string) string {
		return name + "{app_id=app,component=ps,namespace=ns,process_status=" + ps + ",status=" + ps + ",topic=" + topic + "}"
	}
	bulk := func(name, ps string) string {
		return name + "{app_id=app,component=ps,namespace=ns,process_status=" + ps + ",topic=batch}"
	}
	want := map[string]float64{}
	for _, s := range []struct {
		ps, topic string
		n         float64
	}{{"success", "orders", 2}, {"retry", "flaky", 1}, {"success", "flaky", 1}, {"drop", "unwanted", 1}} {
		want[series("dapr_component_pubsub_ingress_count", s.ps, s.topic)] = s.n
		want[series("dapr_component_pubsub_ingress_latencies", s.ps, s.topic)] = s.n
	}
	want[bulk("dapr_component_pubsub_ingress_bulk_count", "")] = 1
	want[bulk("dapr_component_pubsub_ingress_bulk_latencies", "")] = 1
	want[bulk("dapr_component_pubsub_ingress_bulk_event_count", "SUCCESS")] = 1
	want[bulk("dapr_component_pubsub_ingress_bulk_event_count", "DROP")] = 1
	var got map[string]float64
	for {
		got = daprmetricstest.Gather(t, m)
		if equal(got, want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	wantExactly(t, got, want)
}

func equal(a, b map[string]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// daprServer serves the API's streaming subscription over gRPC.
type daprServer struct {
	runtimev1pb.UnimplementedDaprServer
	api *pubsub.API
}

func (d daprServer) SubscribeTopicEventsAlpha1(s runtimev1pb.Dapr_SubscribeTopicEventsAlpha1Server) error {
	return d.api.SubscribeTopicEventsAlpha1(s)
}

// TestMetricsStreamingIngress: each event sent down a streaming
// subscription is recorded with the app's answer.
func TestMetricsStreamingIngress(t *testing.T) {
	m := pubsub.NewMetrics("app", "ns")
	c := newComponent(t, func(b *inmemory.Broker) pubsub.Broker { return b })
	api := &pubsub.API{AppID: "app", Lookup: func(string) (*pubsub.Component, bool) { return c, true }, Ingress: m}
	g := grpc.NewServer()
	runtimev1pb.RegisterDaprServer(g, daprServer{api: api})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(l) }()
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	stream, err := runtimev1pb.NewDaprClient(conn).SubscribeTopicEventsAlpha1(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&runtimev1pb.SubscribeTopicEventsRequestAlpha1{SubscribeTopicEventsRequestType: &runtimev1pb.SubscribeTopicEventsRequestAlpha1_InitialRequest{
		InitialRequest: &runtimev1pb.SubscribeTopicEventsRequestInitialAlpha1{PubsubName: "ps", Topic: "live"},
	}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil { // the initial response
		t.Fatal(err)
	}
	events := make(chan *runtimev1pb.TopicEventRequest)
	go func() {
		for {
			r, err := stream.Recv()
			if err != nil {
				close(events)
				return
			}
			events <- r.GetEventMessage()
		}
	}()
	answer := func(e *runtimev1pb.TopicEventRequest, st runtimev1pb.TopicEventResponse_TopicEventResponseStatus) {
		t.Helper()
		if err := stream.Send(&runtimev1pb.SubscribeTopicEventsRequestAlpha1{SubscribeTopicEventsRequestType: &runtimev1pb.SubscribeTopicEventsRequestAlpha1_EventProcessed{
			EventProcessed: &runtimev1pb.SubscribeTopicEventsRequestProcessedAlpha1{Id: e.GetId(), Status: &runtimev1pb.TopicEventResponse{Status: st}},
		}}); err != nil {
			t.Fatal(err)
		}
	}
	// The subscription is in place once an event comes through: publish
	// until one does. Every event is answered SUCCESS but the last, DROP.
	var success, drop float64
	for success == 0 {
		if code := publish(t, api, "/v1.0/publish/ps/live", `{"kind":"warm"}`); code != http.StatusNoContent {
			t.Fatalf("publish: %d", code)
		}
		select {
		case e := <-events:
			answer(e, runtimev1pb.TopicEventResponse_SUCCESS)
			success++
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("no event came down the stream")
		}
	}
	if code := publish(t, api, "/v1.0/publish/ps/live", `{"kind":"last"}`); code != http.StatusNoContent {
		t.Fatalf("publish: %d", code)
	}
	for idle := time.NewTimer(500 * time.Millisecond); ; {
		select {
		case e := <-events:
			if strings.Contains(string(e.GetData()), "last") {
				answer(e, runtimev1pb.TopicEventResponse_DROP)
				drop++
			} else {
				answer(e, runtimev1pb.TopicEventResponse_SUCCESS)
				success++
			}
			idle.Reset(500 * time.Millisecond)
			continue
		case <-idle.C:
		}
		break
	}
	if drop != 1 {
		t.Fatalf("the last event came %v times", drop)
	}
	series := func(name, ps string) string {
		return name + "{app_id=app,component=ps,namespace=ns,process_status=" + ps + ",status=" + ps + ",topic=live}"
	}
	want := map[string]float64{
		series("dapr_component_pubsub_ingress_count", "success"): success, series("dapr_component_pubsub_ingress_latencies", "success"): success,
		series("dapr_component_pubsub_ingress_count", "drop"): drop, series("dapr_component_pubsub_ingress_latencies", "drop"): drop,
	}
	var got map[string]float64
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if got = daprmetricstest.Gather(t, m); equal(got, want) || time.Now().After(deadline) {
			break
		}
	}
	wantExactly(t, got, want)
}
