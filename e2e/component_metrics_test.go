package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"github.com/dapr/go-sdk/service/common"
	daprhttp "github.com/dapr/go-sdk/service/http"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/outrigger/outrigger/e2e/framework"
)

// promSeries is one scraped series: its labels, and its value (a counter's
// or a gauge's; a histogram's sample count).
type promSeries struct {
	labels map[string]string
	value  float64
}

// promScrape is a /metrics page parsed by Prometheus's own text parser, by
// family name.
type promScrape map[string][]promSeries

// scrapeMetrics fetches and parses url (a /metrics endpoint).
func scrapeMetrics(t *testing.T, url string) promScrape {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("%s does not parse: %v", url, err)
	}
	out := promScrape{}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			s := promSeries{labels: map[string]string{}}
			for _, l := range m.GetLabel() {
				s.labels[l.GetName()] = l.GetValue()
			}
			switch {
			case m.GetCounter() != nil:
				s.value = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				s.value = m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				s.value = float64(m.GetHistogram().GetSampleCount())
			}
			out[name] = append(out[name], s)
		}
	}
	return out
}

// value is the series of family name whose labels are exactly labels.
func (p promScrape) value(name string, labels map[string]string) (float64, bool) {
	for _, s := range p[name] {
		if len(s.labels) != len(labels) {
			continue
		}
		match := true
		for k, v := range labels {
			if s.labels[k] != v {
				match = false
				break
			}
		}
		if match {
			return s.value, true
		}
	}
	return 0, false
}

// describe lists the series of family name, for a failure message.
func (p promScrape) describe(name string) string {
	var out []string
	for _, s := range p[name] {
		var pairs []string
		for k, v := range s.labels {
			pairs = append(pairs, k+"="+strconv.Quote(v))
		}
		sort.Strings(pairs)
		out = append(out, fmt.Sprintf("{%s} %v", strings.Join(pairs, ","), s.value))
	}
	if len(out) == 0 {
		return name + ": no series"
	}
	return name + ": " + strings.Join(out, "; ")
}

// wantValue checks one series' value.
func (p promScrape) wantValue(t *testing.T, name string, labels map[string]string, want float64) {
	t.Helper()
	got, ok := p.value(name, labels)
	if !ok || got != want {
		t.Errorf("%s%v = %v (found %v), want %v\n\t%s", name, labels, got, ok, want, p.describe(name))
	}
}

// wantAtLeast checks that one series is at least min.
func (p promScrape) wantAtLeast(t *testing.T, name string, labels map[string]string, minimum float64) {
	t.Helper()
	got, ok := p.value(name, labels)
	if !ok || got < minimum {
		t.Errorf("%s%v = %v (found %v), want at least %v\n\t%s", name, labels, got, ok, minimum, p.describe(name))
	}
}

// redisComponents are a state store and a pub/sub on the machine's Redis
// (127.0.0.1:6379).
const redisComponents = `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.redis
  version: v1
  metadata:
  - name: redisHost
    value: 127.0.0.1:6379
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: pubsub
spec:
  type: pubsub.redis
  version: v1
  metadata:
  - name: redisHost
    value: 127.0.0.1:6379
`

