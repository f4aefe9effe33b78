package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/outrigger/outrigger/e2e/framework"
)

// TestLargeBodyStreams sends a 64 MiB body through two sidecars (both with
// --max-body-size 128Mi) and gets 64 MiB back, checking every byte, while
// each sidecar's RSS, sampled every 50 ms, grows by less than 32 MiB: the
// bodies stream, they are never held whole. (A sidecar built with the race
// detector gets 64 MiB: its shadow memory alone nears 32 MiB, while one
// holding a body whole would still exceed 64 MiB.)
func TestLargeBodyStreams(t *testing.T) {
	t.Parallel()
	const (
		size     = 64 << 20
		seedUp   = 11
		seedDown = 12
	)
	maxGrowth := int64(32 << 20)
	if framework.RaceBuild() {
		maxGrowth = 64 << 20
	}
	app := framework.StartHTTPApp(t, framework.HTTPAppOptions{})
	callee, caller := pair(t,
		framework.SidecarOptions{AppPort: app.Port, MaxBodySize: "128Mi"},
		framework.SidecarOptions{MaxBodySize: "128Mi"})

	// Warm both paths up so that the baseline includes connection set-up.
	for _, path := range []string{"/v1.0/invoke/callee/method/count", "/v1.0/invoke/callee/method/stream?n=65536&seed=1"} {
		resp, got := call(t, http.MethodPost, caller.URL(path), io.LimitReader(framework.Pattern(1, 65536), 65536), nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("warm-up POST %s: %d %q", path, resp.StatusCode, truncate(got))
		}
	}

	sidecars := []*framework.Sidecar{caller, callee}
	base := make([]int64, len(sidecars))
	for i, s := range sidecars {
		rss, err := framework.RSS(s.Pid())
		if err != nil {
			t.Fatal(err)
		}
		base[i] = rss
	}
	peak := append([]int64(nil), base...)
	var (
		mu        sync.Mutex
		sampleErr error
		samples   int
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			for i, s := range sidecars {
				rss, err := framework.RSS(s.Pid())
				mu.Lock()
				if err != nil && sampleErr == nil {
					sampleErr = err
				}
				peak[i] = max(peak[i], rss)
				mu.Unlock()
			}
			mu.Lock()
			samples++
			mu.Unlock()
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})
	stopSampling := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopSampling)

	// Up: 64 MiB to the app, which counts and hashes it as it arrives.
	req, err := http.NewRequestWithContext(callCtx(t), http.MethodPost, caller.URL("/v1.0/invoke/callee/method/count"), framework.Pattern(seedUp, size))
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("POST 64 MiB: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST 64 MiB: status %d, body %q", resp.StatusCode, truncate(body))
	}
	var c framework.Count
	if err := json.Unmarshal(body, &c); err != nil {
		t.Fatalf("POST 64 MiB: answer %q: %v", truncate(body), err)
	}
	if want := framework.PatternSHA256(seedUp, size); c.Bytes != size || c.SHA256 != want {
		t.Errorf("app received %d bytes with sha256 %s, want %d bytes with sha256 %s", c.Bytes, c.SHA256, size, want)
	}

	// Down: 64 MiB streamed from the app, of unknown length.
	req, err = http.NewRequestWithContext(callCtx(t), http.MethodGet, caller.URL(fmt.Sprintf("/v1.0/invoke/callee/method/stream?n=%d&seed=%d", size, seedDown)), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err = httpClient.Do(req)
	if err != nil {
		t.Fatalf("GET 64 MiB: %v", err)
	}
	got := framework.NewCountingHash()
	_, err = io.Copy(got, resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("GET 64 MiB: reading after %d bytes: %v", got.N, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET 64 MiB: status %d", resp.StatusCode)
	}
	if want := framework.PatternSHA256(seedDown, size); got.N != size || got.SHA256() != want {
		t.Errorf("caller received %d bytes with sha256 %s, want %d bytes with sha256 %s", got.N, got.SHA256(), size, want)
	}

	stopSampling()
	mu.Lock()
	defer mu.Unlock()
	if sampleErr != nil {
		t.Fatalf("sampling RSS: %v", sampleErr)
	}
	for i, s := range sidecars {
		growth := peak[i] - base[i]
		t.Logf("sidecar %s: RSS %.1f MiB before, peak %.1f MiB, growth %.1f MiB (%d samples)",
			s.AppID, mib(base[i]), mib(peak[i]), mib(growth), samples)
		if growth >= maxGrowth {
			t.Errorf("sidecar %s: RSS grew by %.1f MiB while streaming 64 MiB each way, want less than %d MiB",
				s.AppID, mib(growth), maxGrowth>>20)
		}
	}
	if samples < 2 {
		t.Errorf("only %d RSS samples were taken", samples)
	}
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }
