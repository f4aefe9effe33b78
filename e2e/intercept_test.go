package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/outrigger/outrigger/e2e/framework"
)

// grpcClientEnv, set to a target ("orders:50051"), makes the test binary a
// plain gRPC client of grpc-go's TestService instead of running tests (see
// TestMain): a program that knows nothing of Dapr, which takes its proxy
// from the environment (grpc_proxy) as any grpc-go program does.
const grpcClientEnv = "OUTRIGGER_E2E_GRPC_CLIENT"

// grpcClientMain makes one unary call and one bidirectional stream of
// three messages to target, printing the answers; its exit code is 0 when
// every answer came back.
func grpcClientMain(target string) int {
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "grpc client:", err)
		return 1
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tc := testgrpc.NewTestServiceClient(conn)
	out, err := tc.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("unary through the proxy")}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "UnaryCall:", err)
		return 1
	}
	fmt.Printf("unary: %s\n", out.GetPayload().GetBody())
	stream, err := tc.FullDuplexCall(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "FullDuplexCall:", err)
		return 1
	}
	for i := range 3 {
		if err := stream.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte("ping " + strconv.Itoa(i))}}); err != nil {
			fmt.Fprintln(os.Stderr, "send:", err)
			return 1
		}
		in, err := stream.Recv()
		if err != nil {
			fmt.Fprintln(os.Stderr, "recv:", err)
			return 1
		}
		fmt.Printf("stream: %s\n", in.GetPayload().GetBody())
	}
	if err := stream.CloseSend(); err != nil {
		fmt.Fprintln(os.Stderr, "close:", err)
		return 1
	}
	if _, err := stream.Recv(); err != io.EOF {
		fmt.Fprintln(os.Stderr, "end of stream:", err)
		return 1
	}
	return 0
}

// TestExplicitProxyMode: an app that knows nothing of Dapr (curl, and a
// plain grpc-go client) calls other apps by name through its sidecar's
// explicit proxy (HTTP_PROXY, grpc_proxy), and the calls go over the mesh
// with mutual TLS: the callees' apps see the caller's proven app-id. A
// destination outside the mesh passes through untouched.
func TestExplicitProxyMode(t *testing.T) {
	t.Parallel()
	cp := framework.StartControlPlane(t, framework.ControlPlaneOptions{})
	web := framework.StartHTTPApp(t, framework.HTTPAppOptions{})
	grpcApp := framework.StartGRPCApp(t)
	webSC := framework.StartSidecar(t, framework.SidecarOptions{AppID: "xp-web", AppPort: web.Port, MTLS: cp})
	grpcSC := framework.StartSidecar(t, framework.SidecarOptions{AppID: "xp-grpc", AppPort: grpcApp.Port, AppProtocol: "grpc", MTLS: cp})
	proxyPort := framework.FreePort(t)
	caller := framework.StartSidecar(t, framework.SidecarOptions{AppID: "xp-caller", MTLS: cp,
		Resolve: []framework.Endpoint{webSC.Endpoint(), grpcSC.Endpoint()},
		Args:    []string{"--enable-explicit-proxy", "--proxy-port", strconv.Itoa(proxyPort)}})
	proxyURL := "http://127.0.0.1:" + strconv.Itoa(proxyPort)
	appEnv := append(os.Environ(), "http_proxy="+proxyURL, "HTTPS_PROXY="+proxyURL, "grpc_proxy="+proxyURL, "NO_PROXY=", "no_proxy=")

	t.Run("curl", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "curl", "-sS", "--fail-with-body", "-X", "POST", "--data-binary", "from curl", "http://xp-web/echo/curl?x=1")
		cmd.Env = appEnv
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("curl: %v %s", err, out)
		}
		e := echoOf(t, out)
		if e.Path != "/echo/curl" || e.RawQuery != "x=1" || e.Body != "from curl" {
			t.Errorf("the app saw %+v", e)
		}
		if got := http.Header(e.Header).Get("Dapr-Caller-App-Id"); got != "xp-caller" {
			t.Errorf("the app saw dapr-caller-app-id %q, want the proven caller xp-caller", got)
		}
	})

	t.Run("grpc-go", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, os.Args[0])
		cmd.Env = append(appEnv, grpcClientEnv+"=xp-grpc:50051")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("the gRPC client: %v\n%s", err, out)
		}
		for _, want := range []string{"unary: unary through the proxy", "stream: ping 0", "stream: ping 2"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("the gRPC client printed %q, want %q", out, want)
			}
		}
		md := grpcApp.Metadata("/grpc.testing.TestService/UnaryCall")
		if got := md.Get("dapr-caller-app-id"); len(got) != 1 || got[0] != "xp-caller" {
			t.Errorf("the gRPC app saw dapr-caller-app-id %v, want the proven caller xp-caller", got)
		}
	})

	t.Run("outside the mesh", func(t *testing.T) {
		outside := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "outside saw %s caller=%q", r.URL.Path, r.Header.Get("Dapr-Caller-App-Id"))
		}))
		defer outside.Close()
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		// --noproxy '' makes curl use the proxy even for a loopback
		// address, as it would for any outside host.
		cmd := exec.CommandContext(ctx, "curl", "-sS", "--fail-with-body", "--noproxy", "", outside.URL+"/plain")
		cmd.Env = appEnv
		out, err := cmd.Output()
		if err != nil || string(out) != `outside saw /plain caller=""` {
			t.Fatalf("pass-through: %v %q", err, out)
		}
		if v := metricValue(t, caller, "outrigger_interception_requests_total", `kind="request",route="passthrough"`); v != 1 {
			t.Errorf("pass-through requests counted: %v, want 1 (curl went through the proxy)", v)
		}
		if v := metricValue(t, caller, "outrigger_interception_requests_total", `kind="connect",route="mesh"`); v < 1 {
			t.Errorf("gRPC tunnels to apps counted: %v, want at least 1", v)
		}
	})
}
