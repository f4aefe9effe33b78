package e2e

import (
	"net/http"
	"strconv"
	"testing"

	dapr "github.com/dapr/go-sdk/client"

	"github.com/outrigger/outrigger/e2e/framework"
)

// TestDaprGoSDK uses the official Dapr Go SDK as the client of the caller
// sidecar: InvokeMethod and InvokeMethodWithContent, to an HTTP app and to a
// gRPC app.
func TestDaprGoSDK(t *testing.T) {
	t.Parallel()
	httpApp := framework.StartHTTPApp(t, framework.HTTPAppOptions{})
	grpcApp := framework.StartGRPCApp(t)
	httpCallee := framework.StartSidecar(t, framework.SidecarOptions{AppID: "http-callee", AppPort: httpApp.Port})
	grpcCallee := framework.StartSidecar(t, framework.SidecarOptions{AppID: "grpc-callee", AppPort: grpcApp.Port, AppProtocol: "grpc"})
	caller := framework.StartSidecar(t, framework.SidecarOptions{AppID: "sdk-caller", Resolve: []framework.Endpoint{httpCallee.Endpoint(), grpcCallee.Endpoint()}})

	client, err := dapr.NewClientWithPort(strconv.Itoa(caller.GRPCPort))
	if err != nil {
		t.Fatalf("NewClientWithPort(%d): %v", caller.GRPCPort, err)
	}
	t.Cleanup(client.Close)

	t.Run("InvokeMethod HTTP app", func(t *testing.T) {
		out, err := client.InvokeMethod(callCtx(t), "http-callee", "echo/sdk?x=1&y=2", "get")
		if err != nil {
			t.Fatalf("InvokeMethod: %v", err)
		}
		e := echoOf(t, out)
		if e.Method != http.MethodGet || e.Path != "/echo/sdk" || e.RawQuery != "x=1&y=2" || e.Body != "" {
			t.Errorf("app saw %s %s?%s body %q, want GET /echo/sdk?x=1&y=2 without a body", e.Method, e.Path, e.RawQuery, e.Body)
		}
		wantDaprHeaders(t, e.Header, "sdk-caller", "http-callee")
	})

	t.Run("InvokeMethodWithContent HTTP app", func(t *testing.T) {
		out, err := client.InvokeMethodWithContent(callCtx(t), "http-callee", "echo/sdk/content", "post",
			&dapr.DataContent{ContentType: "application/json", Data: []byte(`{"k":"v"}`)})
		if err != nil {
			t.Fatalf("InvokeMethodWithContent: %v", err)
		}
		e := echoOf(t, out)
		if e.Method != http.MethodPost || e.Path != "/echo/sdk/content" || e.Body != `{"k":"v"}` {
			t.Errorf("app saw %s %s body %q, want POST /echo/sdk/content body {\"k\":\"v\"}", e.Method, e.Path, e.Body)
		}
		if ct := http.Header(e.Header).Get("Content-Type"); ct != "application/json" {
			t.Errorf("app saw Content-Type %q, want application/json", ct)
		}
	})

	t.Run("InvokeMethod gRPC app", func(t *testing.T) {
		out, err := client.InvokeMethod(callCtx(t), "grpc-callee", "echo/sdk?q=z", "get")
		if err != nil {
			t.Fatalf("InvokeMethod: %v", err)
		}
		e := invokeEchoOf(t, out)
		if e.Method != "echo/sdk" || e.Verb != "GET" || e.Querystring != "q=z" {
			t.Errorf("app saw %+v, want method echo/sdk, verb GET, query q=z", e)
		}
		wantMD(t, e.Metadata, "dapr-caller-app-id", "sdk-caller")
	})

	t.Run("InvokeMethodWithContent gRPC app", func(t *testing.T) {
		out, err := client.InvokeMethodWithContent(callCtx(t), "grpc-callee", "echo/sdk/content", "put",
			&dapr.DataContent{ContentType: "text/plain", Data: []byte("sdk data")})
		if err != nil {
			t.Fatalf("InvokeMethodWithContent: %v", err)
		}
		e := invokeEchoOf(t, out)
		if e.Method != "echo/sdk/content" || e.Verb != "PUT" || e.Data != "sdk data" || e.ContentType != "text/plain" {
			t.Errorf("app saw %+v, want method echo/sdk/content, verb PUT, data %q, content type text/plain", e, "sdk data")
		}
	})

	t.Run("InvokeMethod error", func(t *testing.T) {
		if _, err := client.InvokeMethod(callCtx(t), "http-callee", "fail/500", "post"); err == nil {
			t.Error("InvokeMethod of an app answering 500: no error")
		}
	})
}
