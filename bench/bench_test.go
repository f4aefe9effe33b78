package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
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

// harness runs the harness with args in a child process and returns its
// exit status, stdout and stderr.
func harness(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the harness makes a network namespace, which needs root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatal("the harness needs the ip command (iproute2); .ci/run installs it")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
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
	code, stdout, stderr := harness(t, "--targets", "direct", "--rounds", "1",
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
	code, stdout, stderr := harness(t, "--targets", "outrigger", "--outrigger", bin, "--rounds", "1",
		"--warmup", "0s", "--fixed-duration", "100ms", "--max-duration", "0s", "--start-timeout", "10s")
	if code == exitOK {
		t.Fatalf("exit status 0 for a sidecar that exits at once\nstdout:\n%s\nstderr:\n%s", stdout, stderr)
	}
	if !strings.Contains(stderr, "broken sidecar: refusing to start") {
		t.Errorf("stderr lacks the failing process's log:\n%s", stderr)
	}
}
