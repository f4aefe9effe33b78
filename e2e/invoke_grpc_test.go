package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	commonv1pb "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/outrigger/outrigger/e2e/framework"
)

// TestInvokeServiceHTTPCallee calls Dapr/InvokeService on the caller's gRPC
// API for an HTTP app: the http_extension's verb and query string, the data,
// the content type and the metadata reach the app as an HTTP request.
func TestInvokeServiceHTTPCallee(t *testing.T) {
	t.Parallel()
	app := framework.StartHTTPApp(t, framework.HTTPAppOptions{})
	_, caller := pair(t, framework.SidecarOptions{AppPort: app.Port}, framework.SidecarOptions{})
	client := runtimev1pb.NewDaprClient(caller.Dial(t))

	t.Run("PUT with query and data", func(t *testing.T) {
		ctx := metadata.AppendToOutgoingContext(callCtx(t), "x-custom", "from-grpc", "traceparent", traceparent)
		var hdr metadata.MD
		resp, err := client.InvokeService(ctx, &runtimev1pb.InvokeServiceRequest{
			Id: "callee",
			Message: &commonv1pb.InvokeRequest{
				Method:        "echo/grpc/path",
				Data:          &anypb.Any{Value: []byte("grpc body")},
				ContentType:   "text/plain",
				HttpExtension: &commonv1pb.HTTPExtension{Verb: commonv1pb.HTTPExtension_PUT, Querystring: "a=1&b=x%20y"},
			},
		}, grpc.Header(&hdr))
		if err != nil {
			t.Fatalf("InvokeService: %v", err)
		}
		if ct := resp.GetContentType(); ct != "application/json" {
			t.Errorf("response content type %q, want the app's application/json", ct)
		}
		var e framework.Echo
		if err := json.Unmarshal(resp.GetData().GetValue(), &e); err != nil {
			t.Fatalf("response data %q is not the app's echo: %v", resp.GetData().GetValue(), err)
		}
		if e.Method != http.MethodPut || e.Path != "/echo/grpc/path" || e.RawQuery != "a=1&b=x%20y" || e.Body != "grpc body" {
			t.Errorf("app saw %s %s?%s body %q, want PUT /echo/grpc/path?a=1&b=x%%20y body %q", e.Method, e.Path, e.RawQuery, e.Body, "grpc body")
		}
		h := http.Header(e.Header)
		if v := h.Get("Content-Type"); v != "text/plain" {
			t.Errorf("app saw Content-Type %q, want text/plain", v)
		}
		if v := h.Get("X-Custom"); v != "from-grpc" {
			t.Errorf("app saw X-Custom %q, want the caller's gRPC metadata from-grpc", v)
		}
		wantDaprHeaders(t, h, "caller", "callee")
		wantTrace(t, h.Get("Traceparent"))
		if v := hdr.Get("dapr-http-status"); len(v) != 1 || v[0] != "200" {
			t.Errorf("response header dapr-http-status %q, want [200] as daprd sends", v)
		}
	})

	t.Run("GET without data", func(t *testing.T) {
		resp, err := client.InvokeService(callCtx(t), &runtimev1pb.InvokeServiceRequest{
			Id: "callee",
			Message: &commonv1pb.InvokeRequest{
				Method:        "echo/get",
				HttpExtension: &commonv1pb.HTTPExtension{Verb: commonv1pb.HTTPExtension_GET},
			},
		})
		if err != nil {
			t.Fatalf("InvokeService: %v", err)
		}
		var e framework.Echo
		if err := json.Unmarshal(resp.GetData().GetValue(), &e); err != nil {
			t.Fatalf("response data %q is not the app's echo: %v", resp.GetData().GetValue(), err)
		}
		if e.Method != http.MethodGet || e.Path != "/echo/get" || e.Body != "" {
			t.Errorf("app saw %s %s body %q, want GET /echo/get with no body", e.Method, e.Path, e.Body)
		}
	})

	t.Run("callee 404", func(t *testing.T) {
		var hdr metadata.MD
		_, err := client.InvokeService(callCtx(t), &runtimev1pb.InvokeServiceRequest{
			Id: "callee",
			Message: &commonv1pb.InvokeRequest{
				Method:        "fail/404",
				HttpExtension: &commonv1pb.HTTPExtension{Verb: commonv1pb.HTTPExtension_POST},
			},
		}, grpc.Header(&hdr))
		if status.Code(err) != codes.NotFound {
			t.Errorf("InvokeService of an app answering 404: %v, want code NotFound as daprd", err)
		}
		if v := hdr.Get("dapr-http-status"); len(v) != 1 || v[0] != "404" {
			t.Errorf("response header dapr-http-status %q, want [404]", v)
		}
	})

	t.Run("unknown app", func(t *testing.T) {
		_, err := client.InvokeService(callCtx(t), &runtimev1pb.InvokeServiceRequest{
			Id:      "nobody",
			Message: &commonv1pb.InvokeRequest{Method: "x", HttpExtension: &commonv1pb.HTTPExtension{Verb: commonv1pb.HTTPExtension_GET}},
		})
		if status.Code(err) != codes.Internal {
			t.Errorf("InvokeService to an unknown app: %v, want code Internal as daprd's ERR_DIRECT_INVOKE", err)
		}
	})
}

