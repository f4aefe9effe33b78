package main

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
