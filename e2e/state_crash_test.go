package e2e

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/outrigger/outrigger/e2e/framework"
)

// TestStateSurvivesSIGKILL: a sidecar on a SQLite store is killed with
// SIGKILL in the middle of a write loop; a new sidecar on the same file
// finds every write the first one acknowledged.
func TestStateSurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	dir := framework.ShortTempDir(t)
	res := stateStores(t, fmt.Sprintf(`apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: durable
spec:
  type: state.sqlite
  version: v1
  metadata:
  - name: connectionString
    value: %q
`, filepath.Join(dir, "state.db")))
	opts := framework.SidecarOptions{AppID: "crashy", Args: []string{"--resources-path", res}}
	sc := framework.StartSidecar(t, opts)

	var acked atomic.Int64 // writes 0..acked-1 were acknowledged
	done := make(chan struct{})
	go func() {
		defer close(done)
		client := &http.Client{Timeout: 10 * time.Second}
		for i := 0; i < 100000; i++ {
			body := fmt.Sprintf(`[{"key":"k%d","value":"v%d"}]`, i, i)
			resp, err := client.Post(sc.URL("/v1.0/state/durable"), "application/json", strings.NewReader(body))
			if err != nil {
				return // the sidecar is gone
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNoContent {
				return
			}
			acked.Store(int64(i + 1))
		}
	}()
	framework.WaitFor(t, "a few hundred acknowledged writes", func() error {
		if n := acked.Load(); n < 300 {
			return fmt.Errorf("%d so far", n)
		}
		return nil
	})
	if err := syscall.Kill(sc.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-done
	n := acked.Load()
	t.Logf("%d writes acknowledged before SIGKILL", n)

	again := framework.StartSidecar(t, opts)
	for i := int64(0); i < n; i++ {
		resp, body := call(t, http.MethodGet, again.URL("/v1.0/state/durable/k"+strconv.FormatInt(i, 10)), nil, nil)
		if resp.StatusCode != http.StatusOK || string(body) != fmt.Sprintf(`"v%d"`, i) {
			t.Fatalf("acknowledged write k%d after the restart: %d %q", i, resp.StatusCode, body)
		}
	}
}
