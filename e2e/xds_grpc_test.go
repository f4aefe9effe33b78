package e2e

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/xds"

	"github.com/outrigger/outrigger/e2e/framework"
	"github.com/outrigger/outrigger/mtls"
)

const proxylessPolicy = `apiVersion: dapr.io/v1alpha1
kind: Configuration
spec:
  accessControl:
    defaultAction: deny
    trustDomain: public
    policies:
    - appId: grpc-client
      defaultAction: deny
      trustDomain: public
      namespace: default
      operations:
      - name: /grpc.testing.TestService/UnaryCall
        action: allow
`

// TestProxylessGRPCClient: a gRPC client using grpc-go's own xDS resolver
// (xds:///<app-id>), bootstrapped at the control plane as a node of its
// own with an SVID from the CA, gets the app's Listener, route, cluster
// and endpoints, and calls the app through the callee's sidecar over mutual
// TLS, with access control applied to its proven identity.
func TestProxylessGRPCClient(t *testing.T) {
	t.Parallel()
	dir := framework.ShortTempDir(t)
	resources := filepath.Join(dir, "resources")
	if err := os.Mkdir(resources, 0o755); err != nil {
		t.Fatal(err)
	}
	cp := framework.StartControlPlane(t, framework.ControlPlaneOptions{ResourcesPaths: []string{resources}})
	app := framework.StartGRPCApp(t)
	cfg := filepath.Join(dir, "config.yaml")
	writeFile(t, cfg, proxylessPolicy)
	framework.StartSidecar(t, framework.SidecarOptions{
		AppID: "grpc-callee", AppPort: app.Port, AppProtocol: "grpc", MTLS: cp,
		Args: []string{"--control-plane-address", cp.Addr, "--name-resolution", "registry", "--config", cfg},
	})

	// The client's identity, as files grpc-go's file_watcher reads.
	m := workload(t, cp, "grpc-client")
	svid, err := m.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(svid.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "svid.pem"), filepath.Join(dir, "svid.key")
	writeFile(t, certFile, string(mtls.CertsPEM(svid.Certificates)))
	writeFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})))
	files := map[string]string{"certificate_file": certFile, "private_key_file": keyFile, "ca_certificate_file": cp.TrustAnchors()}
	bootstrap, err := json.Marshal(map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri":      cp.Addr,
			"channel_creds":   []any{map[string]any{"type": "tls", "config": files}},
			"server_features": []string{"xds_v3"},
		}},
		"node": map[string]any{"id": "spiffe://public/ns/default/grpc-client"},
		"certificate_providers": map[string]any{
			"outrigger": map[string]any{"plugin_name": "file_watcher", "config": map[string]any{
				"certificate_file": certFile, "private_key_file": keyFile, "ca_certificate_file": cp.TrustAnchors(), "refresh_interval": "600s",
			}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	builder, err := xds.NewXDSResolverWithConfigForTesting(bootstrap)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("xds:///grpc-callee", grpc.WithTransportCredentials(creds), grpc.WithResolvers(builder))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := testgrpc.NewTestServiceClient(conn)
	framework.WaitFor(t, "the proxyless client's call to go through", func() error {
		resp, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("xds")}})
		if err != nil {
			return err
		}
		if string(resp.GetPayload().GetBody()) != "xds" {
			return fmt.Errorf("payload %q", resp.GetPayload().GetBody())
		}
		return nil
	})
	wantMD(t, app.Metadata("/grpc.testing.TestService/UnaryCall"), "dapr-caller-app-id", "grpc-client")
	if _, err := client.EmptyCall(callCtx(t), &testgrpc.Empty{}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("EmptyCall, which the policy denies: %v", err)
	}

	// A Resiliency document reaches the client as the route's Envoy
	// fields, and grpc-go applies them. Without one, a failure is final.
	const unary = "/grpc.testing.TestService/UnaryCall"
	req := &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("again")}}
	app.FailNext(1, codes.Unavailable)
	if _, err := client.UnaryCall(callCtx(t), req); status.Code(err) != codes.Unavailable {
		t.Fatalf("a failing call with no retry policy: %v", err)
	}
	writeFile(t, filepath.Join(resources, "resiliency.yaml"), proxylessResiliency)
	framework.WaitFor(t, "the control plane's retry policy to reach the client", func() error {
		app.FailNext(2, codes.Unavailable)
		before := app.Calls(unary)
		if _, err := client.UnaryCall(callCtx(t), req); err != nil {
			return err
		}
		if n := app.Calls(unary) - before; n != 3 {
			return fmt.Errorf("%d attempts, want 3 (two failures, then the answer)", n)
		}
		return nil
	})
	// A code the policy does not name is not retried.
	app.FailNext(1, codes.Internal)
	before := app.Calls(unary)
	if _, err := client.UnaryCall(callCtx(t), req); status.Code(err) != codes.Internal || app.Calls(unary)-before != 1 {
		t.Errorf("INTERNAL, which the policy does not retry: %v after %d attempts", err, app.Calls(unary)-before)
	}
	// The policy's timeout cuts a slow call short; the caller's own
	// deadline is far later.
	app.FailNext(0, codes.OK)
	app.SetDelay(time.Minute)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Second)
	defer cancel()
	start := time.Now()
	_, err = client.UnaryCall(ctx, req)
	if status.Code(err) != codes.DeadlineExceeded || time.Since(start) > 40*time.Second {
		t.Errorf("a call slower than the policy's 1s timeout: %v after %v", err, time.Since(start))
	}
	app.SetDelay(0)
}

// proxylessResiliency is the client's policy for calls to grpc-callee.
const proxylessResiliency = `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: client-policy
scopes: [grpc-client]
spec:
  policies:
    timeouts:
      short: 1s
    retries:
      unavailable:
        policy: constant
        duration: 10ms
        maxRetries: 3
        matching:
          gRPCStatusCodes: "14"
  targets:
    apps:
      grpc-callee:
        timeout: short
        retry: unavailable
`
