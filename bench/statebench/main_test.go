package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outrigger/outrigger/bench/harness"
	goredis "github.com/redis/go-redis/v9"
)

// TestRunSmall runs the whole harness at a tiny size against the machine's
// Redis (it fails, not skips, when Redis is down) and, when its binary is
// in the tools cache, daprd.
// TestMain lets the test binary be the minimal sidecar, as the harness's
// own binary is when it starts the minimal targets.
func TestMain(m *testing.M) {
	if spec := os.Getenv(minimalEnv); spec != "" {
		os.Exit(runMinimal(spec))
	}
	os.Exit(m.Run())
}

func TestRunSmall(t *testing.T) {
	// The build is not part of the run's budget: on a loaded machine it
	// can take minutes.
	bctx, bcancel := context.WithTimeout(context.Background(), 10*time.Minute)
	bin, err := harness.BuildOutrigger(bctx, t.TempDir())
	bcancel()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 55*time.Second)
	defer cancel()
	cfg := Config{
		Outrigger: bin,
		Rounds:    1, Ops: 20, Warmup: 5, Backends: []string{backendSQLite, backendRedis},
		Timeout: 50 * time.Second, Command: "go test ./bench/statebench",
	}
	if d := harness.DefaultDaprd(); d != "" {
		if _, err := os.Stat(d); err == nil {
			cfg.Daprd = d
		}
	}
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{targetDirect, targetMinimalGRPC, targetMinimalHTTP, targetOutriggerGRPC, targetOutriggerHTTP}
	if cfg.Daprd != "" {
		want = append(want, targetDaprdGRPC, targetDaprdHTTP)
	} else {
		t.Logf("daprd not in the tools cache: its targets were skipped")
	}
	if len(res.Rounds) != 1 {
		t.Fatalf("rounds: got %d, want 1", len(res.Rounds))
	}
	for _, r := range res.Rounds {
		for _, backend := range cfg.Backends {
			for _, target := range want {
				tr := r.find(backend, target)
				if tr == nil {
					t.Errorf("round %d: no numbers for %s %s", r.Round, backend, target)
					continue
				}
				for _, op := range operations {
					s := op.get(tr)
					if s.N != cfg.Ops || len(s.Samples) != cfg.Ops || s.P50 <= 0 || s.P50 > s.P90 || s.P90 > s.P99 || s.P99 > s.Max {
						t.Errorf("round %d %s %s %s: n %d, samples %d, p50 %v p90 %v p99 %v max %v", r.Round, backend, target, op.name,
							s.N, len(s.Samples), s.P50, s.P90, s.P99, s.Max)
					}
				}
				if target != targetDirect && tr.StartUp <= 0 {
					t.Errorf("round %d %s %s: no start-up time", r.Round, backend, target)
				}
			}
		}
	}

	var out strings.Builder
	writeReport(&out, res)
	report := out.String()
	for _, s := range []string{
		"`go test ./bench/statebench`",
		"### sqlite: save", "### sqlite: get", "### redis: save", "### redis: get",
		"| outrigger-grpc |", "| outrigger-http |",
		"### Latency the sidecar adds over direct",
		"the sidecar adds at most 0.1 ms at p50",
		"| sqlite | save | outrigger-grpc |", "| redis | get | outrigger-http |",
		"| sqlite | get | minimal-http |", "| redis | save | minimal-grpc |",
		"### Latency a sidecar adds over the minimal one",
	} {
		if !strings.Contains(report, s) {
			t.Errorf("report lacks %q:\n%s", s, report)
		}
	}
	if t.Failed() {
		t.Logf("report:\n%s", report)
	}

	// The run's Redis keys are gone.
	rc := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:6379"})
	defer rc.Close()
	keys, _, err := rc.Scan(ctx, 0, res.RunID+"*", 10000).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) > 0 {
		t.Errorf("%d redis keys of the run left, e.g. %q", len(keys), keys[0])
	}
}

// TestSidecarFailsLoudly: a sidecar that exits at once fails the run with
// the end of its log.
func TestSidecarFailsLoudly(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "outrigger")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho 'no state for you' >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := Run(ctx, Config{Rounds: 1, Ops: 1, Backends: []string{backendSQLite}, Outrigger: bin, StartTimeout: 10 * time.Second})
	if err == nil {
		t.Fatal("a sidecar that exits did not fail the run")
	}
	for _, s := range []string{"outrigger-grpc", "exited", "no state for you"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error lacks %q: %v", s, err)
		}
	}
}

func TestPercentile(t *testing.T) {
	var s []time.Duration
	for i := 1; i <= 200; i++ {
		s = append(s, time.Duration(i))
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 100}, {90, 180}, {99, 198}, {99.9, 200}, {100, 200}, {0.1, 1}} {
		if got := harness.Percentile(s, c.p); got != c.want {
			t.Errorf("p%v of 1..200: got %d, want %d", c.p, got, c.want)
		}
	}
	if got := harness.Percentile(s[:1], 99); got != 1 {
		t.Errorf("p99 of one sample: got %d", got)
	}
}

func TestMakeValue(t *testing.T) {
	v := makeValue("k0000001", 256)
	if len(v) != 256 || !sameJSON(v, v) || !strings.HasPrefix(string(v), `{"id":"k0000001","pad":"abc`) {
		t.Errorf("makeValue: %d bytes: %s", len(v), v)
	}
	if !sameJSON([]byte(`{"pad":"x","id":"y"}`), []byte(`{"id":"y","pad":"x"}`)) {
		t.Error("sameJSON: key order matters")
	}
}
