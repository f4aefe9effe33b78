package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/outrigger/outrigger/devmode"
	"github.com/outrigger/outrigger/e2e/framework"
)

// TestRunDefaultStateStore: `outrigger run` gives an app that names no
// resources the default SQLite store under OUTRIGGER_HOME; the counter
// example (the official Go SDK: GetState, ETag-checked and first-write
// saves, a transaction, a bulk read) keeps its count across runs, and two
// counters running at once through two sidecars lose no increment.
func TestRunDefaultStateStore(t *testing.T) {
	bin := framework.Binary(t)
	home := framework.ShortTempDir(t)
	dir := t.TempDir()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	counter := filepath.Join(dir, "counter")
	build := exec.Command("go", "build", "-o", counter, "./examples/counter")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the counter example: %v\n%s", err, out)
	}
	env := append(os.Environ(), "OUTRIGGER_HOME="+home)
	t.Cleanup(func() {
		stop := exec.Command(bin, "stop")
		stop.Env = env
		_ = stop.Run()
	})
	countRe := regexp.MustCompile(`count (\d+)`)
	runCounter := func(appID string, n int) int {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		run := framework.Command(ctx, bin, "run", "--app-id", appID, "--", counter, "-n", strconv.Itoa(n))
		run.Env = env
		out, err := run.CombinedOutput()
		if err != nil {
			t.Errorf("outrigger run %s: %v\n%s", appID, err, out)
			return -1
		}
		m := countRe.FindSubmatch(out)
		if m == nil {
			t.Errorf("no count in the output\n%s", out)
			return -1
		}
		c, _ := strconv.Atoi(string(m[1]))
		return c
	}
	if got := runCounter("counter", 3); got != 3 {
		t.Fatalf("first run: count %d, want 3", got)
	}
	for _, f := range []string{filepath.Join(home, devmode.ResourcesDir, devmode.DefaultStoreName+".yaml"), devmode.StatePath(home)} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("the default store's files: %v", err)
		}
	}
	if got := runCounter("counter", 2); got != 5 {
		t.Fatalf("second run: count %d, want 5 (the first run's 3 kept)", got)
	}
	// Two counters at once, each through its own sidecar, on the same key of
	// the same app-id prefix: ETags make every increment count.
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() { runCounter("counter", 10+i) })
	}
	wg.Wait()
	if got := runCounter("counter", 1); got != 5+10+11+1 {
		t.Errorf("after two concurrent runs: count %d, want %d", got, 5+10+11+1)
	}
}