// TestInvokeGRPCCallee invokes a gRPC app (AppCallback/OnInvoke) through two
// sidecars, from the gRPC API and from the HTTP API.
func TestInvokeGRPCCallee(t *testing.T) {
	t.Parallel()
	app := framework.StartGRPCApp(t)
	_, caller := pair(t, framework.SidecarOptions{AppPort: app.Port, AppProtocol: "grpc"}, framework.SidecarOptions{})
	client := runtimev1pb.NewDaprClient(caller.Dial(t))

	t.Run("InvokeService", func(t *testing.T) {
		ctx := metadata.AppendToOutgoingContext(callCtx(t), "x-custom", "md-value")
		resp, err := client.InvokeService(ctx, &runtimev1pb.InvokeServiceRequest{
			Id: "callee",
			Message: &commonv1pb.InvokeRequest{
				Method:        "echo/m",
				Data:          &anypb.Any{Value: []byte("to a gRPC app")},
				ContentType:   "text/plain",
				HttpExtension: &commonv1pb.HTTPExtension{Verb: commonv1pb.HTTPExtension_POST, Querystring: "q=1"},
			},
		})
		if err != nil {
			t.Fatalf("InvokeService: %v", err)
		}
		e := invokeEchoOf(t, resp.GetData().GetValue())
		if e.Method != "echo/m" || e.Data != "to a gRPC app" || e.ContentType != "text/plain" || e.Verb != "POST" || e.Querystring != "q=1" {
			t.Errorf("app saw %+v, want method echo/m, data %q, content type text/plain, verb POST, query q=1", e, "to a gRPC app")
		}
		wantMD(t, e.Metadata, "x-custom", "md-value")
		wantMD(t, e.Metadata, "dapr-caller-app-id", "caller")
		wantMD(t, e.Metadata, "dapr-callee-app-id", "callee")
		if ct := resp.GetContentType(); ct != "application/json" {
			t.Errorf("response content type %q, want the app's application/json", ct)
		}
	})

	t.Run("InvokeService app error", func(t *testing.T) {
		_, err := client.InvokeService(callCtx(t), &runtimev1pb.InvokeServiceRequest{
			Id:      "callee",
			Message: &commonv1pb.InvokeRequest{Method: fmt.Sprintf("fail/%d", codes.NotFound), HttpExtension: &commonv1pb.HTTPExtension{Verb: commonv1pb.HTTPExtension_POST}},
		})
		if status.Code(err) != codes.NotFound {
			t.Errorf("InvokeService of an app failing with NotFound: %v, want code NotFound", err)
		}
	})

	t.Run("HTTP API", func(t *testing.T) {
		resp, got := call(t, http.MethodPatch, caller.URL("/v1.0/invoke/callee/method/echo/from-http?x=2"), strings.NewReader("http to grpc"),
			http.Header{"Content-Type": {"text/plain"}, "X-Custom": {"hv"}})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d, body %q, want 200", resp.StatusCode, truncate(got))
		}
		e := invokeEchoOf(t, got)
		if e.Method != "echo/from-http" || e.Data != "http to grpc" || e.Verb != "PATCH" || e.Querystring != "x=2" || e.ContentType != "text/plain" {
			t.Errorf("app saw %+v, want method echo/from-http, data %q, verb PATCH, query x=2, content type text/plain", e, "http to grpc")
		}
		wantMD(t, e.Metadata, "x-custom", "hv")
		wantMD(t, e.Metadata, "dapr-caller-app-id", "caller")
	})

	t.Run("HTTP API app error", func(t *testing.T) {
		// daprd answers an HTTP caller with the HTTP status of the app's gRPC code.
		resp, got := call(t, http.MethodPost, caller.URL(fmt.Sprintf("/v1.0/invoke/callee/method/fail/%d", codes.NotFound)), nil, nil)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("status %d (body %q), want 404 for the app's NotFound", resp.StatusCode, truncate(got))
		}
	})
}

func invokeEchoOf(t *testing.T, b []byte) framework.InvokeEcho {
	t.Helper()
	var e framework.InvokeEcho
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("answer %q is not the gRPC app's echo: %v", truncate(b), err)
	}
	return e
}

