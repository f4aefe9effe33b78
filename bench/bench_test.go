package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/outrigger/outrigger/bench/harness"
)

// runMainEnv makes the test binary run the harness's main instead of the
// tests, so the smoke tests drive the real program: its network namespace,
// its re-exec into it, its app child process.
const runMainEnv = "OUTRIGGER_BENCH_TEST_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		os.Exit(run(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// runHarness runs the harness with args in a child process and returns its
// exit status, stdout and stderr.
func runHarness(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the harness makes a network namespace, which needs root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatal("the harness needs the ip command (iproute2); .ci/run installs it")
	}
	// A bound, not a duration: the runs take seconds, plus building
	// ./cmd/outrigger for the sidecar targets.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	// TMPDIR: the working folder a failed run keeps goes with the test's.
	cmd.Env = append(os.Environ(), runMainEnv+"=1", "TMPDIR="+t.TempDir())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("harness %q did not finish in time\nstderr:\n%s", args, stderr.String())
	}
	return exitStatus(err), stdout.String(), stderr.String()
}

// TestSmokeDirect runs the whole harness against the direct target with tiny
// durations and checks the report.
func TestSmokeDirect(t *testing.T) {
	out := filepath.Join(t.TempDir(), "report.md")
	code, stdout, stderr := runHarness(t, "--targets", "direct", "--rounds", "1",
		"--warmup", "100ms", "--fixed-duration", "300ms", "--qps", "200", "--max-duration", "300ms",
		"--out", out)
	if code != exitOK {
		t.Fatalf("exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitOK, stdout, stderr)
	}
	for _, want := range []string{
		"#### Fixed rate: 200 requests/s",
		"#### Maximum throughput: 16 connections",
		"| direct | ",
		"- Command: `",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("report lacks %q\nreport:\n%s\nstderr:\n%s", want, stdout, stderr)
		}
	}
	written, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if string(written) != stdout {
		t.Errorf("--out file differs from stdout:\n%s", written)
	}
}

// TestSmokeTargetDown checks that a sidecar that does not come up fails the
// run with its log.
func TestSmokeTargetDown(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "broken-sidecar")
	script := "#!/bin/sh\necho 'broken sidecar: refusing to start' >&2\nexit 3\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runHarness(t, "--targets", "outrigger", "--outrigger", bin, "--rounds", "1",
		"--warmup", "0s", "--fixed-duration", "100ms", "--max-duration", "0s", "--start-timeout", "10s")
	if code == exitOK {
		t.Fatalf("exit status 0 for a sidecar that exits at once\nstdout:\n%s\nstderr:\n%s", stdout, stderr)
	}
	if !strings.Contains(stderr, "broken sidecar: refusing to start") {
		t.Errorf("stderr lacks the failing process's log:\n%s", stderr)
	}
}

// TestSmokeMTLS runs the harness against direct, the h2c mesh and the mTLS
// mesh with tiny durations: it builds ./cmd/outrigger, starts the control
// plane and the sidecars for real, and checks the report, that the mTLS
// sidecars ran mutual TLS, and that the harness stopped every process itself.
func TestSmokeMTLS(t *testing.T) {
	code, stdout, stderr := runHarness(t, "--targets", "direct,outrigger,outrigger-mtls", "--rounds", "1",
		"--warmup", "100ms", "--fixed-duration", "300ms", "--qps", "200", "--max-duration", "300ms",
		"--idle-settle", "100ms", "--keep")
	if code != exitOK {
		t.Fatalf("exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitOK, stdout, stderr)
	}
	for _, want := range []string{
		"| outrigger | ",
		"| outrigger-mtls | ",
		"- outrigger-mtls: the same sidecars with `--enable-mtls`",
		"mTLS adds ",
		" ms to the median p90 over h2c (outrigger-mtls minus outrigger in the same round",
		"start-up includes getting the sidecar's certificate",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("report lacks %q\nreport:\n%s\nstderr:\n%s", want, stdout, stderr)
		}
	}
	// Whatever the namespace's removal finds still running, the harness
	// failed to stop.
	if strings.Contains(stderr, "killing leftover process") {
		t.Errorf("the harness left processes running:\n%s", stderr)
	}

	_, workdir, ok := strings.Cut(stderr, "working folder kept: ")
	if !ok {
		t.Fatalf("stderr does not name the kept working folder:\n%s", stderr)
	}
	workdir, _, _ = strings.Cut(workdir, "\n")
	for _, c := range []struct {
		log  string
		mtls bool
	}{
		{"outrigger-round1/caller.log", false},
		{"outrigger-round1/callee.log", false},
		{"outrigger-mtls-round1/caller.log", true},
		{"outrigger-mtls-round1/callee.log", true},
	} {
		b, err := os.ReadFile(filepath.Join(workdir, c.log))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(string(b), "mutual TLS on"); got != c.mtls {
			t.Errorf("%s says \"mutual TLS on\": %v, want %v\n%s", c.log, got, c.mtls, b)
		}
	}
	if _, err := os.Stat(filepath.Join(workdir, "control-plane", "data", "trust-anchors.pem")); err != nil {
		t.Errorf("the control plane wrote no trust anchors: %v", err)
	}
}

