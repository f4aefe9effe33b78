package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outrigger/outrigger/bench/harness"
)

// TestMain lets the test binary serve as the echo app: the harness starts
// its own executable again with roleEnv set.
func TestMain(m *testing.M) {
	if os.Getenv(roleEnv) == roleApp {
		os.Exit(appMain())
	}
	os.Exit(m.Run())
}

// TestRunSmall runs the whole harness at a tiny size: 1 and 3 endpoints,
// one round, 200 requests/s for 1 s.
func TestRunSmall(t *testing.T) {
	// The build is not part of the run's budget: on a loaded machine it
	// can take minutes.
	bctx, bcancel := context.WithTimeout(context.Background(), 10*time.Minute)
	bin, err := harness.BuildOutrigger(bctx, t.TempDir())
	bcancel()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	t.Setenv("TMPDIR", t.TempDir()) // a failed run keeps its working folder there
	cfg := Config{
		Outrigger: bin,
		Rounds:    1, QPS: 200, Duration: time.Second, Warmup: time.Second, Endpoints: []int{1, 3},
		Timeout: 85 * time.Second, Command: "go test ./bench/lbbench",
	}
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rounds) != 1 {
		t.Fatalf("rounds: got %d, want 1", len(res.Rounds))
	}
	r := &res.Rounds[0]
	if got := []int{r.Runs[0].Endpoints, r.Runs[1].Endpoints}; len(r.Runs) != 2 || !slices.Equal(got, []int{1, 3}) {
		t.Fatalf("round 1 ran %d configurations, want 1 then 3 endpoints", len(r.Runs))
	}
	for _, n := range cfg.Endpoints {
		run := r.find(n)
		l := run.Load
		if l.Requests == 0 || l.Errors != 0 || l.P50 <= 0 || l.P50 > l.P90 || l.P90 > l.P99 || l.P99 > l.Max {
			t.Errorf("%d endpoint(s): requests %d, errors %d (%v), p50 %v p90 %v p99 %v max %v", n, l.Requests, l.Errors, l.Codes, l.P50, l.P90, l.P99, l.Max)
		}
		if len(run.Delivered) != n {
			t.Errorf("%d endpoint(s): deliveries of %d endpoints", n, len(run.Delivered))
		}
		var sum int64
		for i, d := range run.Delivered {
			if d == 0 {
				t.Errorf("%d endpoint(s): endpoint %d delivered no call in the measured load", n, i)
			}
			sum += d
		}
		// Every request the load generator sent, and its opening ones,
		// went through a callee: no more, no fewer.
		if want := l.Requests + int64(res.Config.Connections); sum != want {
			t.Errorf("%d endpoint(s): the callees delivered %d calls, want %d (%d requests + %d opening)", n, sum, want, l.Requests, res.Config.Connections)
		}
		if run.WarmupRequests == 0 || run.WarmupErrors != 0 || run.SidecarRSSKiB <= 0 || run.Ready <= 0 {
			t.Errorf("%d endpoint(s): warm-up %d requests %d errors, RSS %d KiB, ready %v", n, run.WarmupRequests, run.WarmupErrors, run.SidecarRSSKiB, run.Ready)
		}
	}

	var out strings.Builder
	writeReport(&out, res)
	report := out.String()
	for _, s := range []string{
		"`go test ./bench/lbbench`",
		"## Service invocation latency with 1 and 3 endpoints behind one app-id",
		"| 1 | ", "| 3 | ",
		"| 3 | p99 | ",
		"**p99 with 1 and with 3 endpoints behind one app-id at 200 requests/s: the medians of 1 interleaved round(s) differ by",
		"### 1 endpoint against the others",
		"n/a (one round has no spread)",
	} {
		if !strings.Contains(report, s) {
			t.Errorf("report lacks %q", s)
		}
	}
	if strings.Contains(report, "not clean") && !strings.Contains(report, "could not keep up") {
		t.Errorf("the report says the run is not clean")
	}
	if t.Failed() {
		t.Logf("report:\n%s", report)
	}
	jsonPath := filepath.Join(t.TempDir(), "lb.json")
	if err := writeJSON(jsonPath, res); err != nil {
		t.Fatal(err)
	}
}

