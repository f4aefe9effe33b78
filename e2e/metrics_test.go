package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/outrigger/outrigger/e2e/framework"
)

// scrapeSeries parses the sidecar's /metrics with Prometheus's own text
// parser and returns the number of series of each family, as Prometheus
// counts them.
func scrapeSeries(t *testing.T, sc *framework.Sidecar) map[string]int {
	t.Helper()
	families := scrapeFamilies(t, sc)
	out := map[string]int{}
	for name, f := range families {
		// Every line of the exposition is a series: a histogram's buckets,
		// sum and count included.
		for _, m := range f.GetMetric() {
			switch {
			case m.GetHistogram() != nil:
				out[name] += len(m.GetHistogram().GetBucket()) + 3 // +Inf, _sum, _count
			case m.GetSummary() != nil:
				out[name] += len(m.GetSummary().GetQuantile()) + 2
			default:
				out[name]++
			}
		}
	}
	return out
}

// scrapeFamilies parses the sidecar's /metrics with Prometheus's own text
// parser.
func scrapeFamilies(t *testing.T, sc *framework.Sidecar) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", sc.MetricsPort))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.LegacyValidation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return families
}

// scrapeParses scrapes the sidecar's /metrics once and parses it.
func scrapeParses(ctx context.Context, sc *framework.Sidecar) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/metrics", sc.MetricsPort), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	_, err = p.TextToMetricFamilies(resp.Body)
	return err
}

// scrapeCounter is the sum of a counter's (or gauge's) series whose labels
// include every pair in match ("name", "value", ...); 0 when absent.
func scrapeCounter(t *testing.T, sc *framework.Sidecar, family string, match ...string) float64 {
	t.Helper()
	f := scrapeFamilies(t, sc)[family]
	sum := 0.0
	for _, m := range f.GetMetric() {
		if labelsMatch(m, match) {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

func labelsMatch(m *dto.Metric, match []string) bool {
	for i := 0; i+1 < len(match); i += 2 {
		found := false
		for _, l := range m.GetLabel() {
			found = found || (l.GetName() == match[i] && l.GetValue() == match[i+1])
		}
		if !found {
			return false
		}
	}
	return true
}

// TestMetricsCardinalityBounded: 100,000 calls to as many made-up app-ids
// and paths leave the series count under 1,000 and the sidecar's memory
// within 20 MB of where it was: labels come from a bounded set, never from
// raw URLs.
func TestMetricsCardinalityBounded(t *testing.T) {
	t.Parallel()
	app := framework.StartHTTPApp(t, framework.HTTPAppOptions{})
	callee := framework.StartSidecar(t, framework.SidecarOptions{AppID: "card-callee", AppPort: app.Port})
	sc := framework.StartSidecar(t, framework.SidecarOptions{AppID: "card", Resolve: []framework.Endpoint{callee.Endpoint()}, Args: []string{"--log-level", "info"}})
	// Warm: a few real calls, so the series that should exist do.
	for i := range 20 {
		if resp, body := call(t, http.MethodGet, sc.URL(fmt.Sprintf("/v1.0/invoke/card-callee/method/p/%d", i)), nil, nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("warm-up call: %d %s", resp.StatusCode, body)
		}
	}
	// daprd's metric names, so Dapr's dashboards read them.
	for _, c := range []struct {
		sc     *framework.Sidecar
		family string
		labels []string
	}{
		{sc, "dapr_http_server_request_count", []string{"app_id", "card", "method", "GET", "path", "/v1.0/invoke/{id}/method/*", "status", "200"}},
		{sc, "dapr_service_invocation_req_sent_total", []string{"app_id", "card", "destination_app_id", "card-callee", "type", "unary"}},
		{sc, "dapr_service_invocation_res_recv_total", []string{"app_id", "card", "source_app_id", "card-callee", "status", "200"}},
		{callee, "dapr_service_invocation_req_recv_total", []string{"app_id", "card-callee", "source_app_id", "card"}},
		{callee, "dapr_service_invocation_res_sent_total", []string{"app_id", "card-callee", "destination_app_id", "card", "status", "200"}},
		{callee, "dapr_http_client_completed_count", []string{"app_id", "card-callee", "method", "GET", "status", "200"}},
	} {
		if n := scrapeCounter(t, c.sc, c.family, c.labels...); n < 20 {
			t.Errorf("%s %s{%v} = %v after 20 calls", c.sc.AppID, c.family, c.labels, n)
		}
	}
	if f := scrapeFamilies(t, sc)["dapr_http_server_latency"]; f == nil || f.GetMetric()[0].GetHistogram().GetSampleCount() == 0 {
		t.Errorf("no dapr_http_server_latency histogram: %v", f)
	}
	before := scrapeSeries(t, sc)
	rssBefore, err := framework.RSS(sc.Pid())
	if err != nil {
		t.Fatal(err)
	}

	const total = 100_000
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 10 * time.Second}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	var next, failed, scrapes atomic.Int64
	var wg sync.WaitGroup
	// Prometheus scrapes while the flood runs: each scrape must answer and
	// parse.
	scrapeErr := make(chan error, 1)
	wg.Go(func() {
		for ctx.Err() == nil && next.Load() < total {
			if err := scrapeParses(ctx, sc); err != nil && ctx.Err() == nil {
				select {
				case scrapeErr <- err:
				default:
				}
				return
			}
			scrapes.Add(1)
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
	for range 16 {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1)
				if i > total {
					return
				}
				// Made-up app-ids (never resolved) and, for the real app,
				// made-up paths.
				url := sc.URL(fmt.Sprintf("/v1.0/invoke/ghost-%d/method/x/%d", i, i))
				if i%2 == 0 {
					url = sc.URL(fmt.Sprintf("/v1.0/invoke/card-callee/method/u/%d?q=%d", i, i))
				}
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				req.Header.Set("dapr-caller-app-id", fmt.Sprintf("spoof-%d", i))
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	select {
	case err := <-scrapeErr:
		t.Errorf("a scrape of /metrics during the flood: %v", err)
	default:
	}
	if scrapes.Load() == 0 {
		t.Errorf("no scrape was made during the flood")
	}
	if ctx.Err() != nil {
		t.Fatalf("the flood did not finish in 3 minutes: %d sent", next.Load())
	}
	if f := failed.Load(); f > 0 {
		t.Errorf("%d calls of the flood failed to get an answer", f)
	}
	after := scrapeSeries(t, sc)
	n := 0
	for _, c := range after {
		n += c
	}
	if n >= 1000 {
		grew := []string{}
		for name, c := range after {
			if c > before[name]+10 {
				grew = append(grew, fmt.Sprintf("%s %d->%d", name, before[name], c))
			}
		}
		t.Errorf("%d series after the flood (want under 1,000); grown: %s", n, strings.Join(grew, ", "))
	}
	calleeSeries := scrapeSeries(t, callee)
	m := 0
	for _, c := range calleeSeries {
		m += c
	}
	if m >= 1000 {
		t.Errorf("the callee has %d series after the flood (want under 1,000)", m)
	}
	rssAfter, err := framework.RSS(sc.Pid())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("series %d; RSS %d KiB before, %d KiB after; %d scrapes during the flood", n, rssBefore/1024, rssAfter/1024, scrapes.Load())
	if grow := rssAfter - rssBefore; grow > 20<<20 {
		t.Errorf("the sidecar's RSS grew by %d MB over the flood (want under 20 MB)", grow>>20)
	}
}