// TestComponentMetricsStatePubSub: a sidecar with a Redis state store and a
// Redis pub/sub, driven through the Go SDK, reports daprd's component
// metrics on /metrics with daprd's names and labels: one state operation
// per call (an ETag conflict a failure), one egress per publish and one
// bulk egress per bulk publish, one ingress per delivery to the app, and
// the components it loaded.
func TestComponentMetricsStatePubSub(t *testing.T) {
	t.Parallel()
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	topic := "metrics-" + run // a stream of its own on the shared Redis
	got := &received{}
	port := framework.StartSDKService(t, func(addr string) (common.Service, error) {
		svc := daprhttp.NewService(addr)
		err := svc.AddTopicEventHandler(&common.Subscription{PubsubName: "pubsub", Topic: topic, Route: "/events"}, func(ctx context.Context, e *common.TopicEvent) (bool, error) {
			got.add(topic, e)
			return false, nil
		})
		return svc, err
	})
	res := framework.ShortTempDir(t)
	writeFile(t, filepath.Join(res, "redis.yaml"), redisComponents)
	const appID = "comp-metrics"
	sc := framework.StartSidecar(t, framework.SidecarOptions{AppID: appID, AppPort: port, Args: []string{"--resources-path", res}})
	client, err := dapr.NewClientWithPort(strconv.Itoa(sc.GRPCPort))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	ctx := callCtx(t)

	// State: 4 saves that succeed and one refused for its stale ETag, 2
	// gets, a bulk get, a delete and a transaction.
	key := "k-" + run
	for i := range 3 {
		if err := client.SaveState(ctx, "statestore", key, []byte(strconv.Itoa(i)), nil); err != nil {
			t.Fatalf("SaveState: %v", err)
		}
	}
	var etag string
	for range 2 {
		item, err := client.GetState(ctx, "statestore", key, nil)
		if err != nil || string(item.Value) != "2" {
			t.Fatalf("GetState: %+v %v", item, err)
		}
		etag = item.Etag
	}
	if err := client.SaveStateWithETag(ctx, "statestore", key, []byte("3"), etag, nil); err != nil {
		t.Fatalf("SaveStateWithETag (current): %v", err)
	}
	if err := client.SaveStateWithETag(ctx, "statestore", key, []byte("4"), etag, nil); err == nil {
		t.Fatal("SaveStateWithETag with a stale ETag succeeded")
	}
	if _, err := client.GetBulkState(ctx, "statestore", []string{key, key + "-other"}, nil, 2); err != nil {
		t.Fatalf("GetBulkState: %v", err)
	}
	if err := client.ExecuteStateTransaction(ctx, "statestore", nil, []*dapr.StateOperation{
		{Type: dapr.StateOperationTypeUpsert, Item: &dapr.SetStateItem{Key: key + "-tx", Value: []byte("t")}},
		{Type: dapr.StateOperationTypeDelete, Item: &dapr.SetStateItem{Key: key + "-tx"}},
	}); err != nil {
		t.Fatalf("ExecuteStateTransaction: %v", err)
	}
	if err := client.DeleteState(ctx, "statestore", key, nil); err != nil {
		t.Fatalf("DeleteState: %v", err)
	}

	// Pub/sub: publish until the subscription is in place (the app got an
	// event), then 5 more, then a bulk publish of 3.
	published := 0
	framework.WaitFor(t, "the subscription to be in place", func() error {
		if err := client.PublishEvent(ctx, "pubsub", topic, map[string]any{"warmup": true}); err != nil {
			return err
		}
		published++
		time.Sleep(100 * time.Millisecond)
		if got.count(topic) == 0 {
			return fmt.Errorf("nothing delivered after %d publishes", published)
		}
		return nil
	})
	for i := range 5 {
		if err := client.PublishEvent(ctx, "pubsub", topic, map[string]any{"n": i}); err != nil {
			t.Fatalf("PublishEvent: %v", err)
		}
		published++
	}
	if res := client.PublishEvents(ctx, "pubsub", topic, []any{map[string]any{"b": 1}, map[string]any{"b": 2}, map[string]any{"b": 3}}); res.Error != nil {
		t.Fatalf("PublishEvents: %v", res.Error)
	}
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", sc.MetricsPort)
	ingress := map[string]string{"app_id": appID, "component": "pubsub", "namespace": "default", "process_status": "success", "status": "success", "topic": topic}
	var m promScrape
	framework.WaitFor(t, "every delivery to be counted", func() error {
		n := got.count(topic)
		if n < 1+5+3 {
			return fmt.Errorf("the app got %d events, want at least 9", n)
		}
		m = scrapeMetrics(t, metricsURL)
		if v, _ := m.value("dapr_component_pubsub_ingress_count", ingress); v != float64(n) {
			return fmt.Errorf("ingress count %v, the app got %d", v, n)
		}
		return nil
	})
	n := float64(got.count(topic))

	state := func(op, success string) map[string]string {
		return map[string]string{"app_id": appID, "component": "statestore", "namespace": "default", "operation": op, "success": success}
	}
	for _, c := range []struct {
		op, success string
		n           float64
	}{
		{"set", "true", 4}, {"set", "false", 1}, {"get", "true", 2}, {"bulk_get", "true", 1},
		{"transaction", "true", 1}, {"delete", "true", 1},
	} {
		m.wantValue(t, "dapr_component_state_count", state(c.op, c.success), c.n)
		m.wantValue(t, "dapr_component_state_latencies", state(c.op, c.success), c.n)
	}
	if len(m["dapr_component_state_count"]) != 6 {
		t.Errorf("want exactly the 6 state series above: %s", m.describe("dapr_component_state_count"))
	}

	egress := map[string]string{"app_id": appID, "component": "pubsub", "namespace": "default", "success": "true", "topic": topic}
	m.wantValue(t, "dapr_component_pubsub_egress_count", egress, float64(published))
	m.wantValue(t, "dapr_component_pubsub_egress_latencies", egress, float64(published))
	m.wantValue(t, "dapr_component_pubsub_egress_bulk_count", egress, 1)
	m.wantValue(t, "dapr_component_pubsub_egress_bulk_latencies", egress, 1)
	m.wantValue(t, "dapr_component_pubsub_egress_bulk_event_count", egress, 3)
	m.wantValue(t, "dapr_component_pubsub_ingress_count", ingress, n)
	m.wantValue(t, "dapr_component_pubsub_ingress_latencies", ingress, n)

	m.wantValue(t, "dapr_runtime_component_loaded", map[string]string{"app_id": appID}, 2)
	for _, typ := range []string{"state.redis", "pubsub.redis"} {
		m.wantValue(t, "dapr_runtime_component_init_total", map[string]string{"app_id": appID, "component": typ}, 1)
	}
	if f := m["dapr_runtime_component_init_fail_total"]; len(f) != 0 {
		t.Errorf("component failures: %s", m.describe("dapr_runtime_component_init_fail_total"))
	}
}

