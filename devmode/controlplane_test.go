package devmode_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outrigger/outrigger/devmode"
)

// controlPlaneOptions start the test binary as a fake development control
// process under a fresh OUTRIGGER_HOME; the test stops it when it ends.
func controlPlaneOptions(t *testing.T) devmode.ControlPlaneOptions {
	t.Helper()
	home := t.TempDir()
	t.Setenv(devmode.HomeEnv, home)
	t.Setenv(helperEnv, "control-plane") // inherited by the started process
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, _ = devmode.StopControlPlane(ctx, home, 5*time.Second)
	})
	return devmode.ControlPlaneOptions{Home: home, Executable: exe, Args: []string{}, StartTimeout: 20 * time.Second}
}

func TestEnsureControlPlaneStartsOnceAndStops(t *testing.T) {
	o := controlPlaneOptions(t)
	ctx := context.Background()
	rec, started, err := devmode.EnsureControlPlane(ctx, o)
	if err != nil || !started {
		t.Fatalf("EnsureControlPlane = %+v, %v, %v; want a started process", rec, started, err)
	}
	if !running(rec.PID) || rec.Address == "" {
		t.Fatalf("record %+v: want a live pid and an address", rec)
	}
	// The started process logs to $OUTRIGGER_HOME/logs/control-plane.log.
	waitFor(t, 5*time.Second, "control-plane log", func() bool {
		data, _ := os.ReadFile(filepath.Join(o.Home, devmode.LogsDir, devmode.ControlPlaneLog))
		return strings.Contains(string(data), "fake control plane listening on "+rec.Address)
	})

	// A later run reuses it.
	again, started, err := devmode.EnsureControlPlane(ctx, o)
	if err != nil || started || again.PID != rec.PID {
		t.Errorf("second EnsureControlPlane = %+v, %v, %v; want the same process, not started", again, started, err)
	}

	stopped, err := devmode.StopControlPlane(ctx, o.Home, 5*time.Second)
	if err != nil || stopped.PID != rec.PID {
		t.Fatalf("StopControlPlane = %+v, %v", stopped, err)
	}
	if running(rec.PID) {
		t.Errorf("pid %d still runs after StopControlPlane", rec.PID)
	}
	if _, err := os.Stat(filepath.Join(o.Home, devmode.ControlPlaneFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("record still there after stop: %v", err)
	}
	if _, err := devmode.StopControlPlane(ctx, o.Home, time.Second); !errors.Is(err, devmode.ErrNoControlPlane) {
		t.Errorf("second StopControlPlane = %v; want ErrNoControlPlane", err)
	}
}

// TestEnsureControlPlaneConcurrent checks that runs starting at once share
// one control process.
func TestEnsureControlPlaneConcurrent(t *testing.T) {
	o := controlPlaneOptions(t)
	const callers = 4
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		pids    = map[int]bool{}
		starts  int
		callErr error
	)
	for range callers {
		wg.Go(func() {
			rec, started, err := devmode.EnsureControlPlane(context.Background(), o)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				callErr = err
				return
			}
			pids[rec.PID] = true
			if started {
				starts++
			}
		})
	}
	wg.Wait()
	if callErr != nil {
		t.Fatal(callErr)
	}
	if len(pids) != 1 || starts != 1 {
		t.Errorf("%d concurrent callers got pids %v with %d starts; want one process started once", callers, pids, starts)
	}
}

func TestEnsureControlPlaneExitsAtStart(t *testing.T) {
	o := controlPlaneOptions(t)
	o.Executable = "/bin/sh"
	o.Args = []string{"-c", "echo cannot bind the port >&2; exit 1"}
	_, _, err := devmode.EnsureControlPlane(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "exited at start") || !strings.Contains(err.Error(), "cannot bind the port") {
		t.Errorf("EnsureControlPlane = %v; want an error quoting the process's log", err)
	}
}

func TestEnsureControlPlaneTimeout(t *testing.T) {
	o := controlPlaneOptions(t)
	o.Executable = "/bin/sh"
	o.Args = []string{"-c", "sleep 30"}
	o.StartTimeout = 300 * time.Millisecond
	start := time.Now()
	_, _, err := devmode.EnsureControlPlane(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "did not answer") {
		t.Errorf("EnsureControlPlane = %v; want a did-not-answer error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("EnsureControlPlane took %v with a 300ms start timeout", d)
	}
}

func TestStopControlPlaneStaleRecord(t *testing.T) {
	home := t.TempDir()
	t.Setenv(devmode.HomeEnv, home)
	// A pid that certainly is gone: a process that ran and was reaped.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if err := devmode.WriteControlPlaneRecord(home, devmode.ControlPlaneRecord{Address: "127.0.0.1:1", PID: cmd.Process.Pid}); err != nil {
		t.Fatal(err)
	}
	_, err := devmode.StopControlPlane(context.Background(), home, time.Second)
	if !errors.Is(err, devmode.ErrNoControlPlane) || !strings.Contains(err.Error(), "stale") {
		t.Errorf("StopControlPlane with a stale record = %v; want ErrNoControlPlane naming the stale record", err)
	}
	if _, err := devmode.ReadControlPlaneRecord(home); !errors.Is(err, devmode.ErrNoControlPlane) {
		t.Errorf("record after removing a stale one: %v", err)
	}
}

