package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	commonv1pb "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/outrigger/outrigger/e2e/framework"
)

const invokeResiliency = `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: invoke
spec:
  policies:
    retries:
      three:
        policy: constant
        duration: 20ms
        maxRetries: 3
    circuitBreakers:
      tripsAtThree:
        maxRequests: 1
        timeout: 1s
        trip: consecutiveFailures >= 3
  targets:
    apps:
      rz-retry:
        retry: three
      rz-breaker:
        circuitBreaker: tripsAtThree
`

// wantRetriedTwice calls appID's flaky route, which fails twice and then
// answers, through caller over HTTP (key httpKey) and over gRPC
// InvokeService (key grpcKey), and wants each to succeed after three
// calls to the app, the body sent again each time.
func wantRetriedTwice(t *testing.T, caller *framework.Sidecar, app *framework.HTTPApp, appID, httpKey, grpcKey string) {
	t.Helper()
	resp, body := call(t, http.MethodPost, caller.URL("/v1.0/invoke/"+appID+"/method/flaky/"+httpKey+"?fail=2"), strings.NewReader("the body"), nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"body":"the body"`) {
		t.Errorf("after two failures: %d %s", resp.StatusCode, body)
	}
	if n := app.Calls(httpKey); n != 3 {
		t.Errorf("the app saw %d calls, want 3 (two failures, then the success)", n)
	}
	client := runtimev1pb.NewDaprClient(caller.Dial(t))
	gresp, err := client.InvokeService(callCtx(t), &runtimev1pb.InvokeServiceRequest{Id: appID, Message: &commonv1pb.InvokeRequest{
		Method: "flaky/" + grpcKey, Data: &anypb.Any{Value: []byte("grpc body")}, ContentType: "text/plain",
		HttpExtension: &commonv1pb.HTTPExtension{Verb: commonv1pb.HTTPExtension_POST, Querystring: "fail=2"},
	}})
	if err != nil || !strings.Contains(string(gresp.GetData().GetValue()), `"body":"grpc body"`) {
		t.Errorf("InvokeService after two failures: %v %s", err, gresp.GetData().GetValue())
	}
	if n := app.Calls(grpcKey); n != 3 {
		t.Errorf("the app saw %d gRPC-invoked calls, want 3", n)
	}
}

// TestInvokeRetries: a Resiliency retry policy on an app: an answer of 500
// is retried until it succeeds, the body sent again each time; a 404 is
// not retried; retries are counted in the metrics.
func TestInvokeRetries(t *testing.T) {
	t.Parallel()
	res := framework.ShortTempDir(t)
	writeFile(t, filepath.Join(res, "resiliency.yaml"), invokeResiliency)
	app := framework.StartHTTPApp(t, framework.HTTPAppOptions{})
	callee := framework.StartSidecar(t, framework.SidecarOptions{AppID: "rz-retry", AppPort: app.Port})
	caller := framework.StartSidecar(t, framework.SidecarOptions{AppID: "rz-caller", Resolve: []framework.Endpoint{callee.Endpoint()}, Args: []string{"--resources-path", res}})

	wantRetriedTwice(t, caller, app, "rz-retry", "a", "g")
	// More failures than retries: the last answer comes back.
	resp, body := call(t, http.MethodGet, caller.URL("/v1.0/invoke/rz-retry/method/flaky/b?fail=10"), nil, nil)
	if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(string(body), "call 4 of b fails") {
		t.Errorf("retries run out: %d %s", resp.StatusCode, body)
	}
	// A 4xx is not retried.
	resp, _ = call(t, http.MethodGet, caller.URL("/v1.0/invoke/rz-retry/method/flaky/c?fail=1&code=404"), nil, nil)
	if resp.StatusCode != http.StatusNotFound || app.Calls("c") != 1 {
		t.Errorf("a 404: status %d after %d calls, want 404 after 1", resp.StatusCode, app.Calls("c"))
	}
	if v := metricValue(t, caller, "outrigger_resiliency_retries_total", `dest_app_id="rz-retry"`); v != 7 {
		t.Errorf("retries counted: %v, want 7", v)
	}
	// daprd's names: four calls under the policy, seven retries made.
	target := []string{"name", "invoke", "policy", "retry", "flow_direction", "outbound", "target", "app_rz-retry"}
	if v := scrapeCounter(t, caller, "dapr_resiliency_count", target...); v != 4 {
		t.Errorf("dapr_resiliency_count %v, want 4", v)
	}
	if v := scrapeCounter(t, caller, "dapr_resiliency_activations_total", target...); v != 7 {
		t.Errorf("dapr_resiliency_activations_total %v, want 7", v)
	}
	if v := scrapeCounter(t, caller, "dapr_resiliency_loaded", "name", "invoke"); v < 1 {
		t.Errorf("dapr_resiliency_loaded %v", v)
	}
}

// TestInvokeCircuitBreaker: an app that keeps failing trips its breaker
// (consecutiveFailures >= 3): the next call fails at once without reaching
// it; after the timeout one call is let through (half open), and its
// success closes the breaker. Each step shows in the metrics.
func TestInvokeCircuitBreaker(t *testing.T) {
	t.Parallel()
	res := framework.ShortTempDir(t)
	writeFile(t, filepath.Join(res, "resiliency.yaml"), invokeResiliency)
	app := framework.StartHTTPApp(t, framework.HTTPAppOptions{})
	callee := framework.StartSidecar(t, framework.SidecarOptions{AppID: "rz-breaker", AppPort: app.Port})
	caller := framework.StartSidecar(t, framework.SidecarOptions{AppID: "rz-caller2", Resolve: []framework.Endpoint{callee.Endpoint()}, Args: []string{"--resources-path", res}})
	state := func() float64 {
		return metricValue(t, caller, "outrigger_resiliency_circuit_breaker_state", `dest_app_id="rz-breaker"`)
	}
	for i := range 3 {
		resp, _ := call(t, http.MethodGet, caller.URL("/v1.0/invoke/rz-breaker/method/flaky/down?fail=1000"), nil, nil)
		if resp.StatusCode != http.StatusInternalServerError {
			t.Fatalf("call %d: %d", i, resp.StatusCode)
		}
	}
	if s := state(); s != 2 {
		t.Errorf("breaker state %v after three failures, want 2 (open)", s)
	}
	daprState := func(status string) float64 {
		return scrapeCounter(t, caller, "dapr_resiliency_cb_state", "status", status, "target", "app_rz-breaker")
	}
	if open, closed := daprState("open"), daprState("closed"); open != 1 || closed != 0 {
		t.Errorf("dapr_resiliency_cb_state open=%v closed=%v after three failures, want 1 and 0", open, closed)
	}
	resp, body := call(t, http.MethodGet, caller.URL("/v1.0/invoke/rz-breaker/method/flaky/down?fail=1000"), nil, nil)
	if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(string(body), "circuit breaker is open") {
		t.Errorf("with the breaker open: %d %s", resp.StatusCode, body)
	}
	if n := app.Calls("down"); n != 3 {
		t.Errorf("the app saw %d calls, want 3: an open breaker lets none through", n)
	}
	// After the 1 s timeout the breaker half opens; one success closes it.
	framework.WaitFor(t, "the breaker to let a call through again", func() error {
		resp, body, err := tryCall(callCtx(t), http.MethodGet, caller.URL("/v1.0/invoke/rz-breaker/method/flaky/up"), nil, nil)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%d %s", resp.StatusCode, body)
		}
		return nil
	})
	if s := state(); s != 0 {
		t.Errorf("breaker state %v after a success half open, want 0 (closed)", s)
	}
	if open, closed := daprState("open"), daprState("closed"); open != 0 || closed != 1 {
		t.Errorf("dapr_resiliency_cb_state open=%v closed=%v after closing, want 0 and 1", open, closed)
	}
	for _, status := range []string{"open", "half-open", "closed"} {
		if v := scrapeCounter(t, caller, "dapr_resiliency_activations_total", "policy", "circuitbreaker", "target", "app_rz-breaker", "status", status); v != 1 {
			t.Errorf("dapr_resiliency_activations_total{status=%q} %v, want 1", status, v)
		}
	}
	logs := caller.Logs()
	for _, step := range []string{"from=closed to=open", "from=open to=half-open", "from=half-open to=closed"} {
		if !strings.Contains(logs, step) {
			t.Errorf("the log does not show %s", step)
		}
	}
}

// TestDeliveryInboundRetry: a pub/sub component's inbound retry policy
// governs the retries of a delivery the app fails, in place of the built-in
// five: here two deliveries (maxRetries 1), then the dead-letter topic.
func TestDeliveryInboundRetry(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	counts := map[string]int{}
	l := framework.Listen(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		counts[r.URL.Path]++
		mu.Unlock()
		if r.URL.Path == "/poison" {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	res := stateStores(t, "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pubsub\nspec:\n  type: pubsub.in-memory\n  version: v1\n")
	writeFile(t, filepath.Join(res, "subs.yaml"), "apiVersion: dapr.io/v1alpha1\nkind: Subscription\nmetadata:\n  name: poison\nspec:\n  pubsubname: pubsub\n  topic: poison\n  route: /poison\n  deadLetterTopic: dead\n---\napiVersion: dapr.io/v1alpha1\nkind: Subscription\nmetadata:\n  name: dead\nspec:\n  pubsubname: pubsub\n  topic: dead\n  route: /dead\n")
	writeFile(t, filepath.Join(res, "resiliency.yaml"), "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: inbound\nspec:\n  policies:\n    retries:\n      once:\n        policy: constant\n        duration: 10ms\n        maxRetries: 1\n  targets:\n    components:\n      pubsub:\n        inbound:\n          retry: once\n")
	sc := framework.StartSidecar(t, framework.SidecarOptions{AppID: "inbound", AppPort: l.Addr().(*net.TCPAddr).Port, Args: []string{"--resources-path", res}})
	framework.WaitFor(t, "the subscriptions", func() error {
		got, err := metadataSubs(t, sc)
		if err != nil || len(got) != 2 {
			return fmt.Errorf("%v %v", got, err)
		}
		return nil
	})
	if resp, body := call(t, http.MethodPost, sc.URL("/v1.0/publish/pubsub/poison"), strings.NewReader(`{"x":1}`), http.Header{"Content-Type": {"application/json"}}); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("publish: %d %s", resp.StatusCode, body)
	}
	framework.WaitFor(t, "the event to reach the dead-letter topic", func() error {
		mu.Lock()
		defer mu.Unlock()
		if counts["/dead"] == 0 {
			return fmt.Errorf("deliveries so far: %v", counts)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if counts["/poison"] != 2 {
		t.Errorf("the failing delivery was made %d times, want 2 (maxRetries 1)", counts["/poison"])
	}
	// daprd's names: two events delivered under the inbound retry (the
	// poison and its dead letter, both from this component), one retry.
	target := []string{"name", "inbound", "policy", "retry", "flow_direction", "inbound", "target", "Pubsub_pubsub"}
	if v := scrapeCounter(t, sc, "dapr_resiliency_count", target...); v != 2 {
		t.Errorf("dapr_resiliency_count %v, want 2", v)
	}
	if v := scrapeCounter(t, sc, "dapr_resiliency_activations_total", target...); v != 1 {
		t.Errorf("dapr_resiliency_activations_total %v, want 1", v)
	}
}

// TestStateOutboundRetry: a state store's outbound retry policy carries a
// save across a database outage: the save issued while Redis is down
// succeeds once it is back, within the retries; an ETag conflict is not
// retried.
func TestStateOutboundRetry(t *testing.T) {
	t.Parallel()
	dir := framework.ShortTempDir(t)
	port := framework.FreePort(t)
	srv := privateRedis(t, port, dir)
	res := stateStores(t, fmt.Sprintf("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: cache\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: 127.0.0.1:%d\n  - name: dialTimeout\n    value: 200ms\n  - name: maxRetries\n    value: \"0\"\n", port))
	writeFile(t, filepath.Join(res, "resiliency.yaml"), "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: state\nspec:\n  policies:\n    retries:\n      patient:\n        policy: constant\n        duration: 100ms\n        maxRetries: 100\n  targets:\n    components:\n      cache:\n        outbound:\n          retry: patient\n")
	sc := framework.StartSidecar(t, framework.SidecarOptions{AppID: "patient", Args: []string{"--resources-path", res}})
	save := func(v, etag string) (*http.Response, []byte, error) {
		item := `{"key":"k","value":"` + v + `"`
		if etag != "" {
			item += `,"etag":"` + etag + `"`
		}
		return tryCall(callCtx(t), http.MethodPost, sc.URL("/v1.0/state/cache"), strings.NewReader("["+item+"}]"), nil)
	}
	if resp, body, err := save("before", ""); err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("save with the database up: %v %v %s", err, resp, body)
	}
	// A wrong ETag: a conflict at once, not retried into the 10 s of retries.
	start := time.Now()
	resp, body, err := save("x", "999999")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusConflict || time.Since(start) > 2*time.Second {
		t.Errorf("an ETag conflict: %d %s after %v", resp.StatusCode, body, time.Since(start))
	}

	_ = srv.Process.Signal(syscall.SIGKILL)
	_ = srv.Wait()
	type result struct {
		status int
		body   string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		resp, body, err := save("during", "")
		r := result{err: err, body: string(body)}
		if resp != nil {
			r.status = resp.StatusCode
		}
		done <- r
	}()
	// The save is retrying; the database comes back.
	time.Sleep(500 * time.Millisecond) // let a few attempts fail
	select {
	case r := <-done:
		t.Fatalf("the save ended while the database was down: %+v", r)
	default:
	}
	privateRedis(t, port, dir)
	r := <-done
	if r.err != nil || r.status != http.StatusNoContent {
		t.Fatalf("the save across the outage: %+v", r)
	}
	resp, body = call(t, http.MethodGet, sc.URL("/v1.0/state/cache/k"), nil, nil)
	if resp.StatusCode != http.StatusOK || string(body) != `"during"` {
		t.Errorf("read after the outage: %d %q", resp.StatusCode, body)
	}
}

// TestPublishOutboundRetry: a pub/sub component's outbound retry policy
// carries a publish across a broker outage (Redis Streams here).
func TestPublishOutboundRetry(t *testing.T) {
	t.Parallel()
	dir := framework.ShortTempDir(t)
	port := framework.FreePort(t)
	srv := privateRedis(t, port, dir)
	res := stateStores(t, fmt.Sprintf("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: events\nspec:\n  type: pubsub.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: 127.0.0.1:%d\n  - name: dialTimeout\n    value: 200ms\n  - name: maxRetries\n    value: \"0\"\n", port))
	writeFile(t, filepath.Join(res, "resiliency.yaml"), "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: publish\nspec:\n  policies:\n    retries:\n      patient:\n        policy: constant\n        duration: 100ms\n        maxRetries: 100\n  targets:\n    components:\n      events:\n        outbound:\n          retry: patient\n")
	sc := framework.StartSidecar(t, framework.SidecarOptions{AppID: "publisher", Args: []string{"--resources-path", res}})
	publish := func() (int, string, error) {
		resp, body, err := tryCall(callCtx(t), http.MethodPost, sc.URL("/v1.0/publish/events/orders"), strings.NewReader(`{"n":1}`), http.Header{"Content-Type": {"application/json"}})
		if err != nil {
			return 0, "", err
		}
		return resp.StatusCode, string(body), nil
	}
	if st, body, err := publish(); err != nil || st != http.StatusNoContent {
		t.Fatalf("publish with the broker up: %d %s %v", st, body, err)
	}
	_ = srv.Process.Signal(syscall.SIGKILL)
	_ = srv.Wait()
	done := make(chan string, 1)
	go func() {
		st, body, err := publish()
		done <- fmt.Sprintf("%d %s %v", st, body, err)
	}()
	time.Sleep(500 * time.Millisecond) // let a few attempts fail
	select {
	case r := <-done:
		t.Fatalf("the publish ended while the broker was down: %s", r)
	default:
	}
	privateRedis(t, port, dir)
	if r := <-done; !strings.HasPrefix(r, "204 ") {
		t.Fatalf("the publish across the outage: %s", r)
	}
}

// TestStateOutboundBreaker: a state store's circuit breaker opens after the
// failures its trip counts, and then answers at once without calling the
// store; its state is exported.
func TestStateOutboundBreaker(t *testing.T) {
	t.Parallel()
	dir := framework.ShortTempDir(t)
	port := framework.FreePort(t)
	srv := privateRedis(t, port, dir)
	res := stateStores(t, fmt.Sprintf("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: cache\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: 127.0.0.1:%d\n  - name: dialTimeout\n    value: 200ms\n  - name: maxRetries\n    value: \"0\"\n", port))
	writeFile(t, filepath.Join(res, "resiliency.yaml"), "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: state\nspec:\n  policies:\n    circuitBreakers:\n      guard:\n        timeout: 30s\n        trip: consecutiveFailures >= 2\n  targets:\n    components:\n      cache:\n        outbound:\n          circuitBreaker: guard\n")
	sc := framework.StartSidecar(t, framework.SidecarOptions{AppID: "guarded", Args: []string{"--resources-path", res}})
	save := func() (int, string) {
		resp, body := call(t, http.MethodPost, sc.URL("/v1.0/state/cache"), strings.NewReader(`[{"key":"k","value":"v"}]`), nil)
		return resp.StatusCode, string(body)
	}
	if st, body := save(); st != http.StatusNoContent {
		t.Fatalf("save with the database up: %d %s", st, body)
	}
	_ = srv.Process.Signal(syscall.SIGKILL)
	_ = srv.Wait()
	for range 2 {
		if st, body := save(); st != http.StatusInternalServerError || strings.Contains(body, "circuit breaker") {
			t.Fatalf("a save with the database down, breaker closed: %d %s", st, body)
		}
	}
	if st, body := save(); st != http.StatusInternalServerError || !strings.Contains(body, "circuit breaker is open") {
		t.Errorf("with the breaker open: %d %s", st, body)
	}
	if v := metricValue(t, sc, "outrigger_resiliency_component_circuit_breaker_state", `component="cache"`); v != 2 {
		t.Errorf("breaker state %v, want 2 (open)", v)
	}
	if v := scrapeCounter(t, sc, "dapr_resiliency_cb_state", "status", "open", "target", "Statestore_cache"); v != 1 {
		t.Errorf("dapr_resiliency_cb_state{status=open,target=Statestore_cache} %v, want 1", v)
	}
}

// TestDeliveryInboundTimeout: a pub/sub component's inbound timeout bounds
// each delivery: a delivery the app holds is abandoned after it and made
// again.
func TestDeliveryInboundTimeout(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	deliveries := 0
	l := framework.Listen(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.URL.Path != "/slow" {
			w.WriteHeader(http.StatusNotFound) // no programmatic subscriptions
			return
		}
		mu.Lock()
		deliveries++
		n := deliveries
		mu.Unlock()
		if n == 1 {
			// The first delivery hangs until the sidecar gives up on it.
			select {
			case <-r.Context().Done():
			case <-time.After(20 * time.Second):
			}
			return
		}
		w.WriteHeader(http.StatusOK)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	res := stateStores(t, "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pubsub\nspec:\n  type: pubsub.in-memory\n  version: v1\n")
	writeFile(t, filepath.Join(res, "subs.yaml"), "apiVersion: dapr.io/v1alpha1\nkind: Subscription\nmetadata:\n  name: slow\nspec:\n  pubsubname: pubsub\n  topic: slow\n  route: /slow\n")
	writeFile(t, filepath.Join(res, "resiliency.yaml"), "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: inbound\nspec:\n  policies:\n    timeouts:\n      brief: 300ms\n    retries:\n      quick:\n        policy: constant\n        duration: 10ms\n        maxRetries: 3\n  targets:\n    components:\n      pubsub:\n        inbound:\n          timeout: brief\n          retry: quick\n")
	sc := framework.StartSidecar(t, framework.SidecarOptions{AppID: "inbound-timeout", AppPort: l.Addr().(*net.TCPAddr).Port, Args: []string{"--resources-path", res}})
	framework.WaitFor(t, "the subscription", func() error {
		got, err := metadataSubs(t, sc)
		if err != nil || len(got) != 1 {
			return fmt.Errorf("%v %v", got, err)
		}
		return nil
	})
	start := time.Now()
	if resp, body := call(t, http.MethodPost, sc.URL("/v1.0/publish/pubsub/slow"), strings.NewReader(`{"x":1}`), http.Header{"Content-Type": {"application/json"}}); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("publish: %d %s", resp.StatusCode, body)
	}
	framework.WaitFor(t, "the second delivery", func() error {
		mu.Lock()
		defer mu.Unlock()
		if deliveries < 2 {
			return fmt.Errorf("%d deliveries", deliveries)
		}
		return nil
	})
	if d := time.Since(start); d < 300*time.Millisecond || d > 10*time.Second {
		t.Errorf("the second delivery came %v after the publish; the timeout is 300ms", d)
	}
	// daprd's names: the timeout fired on the held delivery, and the
	// retry sent it again. The sidecar counts them after the attempt ends,
	// which may come after the app saw the next one.
	target := []string{"name", "inbound", "flow_direction", "inbound", "target", "Pubsub_pubsub"}
	framework.WaitFor(t, "the timeout and the retry in the metrics", func() error {
		timeouts := scrapeCounter(t, sc, "dapr_resiliency_activations_total", append(target, "policy", "timeout")...)
		retries := scrapeCounter(t, sc, "dapr_resiliency_activations_total", append(target, "policy", "retry")...)
		if timeouts < 1 || retries < 1 {
			return fmt.Errorf("timeouts %v, retries %v", timeouts, retries)
		}
		return nil
	})
}

// TestDeliveryInboundBreaker: a pub/sub component's inbound circuit breaker
// opens after the failures its trip counts; while it is open no delivery
// reaches the app and the event goes back to the broker (not to a dead
// letter), and once it half opens the event is delivered: nothing is lost.
func TestDeliveryInboundBreaker(t *testing.T) {
	t.Parallel()
	var failing atomic.Bool
	failing.Store(true)
	var failed, delivered atomic.Int32
	l := framework.Listen(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.URL.Path != "/orders" {
			w.WriteHeader(http.StatusNotFound) // no programmatic subscriptions
			return
		}
		if failing.Load() {
			failed.Add(1)
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		delivered.Add(1)
		w.WriteHeader(http.StatusOK)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	res := stateStores(t, "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pubsub\nspec:\n  type: pubsub.in-memory\n  version: v1\n")
	writeFile(t, filepath.Join(res, "subs.yaml"), "apiVersion: dapr.io/v1alpha1\nkind: Subscription\nmetadata:\n  name: orders\nspec:\n  pubsubname: pubsub\n  topic: orders\n  route: /orders\n")
	writeFile(t, filepath.Join(res, "resiliency.yaml"), "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: inbound\nspec:\n  policies:\n    retries:\n      none:\n        policy: constant\n        duration: 10ms\n        maxRetries: 0\n    circuitBreakers:\n      guard:\n        timeout: 5s\n        trip: consecutiveFailures >= 3\n  targets:\n    components:\n      pubsub:\n        inbound:\n          retry: none\n          circuitBreaker: guard\n")
	sc := framework.StartSidecar(t, framework.SidecarOptions{AppID: "inbound-cb", AppPort: l.Addr().(*net.TCPAddr).Port, Args: []string{"--resources-path", res}})
	framework.WaitFor(t, "the subscription", func() error {
		got, err := metadataSubs(t, sc)
		if err != nil || len(got) != 1 {
			return fmt.Errorf("%v %v", got, err)
		}
		return nil
	})
	if resp, body := call(t, http.MethodPost, sc.URL("/v1.0/publish/pubsub/orders"), strings.NewReader(`{"x":1}`), http.Header{"Content-Type": {"application/json"}}); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("publish: %d %s", resp.StatusCode, body)
	}
	framework.WaitFor(t, "the breaker to open", func() error {
		if !strings.Contains(sc.Logs(), "to=open") {
			return fmt.Errorf("%d failed deliveries so far", failed.Load())
		}
		return nil
	})
	// Open: the broker's redeliveries (every 100 ms) are refused before
	// they reach the app; the app is well again.
	failing.Store(false)
	if n := failed.Load(); n != 3 {
		t.Errorf("the app saw %d failing deliveries, want 3 (the trip), none while open", n)
	}
	framework.WaitFor(t, "the event to be delivered once the breaker half opens", func() error {
		if delivered.Load() == 0 {
			return errors.New("not delivered yet")
		}
		return nil
	})
	// The sidecar closes the breaker once the app's answer reaches it,
	// after the app counted the delivery; its log comes through a pipe.
	framework.WaitFor(t, "the log to show the breaker closing", func() error {
		if !strings.Contains(sc.Logs(), "from=half-open to=closed") {
			return errors.New("no half-open to closed line yet")
		}
		return nil
	})
	if n := delivered.Load(); n != 1 {
		t.Errorf("delivered %d times, want once", n)
	}
	// daprd's names: the breaker went closed -> open -> half-open ->
	// closed, each step counted, and its state is closed now.
	target := []string{"name", "inbound", "policy", "circuitbreaker", "flow_direction", "inbound", "target", "Pubsub_pubsub"}
	for _, status := range []string{"open", "half-open", "closed"} {
		if v := scrapeCounter(t, sc, "dapr_resiliency_activations_total", append(target, "status", status)...); v != 1 {
			t.Errorf("dapr_resiliency_activations_total for %s: %v, want 1", status, v)
		}
	}
	if open, closed := scrapeCounter(t, sc, "dapr_resiliency_cb_state", append(target, "status", "open")...), scrapeCounter(t, sc, "dapr_resiliency_cb_state", append(target, "status", "closed")...); open != 0 || closed != 1 {
		t.Errorf("dapr_resiliency_cb_state open=%v closed=%v, want 0 and 1", open, closed)
	}
}

// TestGRPCProxyRetryPolicy: a Resiliency retry policy on an app retries
// proxied gRPC calls (dapr-app-id metadata) that the app failed before
// answering, and counts them in daprd's metrics.
func TestGRPCProxyRetryPolicy(t *testing.T) {
	t.Parallel()
	res := framework.ShortTempDir(t)
	writeFile(t, filepath.Join(res, "resiliency.yaml"), `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: grpcretry
spec:
  policies:
    retries:
      unavailable:
        policy: constant
        duration: 20ms
        maxRetries: 3
        matching:
          gRPCStatusCodes: "14"
  targets:
    apps:
      rz-grpc:
        retry: unavailable
`)
	app := framework.StartGRPCApp(t)
	callee := framework.StartSidecar(t, framework.SidecarOptions{AppID: "rz-grpc", AppPort: app.Port, AppProtocol: "grpc"})
	caller := framework.StartSidecar(t, framework.SidecarOptions{AppID: "rz-grpc-caller", Resolve: []framework.Endpoint{callee.Endpoint()}, Args: []string{"--resources-path", res}})
	client := testgrpc.NewTestServiceClient(caller.Dial(t))
	ctx := metadata.AppendToOutgoingContext(callCtx(t), "dapr-app-id", "rz-grpc")

	app.FailNext(2, codes.Unavailable)
	resp, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("third time")}})
	if err != nil || string(resp.GetPayload().GetBody()) != "third time" {
		t.Fatalf("after two failures: %v %v", resp, err)
	}
	if n := app.Calls("/grpc.testing.TestService/UnaryCall"); n != 3 {
		t.Errorf("the app saw %d calls, want 3", n)
	}
	// A status the policy does not match is not retried.
	app.FailNext(1, codes.NotFound)
	if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}); status.Code(err) != codes.NotFound {
		t.Fatalf("NotFound: %v", err)
	}
	if n := app.Calls("/grpc.testing.TestService/UnaryCall"); n != 4 {
		t.Errorf("the app saw %d calls, want 4 (NotFound once)", n)
	}
	target := []string{"name", "grpcretry", "policy", "retry", "flow_direction", "outbound", "target", "app_rz-grpc"}
	if v := scrapeCounter(t, caller, "dapr_resiliency_activations_total", target...); v != 2 {
		t.Errorf("dapr_resiliency_activations_total %v, want 2", v)
	}
}