// TestSmokeTransparent runs the harness against outrigger and
// outrigger-transparent with tiny durations: the client opens its
// connections in an app namespace made for the run, the caller sidecar
// intercepts them, and the report has its Interception cost section.
func TestSmokeTransparent(t *testing.T) {
	code, stdout, stderr := runHarness(t, "--targets", "outrigger,outrigger-transparent", "--rounds", "1",
		"--warmup", "100ms", "--fixed-duration", "300ms", "--qps", "200", "--max-duration", "300ms",
		"--idle-settle", "100ms", "--keep")
	if code != exitOK {
		t.Fatalf("exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitOK, stdout, stderr)
	}
	for _, want := range []string{
		"| outrigger-transparent | ",
		"#### Interception cost",
		"Interception's p90 cost: the median p90 of outrigger-transparent minus that of outrigger is",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("report lacks %q\nreport:\n%s\nstderr:\n%s", want, stdout, stderr)
		}
	}
	if strings.Contains(stderr, "killing leftover process") {
		t.Errorf("the harness left processes running:\n%s", stderr)
	}
	_, workdir, ok := strings.Cut(stderr, "working folder kept: ")
	if !ok {
		t.Fatalf("stderr does not name the kept working folder:\n%s", stderr)
	}
	workdir, _, _ = strings.Cut(workdir, "\n")
	b, err := os.ReadFile(filepath.Join(workdir, "outrigger-transparent-round1", "caller.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "transparent_port=15001") {
		t.Errorf("the caller sidecar did not serve the transparent listener:\n%s", b)
	}
	// Every request went through the interception: none failed (the
	// non-2xx cells of both scenarios' rows read "0 of N").
	rows := 0
	for _, line := range strings.Split(stdout, "\n") {
		if strings.HasPrefix(line, "| outrigger-transparent | ") && strings.Contains(line, " of ") {
			rows++
			if !strings.Contains(line, "| 0 of ") {
				t.Errorf("requests failed: %s", line)
			}
		}
	}
	if rows != 2 {
		t.Errorf("%d outrigger-transparent rows with a non-2xx cell, want 2 (fixed rate, maximum throughput):\n%s", rows, stdout)
	}
}

// TestSmokeObservability runs the harness against direct and the three
// observability targets with tiny durations: it builds ./cmd/outrigger, runs
// outrigger-bare with metrics off, outrigger with its defaults and
// outrigger-traced exporting to the harness's span sink, and checks the
// report's Observability cost section, that the sink counted spans, and the
// sidecars' logs.
func TestSmokeObservability(t *testing.T) {
	code, stdout, stderr := runHarness(t, "--targets", "direct,outrigger-bare,outrigger,outrigger-traced,outrigger-allcpus", "--rounds", "1",
		"--warmup", "100ms", "--fixed-duration", "300ms", "--qps", "200", "--max-duration", "300ms",
		"--idle-settle", "100ms", "--keep")
	if code != exitOK {
		t.Fatalf("exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitOK, stdout, stderr)
	}
	for _, want := range []string{
		"| outrigger-bare | ",
		"| outrigger-traced | ",
		"#### Observability cost\n",
		"| outrigger-bare | off | off | ",
		"| outrigger | on | off | ",
		"| outrigger-traced | on | 10%, OTLP/gRPC | ",
		"Tracing's p90 ratio: ",
		"| round | spans received | requests sent | spans per request |",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("report lacks %q\nreport:\n%s\nstderr:\n%s", want, stdout, stderr)
		}
	}
	var round int
	var spans, sent int64
	for line := range strings.Lines(stdout) {
		if n, _ := fmt.Sscanf(line, "| %d | %d | %d |", &round, &spans, &sent); n == 3 {
			break
		}
	}
	// The round sent a few hundred requests; at 10% sampling, none
	// sampled has a chance far below 1e-9.
	if spans <= 0 || sent <= 0 {
		t.Errorf("the span sink counted %d spans for %d requests, want some of each\nreport:\n%s", spans, sent, stdout)
	}
	if strings.Contains(stderr, "killing leftover process") {
		t.Errorf("the harness left processes running:\n%s", stderr)
	}

	_, workdir, ok := strings.Cut(stderr, "working folder kept: ")
	if !ok {
		t.Fatalf("stderr does not name the kept working folder:\n%s", stderr)
	}
	workdir, _, _ = strings.Cut(workdir, "\n")
	// Metrics on or off the harness checks itself, on the metrics port,
	// before the load; tracing the sidecars' logs tell.
	for _, c := range []struct {
		target string
		traced bool
	}{
		{targetOutriggerBare, false},
		{targetOutrigger, false},
		{targetOutriggerTraced, true},
	} {
		for _, id := range []string{callerID, calleeID} {
			log := filepath.Join(workdir, c.target+"-round1", id+".log")
			b, err := os.ReadFile(log)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(string(b), `msg="tracing on"`); got != c.traced {
				t.Errorf("%s says \"tracing on\": %v, want %v\n%s", log, got, c.traced, b)
			}
		}
	}
	// Threads: one by default, Go's default with --concurrency 0 (what
	// this process has, on the same machine and environment).
	for target, want := range map[string]int{targetOutrigger: 1, targetOutriggerAllCPUs: runtime.GOMAXPROCS(0)} {
		for _, id := range []string{callerID, calleeID} {
			log := filepath.Join(workdir, target+"-round1", id+".log")
			b, err := os.ReadFile(log)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), fmt.Sprintf(" threads=%d ", want)) {
				t.Errorf("%s does not say threads=%d:\n%s", log, want, b)
			}
		}
	}
}