func wantMD(t *testing.T, md map[string][]string, key, want string) {
	t.Helper()
	if v := md[key]; len(v) != 1 || v[0] != want {
		t.Errorf("app saw metadata %s %q, want [%s]", key, v, want)
	}
}

// TestGRPCProxy calls grpc-go's interop TestService of a gRPC app through
// the caller sidecar's gRPC port with dapr-app-id metadata: unary, server
// streaming and bidirectional streaming.
func TestGRPCProxy(t *testing.T) {
	t.Parallel()
	app := framework.StartGRPCApp(t)
	_, caller := pair(t, framework.SidecarOptions{AppPort: app.Port, AppProtocol: "grpc"}, framework.SidecarOptions{})
	client := testgrpc.NewTestServiceClient(caller.Dial(t))
	appCtx := func(t *testing.T) context.Context {
		return metadata.AppendToOutgoingContext(callCtx(t), "dapr-app-id", "callee", "x-custom", "proxied", "traceparent", traceparent)
	}

	t.Run("unary", func(t *testing.T) {
		var hdr, trl metadata.MD
		resp, err := client.UnaryCall(appCtx(t), &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("ping")}}, grpc.Header(&hdr), grpc.Trailer(&trl))
		if err != nil {
			t.Fatalf("UnaryCall: %v", err)
		}
		if b := resp.GetPayload().GetBody(); string(b) != "ping" {
			t.Errorf("payload %q, want ping", b)
		}
		if v := hdr.Get("x-app-header"); len(v) != 1 || v[0] != "unary" {
			t.Errorf("header x-app-header %q, want the app's [unary]", v)
		}
		if v := trl.Get("x-app-trailer"); len(v) != 1 || v[0] != "unary" {
			t.Errorf("trailer x-app-trailer %q, want the app's [unary]", v)
		}
		md := app.Metadata("/grpc.testing.TestService/UnaryCall")
		wantMD(t, md, "x-custom", "proxied")
		wantMD(t, md, "dapr-caller-app-id", "caller")
		wantMD(t, md, "dapr-callee-app-id", "callee")
		if v := md.Get("traceparent"); len(v) != 1 {
			t.Errorf("app saw traceparent %q, want one", v)
		} else {
			wantTrace(t, v[0])
		}
	})

	t.Run("unary 1 MiB answer", func(t *testing.T) {
		resp, err := client.UnaryCall(appCtx(t), &testgrpc.SimpleRequest{ResponseSize: 1 << 20})
		if err != nil {
			t.Fatalf("UnaryCall: %v", err)
		}
		want, _ := io.ReadAll(framework.Pattern(1, 1<<20))
		if !bytes.Equal(resp.GetPayload().GetBody(), want) {
			t.Errorf("payload of %d bytes differs from the app's %d", len(resp.GetPayload().GetBody()), len(want))
		}
	})

	t.Run("unary status", func(t *testing.T) {
		_, err := client.UnaryCall(appCtx(t), &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.NotFound), Message: "no such thing"}})
		if st := status.Convert(err); st.Code() != codes.NotFound || st.Message() != "no such thing" {
			t.Errorf("UnaryCall: %v, want the app's NotFound \"no such thing\"", err)
		}
	})

	t.Run("server streaming", func(t *testing.T) {
		sizes := []int32{1, 100, 10_000, 100_000, 1_000_000, 0, 7}
		req := &testgrpc.StreamingOutputCallRequest{}
		for _, s := range sizes {
			req.ResponseParameters = append(req.ResponseParameters, &testgrpc.ResponseParameters{Size: s})
		}
		stream, err := client.StreamingOutputCall(appCtx(t), req)
		if err != nil {
			t.Fatalf("StreamingOutputCall: %v", err)
		}
		for i, s := range sizes {
			resp, err := stream.Recv()
			if err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
			want, _ := io.ReadAll(framework.Pattern(uint64(i), int64(s)))
			if !bytes.Equal(resp.GetPayload().GetBody(), want) {
				t.Errorf("message %d: %d bytes differing from the app's %d", i, len(resp.GetPayload().GetBody()), s)
			}
		}
		if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
			t.Errorf("after %d messages: %v, want io.EOF", len(sizes), err)
		}
		if hdr, err := stream.Header(); err != nil || len(hdr.Get("x-app-header")) != 1 {
			t.Errorf("header %v (%v), want the app's x-app-header", hdr, err)
		}
		if v := stream.Trailer().Get("x-app-trailer"); len(v) != 1 || v[0] != "server-streaming" {
			t.Errorf("trailer x-app-trailer %q, want the app's [server-streaming]", v)
		}
		md := app.Metadata("/grpc.testing.TestService/StreamingOutputCall")
		wantMD(t, md, "dapr-caller-app-id", "caller")
	})

	t.Run("server streaming status", func(t *testing.T) {
		stream, err := client.StreamingOutputCall(appCtx(t), &testgrpc.StreamingOutputCallRequest{
			ResponseParameters: []*testgrpc.ResponseParameters{{Size: 10}},
			ResponseStatus:     &testgrpc.EchoStatus{Code: int32(codes.FailedPrecondition), Message: "after one"},
		})
		if err != nil {
			t.Fatalf("StreamingOutputCall: %v", err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatalf("first message: %v", err)
		}
		_, err = stream.Recv()
		if st := status.Convert(err); st.Code() != codes.FailedPrecondition || st.Message() != "after one" {
			t.Errorf("end of stream: %v, want the app's FailedPrecondition \"after one\"", err)
		}
	})

	t.Run("bidi", func(t *testing.T) {
		stream, err := client.FullDuplexCall(appCtx(t))
		if err != nil {
			t.Fatalf("FullDuplexCall: %v", err)
		}
		// Ping-pong: each answer must come back before the next request is
		// sent, so nothing may wait for the whole request stream.
		for i := range 20 {
			msg := fmt.Sprintf("ping %d", i)
			if err := stream.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte(msg)}}); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
			resp, err := stream.Recv()
			if err != nil {
				t.Fatalf("recv %d: %v", i, err)
			}
			if b := resp.GetPayload().GetBody(); string(b) != msg {
				t.Fatalf("recv %d: %q, want %q", i, b, msg)
			}
		}
		// One request asking for several large answers.
		if err := stream.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 300_000}, {Size: 3}}}); err != nil {
			t.Fatalf("send: %v", err)
		}
		for i, s := range []int64{300_000, 3} {
			resp, err := stream.Recv()
			if err != nil {
				t.Fatalf("recv large %d: %v", i, err)
			}
			want, _ := io.ReadAll(framework.Pattern(uint64(i), s))
			if !bytes.Equal(resp.GetPayload().GetBody(), want) {
				t.Errorf("large answer %d: %d bytes, differing from the app's %d", i, len(resp.GetPayload().GetBody()), s)
			}
		}
		if err := stream.CloseSend(); err != nil {
			t.Fatalf("CloseSend: %v", err)
		}
		if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
			t.Errorf("after CloseSend: %v, want io.EOF", err)
		}
		if v := stream.Trailer().Get("x-app-trailer"); len(v) != 1 || v[0] != "bidi" {
			t.Errorf("trailer x-app-trailer %q, want the app's [bidi]", v)
		}
		md := app.Metadata("/grpc.testing.TestService/FullDuplexCall")
		wantMD(t, md, "dapr-caller-app-id", "caller")
		wantMD(t, md, "x-custom", "proxied")
	})

	t.Run("no dapr-app-id", func(t *testing.T) {
		_, err := client.EmptyCall(callCtx(t), &testgrpc.Empty{})
		if status.Code(err) != codes.Unimplemented {
			t.Errorf("EmptyCall without dapr-app-id: %v, want Unimplemented (the sidecar has no such service)", err)
		}
	})
}