func TestParseDelivered(t *testing.T) {
	text := `# HELP outrigger_service_invocation_requests_received_total Service invocation requests delivered to this app, by calling app and status.
# TYPE outrigger_service_invocation_requests_received_total counter
outrigger_service_invocation_requests_received_total{app_id="lb-callee",src_app_id="lb-caller",status="200"} 1234
outrigger_service_invocation_requests_received_total{app_id="lb-callee",src_app_id="lb-caller",status="500"} 7
outrigger_service_invocation_requests_received_total{app_id="lb-callee",src_app_id="other",status="200"} 9
outrigger_service_invocation_requests_sent_total{app_id="lb-callee",dest_app_id="x",status="200"} 5
`
	got, err := parseDelivered(strings.NewReader(text))
	if err != nil || got != 1234 {
		t.Errorf("parseDelivered: got %d, %v, want 1234", got, err)
	}
	if got, err := parseDelivered(strings.NewReader("go_goroutines 12\n")); err != nil || got != 0 {
		t.Errorf("parseDelivered without the metric: got %d, %v, want 0", got, err)
	}
}

func TestResolutionFile(t *testing.T) {
	got := string(resolutionFile([]sidecarPorts{{internal: 50002}, {internal: 50012}}))
	want := "apps:\n  - appID: lb-callee\n    addresses: [\"127.0.0.1:50002\", \"127.0.0.1:50012\"]\n"
	if got != want {
		t.Errorf("resolutionFile:\ngot  %q\nwant %q", got, want)
	}
}

func TestRoundOrder(t *testing.T) {
	for r, want := range map[int][]int{1: {1, 100}, 2: {100, 1}, 3: {1, 100}} {
		if got := roundOrder([]int{1, 100}, r); !slices.Equal(got, want) {
			t.Errorf("round %d: got %v, want %v", r, got, want)
		}
	}
}

// TestCompare: the verdict follows the wider range, and one round has none.
func TestCompare(t *testing.T) {
	res := &Result{Config: Config{Endpoints: []int{1, 100}}}
	for _, p99 := range [][2]time.Duration{{1000, 1300}, {1400, 1200}, {1100, 1500}} { // µs
		res.Rounds = append(res.Rounds, Round{Runs: []ConfigRun{
			{Endpoints: 1, Load: &harness.LoadResult{P99: p99[0] * time.Microsecond}},
			{Endpoints: 100, Load: &harness.LoadResult{P99: p99[1] * time.Microsecond}},
		}})
	}
	// Medians 1.1 and 1.3 ms: 0.2 apart; ranges 0.4 and 0.3 wide.
	c, ok := compare(res, 1, 100, 2)
	if !ok || !near(c.Difference, 0.2) || !near(c.Spread, 0.4) || !c.Within || c.verdict() != "yes" {
		t.Errorf("compare: %+v, %v", c, ok)
	}
	for i, p99 := range []time.Duration{1600, 1700, 1800} {
		res.Rounds[i].Runs[1].Load.P99 = p99 * time.Microsecond
	}
	// Medians 1.1 and 1.7 ms: 0.6 apart; ranges 0.4 and 0.2 wide.
	if c, _ := compare(res, 1, 100, 2); c.Within || c.verdict() != "**no**" || !near(c.Difference, 0.6) || !near(c.Spread, 0.4) {
		t.Errorf("compare, 0.6 apart with a spread of 0.4: %+v", c)
	}
	res.Rounds = res.Rounds[:1]
	if c, _ := compare(res, 1, 100, 2); c.Within || !strings.HasPrefix(c.verdict(), "n/a") {
		t.Errorf("compare, one round: %+v", c)
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

func TestParseEndpoints(t *testing.T) {
	if got, err := parseEndpoints(" 1, 100 "); err != nil || !slices.Equal(got, []int{1, 100}) {
		t.Errorf("parseEndpoints: got %v, %v", got, err)
	}
	for _, bad := range []string{"", "0", "1,x", "-3"} {
		if _, err := parseEndpoints(bad); err == nil {
			t.Errorf("parseEndpoints(%q): no error", bad)
		}
	}
	c := Config{Rounds: 1, QPS: 1, Duration: time.Second, Warmup: time.Second, Endpoints: []int{1, 1}}
	if err := c.defaults(); err == nil {
		t.Error("endpoints 1,1: no error")
	}
}
