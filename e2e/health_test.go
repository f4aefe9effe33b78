package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	commonv1pb "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc/status"

	"github.com/outrigger/outrigger/e2e/framework"
)

// unhealthyMessage is daprd's error for calls to an app that failed its health checks.
const unhealthyMessage = "app is not in a healthy state"

// TestAppHealthCheck probes an HTTP app every second with a threshold of 1.
// As in daprd, an unhealthy app gets no invocations (the caller sees
// ERR_DIRECT_INVOKE with "app is not in a healthy state") while the
// sidecar's own /v1.0/healthz stays 204 (daprd's healthz does not follow the
// app's health); when the app is healthy again, invocations flow again.
func TestAppHealthCheck(t *testing.T) {
	t.Parallel()
	app := framework.StartHTTPApp(t, framework.HTTPAppOptions{})
	callee, caller := pair(t, framework.SidecarOptions{
		AppPort:        app.Port,
		AppHealthCheck: &framework.AppHealthCheck{Path: "/healthz", ProbeInterval: 1, Threshold: 1},
	}, framework.SidecarOptions{})

	invoke := func() (int, daprError, error) {
		resp, body, err := tryCall(callCtx(t), http.MethodPost, caller.URL("/v1.0/invoke/callee/method/echo/health"), strings.NewReader("h"), nil)
		if err != nil {
			return 0, daprError{}, err
		}
		var e daprError
		if resp.StatusCode != http.StatusOK {
			_ = json.Unmarshal(body, &e)
		}
		return resp.StatusCode, e, nil
	}
	wantFlowing := func() error {
		code, e, err := invoke()
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("invocation answered %d %+v", code, e)
		}
		return nil
	}

	framework.WaitFor(t, "an invocation of the healthy app", wantFlowing)
	framework.WaitFor(t, "the sidecar to probe /healthz", func() error {
		if app.HealthHits() == 0 {
			return errors.New("no probe yet")
		}
		return nil
	})

	m := getMetadata(t, callee)
	if acp := m.AppConnectionProperties; acp == nil || acp.Health == nil {
		t.Errorf("metadata has no appConnectionProperties.health with app health checks on")
	} else if h := acp.Health; h.HealthCheckPath != "/healthz" || h.HealthProbeInterval != "1s" || h.HealthThreshold != 1 {
		t.Errorf("appConnectionProperties.health %+v, want healthCheckPath /healthz, healthProbeInterval 1s, healthThreshold 1", *h)
	}

	app.SetHealth(http.StatusInternalServerError)
	framework.WaitFor(t, "invocations of the unhealthy app to be refused", func() error {
		code, e, err := invoke()
		if err != nil {
			return err
		}
		if code != http.StatusInternalServerError || e.ErrorCode != "ERR_DIRECT_INVOKE" || !strings.Contains(e.Message, unhealthyMessage) {
			return fmt.Errorf("invocation answered %d %+v, want 500 ERR_DIRECT_INVOKE %q", code, e, unhealthyMessage)
		}
		return nil
	})
	wantStatus(t, callee, http.MethodGet, "/v1.0/healthz", http.StatusNoContent)
	wantStatus(t, callee, http.MethodGet, "/v1.0/healthz/outbound", http.StatusNoContent)

	app.SetHealth(http.StatusOK)
	framework.WaitFor(t, "invocations to flow again once the app is healthy", wantFlowing)
}

// TestAppHealthCheckGRPC does the same for a gRPC app, probed through
// AppCallbackHealthCheck/HealthCheck.
func TestAppHealthCheckGRPC(t *testing.T) {
	t.Parallel()
	app := framework.StartGRPCApp(t)
	_, caller := pair(t, framework.SidecarOptions{
		AppPort: app.Port, AppProtocol: "grpc",
		AppHealthCheck: &framework.AppHealthCheck{ProbeInterval: 1, Threshold: 1},
	}, framework.SidecarOptions{})
	client := runtimev1pb.NewDaprClient(caller.Dial(t))
	invoke := func() error {
		_, err := client.InvokeService(callCtx(t), &runtimev1pb.InvokeServiceRequest{
			Id:      "callee",
			Message: &commonv1pb.InvokeRequest{Method: "echo", HttpExtension: &commonv1pb.HTTPExtension{Verb: commonv1pb.HTTPExtension_POST}},
		})
		return err
	}

	framework.WaitFor(t, "an invocation of the healthy app", invoke)
	app.SetHealthy(false)
	framework.WaitFor(t, "invocations of the unhealthy app to be refused", func() error {
		err := invoke()
		if err == nil {
			return errors.New("the invocation succeeded")
		}
		if !strings.Contains(status.Convert(err).Message(), unhealthyMessage) {
			return fmt.Errorf("invocation failed with %v, want %q", err, unhealthyMessage)
		}
		return nil
	})
	app.SetHealthy(true)
	framework.WaitFor(t, "invocations to flow again once the app is healthy", invoke)
}
