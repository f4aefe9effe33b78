package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"google.golang.org/grpc/metadata"

	"github.com/outrigger/outrigger/e2e/framework"
)

// tracingConfig is a Configuration that samples every trace and sends the
// spans to an OTLP collector over protocol (grpc or http).
func tracingConfig(t *testing.T, protocol, endpoint string) string {
	path := filepath.Join(framework.ShortTempDir(t), "config.yaml")
	writeFile(t, path, fmt.Sprintf(`apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: tracing
spec:
  tracing:
    samplingRate: "1"
    otel:
      protocol: %s
      endpointAddress: %s
      isSecure: false
`, protocol, endpoint))
	return path
}

// newTraceparent is a sampled W3C traceparent with fresh ids: the trace
// the test's caller (app A) starts.
func newTraceparent() (tp, traceID, spanID string) {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	traceID, spanID = hex.EncodeToString(b[:16]), hex.EncodeToString(b[16:])
	return "00-" + traceID + "-" + spanID + "-01", traceID, spanID
}

// spanIDOf is the parent-id field of a traceparent: the span of whoever
// sent it.
func spanIDOf(traceparent string) string {
	parts := strings.Split(traceparent, "-")
	if len(parts) != 4 {
		return ""
	}
	return parts[2]
}

// TestTraceAcrossSidecarsAndPubSubInJaeger: app A calls app B through two
// sidecars (the Go SDK's InvokeMethod, traceparent in gRPC metadata); B,
// while handling it, publishes an event (the Go SDK, carrying on the
// traceparent it was given); app C receives it through a third sidecar.
// A real Jaeger shows it all as one trace: A's sidecar's span under A's,
// B's sidecar's under A's sidecar's, the publish under that, the delivery
// to C under the publish; and each app was handed its own sidecar's span.
func TestTraceAcrossSidecarsAndPubSubInJaeger(t *testing.T) {
	t.Parallel()
	jaeger := framework.StartJaeger(t)
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	topic := "traced-" + suffix
	pubsubDoc := "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: events\nspec:\n  type: pubsub.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: 127.0.0.1:6379\n"
	grpcConfig := tracingConfig(t, "grpc", jaeger.OTLPGRPC)
	httpConfig := tracingConfig(t, "http", jaeger.OTLPHTTP)
	idA, idB, idC := "trace-a-"+suffix, "trace-b-"+suffix, "trace-c-"+suffix

	// App C: subscribes to the topic and keeps the traceparent of each
	// delivery.
	var mu sync.Mutex
	var cGot []string
	appC := http.NewServeMux()
	appC.HandleFunc("/dapr/subscribe", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode([]map[string]string{{"pubsubname": "events", "topic": topic, "route": "/traced"}})
	})
	appC.HandleFunc("/traced", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		cGot = append(cGot, r.Header.Get("traceparent"))
		mu.Unlock()
		_, _ = w.Write([]byte(`{"status":"SUCCESS"}`))
	})
	lc := framework.Listen(t)
	srvC := &http.Server{Handler: appC, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srvC.Serve(lc) }()
	t.Cleanup(func() { _ = srvC.Close() })
	resC := stateStores(t, pubsubDoc)
	framework.StartSidecar(t, framework.SidecarOptions{AppID: idC, AppPort: lc.Addr().(*net.TCPAddr).Port,
		Args: []string{"--resources-path", resC, "--config", httpConfig}})

	// App B: on /hello, publishes through its sidecar with the Go SDK,
	// passing on the traceparent it was handed.
	resB := stateStores(t, pubsubDoc)
	var bGot []string
	var clientB dapr.Client
	clientBReady := make(chan struct{})
	appB := http.NewServeMux()
	appB.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		tp := r.Header.Get("traceparent")
		mu.Lock()
		bGot = append(bGot, tp)
		mu.Unlock()
		<-clientBReady
		ctx := metadata.AppendToOutgoingContext(r.Context(), "traceparent", tp)
		if err := clientB.PublishEvent(ctx, "events", topic, map[string]string{"from": "b"}); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_, _ = w.Write([]byte("hello from b"))
	})
	lb := framework.Listen(t)
	srvB := &http.Server{Handler: appB, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srvB.Serve(lb) }()
	t.Cleanup(func() { _ = srvB.Close() })
	scB := framework.StartSidecar(t, framework.SidecarOptions{AppID: idB, AppPort: lb.Addr().(*net.TCPAddr).Port,
		Args: []string{"--resources-path", resB, "--config", grpcConfig}})
	var err error
	if clientB, err = dapr.NewClientWithPort(strconv.Itoa(scB.GRPCPort)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(clientB.Close)
	close(clientBReady)

	scA := framework.StartSidecar(t, framework.SidecarOptions{AppID: idA, Resolve: []framework.Endpoint{scB.Endpoint()},
		Args: []string{"--config", grpcConfig}})
	clientA, err := dapr.NewClientWithPort(strconv.Itoa(scA.GRPCPort))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(clientA.Close)

	// C subscribes once its app answers; until then a publish is lost, so
	// warm up with untraced calls until C gets one.
	framework.WaitFor(t, "C's subscription to be in place", func() error {
		if _, err := clientA.InvokeMethod(callCtx(t), idB, "hello", "get"); err != nil {
			return err
		}
		time.Sleep(200 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		if len(cGot) == 0 {
			return errors.New("nothing delivered to C yet")
		}
		return nil
	})
	mu.Lock()
	nB, nC := len(bGot), len(cGot)
	mu.Unlock()

	// The traced call: app A's own span is the root.
	rootTP, traceID, rootSpan := newTraceparent()
	ctx := metadata.AppendToOutgoingContext(callCtx(t), "traceparent", rootTP)
	out, err := clientA.InvokeMethod(ctx, idB, "hello", "get")
	if err != nil || string(out) != "hello from b" {
		t.Fatalf("InvokeMethod: %q %v", out, err)
	}
	var tpB, tpC string
	framework.WaitFor(t, "the traced event to reach C", func() error {
		mu.Lock()
		defer mu.Unlock()
		for _, tp := range cGot[nC:] {
			if strings.Contains(tp, traceID) {
				tpC = tp
			}
		}
		for _, tp := range bGot[nB:] {
			if strings.Contains(tp, traceID) {
				tpB = tp
			}
		}
		if tpC == "" {
			return fmt.Errorf("C got %v since the traced call", cGot[nC:])
		}
		return nil
	})
	if tpB == "" {
		t.Fatalf("app B was not handed the trace: %v", bGot[nB:])
	}

	// Jaeger has the whole trace, in order.
	want := map[string]string{ // service -> span name
		idA + "/call":    "CallLocal/" + idB + "/hello",
		idB + "/serve":   "CallLocal/" + idB + "/hello",
		idB + "/publish": "/dapr.proto.runtime.v1.Dapr/PublishEvent",
		idC + "/deliver": "pubsub/" + topic,
	}
	var spans map[string]framework.JaegerSpan
	framework.WaitFor(t, "Jaeger to hold the trace's four spans", func() error {
		all, err := jaeger.Trace(traceID)
		if err != nil {
			return err
		}
		spans = map[string]framework.JaegerSpan{}
		for _, s := range all {
			for key, name := range want {
				if strings.HasPrefix(key, s.Service+"/") && s.OperationName == name {
					spans[key] = s
				}
			}
		}
		if len(spans) < len(want) {
			var got []string
			for _, s := range all {
				got = append(got, s.Service+": "+s.OperationName)
			}
			return fmt.Errorf("have %d of %d spans: %v", len(spans), len(want), got)
		}
		return nil
	})
	callSpan, serve, publish, deliver := spans[idA+"/call"], spans[idB+"/serve"], spans[idB+"/publish"], spans[idC+"/deliver"]
	for _, c := range []struct {
		what         string
		child        framework.JaegerSpan
		parentSpanID string
	}{
		{"A's sidecar's span under app A's", callSpan, rootSpan},
		{"B's sidecar's span under A's sidecar's", serve, callSpan.SpanID},
		{"the publish under B's sidecar's span (app B passed it on)", publish, serve.SpanID},
		{"the delivery to C under the publish", deliver, publish.SpanID},
	} {
		if got := c.child.Parent(); got != c.parentSpanID {
			t.Errorf("%s: %s's parent is %q, want %q", c.what, c.child.OperationName, got, c.parentSpanID)
		}
	}
	if got := spanIDOf(tpB); got != serve.SpanID {
		t.Errorf("app B was handed span %s, want its sidecar's %s", got, serve.SpanID)
	}
	if got := spanIDOf(tpC); got != deliver.SpanID {
		t.Errorf("app C was handed span %s, want its sidecar's delivery span %s", got, deliver.SpanID)
	}
	// daprd's attribute names.
	for _, c := range []struct {
		span      framework.JaegerSpan
		key, want string
	}{
		{callSpan, "rpc.service", "ServiceInvocation"},
		{callSpan, "net.peer.name", idB},
		{callSpan, "dapr.protocol", "grpc"},
		{callSpan, "span.kind", "client"},
		{serve, "span.kind", "server"},
		{publish, "dapr.api", "/dapr.proto.runtime.v1.Dapr/PublishEvent"},
		{deliver, "messaging.system", "pubsub"},
		{deliver, "messaging.destination.name", topic},
	} {
		if got := c.span.Tag(c.key); got != c.want {
			t.Errorf("span %s of %s: %s = %q, want %q", c.span.OperationName, c.span.Service, c.key, got, c.want)
		}
	}

	// The same through the HTTP API: a plain request with a traceparent
	// header.
	rootTP, traceID, rootSpan = newTraceparent()
	resp, body := call(t, http.MethodGet, scA.URL("/v1.0/invoke/"+idB+"/method/hello"), nil, http.Header{"traceparent": {rootTP}})
	if resp.StatusCode != http.StatusOK || string(body) != "hello from b" {
		t.Fatalf("HTTP invoke: %d %s", resp.StatusCode, body)
	}
	framework.WaitFor(t, "Jaeger to hold the HTTP call's spans", func() error {
		all, err := jaeger.Trace(traceID)
		if err != nil {
			return err
		}
		var a, b *framework.JaegerSpan
		for i, s := range all {
			switch {
			case s.Service == idA && s.OperationName == "CallLocal/"+idB+"/hello":
				a = &all[i]
			case s.Service == idB && s.OperationName == "CallLocal/"+idB+"/hello":
				b = &all[i]
			}
		}
		if a == nil || b == nil {
			return fmt.Errorf("spans so far: %d", len(all))
		}
		if a.Parent() != rootSpan || b.Parent() != a.SpanID {
			return fmt.Errorf("A's span under %s (want %s), B's under %s (want %s)", a.Parent(), rootSpan, b.Parent(), a.SpanID)
		}
		if a.Tag("dapr.protocol") != "http" || a.Tag("http.request.method") != "GET" || a.Tag("dapr.status_code") != "200" {
			return fmt.Errorf("A's span tags: %+v", a.Tags)
		}
		return nil
	})

	services, err := jaeger.Services()
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{idA, idB, idC} {
		found := false
		for _, s := range services {
			found = found || s == id
		}
		if !found {
			t.Errorf("Jaeger has no service %s: %v", id, services)
		}
	}
}

// TestTracingCollectorDown: a collector that accepts connections and never
// answers, and one that refuses them, neither fail nor hold up calls; the
// spans they could not take are dropped and counted in the sidecar's
// metrics.
func TestTracingCollectorDown(t *testing.T) {
	t.Parallel()
	// A black hole: takes connections, never says a word.
	hole := framework.Listen(t)
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				_ = c.Close()
			}
		}()
		for {
			c, err := hole.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	refused := framework.FreePort(t) // nothing listens there
	app := framework.StartHTTPApp(t, framework.HTTPAppOptions{})
	callee := framework.StartSidecar(t, framework.SidecarOptions{AppID: "down-callee", AppPort: app.Port})
	for _, c := range []struct{ name, protocol, endpoint string }{
		{"black hole", "grpc", hole.Addr().String()},
		{"refused", "http", "127.0.0.1:" + strconv.Itoa(refused)},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := filepath.Join(framework.ShortTempDir(t), "config.yaml")
			writeFile(t, cfg, fmt.Sprintf("apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: tracing\nspec:\n  tracing:\n    samplingRate: \"1\"\n    otel:\n      protocol: %s\n      endpointAddress: %s\n      isSecure: false\n      timeout: 1s\n", c.protocol, c.endpoint))
			sc := framework.StartSidecar(t, framework.SidecarOptions{AppID: "down-caller", Resolve: []framework.Endpoint{callee.Endpoint()}, Args: []string{"--config", cfg}})
			const calls = 300
			for i := range calls {
				if resp, body := call(t, http.MethodGet, sc.URL(fmt.Sprintf("/v1.0/invoke/down-callee/method/n/%d", i)), nil, nil); resp.StatusCode != http.StatusOK {
					t.Fatalf("call %d with the collector down: %d %s", i, resp.StatusCode, body)
				}
			}
			framework.WaitFor(t, "the lost spans to be counted", func() error {
				n := scrapeCounter(t, sc, "outrigger_tracing_spans_dropped_total")
				if n < calls {
					return fmt.Errorf("%v spans counted as dropped, want at least %d", n, calls)
				}
				return nil
			})
			if n := scrapeCounter(t, sc, "outrigger_tracing_spans_exported_total"); n != 0 {
				t.Errorf("%v spans counted as exported to a collector that is down", n)
			}
		})
	}
}

