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

	"github.com/outrigger/outrigger/e2e/framework"
)

// TestRunFileHello runs the README's main job the way a user does, with the
// real binary: `outrigger run -f` on the hello example's two apps (prebuilt,
// on a free app port), talking through two sidecars found through the
// development control process; then `outrigger stop`.
func TestRunFileHello(t *testing.T) {
	bin := framework.Binary(t)
	home := t.TempDir()
	dir := t.TempDir()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, app := range []string{"callee", "caller"} {
		build := exec.Command("go", "build", "-o", filepath.Join(dir, app), "./examples/hello/"+app)
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("building the %s example: %v\n%s", app, err, out)
		}
	}
	port := framework.FreePort(t)
	runFile := filepath.Join(dir, "run.yaml")
	yaml := fmt.Sprintf(`version: 1
apps:
  - appID: callee
    appDirPath: %[1]s
    appPort: %[2]d
    command: ["%[1]s/callee", "-port", "%[2]d"]
  - appID: caller
    appDirPath: %[1]s
    command: ["%[1]s/caller", "-count", "3", "-interval", "100ms"]
`, dir, port)
	if err := os.WriteFile(runFile, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
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
	log := string(out)
	if err != nil {
		t.Fatalf("outrigger run -f: %v\n%s", err, log)
	}
	for _, want := range []string{
		`== APP - caller == call 1: callee answered "hello, caller!`,
		`== APP - caller == call 3: callee answered`,
		"== APP - caller == done: 3 answered, 0 failed",
		"== APP - callee == call 1 from caller",
		"== SIDECAR - callee ==",
		"== SIDECAR - caller ==",
		// Every app under run joins the mesh with mutual TLS from the
		// development control process's CA.
		"mutual TLS on",
		"id=spiffe://public/ns/default/callee",
		"id=spiffe://public/ns/default/caller",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("output lacks %q\n%s", want, log)
		}
	}
	if _, err := os.Stat(filepath.Join(home, "control-plane.json")); err != nil {
		t.Errorf("the development control process left no record in OUTRIGGER_HOME: %v", err)
	}
	stop := exec.Command(bin, "stop")
	stop.Env = env
	if sout, err := stop.CombinedOutput(); err != nil || !strings.Contains(string(sout), "stopped") {
		t.Errorf("outrigger stop: %v\n%s", err, sout)
	}
	if _, err := os.Stat(filepath.Join(home, "control-plane.json")); !os.IsNotExist(err) {
		t.Errorf("control-plane.json still there after outrigger stop: %v", err)
	}
}

// TestRunExitCode: `outrigger run` prefixes the app's output and exits with
// the app's exit code.
func TestRunExitCode(t *testing.T) {
	bin := framework.Binary(t)
	home := t.TempDir()
	env := append(os.Environ(), "OUTRIGGER_HOME="+home)
	t.Cleanup(func() {
		stop := exec.Command(bin, "stop")
		stop.Env = env
		_ = stop.Run()
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run := framework.Command(ctx, bin, "run", "--app-id", "x", "--", "sh", "-c", "echo hi from $APP_ID; echo socket=$SPIFFE_ENDPOINT_SOCKET; exit 7")
	run.Env = env
	out, err := run.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 7 {
		t.Fatalf("exit: %v, want code 7\n%s", err, out)
	}
	if !strings.Contains(string(out), "== APP - x == hi from x") {
		t.Errorf("output lacks the prefixed app line\n%s", out)
	}
	if want := "socket=unix://" + filepath.Join(home, "run", "x", "spiffe.sock"); !strings.Contains(string(out), want) {
		t.Errorf("the app's SPIFFE_ENDPOINT_SOCKET is not the sidecar's Workload API socket %s\n%s", want, out)
	}
}

// TestRunExplicitProxy: under `outrigger run`, run by user nobody with no
// capabilities (the explicit proxy needs no privilege), an app that knows
// nothing of Dapr (a shell script with curl) calls http://callee/hello, and
// its sidecar's explicit proxy (HTTP_PROXY, set by run) carries the call
// over the mesh: the callee answers the caller by its proven app-id.
func TestRunExplicitProxy(t *testing.T) {
	dir, bin, home := nobodyFolder(t)
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "callee"), "./examples/hello/callee")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the callee example: %v\n%s", err, out)
	}
	// The script waits (bounded) until the callee is found through the
	// Dapr API, then calls it by name with no Dapr API at all.
	script := `for i in $(seq 1 120); do
  curl -sf --noproxy '*' "http://127.0.0.1:$DAPR_HTTP_PORT/v1.0/invoke/callee/method/hello" >/dev/null && break
  sleep 0.5
done
echo "proxy $HTTP_PROXY as $(id -u)"
curl -sS --fail-with-body http://callee/hello && echo && echo "transparent call done"`
	port := framework.FreePort(t)
	runFile := filepath.Join(dir, "run.yaml")
	yaml := fmt.Sprintf(`version: 1
apps:
  - appID: callee
    appDirPath: %[1]s
    appPort: %[2]d
    command: ["%[1]s/callee", "-port", "%[2]d"]
  - appID: caller
    appDirPath: %[1]s
    command: ["sh", "-c", %[3]q]
`, dir, port, script)
	if err := os.WriteFile(runFile, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = asNobody(ctx, home, bin, "stop").Run()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := asNobody(ctx, home, bin, "run", "-f", runFile).CombinedOutput()
	log := string(out)
	if err != nil {
		t.Fatalf("outrigger run -f as nobody: %v\n%s", err, log)
	}
	for _, want := range []string{
		"== APP - caller == proxy http://127.0.0.1:",
		" as 65534",
		`== APP - caller == hello, caller!`,
		"== APP - caller == transparent call done",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("output lacks %q\n%s", want, log)
		}
	}
}

