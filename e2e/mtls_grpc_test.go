package e2e

import (
	"context"
	"io"
	"testing"

	commonv1pb "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/outrigger/outrigger/e2e/framework"
)

const grpcPolicy = `apiVersion: dapr.io/v1alpha1
kind: Configuration
spec:
  accessControl:
    defaultAction: deny
    trustDomain: public
    policies:
    - appId: caller
      defaultAction: deny
      trustDomain: public
      namespace: default
      operations:
      - name: /grpc.testing.TestService/UnaryCall
        action: allow
      - name: /grpc.testing.TestService/FullDuplexCall
        action: allow
      - name: /orders/*
        action: allow
`

// TestMTLSGRPC: gRPC proxying (unary and bidirectional streaming) and
// OnInvoke delivery to a gRPC app over mutual TLS, with the access-control
// policy deciding per full method and per invoked method.
func TestMTLSGRPC(t *testing.T) {
	t.Parallel()
	cp := framework.StartControlPlane(t, framework.ControlPlaneOptions{})
	app := framework.StartGRPCApp(t)
	cfg := framework.ShortTempDir(t) + "/config.yaml"
	writeFile(t, cfg, grpcPolicy)
	_, caller := pair(t,
		framework.SidecarOptions{AppPort: app.Port, AppProtocol: "grpc", MTLS: cp, Args: []string{"--config", cfg}},
		framework.SidecarOptions{MTLS: cp})
	conn := caller.Dial(t)
	client := testgrpc.NewTestServiceClient(conn)
	ctx := func(t *testing.T) context.Context {
		return metadata.AppendToOutgoingContext(callCtx(t), "dapr-app-id", "callee", "dapr-caller-app-id", "spoofed")
	}

	t.Run("allowed unary", func(t *testing.T) {
		resp, err := client.UnaryCall(ctx(t), &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("ping")}})
		if err != nil {
			t.Fatalf("UnaryCall: %v", err)
		}
		if string(resp.GetPayload().GetBody()) != "ping" {
			t.Errorf("payload %q", resp.GetPayload().GetBody())
		}
		wantMD(t, app.Metadata("/grpc.testing.TestService/UnaryCall"), "dapr-caller-app-id", "caller")
	})

	t.Run("allowed bidi stream", func(t *testing.T) {
		stream, err := client.FullDuplexCall(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if err := stream.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: int32(10 + i)}}}); err != nil {
				t.Fatal(err)
			}
			resp, err := stream.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if n := len(resp.GetPayload().GetBody()); n != 10+i {
				t.Errorf("message %d: %d bytes, want %d", i, n, 10+i)
			}
		}
		_ = stream.CloseSend()
		if _, err := stream.Recv(); err != io.EOF {
			t.Errorf("end of stream: %v", err)
		}
	})

	t.Run("denied method", func(t *testing.T) {
		_, err := client.EmptyCall(ctx(t), &testgrpc.Empty{})
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("EmptyCall: %v, want PermissionDenied", err)
		}
	})

	t.Run("OnInvoke by the policy", func(t *testing.T) {
		dapr := runtimev1pb.NewDaprClient(conn)
		invoke := func(method string) error {
			_, err := dapr.InvokeService(callCtx(t), &runtimev1pb.InvokeServiceRequest{Id: "callee", Message: &commonv1pb.InvokeRequest{
				Method: method, Data: &anypb.Any{Value: []byte("x")},
				HttpExtension: &commonv1pb.HTTPExtension{Verb: commonv1pb.HTTPExtension_GET},
			}})
			return err
		}
		if err := invoke("orders/1"); err != nil {
			t.Errorf("orders/1: %v", err)
		}
		if err := invoke("admin"); status.Code(err) != codes.PermissionDenied {
			t.Errorf("admin: %v, want PermissionDenied", err)
		}
	})
}