// TestTraceBulkAndStreamingDeliveries: an event delivered in a bulk batch,
// and one sent down a streaming subscription (the Go SDK's Subscribe), each
// gets a delivery span ("pubsub/<topic>") in the publisher's trace, a child
// of the publish, in a real Jaeger.
func TestTraceBulkAndStreamingDeliveries(t *testing.T) {
	t.Parallel()
	jaeger := framework.StartJaeger(t)
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	mux := http.NewServeMux()
	mux.HandleFunc("/dapr/subscribe", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`[{"pubsubname":"pubsub","topic":"batched","route":"/batched","bulkSubscribe":{"enabled":true,"maxMessagesCount":10,"maxAwaitDurationMs":100}}]`))
	})
	var mu sync.Mutex
	var delivered []string // the traceparents of the batched events the app got
	mux.HandleFunc("/batched", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Entries []struct {
				EntryID string         `json:"entryId"`
				Event   map[string]any `json:"event"`
			} `json:"entries"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		out := []map[string]string{}
		for _, e := range body.Entries {
			out = append(out, map[string]string{"entryId": e.EntryID, "status": "SUCCESS"})
			mu.Lock()
			delivered = append(delivered, fmt.Sprint(e.Event["traceparent"]))
			mu.Unlock()
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"statuses": out})
	})
	l := framework.Listen(t)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	res := stateStores(t, "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pubsub\nspec:\n  type: pubsub.in-memory\n  version: v1\n")
	id := "trace-deliveries-" + suffix
	sc := framework.StartSidecar(t, framework.SidecarOptions{AppID: id, AppPort: l.Addr().(*net.TCPAddr).Port,
		Args: []string{"--resources-path", res, "--config", tracingConfig(t, "grpc", jaeger.OTLPGRPC)}})
	client, err := dapr.NewClientWithPort(strconv.Itoa(sc.GRPCPort))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	ctx := callCtx(t)
	sub, err := client.Subscribe(ctx, dapr.SubscriptionOptions{PubsubName: "pubsub", Topic: "streamed"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })

	publish := func(topic string) string {
		tp, traceID, _ := newTraceparent()
		resp, body := call(t, http.MethodPost, sc.URL("/v1.0/publish/pubsub/"+topic), strings.NewReader(`{"x":1}`),
			http.Header{"Content-Type": {"application/json"}, "Traceparent": {tp}})
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("publish to %s: %d %s", topic, resp.StatusCode, body)
		}
		return traceID
	}
	// The app's subscriptions are read once it is up; an event published
	// before the bulk one is in place is dropped by the in-memory broker,
	// so publish until one reaches the app, and follow its trace.
	var bulkTrace string
	framework.WaitFor(t, "a batched event to reach the app", func() error {
		mu.Lock()
		n := len(delivered)
		first := ""
		if n > 0 {
			first = delivered[0]
		}
		mu.Unlock()
		if n == 0 {
			publish("batched")
			return errors.New("none yet")
		}
		parts := strings.Split(first, "-")
		if len(parts) != 4 {
			t.Fatalf("the batched event carries traceparent %q", first)
		}
		bulkTrace = parts[1]
		return nil
	})
	streamTrace := publish("streamed")
	msg, err := sub.Receive()
	if err != nil {
		t.Fatal(err)
	}
	if err := msg.Success(); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct{ topic, traceID string }{{"batched", bulkTrace}, {"streamed", streamTrace}} {
		framework.WaitFor(t, "the "+c.topic+" delivery's span in Jaeger", func() error {
			spans, err := jaeger.Trace(c.traceID)
			if err != nil {
				return err
			}
			byID := map[string]framework.JaegerSpan{}
			for _, s := range spans {
				byID[s.SpanID] = s
			}
			for _, s := range spans {
				if s.OperationName != "pubsub/"+c.topic {
					continue
				}
				parent, ok := byID[s.Parent()]
				if !ok {
					return fmt.Errorf("the delivery span's parent %q is not in the trace", s.Parent())
				}
				if !strings.Contains(parent.OperationName, "publish") {
					return fmt.Errorf("the delivery span's parent is %q, want the publish", parent.OperationName)
				}
				if s.Service != id || s.Tag("messaging.destination.name") != c.topic {
					return fmt.Errorf("the delivery span: service %q, destination %q", s.Service, s.Tag("messaging.destination.name"))
				}
				return nil
			}
			names := []string{}
			for _, s := range spans {
				names = append(names, s.OperationName)
			}
			return fmt.Errorf("no pubsub/%s span among %v", c.topic, names)
		})
	}
}