// TestComponentMetricsMTLSAndXDS: a sidecar that takes its certificate and
// its components from a control plane reports daprd's mTLS metrics (the
// first certificate, a renewal of a short-lived one) and the expiry of its
// certificate, the updates its xDS client applied, and its secret store's
// calls; the control plane reports the responses its xDS server sent and
// the streams open, beside the Go runtime's metrics.
func TestComponentMetricsMTLSAndXDS(t *testing.T) {
	t.Parallel()
	dir := framework.ShortTempDir(t)
	resources := filepath.Join(dir, "resources")
	if err := os.Mkdir(resources, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "secrets.json"), `{"api": "k1"}`)
	writeFile(t, filepath.Join(resources, "vault.yaml"), fileStore("vault", filepath.Join(dir, "secrets.json")))
	cp := framework.StartControlPlane(t, framework.ControlPlaneOptions{
		ResourcesPaths: []string{resources},
		Config:         "kind: Configuration\napiVersion: dapr.io/v1alpha1\nspec:\n  mtls:\n    workloadCertTTL: 10s\n    allowedClockSkew: 1s\n",
	})
	const appID = "metrics-xds"
	sc := framework.StartSidecar(t, framework.SidecarOptions{AppID: appID, MTLS: cp, Args: []string{"--control-plane-address", cp.Addr}})
	for range 2 {
		if code, v, body := secretOf(t, sc, "vault", "api"); code != http.StatusOK || v["api"] != "k1" {
			t.Fatalf("secret: %d %q", code, body)
		}
	}
	if code, _, _ := secretOf(t, sc, "vault", "nope"); code == http.StatusOK {
		t.Fatal("a missing secret answered 200")
	}

	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", sc.MetricsPort)
	var m promScrape
	framework.WaitFor(t, "a certificate renewal to be counted", func() error {
		m = scrapeMetrics(t, metricsURL)
		if v, _ := m.value("dapr_runtime_mtls_workload_cert_rotated_total", map[string]string{"app_id": appID}); v < 1 {
			return fmt.Errorf("renewals: %s", m.describe("dapr_runtime_mtls_workload_cert_rotated_total"))
		}
		return nil
	})
	m.wantValue(t, "dapr_runtime_mtls_init_total", map[string]string{"app_id": appID}, 1)
	if f := m["dapr_runtime_mtls_workload_cert_rotated_fail_total"]; len(f) != 0 {
		t.Errorf("failed renewals: %s", m.describe("dapr_runtime_mtls_workload_cert_rotated_fail_total"))
	}
	expiry, ok := m.value("outrigger_mtls_workload_cert_expiry_timestamp_seconds", map[string]string{"app_id": appID})
	if now := float64(time.Now().Unix()); !ok || expiry < now || expiry > now+60 {
		t.Errorf("certificate expiry %v (found %v), want within the 10s certificate's life from now (%v)", expiry, ok, now)
	}
	m.wantAtLeast(t, "outrigger_xds_client_updates_total", map[string]string{"app_id": appID, "type_url": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig", "result": "ack"}, 1)
	secret := func(success string) map[string]string {
		return map[string]string{"app_id": appID, "component": "vault", "namespace": "default", "operation": "get", "success": success}
	}
	m.wantValue(t, "dapr_component_secret_count", secret("true"), 2)
	m.wantValue(t, "dapr_component_secret_count", secret("false"), 1)
	m.wantValue(t, "dapr_component_secret_latencies", secret("true"), 2)
	m.wantValue(t, "dapr_runtime_component_init_total", map[string]string{"app_id": appID, "component": "secretstores.local.file"}, 1)

	cpm := scrapeMetrics(t, "http://"+cp.Addr+"/metrics")
	cpm.wantAtLeast(t, "outrigger_xds_server_pushes_total", map[string]string{"type_url": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"}, 1)
	cpm.wantAtLeast(t, "outrigger_xds_server_connected_streams", map[string]string{}, 1)
	if _, ok := cpm["go_goroutines"]; !ok {
		t.Error("the control plane's /metrics lacks the Go collector's go_goroutines")
	}
}
