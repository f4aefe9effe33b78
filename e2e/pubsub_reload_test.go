package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"github.com/dapr/go-sdk/service/common"
	daprhttp "github.com/dapr/go-sdk/service/http"
	"github.com/go-chi/chi/v5"

	"github.com/outrigger/outrigger/e2e/framework"
)

// routeLog records which app path got which events.
type routeLog struct {
	mu     sync.Mutex
	byPath map[string][]string // path -> event data
}

func (l *routeLog) handler(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var ce struct {
		Data any `json:"data"`
	}
	_ = json.Unmarshal(body, &ce)
	l.mu.Lock()
	if l.byPath == nil {
		l.byPath = map[string][]string{}
	}
	l.byPath[r.URL.Path] = append(l.byPath[r.URL.Path], fmt.Sprint(ce.Data))
	l.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func (l *routeLog) has(path, data string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, d := range l.byPath[path] {
		if d == data {
			return true
		}
	}
	return false
}

func subscriptionDoc(name, topic, match, path string) string {
	return fmt.Sprintf(`apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: %s
spec:
  pubsubname: pubsub
  topic: %s
  routes:
    rules:
    - match: %s
      path: %s
    default: /ignored
`, name, topic, match, path)
}

// metadataSubs reads the subscriptions the metadata API lists, as
// "TYPE pubsub/topic path,path".
func metadataSubs(t *testing.T, sc *framework.Sidecar) ([]string, error) {
	resp, body, err := tryCall(callCtx(t), http.MethodGet, sc.URL("/v1.0/metadata"), nil, nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metadata: %d %s", resp.StatusCode, body)
	}
	var m struct {
		Subscriptions []struct {
			PubsubName string `json:"pubsubname"`
			Topic      string `json:"topic"`
			Type       string `json:"type"`
			Rules      []struct {
				Match string `json:"match"`
				Path  string `json:"path"`
			} `json:"rules"`
		} `json:"subscriptions"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, err
	}
	var out []string
	for _, s := range m.Subscriptions {
		var paths []string
		for _, r := range s.Rules {
			paths = append(paths, r.Path)
		}
		out = append(out, fmt.Sprintf("%s %s/%s %s", s.Type, s.PubsubName, s.Topic, strings.Join(paths, ",")))
	}
	return out, nil
}

// TestSubscriptionHotReload: a Subscription document written, changed,
// broken and removed while the sidecar runs takes effect without a
// restart: the new route gets the events, a document whose CEL rule does
// not compile is reported naming its file and the last good version keeps
// serving, and the metadata API lists what is in place.
func TestSubscriptionHotReload(t *testing.T) {
	t.Parallel()
	routes := &routeLog{}
	var progGot sync.Map
	port := framework.StartSDKService(t, func(addr string) (common.Service, error) {
		mux := chi.NewRouter()
		mux.Post("/v1", routes.handler)
		mux.Post("/v2", routes.handler)
		svc := daprhttp.NewServiceWithMux(addr, mux)
		return svc, svc.AddTopicEventHandler(&common.Subscription{PubsubName: "pubsub", Topic: "orders", Route: "/orders"}, func(_ context.Context, e *common.TopicEvent) (bool, error) {
			progGot.Store(fmt.Sprint(e.Data), true)
			return false, nil
		})
	})

	res := stateStores(t, "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pubsub\nspec:\n  type: pubsub.in-memory\n  version: v1\n")
	sc := framework.StartSidecar(t, framework.SidecarOptions{AppID: "reloader", AppPort: port, AppProtocol: "http", Args: []string{"--resources-path", res}})
	client, err := dapr.NewClientWithPort(strconv.Itoa(sc.GRPCPort))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	ctx := callCtx(t)

	// deliveredTo publishes a fresh event on topic until it reaches path.
	n := 0
	deliveredTo := func(topic, path string) {
		t.Helper()
		framework.WaitFor(t, fmt.Sprintf("an event on %s to reach %s", topic, path), func() error {
			n++
			data := fmt.Sprintf("%s-%d", topic, n)
			if err := client.PublishEvent(ctx, "pubsub", topic, []byte(data), dapr.PublishEventWithContentType("text/plain")); err != nil {
				return err
			}
			for range 20 {
				if routes.has(path, data) {
					return nil
				}
				time.Sleep(25 * time.Millisecond)
			}
			return errors.New("not delivered")
		})
	}
	waitSubs := func(want ...string) {
		t.Helper()
		framework.WaitFor(t, "the metadata API to list "+strings.Join(want, "; "), func() error {
			got, err := metadataSubs(t, sc)
			if err != nil {
				return err
			}
			if strings.Join(got, "; ") != strings.Join(want, "; ") {
				return fmt.Errorf("listed %q", got)
			}
			return nil
		})
	}
	waitSubs("PROGRAMMATIC pubsub/orders /orders")

	// A new document: its topic is subscribed without a restart.
	file := filepath.Join(res, "things.yaml")
	writeFile(t, file, subscriptionDoc("things", "things", "event.type != ''", "/v1"))
	deliveredTo("things", "/v1")
	waitSubs("PROGRAMMATIC pubsub/orders /orders", "DECLARATIVE pubsub/things /v1,/ignored")

	// Changed: the events follow the new route.
	writeFile(t, file, subscriptionDoc("things", "things", "event.type != ''", "/v2"))
	deliveredTo("things", "/v2")

	// Broken: the error names the file, and the last good version serves.
	writeFile(t, file, subscriptionDoc("things", "things", "event.type ==== 'x'", "/v1"))
	framework.WaitFor(t, "the broken rule to be reported", func() error {
		if logs := sc.Logs(); !strings.Contains(logs, "things.yaml") || !strings.Contains(logs, "routes.rules[0].match") {
			return errors.New("not in the log yet")
		}
		return nil
	})
	deliveredTo("things", "/v2")

	// The pub/sub component replaced (an in-memory broker starts empty):
	// the subscriptions are made again on the new one.
	writeFile(t, filepath.Join(res, "store0.yaml"), "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pubsub\nspec:\n  type: pubsub.in-memory\n  version: v1\n  metadata:\n  - name: note\n    value: second\n")
	framework.WaitFor(t, "the component to be replaced", func() error {
		if strings.Count(sc.Logs(), "msg=subscribed") < 5 {
			return errors.New("not subscribed again yet")
		}
		return nil
	})
	deliveredTo("things", "/v2")

	// Removed: the subscription ends; the app's own stays.
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	waitSubs("PROGRAMMATIC pubsub/orders /orders")
	if err := client.PublishEvent(ctx, "pubsub", "orders", []byte("still"), dapr.PublishEventWithContentType("text/plain")); err != nil {
		t.Fatal(err)
	}
	framework.WaitFor(t, "the app's own subscription to keep delivering", func() error {
		if _, ok := progGot.Load("still"); !ok {
			return errors.New("not delivered")
		}
		return nil
	})
	if strings.Contains(sc.Logs(), "panic") {
		t.Errorf("the sidecar panicked:\n%s", sc.Logs())
	}
}

// TestSubscriptionBadRuleAtStart: a Subscription whose CEL rule does not
// compile stops the sidecar at start, naming the file and the rule, as a
// component file it cannot read does.
func TestSubscriptionBadRuleAtStart(t *testing.T) {
	t.Parallel()
	res := stateStores(t, "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pubsub\nspec:\n  type: pubsub.in-memory\n  version: v1\n")
	writeFile(t, filepath.Join(res, "broken-sub.yaml"), subscriptionDoc("broken", "things", "event.type ==== 'x'", "/v1"))
	resolution := filepath.Join(t.TempDir(), "resolution.yaml")
	writeFile(t, resolution, framework.StaticResolutionFile(nil))
	r := framework.RunBinary(t, "sidecar", "--app-id", "badrule",
		"--dapr-http-port", strconv.Itoa(framework.FreePort(t)),
		"--dapr-grpc-port", strconv.Itoa(framework.FreePort(t)),
		"--dapr-internal-grpc-port", strconv.Itoa(framework.FreePort(t)),
		"--metrics-port", strconv.Itoa(framework.FreePort(t)),
		"--name-resolution", "static", "--static-resolution-file", resolution,
		"--resources-path", res)
	if r.ExitCode == 0 {
		t.Fatalf("the sidecar started with a broken subscription:\n%s", r.Output)
	}
	for _, want := range []string{"broken-sub.yaml", `subscription "broken"`, "routes.rules[0].match"} {
		if !strings.Contains(r.Output, want) {
			t.Errorf("the error does not name %s:\n%s", want, r.Output)
		}
	}
	if strings.Contains(r.Output, "panic") {
		t.Errorf("output shows a panic:\n%s", r.Output)
	}
}

// TestDeliveriesBoundedByAppMaxConcurrency: --app-max-concurrency bounds
// the deliveries in flight to the app, across subscriptions, as it bounds
// invocations.
func TestDeliveriesBoundedByAppMaxConcurrency(t *testing.T) {
	t.Parallel()
	var (
		mu                sync.Mutex
		inFlight, maxSeen int
		delivered         int
	)
	l := framework.Listen(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		inFlight++
		maxSeen = max(maxSeen, inFlight)
		mu.Unlock()
		time.Sleep(50 * time.Millisecond) // the app's work: deliveries pile up behind the bound
		mu.Lock()
		inFlight--
		delivered++
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	port := l.Addr().(*net.TCPAddr).Port

	res := stateStores(t, "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pubsub\nspec:\n  type: pubsub.in-memory\n  version: v1\n")
	for _, topic := range []string{"a", "b"} {
		writeFile(t, filepath.Join(res, "sub-"+topic+".yaml"), fmt.Sprintf("apiVersion: dapr.io/v1alpha1\nkind: Subscription\nmetadata:\n  name: %s\nspec:\n  pubsubname: pubsub\n  topic: %s\n  route: /work\n", topic, topic))
	}
	sc := framework.StartSidecar(t, framework.SidecarOptions{AppID: "bounded", AppPort: port, AppMaxConcurrency: 2, Args: []string{"--resources-path", res}})
	framework.WaitFor(t, "both subscriptions to be in place", func() error {
		got, err := metadataSubs(t, sc)
		if err != nil {
			return err
		}
		if len(got) != 2 {
			return fmt.Errorf("subscriptions: %v", got)
		}
		return nil
	})
	const n = 20
	for i := range n {
		topic := []string{"a", "b"}[i%2]
		if resp, body := call(t, http.MethodPost, sc.URL("/v1.0/publish/pubsub/"+topic), strings.NewReader(fmt.Sprintf(`{"n":%d}`, i)), http.Header{"Content-Type": {"application/json"}}); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("publish: %d %s", resp.StatusCode, body)
		}
	}
	framework.WaitFor(t, "every event to be delivered", func() error {
		mu.Lock()
		defer mu.Unlock()
		if delivered < n {
			return fmt.Errorf("%d of %d delivered", delivered, n)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if maxSeen > 2 {
		t.Errorf("%d deliveries were in the app at once; --app-max-concurrency is 2", maxSeen)
	}
	if maxSeen < 2 {
		t.Errorf("deliveries never overlapped (max %d): the test shows nothing", maxSeen)
	}
}
