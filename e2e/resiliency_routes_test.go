package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
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

const calleeTimeout = `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: callee-timeout
scopes: [caller]
spec:
  policies:
    timeouts:
      short: 500ms
  targets:
    apps:
      callee:
        timeout: short
`

// TestInvokeTimeoutFromRoutes: a development sidecar builds its routes from
// its own folder with the control plane's translation; the Resiliency
// timeout on the route to an app bounds every call to it (HTTP and gRPC),
// and removing the document lifts the bound without a restart.
func TestInvokeTimeoutFromRoutes(t *testing.T) {
	t.Parallel()
	dir := framework.ShortTempDir(t)
	policy := filepath.Join(dir, "resiliency.yaml")
	writeFile(t, policy, calleeTimeout)
	app := framework.StartHTTPApp(t, framework.HTTPAppOptions{})
	_, caller := pair(t, framework.SidecarOptions{AppPort: app.Port}, framework.SidecarOptions{Args: []string{"--resources-path", dir}})

	slow := func(ctx context.Context, hold string) (*http.Response, string, time.Duration, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, caller.URL("/v1.0/invoke/callee/method/slow?hold="+hold), nil)
		if err != nil {
			return nil, "", 0, err
		}
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, "", time.Since(start), err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, string(b), time.Since(start), err
	}

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Second)
	defer cancel()
	resp, body, took, err := slow(ctx, "30s")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(body, "ERR_DIRECT_INVOKE") || !strings.Contains(body, "deadline") || took > 20*time.Second {
		t.Fatalf("a call slower than the route's 500ms timeout: %d %q after %v", resp.StatusCode, body, took)
	}
	// A quick call passes.
	if resp, body, _, err := slow(ctx, "1ms"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("a quick call: %v %v %q", err, resp, body)
	}

	// The same bound over the gRPC API.
	client := runtimev1pb.NewDaprClient(caller.Dial(t))
	_, err = client.InvokeService(ctx, &runtimev1pb.InvokeServiceRequest{Id: "callee", Message: &commonv1pb.InvokeRequest{
		Method: "slow", HttpExtension: &commonv1pb.HTTPExtension{Verb: commonv1pb.HTTPExtension_POST, Querystring: "hold=30s"},
	}})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("gRPC InvokeService slower than the timeout: %v", err)
	}

	// Without the document the bound goes, with no restart.
	if err := os.Remove(policy); err != nil {
		t.Fatal(err)
	}
	framework.WaitFor(t, "the timeout to be lifted", func() error {
		resp, body, _, err := slow(ctx, "1500ms")
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%d %q", resp.StatusCode, body)
		}
		return nil
	})
}