// TestStopControlPlaneSparesOtherProcess checks that a record whose pid now
// belongs to an unrelated process does not get that process killed.
func TestStopControlPlaneSparesOtherProcess(t *testing.T) {
	home := t.TempDir()
	t.Setenv(devmode.HomeEnv, home)
	other := exec.Command("sleep", "30")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Process.Kill(); _ = other.Wait() })
	if err := devmode.WriteControlPlaneRecord(home, devmode.ControlPlaneRecord{Address: "127.0.0.1:1", PID: other.Process.Pid}); err != nil {
		t.Fatal(err)
	}
	if _, err := devmode.StopControlPlane(context.Background(), home, time.Second); !errors.Is(err, devmode.ErrNoControlPlane) {
		t.Errorf("StopControlPlane = %v; want ErrNoControlPlane", err)
	}
	if !running(other.Process.Pid) {
		t.Errorf("an unrelated process with the recorded pid was stopped")
	}
}

func TestControlPlaneRecord(t *testing.T) {
	home := filepath.Join(t.TempDir(), "not-yet")
	if _, err := devmode.ReadControlPlaneRecord(home); !errors.Is(err, devmode.ErrNoControlPlane) {
		t.Fatalf("Read with no record = %v; want ErrNoControlPlane", err)
	}
	rec := devmode.ControlPlaneRecord{Address: "127.0.0.1:50010", PID: 1234, Started: time.Unix(1700000000, 0).UTC(), Version: "dev"}
	if err := devmode.WriteControlPlaneRecord(home, rec); err != nil {
		t.Fatal(err)
	}
	got, err := devmode.ReadControlPlaneRecord(home)
	if err != nil || got != rec {
		t.Errorf("Read = %+v, %v; want %+v", got, err, rec)
	}
	// No temporary files are left behind.
	entries, _ := os.ReadDir(home)
	if len(entries) != 1 {
		t.Errorf("home holds %d entries after a write; want 1", len(entries))
	}
	// Another process's record is not removed.
	if err := devmode.RemoveControlPlaneRecord(home, 999); err != nil {
		t.Fatal(err)
	}
	if _, err := devmode.ReadControlPlaneRecord(home); err != nil {
		t.Errorf("record removed by another pid: %v", err)
	}
	if err := devmode.RemoveControlPlaneRecord(home, 1234); err != nil {
		t.Fatal(err)
	}
	if _, err := devmode.ReadControlPlaneRecord(home); !errors.Is(err, devmode.ErrNoControlPlane) {
		t.Errorf("record after its owner removed it: %v", err)
	}
	// A damaged record reads as none, and any remove clears it.
	if err := os.WriteFile(filepath.Join(home, devmode.ControlPlaneFile), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := devmode.ReadControlPlaneRecord(home); !errors.Is(err, devmode.ErrNoControlPlane) || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("Read of a damaged record = %v", err)
	}
	if err := devmode.RemoveControlPlaneRecord(home, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(home, devmode.ControlPlaneFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("damaged record not removed: %v", err)
	}
}

func TestDefaultHome(t *testing.T) {
	t.Setenv(devmode.HomeEnv, "relative/home")
	got, err := devmode.DefaultHome()
	if err != nil || !filepath.IsAbs(got) || !strings.HasSuffix(got, "relative/home") {
		t.Errorf("DefaultHome with a relative OUTRIGGER_HOME = %q, %v; want it made absolute", got, err)
	}
	t.Setenv(devmode.HomeEnv, "")
	t.Setenv("HOME", "/home/someone")
	if got, err := devmode.DefaultHome(); err != nil || got != "/home/someone/.outrigger" {
		t.Errorf("DefaultHome = %q, %v; want /home/someone/.outrigger", got, err)
	}
}

// TestRunStartsControlPlane checks the whole path of a first run: no control
// process yet, Run starts one, the app runs, and the process stays after
// the run for the next one.
func TestRunStartsControlPlane(t *testing.T) {
	o := controlPlaneOptions(t)
	out := &syncBuffer{}
	code, err := devmode.Run(context.Background(), devmode.Options{
		Home: o.Home, Executable: o.Executable, Output: out,
	}, []devmode.App{{ID: "one", Command: []string{"true"}, Sidecar: sidecar("one", 0)}})
	if err == nil && code != 0 {
		t.Errorf("Run = %d; want 0\n%s", code, out.String())
	}
	// The test binary ignores the control-plane arguments Run passes: a
	// start error would say so here.
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !strings.Contains(out.String(), "== OUTRIGGER == started the development control process at ") {
		t.Errorf("output lacks the start notice:\n%s", out.String())
	}
	rec, ok := devmode.ControlPlaneAnswers(context.Background(), o.Home)
	if !ok {
		t.Fatalf("no control process answers after the run (record %+v)", rec)
	}
}