// TestGRPCProxyMovesOffADeadInstance: a proxied gRPC call whose first
// instance cannot be reached (nothing listens there) opens its stream on
// another, so every call succeeds while one of two instances is down.
func TestGRPCProxyMovesOffADeadInstance(t *testing.T) {
	t.Parallel()
	app := framework.StartGRPCApp(t)
	callee := framework.StartSidecar(t, framework.SidecarOptions{AppID: "grpc-half", AppPort: app.Port, AppProtocol: "grpc"})
	file := filepath.Join(framework.ShortTempDir(t), "resolution.yaml")
	writeFile(t, file, fmt.Sprintf("apps:\n  - appID: grpc-half\n    addresses: [\"127.0.0.1:%d\", %q]\n", framework.FreePort(t), callee.Endpoint().Address))
	caller := framework.StartSidecar(t, framework.SidecarOptions{AppID: "grpc-half-caller", Args: []string{"--static-resolution-file", file}})
	client := testgrpc.NewTestServiceClient(caller.Dial(t))
	for i := range 10 {
		ctx := metadata.AppendToOutgoingContext(callCtx(t), "dapr-app-id", "grpc-half")
		if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("ping")}}); err != nil {
			t.Fatalf("call %d with one instance down: %v", i, err)
		}
	}
	if n := app.Calls("/grpc.testing.TestService/UnaryCall"); n != 10 {
		t.Errorf("the app saw %d calls, want 10", n)
	}
}
