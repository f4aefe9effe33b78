package e2e

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	commonv1pb "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/outrigger/outrigger/e2e/framework"
)

// defaultAppRetry names no target: its only policy is Dapr's default
// retry of service invocation.
const defaultAppRetry = `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: defaults
spec:
  policies:
    retries:
      DefaultAppRetryPolicy:
        policy: constant
        duration: 100ms
        maxRetries: 3
`

// defaultTimeout names no target: its only policy is Dapr's default
// timeout, which reaches service invocation too.
const defaultTimeout = `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: defaults
spec:
  policies:
    timeouts:
      DefaultTimeoutPolicy: 500ms
`

// TestResiliencyDefaultsRetry: a development sidecar whose Resiliency has
// only DefaultAppRetryPolicy retries calls to an app it names nowhere (it
// has no route of its own): over HTTP and gRPC, two failures and then the
// success.
func TestResiliencyDefaultsRetry(t *testing.T) {
	t.Parallel()
	res := framework.ShortTempDir(t)
	writeFile(t, filepath.Join(res, "resiliency.yaml"), defaultAppRetry)
	app := framework.StartHTTPApp(t, framework.HTTPAppOptions{})
	_, caller := pair(t, framework.SidecarOptions{AppID: "rzd-retry", AppPort: app.Port}, framework.SidecarOptions{AppID: "rzd-caller", Args: []string{"--resources-path", res}})

	wantRetriedTwice(t, caller, app, "rzd-retry", "a", "g")
	if v := metricValue(t, caller, "outrigger_resiliency_retries_total", `dest_app_id="rzd-retry"`); v != 4 {
		t.Errorf("retries counted: %v, want 4", v)
	}
}

// TestResiliencyDefaultsTimeout: DefaultTimeoutPolicy, with no target,
// cuts a slow call to any app short (HTTP and gRPC); a quick one passes.
func TestResiliencyDefaultsTimeout(t *testing.T) {
	t.Parallel()
	res := framework.ShortTempDir(t)
	writeFile(t, filepath.Join(res, "resiliency.yaml"), defaultTimeout)
	app := framework.StartHTTPApp(t, framework.HTTPAppOptions{})
	_, caller := pair(t, framework.SidecarOptions{AppID: "rzd-slow", AppPort: app.Port}, framework.SidecarOptions{AppID: "rzd-caller2", Args: []string{"--resources-path", res}})

	start := time.Now()
	resp, body := call(t, http.MethodPost, caller.URL("/v1.0/invoke/rzd-slow/method/slow?hold=10s"), nil, nil)
	took := time.Since(start)
	if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(string(body), "ERR_DIRECT_INVOKE") || !strings.Contains(string(body), "deadline") || took > 5*time.Second {
		t.Errorf("a call slower than the default 500ms timeout: %d %s after %v", resp.StatusCode, body, took)
	}
	if resp, body := call(t, http.MethodPost, caller.URL("/v1.0/invoke/rzd-slow/method/slow?hold=1ms"), nil, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("a quick call: %d %s", resp.StatusCode, body)
	}
	client := runtimev1pb.NewDaprClient(caller.Dial(t))
	_, err := client.InvokeService(callCtx(t), &runtimev1pb.InvokeServiceRequest{Id: "rzd-slow", Message: &commonv1pb.InvokeRequest{
		Method: "slow", HttpExtension: &commonv1pb.HTTPExtension{Verb: commonv1pb.HTTPExtension_POST, Querystring: "hold=10s"},
	}})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("gRPC InvokeService slower than the default timeout: %v", err)
	}
}
