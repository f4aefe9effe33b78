package e2e

import (
	"context"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	dapr "github.com/dapr/go-sdk/client"

	"github.com/outrigger/outrigger/e2e/framework"
)

// builtInResiliency redefines daprd's built-in retry of invocations to
// apps without a policy: many retries, so that a sidecar started late
// under load is still found.
const builtInResiliency = `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: builtin
spec:
  policies:
    retries:
      DaprBuiltInServiceRetries:
        policy: constant
        duration: 200ms
        maxRetries: 100
`

// TestInvokeBuiltInRetry: with no Resiliency policy for an app, a call
// whose callee's sidecar is not there yet (the connection refused) is
// retried as daprd's DaprBuiltInServiceRetries does, and succeeds once that
// sidecar comes up, the body sent again; a Resiliency document may redefine
// the built-in retry. Without one, Dapr's own gives up after three retries
// a second apart.
func TestInvokeBuiltInRetry(t *testing.T) {
	t.Parallel()
	res := framework.ShortTempDir(t)
	writeFile(t, filepath.Join(res, "resiliency.yaml"), builtInResiliency)
	internal := framework.FreePort(t) // the late callee's mesh port, nothing there yet
	late := framework.Endpoint{AppID: "bi-late", Address: "127.0.0.1:" + strconv.Itoa(internal)}
	caller := framework.StartSidecar(t, framework.SidecarOptions{AppID: "bi-caller", Resolve: []framework.Endpoint{late}, Args: []string{"--resources-path", res}})

	client, err := dapr.NewClientWithPort(strconv.Itoa(caller.GRPCPort))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	type result struct {
		out []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		out, err := client.InvokeMethodWithContent(ctx, "bi-late", "flaky/late?fail=0", "post", &dapr.DataContent{ContentType: "text/plain", Data: []byte("sent again")})
		done <- result{out, err}
	}()
	// The call fails and is retried before the callee's sidecar starts.
	deadline := time.Now().Add(30 * time.Second)
	for metricValue(t, caller, "outrigger_resiliency_retries_total", `dest_app_id="bi-late"`) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the caller never retried the refused call")
		}
		select {
		case r := <-done:
			t.Fatalf("the call ended before its callee started: %s %v", r.out, r.err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	app := framework.StartHTTPApp(t, framework.HTTPAppOptions{})
	framework.StartSidecar(t, framework.SidecarOptions{AppID: "bi-late", AppPort: app.Port, Args: []string{"--dapr-internal-grpc-port", strconv.Itoa(internal)}})
	r := <-done
	if r.err != nil || !strings.Contains(string(r.out), `"body":"sent again"`) {
		t.Fatalf("the retried call: %s %v", r.out, r.err)
	}
	if n := app.Calls("late"); n != 1 {
		t.Errorf("the app saw %d calls, want 1", n)
	}

	// Dapr's own built-in retry: three retries a second apart, then
	// Dapr's error.
	dead := framework.Endpoint{AppID: "bi-dead", Address: "127.0.0.1:" + strconv.Itoa(framework.FreePort(t))}
	plain := framework.StartSidecar(t, framework.SidecarOptions{AppID: "bi-plain", Resolve: []framework.Endpoint{dead}})
	start := time.Now()
	resp, body := call(t, http.MethodGet, plain.URL("/v1.0/invoke/bi-dead/method/x"), nil, nil)
	took := time.Since(start)
	if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(string(body), "ERR_DIRECT_INVOKE") {
		t.Errorf("a call to a sidecar that never comes: %d %s", resp.StatusCode, body)
	}
	if took < 3*time.Second {
		t.Errorf("the call failed after %v, before Dapr's three retries a second apart", took)
	}
	if v := metricValue(t, plain, "outrigger_resiliency_retries_total", `dest_app_id="bi-dead"`); v != 3 {
		t.Errorf("retries counted: %v, want 3", v)
	}
}