// TestReportMTLSLine checks that mTLS's added p90 is the median of the
// per-round differences between the two Outrigger targets.
func TestReportMTLSLine(t *testing.T) {
	cfg, err := parseFlags([]string{"--targets", "outrigger-mtls,outrigger,direct", "--rounds", "3"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(cfg.targets, ","), "direct,outrigger,outrigger-mtls"; got != want {
		t.Fatalf("targets %s, want %s", got, want)
	}
	var res []roundResult
	for i, p90 := range []struct{ direct, h2c, mtls time.Duration }{
		{1 * time.Millisecond, 3 * time.Millisecond, 4 * time.Millisecond},                      // +1 ms
		{1 * time.Millisecond, 9 * time.Millisecond, 9*time.Millisecond + 250*time.Microsecond}, // +0.25 ms
		{2 * time.Millisecond, 4 * time.Millisecond, 5*time.Millisecond + 500*time.Microsecond}, // +1.5 ms
	} {
		for _, r := range []struct {
			t   string
			p90 time.Duration
		}{{targetDirect, p90.direct}, {targetOutrigger, p90.h2c}, {targetOutriggerMTLS, p90.mtls}} {
			res = append(res, roundResult{Target: r.t, Round: i + 1, Fixed: &harness.LoadResult{Requests: 1, QPS: cfg.qps, P90: r.p90}})
		}
	}
	report := renderReport(cfg, environment{}, res, nil)
	// Per round +1, +0.25 and +1.5: the median is 1 (the difference of the
	// medians, 5.5 - 4, would be 1.5).
	want := "mTLS adds 1.000 ms to the median p90 over h2c (outrigger-mtls minus outrigger in the same round, " +
		"then the median across rounds; lowest and highest round 0.250 and 1.500 ms)."
	if !strings.Contains(report, want) {
		t.Errorf("report lacks %q\nreport:\n%s", want, report)
	}
	// The medians of the p90s, 5.5 and 4 ms, differ by 1.5 ms.
	want = "the median p90 of outrigger-mtls minus that of outrigger is **+1.500 ms** (5.500 - 4.000 ms); target at most +0.050 ms: **not met**."
	if !strings.Contains(report, want) {
		t.Errorf("report lacks %q\nreport:\n%s", want, report)
	}
	if !strings.Contains(report, "| outrigger-mtls | ") {
		t.Errorf("report has no outrigger-mtls row:\n%s", report)
	}
}

// TestRefusesPlainText checks the guard that the mTLS target's mesh port
// really wants TLS: a port that answers h2c fails it, a TLS port passes.
func TestRefusesPlainText(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	h2c := httptest.NewUnstartedServer(ok)
	h2c.Config.Protocols = &http.Protocols{}
	h2c.Config.Protocols.SetUnencryptedHTTP2(true)
	h2c.Start()
	defer h2c.Close()
	if err := refusesPlainText(t.Context(), h2c.Listener.Addr().String()); err == nil {
		t.Error("refusesPlainText passed a port that answers h2c")
	}

	tls := httptest.NewUnstartedServer(ok)
	tls.EnableHTTP2 = true
	tls.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused plain text, logged
	tls.StartTLS()
	defer tls.Close()
	if err := refusesPlainText(t.Context(), tls.Listener.Addr().String()); err != nil {
		t.Errorf("refusesPlainText failed a TLS port: %v", err)
	}
}

// TestParseTargets checks that --targets takes the observability targets,
// interleaves every target in the canonical order whatever order the flag
// gave, and rejects unknown names.
func TestParseTargets(t *testing.T) {
	for _, c := range []struct {
		flag, b, want, wantErr string
	}{
		{flag: "outrigger-traced,direct,outrigger,outrigger-bare", want: "direct,outrigger-bare,outrigger,outrigger-traced"},
		{flag: "daprd,outrigger-mtls,outrigger-traced,outrigger,outrigger-bare,direct", want: "direct,outrigger-bare,outrigger,outrigger-traced,outrigger-mtls,daprd"},
		{flag: "outrigger-bare, outrigger-bare", want: "outrigger-bare"},
		{flag: "outrigger-metrics", wantErr: `unknown target "outrigger-metrics"`},
		{flag: "outrigger,minimal,direct", want: "direct,minimal,outrigger"},
		{flag: "outrigger-b,outrigger", wantErr: "outrigger-b needs --outrigger-b"},
		{flag: "outrigger-b,outrigger", b: "/bin/true", want: "outrigger,outrigger-b"},
		{flag: "outrigger", b: "/bin/true", wantErr: "add outrigger-b to --targets"},
	} {
		args := []string{"--targets", c.flag}
		if c.b != "" {
			args = append(args, "--outrigger-b", c.b)
		}
		cfg, err := parseFlags(args, io.Discard)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("--targets %s: error %v, want one containing %q", c.flag, err, c.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("--targets %s: %v", c.flag, err)
			continue
		}
		if got := strings.Join(cfg.targets, ","); got != c.want {
			t.Errorf("--targets %s: targets %s, want %s", c.flag, got, c.want)
		}
	}
	cfg, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(cfg.targets, ","), "direct,outrigger-bare,outrigger,outrigger-traced,outrigger-mtls,outrigger-transparent,outrigger-allcpus,daprd"; got != want {
		t.Errorf("default targets %s, want %s", got, want)
	}
	for _, target := range allTargets {
		want := target != targetDirect && target != targetDaprd && target != targetMinimal && target != targetRelay
		if got := isOutrigger(target); got != want {
			t.Errorf("isOutrigger(%q) = %v, want %v", target, got, want)
		}
	}
}

// TestUsageNamesTargets checks that -h describes every target.
func TestUsageNamesTargets(t *testing.T) {
	var out bytes.Buffer
	if _, err := parseFlags([]string{"-h"}, &out); err == nil {
		t.Fatal("-h: no error")
	}
	for _, target := range allTargets {
		if !strings.Contains(out.String(), "  "+target+" ") {
			t.Errorf("usage does not describe target %s:\n%s", target, out.String())
		}
	}
	if !strings.Contains(out.String(), "--enable-metrics=false") || !strings.Contains(out.String(), "10% sampling") {
		t.Errorf("usage does not say what outrigger-bare and outrigger-traced change:\n%s", out.String())
	}
}

// observabilityRounds fabricates three rounds of direct, outrigger-bare,
// outrigger and outrigger-traced at the fixed rate, with the given p90s
// (p50 is half of each).
func observabilityRounds(cfg *config, p90s [][4]time.Duration, spans []int64) []roundResult {
	var res []roundResult
	for i, row := range p90s {
		for j, target := range []string{targetDirect, targetOutriggerBare, targetOutrigger, targetOutriggerTraced} {
			r := roundResult{Target: target, Round: i + 1, Fixed: &harness.LoadResult{
				Requests: 1000, QPS: cfg.qps, P50: row[j] / 2, P90: row[j],
			}}
			if target == targetOutriggerTraced {
				n := spans[i]
				r.Spans, r.SentRequests = &n, 1200
			}
			res = append(res, r)
		}
	}
	return res
}

// TestReportObservabilityCost checks the "Observability cost" section:
// added latencies as medians of per-round differences, the comparison with
// outrigger-bare, tracing's p90 ratio against its target, and the spans of
// each traced round.
func TestReportObservabilityCost(t *testing.T) {
	cfg, err := parseFlags([]string{"--targets", "direct,outrigger-bare,outrigger,outrigger-traced", "--rounds", "3"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	msec := time.Millisecond
	// Added p90 per round (bare, outrigger, traced): (2, 2.5, 2.1),
	// (4, 4.1, 4.3), (3, 3.3, 3.2): medians 3, 3.3 and 3.2; over bare
	// +0.5/+0.1/+0.3 and +0.1/+0.3/+0.2: medians +0.3 and +0.2.
	res := observabilityRounds(cfg, [][4]time.Duration{
		{1 * msec, 3 * msec, 3500 * time.Microsecond, 3100 * time.Microsecond},
		{2 * msec, 6 * msec, 6100 * time.Microsecond, 6300 * time.Microsecond},
		{1 * msec, 4 * msec, 4300 * time.Microsecond, 4200 * time.Microsecond},
	}, []int64{236, 0, 251})
	report := renderReport(cfg, environment{}, res, nil)
	for _, want := range []string{
		"- outrigger-bare: the same sidecars with `--enable-metrics=false` and no tracing\n",
		"- outrigger-traced: the same sidecars with metrics on and tracing at 10% sampling",
		"| outrigger-bare | +",
		"| outrigger-traced | +",
		"#### Observability cost\n",
		"| outrigger-bare | off | off | +1.500 (+1.000–+2.000) | +3.000 (+2.000–+4.000) | – | – |\n",
		"| outrigger | on | off | +1.650 (+1.250–+2.050) | +3.300 (+2.500–+4.100) | +0.150 (+0.050–+0.250) | +0.300 (+0.100–+0.500) |\n",
		"| outrigger-traced | on | 10%, OTLP/gRPC | +1.600 (+1.050–+2.150) | +3.200 (+2.100–+4.300) | +0.100 (+0.050–+0.150) | +0.200 (+0.100–+0.300) |\n",
		// 3.2 / 3 = 1.07.
		"Tracing's p90 ratio: outrigger-traced's added p90 over outrigger-bare's is **1.07** (3.200 / 3.000 ms, the medians above); target at most 1.10: met.\n",
		"| round | spans received | requests sent | spans per request |\n",
		"| 1 | 236 | 1200 | 0.197 |\n",
		"| 2 | 0 | 1200 | 0.000 |\n",
		"| 3 | 251 | 1200 | 0.209 |\n",
		"- round 2, outrigger-traced: the span sink received no spans; the sidecars did not trace\n",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q\nreport:\n%s", want, report)
		}
	}
	// The section follows the fixed-rate tables and precedes the others.
	if i, j := strings.Index(report, "#### Fixed rate"), strings.Index(report, "#### Observability cost"); i < 0 || j < i {
		t.Errorf("Observability cost (at %d) not after the fixed-rate section (at %d)", j, i)
	}

	// Tracing that adds more than 10% at p90 misses the target.
	res = observabilityRounds(cfg, [][4]time.Duration{
		{1 * msec, 3 * msec, 3 * msec, 4 * msec},
		{1 * msec, 3 * msec, 3 * msec, 4 * msec},
		{1 * msec, 3 * msec, 3 * msec, 4 * msec},
	}, []int64{200, 200, 200})
	report = renderReport(cfg, environment{}, res, nil)
	if want := "is **1.50** (3.000 / 2.000 ms, the medians above); target at most 1.10: **not met**.\n"; !strings.Contains(report, want) {
		t.Errorf("report lacks %q\nreport:\n%s", want, report)
	}
	if strings.Contains(report, "not clean") {
		t.Errorf("report of clean rounds says it is not clean:\n%s", report)
	}
}

// TestReportObservabilityCostOnlyWhenRun checks that the section appears
// only when outrigger-bare or outrigger-traced ran, and the comparison only
// when outrigger-bare and direct ran.
func TestReportObservabilityCostOnlyWhenRun(t *testing.T) {
	for _, c := range []struct {
		targets                    string
		section, comparison, ratio bool
		spans                      bool
	}{
		{targets: "direct,outrigger,outrigger-mtls"},
		{targets: "direct,outrigger-bare,outrigger", section: true, comparison: true},
		{targets: "direct,outrigger-bare,outrigger-traced", section: true, comparison: true, ratio: true, spans: true},
		{targets: "direct,outrigger,outrigger-traced", section: true, spans: true},
		{targets: "outrigger-bare,outrigger-traced", section: true, spans: true},
	} {
		cfg, err := parseFlags([]string{"--targets", c.targets, "--rounds", "1"}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		var res []roundResult
		for _, target := range cfg.targets {
			r := roundResult{Target: target, Round: 1, Fixed: &harness.LoadResult{Requests: 100, QPS: cfg.qps, P50: time.Millisecond, P90: 2 * time.Millisecond}}
			if target != targetDirect {
				r.Fixed.P90 = 3 * time.Millisecond
			}
			if target == targetOutriggerTraced {
				n := int64(20)
				r.Spans, r.SentRequests = &n, 100
			}
			res = append(res, r)
		}
		report := renderReport(cfg, environment{}, res, nil)
		for _, check := range []struct {
			text string
			want bool
		}{
			{"#### Observability cost", c.section},
			{"| target | metrics | tracing |", c.comparison},
			{"Tracing's p90 ratio: outrigger-traced's added p90 over outrigger-bare's is **1.00**", c.ratio},
			{"| 1 | 20 | 100 | 0.200 |", c.spans},
		} {
			if got := strings.Contains(report, check.text); got != check.want {
				t.Errorf("targets %s: report has %q: %v, want %v\nreport:\n%s", c.targets, check.text, got, check.want, report)
			}
		}
	}
}

// TestTracingConfiguration checks the Configuration the traced sidecars get.
func TestTracingConfiguration(t *testing.T) {
	got := tracingConfiguration("127.0.0.1:4317")
	for _, want := range []string{
		"kind: Configuration\n",
		"  tracing:\n    samplingRate: \"0.1\"\n    otel:\n      protocol: grpc\n      endpointAddress: 127.0.0.1:4317\n      isSecure: false\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("configuration lacks %q:\n%s", want, got)
		}
	}
}

// TestSpanSink exports to the sink over a real gRPC connection and checks
// that it counts every span across resources and scopes and answers an
// empty response.
func TestSpanSink(t *testing.T) {
	sink, err := startSpanSink()
	if err != nil {
		t.Fatal(err)
	}
	defer sink.stop(time.Second)
	conn, err := grpc.NewClient(sink.addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := coltracepb.NewTraceServiceClient(conn)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	req := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{
		{ScopeSpans: []*tracepb.ScopeSpans{{Spans: fakeSpans(2)}, {Spans: fakeSpans(3)}}},
		{ScopeSpans: []*tracepb.ScopeSpans{{Spans: fakeSpans(1)}, {}}},
		{},
	}}
	for range 2 {
		resp, err := client.Export(ctx, req)
		if err != nil {
			t.Fatalf("Export: %v", err)
		}
		if resp.GetPartialSuccess() != nil {
			t.Errorf("Export answered a partial success %v, want an empty response", resp.GetPartialSuccess())
		}
	}
	if got, want := sink.count(), int64(12); got != want {
		t.Errorf("sink counted %d spans, want %d", got, want)
	}
}

func fakeSpans(n int) []*tracepb.Span {
	s := make([]*tracepb.Span, n)
	for i := range s {
		s[i] = &tracepb.Span{Name: fmt.Sprintf("span %d", i), TraceId: bytes.Repeat([]byte{1}, 16), SpanId: bytes.Repeat([]byte{byte(i + 1)}, 8)}
	}
	return s
}

// TestSmokeMinimalAndB runs the TCP relays, the minimal forwarders and two Outrigger
// binaries side by side (the same binary twice here) with tiny durations,
// and checks that each served every request and that the report compares
// outrigger with minimal.
func TestSmokeMinimalAndB(t *testing.T) {
	dir := t.TempDir()
	bin, err := harness.BuildOutrigger(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runHarness(t, "--targets", "direct,relay,minimal,outrigger,outrigger-b",
		"--outrigger", bin, "--outrigger-b", bin, "--rounds", "1",
		"--warmup", "100ms", "--fixed-duration", "300ms", "--qps", "200", "--max-duration", "300ms",
		"--idle-settle", "100ms")
	if code != exitOK {
		t.Fatalf("exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitOK, stdout, stderr)
	}
	for _, want := range []string{
		"| relay | ",
		"| minimal | ",
		"| outrigger-b | ",
		"- outrigger-b: the outrigger target's sidecars from another binary, " + bin,
		"Outrigger adds ",
		" ms to the median p90 over the minimal forwarders",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("report lacks %q\nreport:\n%s\nstderr:\n%s", want, stdout, stderr)
		}
	}
}

// TestSmokeProfiles: --profile writes a CPU profile, and with
// --profile-kind trace an execution trace, of each Outrigger sidecar per
// round, each in its own format; a kind it does not know is refused.
func TestSmokeProfiles(t *testing.T) {
	bin, err := harness.BuildOutrigger(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ kind, ext, magic string }{
		{"cpu", ".pprof", "\x1f\x8b"}, // gzipped protobuf
		{"trace", ".trace", "go 1."},  // Go's execution trace header
	} {
		dir := t.TempDir()
		code, stdout, stderr := runHarness(t, "--targets", "outrigger", "--outrigger", bin, "--rounds", "1",
			"--warmup", "100ms", "--fixed-duration", "900ms", "--qps", "200", "--max-duration", "0s",
			"--idle-settle", "100ms", "--profile", dir, "--profile-kind", tc.kind)
		if code != exitOK {
			t.Fatalf("%s: exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", tc.kind, code, exitOK, stdout, stderr)
		}
		for _, id := range []string{callerID, calleeID} {
			name := filepath.Join(dir, "outrigger-round1-"+id+tc.ext)
			data, err := os.ReadFile(name)
			if err != nil {
				t.Errorf("%s: %v", tc.kind, err)
				continue
			}
			if !strings.HasPrefix(string(data), tc.magic) {
				t.Errorf("%s: %s does not start with %q: %q", tc.kind, name, tc.magic, data[:min(len(data), 16)])
			}
		}
	}
	code, _, stderr := runHarness(t, "--targets", "direct", "--profile-kind", "heap")
	if code == exitOK || !strings.Contains(stderr, "--profile-kind") {
		t.Errorf("--profile-kind heap: exit status %d, stderr %q; want a refusal naming the flag", code, stderr)
	}
}

// TestRoundOrder: over as many rounds as targets, each target takes each
// place in a round once, and every round has every target.
func TestRoundOrder(t *testing.T) {
	targets := []string{"direct", "outrigger", "outrigger-b", "daprd"}
	seen := map[string]map[int]bool{}
	for round := 1; round <= len(targets); round++ {
		order := roundOrder(targets, round)
		if len(order) != len(targets) {
			t.Fatalf("round %d: %v", round, order)
		}
		for place, target := range order {
			if seen[target] == nil {
				seen[target] = map[int]bool{}
			}
			seen[target][place] = true
		}
	}
	for _, target := range targets {
		if len(seen[target]) != len(targets) {
			t.Errorf("%s took places %v, want each of %d", target, seen[target], len(targets))
		}
	}
	if got := roundOrder(targets, 1); !slices.Equal(got, targets) {
		t.Errorf("round 1: %v, want the chosen order", got)
	}
}