// TestRunTransparent: `outrigger run --transparent` runs each app in a
// network namespace of its own; the caller, a shell script with curl and
// no proxy settings, calls http://callee/hello and its own sidecar's API
// on 127.0.0.1, and the callee answers it by its proven app-id. The run
// removes a namespace a crashed run left behind, and its own when it ends.
func TestRunTransparent(t *testing.T) {
	framework.RequireRoot(t)
	bin := framework.Binary(t)
	home := t.TempDir()
	dir := t.TempDir()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "callee"), "./examples/hello/callee")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the callee example: %v\n%s", err, out)
	}
	// A namespace left by a run that crashed: its pid names a process
	// that is gone.
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	leftover := fmt.Sprintf("outrigger-%d-crashed", gone.Process.Pid)
	if out, err := exec.Command("ip", "netns", "add", leftover).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", leftover).Run() })

	script := `for i in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$DAPR_HTTP_PORT/v1.0/healthz/outbound" && break
  sleep 0.5
done
echo "proxy=[$HTTP_PROXY] $(curl -sS "http://127.0.0.1:$DAPR_HTTP_PORT/v1.0/metadata" | grep -o '"id":"[a-z]*"')"
for i in $(seq 1 120); do
  out=$(curl -sS --fail-with-body http://callee/hello) && break
  sleep 0.5
done
echo "$out" && echo "transparent call done"`
	port := framework.FreePort(t)
	runFile := filepath.Join(dir, "run.yaml")
	yaml := fmt.Sprintf(`version: 1
apps:
  - appID: callee
    appDirPath: %[1]s
    appPort: %[2]d
    command: ["%[1]s/callee", "-port", "%[2]d"]
  - appID: caller
    appDirPath: %[1]s
    command: ["sh", "-c", %[3]q]
`, dir, port, script)
	if err := os.WriteFile(runFile, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "OUTRIGGER_HOME="+home)
	t.Cleanup(func() {
		stop := exec.Command(bin, "stop")
		stop.Env = env
		_ = stop.Run()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run := framework.Command(ctx, bin, "run", "--transparent", "-f", runFile)
	run.Env = env
	out, err := run.CombinedOutput()
	log := string(out)
	if err != nil {
		t.Fatalf("outrigger run --transparent -f: %v\n%s", err, log)
	}
	for _, want := range []string{
		"removed the network namespace " + leftover,
		"app caller: runs in the network namespace /var/run/netns/outrigger-",
		`== APP - caller == proxy=[] "id":"caller"`,
		`== APP - caller == hello, caller!`,
		"== APP - caller == transparent call done",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("output lacks %q\n%s", want, log)
		}
	}
	list, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(list), fmt.Sprintf("outrigger-%d-", run.Process.Pid)) || strings.Contains(string(list), leftover) {
		t.Errorf("namespaces left after the run:\n%s", list)
	}
}
