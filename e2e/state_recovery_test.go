package e2e

import (
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/outrigger/outrigger/e2e/framework"
)

// privateRedis runs a redis-server of the test's own on port, in dir; it
// never touches the machine's shared Redis.
func privateRedis(t *testing.T, port int, dir string) *exec.Cmd {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server is needed for this test: %v", err)
	}
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	framework.WaitFor(t, "the private redis-server to listen", func() error {
		return framework.DialListener("127.0.0.1:" + strconv.Itoa(port))
	})
	return cmd
}

// TestStateStoreGoneAndBack: the database dies in the middle of a run; the
// sidecar answers daprd's errors meanwhile, keeps serving, and recovers on
// its own once the database is back.
func TestStateStoreGoneAndBack(t *testing.T) {
	t.Parallel()
	dir := framework.ShortTempDir(t)
	port := framework.FreePort(t)
	srv := privateRedis(t, port, dir)
	res := stateStores(t, fmt.Sprintf(`apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: cache
spec:
  type: state.redis
  version: v1
  metadata:
  - name: redisHost
    value: 127.0.0.1:%d
  - name: dialTimeout
    value: 500ms
  - name: maxRetries
    value: "0"
`, port))
	sc := framework.StartSidecar(t, framework.SidecarOptions{AppID: "recovering", Args: []string{"--resources-path", res}})
	save := func(v string) (*http.Response, []byte, error) {
		return tryCall(callCtx(t), http.MethodPost, sc.URL("/v1.0/state/cache"), strings.NewReader(`[{"key":"k","value":"`+v+`"}]`), nil)
	}
	if resp, body, err := save("before"); err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("save with the database up: %v %v %s", err, resp, body)
	}

	_ = srv.Process.Signal(syscall.SIGKILL)
	_ = srv.Wait()
	resp, body, err := save("during")
	if err != nil {
		t.Fatal(err)
	}
	wantDaprError(t, resp, body, http.StatusInternalServerError, "ERR_STATE_SAVE")
	resp, body, err = tryCall(callCtx(t), http.MethodGet, sc.URL("/v1.0/state/cache/k"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantDaprError(t, resp, body, http.StatusInternalServerError, "ERR_STATE_GET")
	wantEchoedState(t, sc)

	// The database comes back (empty: it keeps nothing on disk); the same
	// sidecar writes and reads again.
	privateRedis(t, port, filepath.Join(dir))
	framework.WaitFor(t, "the sidecar to write again once the database is back", func() error {
		resp, body, err := save("after")
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusNoContent {
			return fmt.Errorf("%d %s", resp.StatusCode, body)
		}
		return nil
	})
	resp, body = call(t, http.MethodGet, sc.URL("/v1.0/state/cache/k"), nil, nil)
	if resp.StatusCode != http.StatusOK || string(body) != `"after"` {
		t.Errorf("read after recovery: %d %q", resp.StatusCode, body)
	}
}
