package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outrigger/outrigger/devmode"
	"github.com/outrigger/outrigger/e2e/framework"
)

// TestRunOrdersOnEmbeddedNATS: the orders example (the Go SDK publishing,
// the SDK's HTTP service subscribing) through `outrigger run -f` on the
// default pub/sub: the development control process's embedded NATS with
// JetStream, persisted under OUTRIGGER_HOME.
func TestRunOrdersOnEmbeddedNATS(t *testing.T) {
	bin := framework.Binary(t)
	home := framework.ShortTempDir(t)
	dir := t.TempDir()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, app := range []string{"publisher", "subscriber"} {
		build := exec.Command("go", "build", "-o", filepath.Join(dir, app), "./examples/orders/"+app)
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("building the %s example: %v\n%s", app, err, out)
		}
	}
	port := framework.FreePort(t)
	runFile := filepath.Join(dir, "run.yaml")
	writeFile(t, runFile, fmt.Sprintf(`version: 1
apps:
  - appID: order-subscriber
    appDirPath: %[1]s
    appPort: %[2]d
    command: ["%[1]s/subscriber", "-port", "%[2]d", "-expect", "20"]
  - appID: order-publisher
    appDirPath: %[1]s
    command: ["%[1]s/publisher", "-interval", "50ms"]
`, dir, port))
	env := append(os.Environ(), "OUTRIGGER_HOME="+home)
	t.Cleanup(func() {
		stop := exec.Command(bin, "stop")
		stop.Env = env
		_ = stop.Run()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run := framework.Command(ctx, bin, "run", "-f", runFile)
	run.Env = env
	out, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("outrigger run: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "(20 of 20)") {
		t.Errorf("the subscriber did not report all 20 orders\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(home, devmode.NATSDir)); err != nil {
		t.Errorf("the embedded broker keeps no store under OUTRIGGER_HOME: %v", err)
	}
}
