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

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/outrigger/outrigger/e2e/framework"
)

// scrapeSeries parses the sidecar's /metrics with Prometheus's own text
// parser and returns the number of series of each family.
func scrapeSeries(t *testing.T, sc *framework.Sidecar) map[string]int {
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
	out := map[string]int{}
	for name, f := range families {
		out[name] = len(f.GetMetric())
	}
	return out
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
	before := scrapeSeries(t, sc)
	rssBefore, err := framework.RSS(sc.Pid())
	if err != nil {
		t.Fatal(err)
	}

	const total = 100_000
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 10 * time.Second}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	var next, failed atomic.Int64
	var wg sync.WaitGroup
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
	t.Logf("series %d; RSS %d KiB before, %d KiB after", n, rssBefore/1024, rssAfter/1024)
	if grow := rssAfter - rssBefore; grow > 20<<20 {
		t.Errorf("the sidecar's RSS grew by %d MB over the flood (want under 20 MB)", grow>>20)
	}
}
