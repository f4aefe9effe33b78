package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	commonv1pb "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"

	outriggerv1alpha1 "github.com/outrigger/outrigger/xds/api/v1alpha1"
)

// callbackApp is a gRPC app: AppCallback echoes, TestService is grpc's interop server.
type callbackApp struct {
	runtimev1pb.UnimplementedAppCallbackServer
}

func (callbackApp) OnInvoke(ctx context.Context, in *commonv1pb.InvokeRequest) (*commonv1pb.InvokeResponse, error) {
	if in.GetMethod() == "fail" {
		return nil, status.Error(codes.NotFound, "no such thing")
	}
	md, _ := metadata.FromIncomingContext(ctx)
	caller := ""
	if v := md.Get("dapr-caller-app-id"); len(v) > 0 {
		caller = v[0]
	}
	return &commonv1pb.InvokeResponse{
		ContentType: "text/plain",
		Data:        &anypb.Any{TypeUrl: in.GetData().GetTypeUrl(), Value: []byte(in.GetMethod() + "|" + in.GetHttpExtension().GetVerb().String() + "|" + in.GetHttpExtension().GetQuerystring() + "|" + caller + "|" + string(in.GetData().GetValue()))},
	}, nil
}

func startGRPCApp(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	runtimev1pb.RegisterAppCallbackServer(srv, callbackApp{})
	testgrpc.RegisterTestServiceServer(srv, interop.NewTestServer())
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	return l.Addr().(*net.TCPAddr).Port
}

func grpcPair(t *testing.T) (caller *Sidecar) {
	t.Helper()
	port := startGRPCApp(t)
	res := &mapResolver{}
	callee := startSidecar(t, Config{AppID: "callee", AppPort: port, AppProtocol: ProtocolGRPC, Resolver: res})
	res.set("callee", "default", "127.0.0.1:"+strconv.Itoa(callee.Ports().Internal))
	waitHealthy(t, callee)
	return startSidecar(t, Config{AppID: "caller", Resolver: res})
}

func dial(t *testing.T, port int) *grpc.ClientConn {
	t.Helper()
	c, err := grpc.NewClient("127.0.0.1:"+strconv.Itoa(port), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestInvokeServiceToGRPCApp(t *testing.T) {
	caller := grpcPair(t)
	client := runtimev1pb.NewDaprClient(dial(t, caller.Ports().GRPC))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := client.InvokeService(ctx, &runtimev1pb.InvokeServiceRequest{
		Id: "callee",
		Message: &commonv1pb.InvokeRequest{
			Method: "hello", ContentType: "text/plain",
			Data:          &anypb.Any{TypeUrl: "type.example/x", Value: []byte("hi")},
			HttpExtension: &commonv1pb.HTTPExtension{Verb: commonv1pb.HTTPExtension_PUT, Querystring: "a=1"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(resp.GetData().GetValue()), "hello|PUT|a=1|caller|hi"; got != want {
		t.Errorf("data = %q, want %q", got, want)
	}
	if got := resp.GetData().GetTypeUrl(); got != "type.example/x" {
		t.Errorf("type url = %q", got)
	}
	_, err = client.InvokeService(ctx, &runtimev1pb.InvokeServiceRequest{Id: "callee", Message: &commonv1pb.InvokeRequest{Method: "fail"}})
	if status.Code(err) != codes.NotFound {
		t.Errorf("fail: got %v, want NotFound", err)
	}
	// The HTTP API reaches the gRPC app too.
	hresp, err := http.Post("http://127.0.0.1:"+strconv.Itoa(caller.Ports().HTTP)+"/v1.0/invoke/callee/method/hello?b=2", "text/plain", io.NopCloser(stringsReader("yo")))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(hresp.Body)
	hresp.Body.Close()
	if string(b) != "hello|POST|b=2|caller|yo" {
		t.Errorf("HTTP to gRPC app: %d %q", hresp.StatusCode, b)
	}
}

func TestInvokeServiceToHTTPApp(t *testing.T) {
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/teapot" {
			w.WriteHeader(http.StatusConflict)
			_, _ = w.Write([]byte("taken"))
			return
		}
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/x-echo")
		_, _ = w.Write([]byte(r.Method + " " + r.URL.RequestURI() + " " + r.Header.Get("x-custom") + " " + string(b)))
	})
	caller, _ := pair(t, app, nil)
	client := runtimev1pb.NewDaprClient(dial(t, caller.Ports().GRPC))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "x-custom", "v1")
	resp, err := client.InvokeService(ctx, &runtimev1pb.InvokeServiceRequest{Id: "callee", Message: &commonv1pb.InvokeRequest{
		Method: "items/7", Data: &anypb.Any{Value: []byte("body")},
		HttpExtension: &commonv1pb.HTTPExtension{Verb: commonv1pb.HTTPExtension_PATCH, Querystring: "q=z"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(resp.GetData().GetValue()), "PATCH /items/7?q=z v1 body"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if resp.GetContentType() != "text/x-echo" {
		t.Errorf("content type %q", resp.GetContentType())
	}
	_, err = client.InvokeService(ctx, &runtimev1pb.InvokeServiceRequest{Id: "callee", Message: &commonv1pb.InvokeRequest{Method: "teapot"}})
	if status.Code(err) != codes.Aborted {
		t.Errorf("409: got %v, want Aborted", err)
	}
}

func TestGRPCProxyStreaming(t *testing.T) {
	caller := grpcPair(t)
	tc := testgrpc.NewTestServiceClient(dial(t, caller.Ports().GRPC))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "dapr-app-id", "callee")
	if _, err := tc.EmptyCall(ctx, &testgrpc.Empty{}); err != nil {
		t.Fatalf("unary: %v", err)
	}
	// The interop helpers fail through logger.Fatal; they return only on success.
	interop.DoServerStreaming(ctx, tc)
	interop.DoPingPong(ctx, tc)
	// Without dapr-app-id, an unknown service is Unimplemented.
	_, err := tc.EmptyCall(context.Background(), &testgrpc.Empty{})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("no app id: %v", err)
	}
	// Dapr API still works on the same port.
	md, err := runtimev1pb.NewDaprClient(dial(t, caller.Ports().GRPC)).GetMetadata(ctx, &runtimev1pb.GetMetadataRequest{})
	if err != nil || md.GetId() != "caller" {
		t.Errorf("GetMetadata: %v %v", md, err)
	}
	_ = emptypb.Empty{}
}

func stringsReader(s string) io.Reader { return &sreader{s: s} }

type sreader struct{ s string }

func (r *sreader) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	n := copy(p, r.s)
	r.s = r.s[n:]
	return n, nil
}

var _ = httptest.NewServer

// The app's circuit breaker guards proxied gRPC calls: server failures
// trip it, an open breaker answers Unavailable at once, and after its
// timeout one call through closes it again.
func TestGRPCProxyCircuitBreaker(t *testing.T) {
	port := startGRPCApp(t)
	res := &mapResolver{}
	callee := startSidecar(t, Config{AppID: "callee", AppPort: port, AppProtocol: ProtocolGRPC, Resolver: res})
	res.set("callee", "default", "127.0.0.1:"+strconv.Itoa(callee.Ports().Internal))
	waitHealthy(t, callee)
	routes := fixedRoutes{app: &outriggerv1alpha1.Resiliency{Source: "resiliency/test", CircuitBreaker: &outriggerv1alpha1.CircuitBreaker{
		Name: "guard", MaxRequests: 1, Timeout: durationpb.New(300 * time.Millisecond), Trip: "consecutiveFailures >= 2",
	}}}
	caller := startSidecar(t, Config{AppID: "caller", Resolver: res, Routes: routes})
	tc := testgrpc.NewTestServiceClient(dial(t, caller.Ports().GRPC))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "dapr-app-id", "callee")
	failing := &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.Unavailable), Message: "down"}}
	for i := range 2 {
		if _, err := tc.UnaryCall(ctx, failing); status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "down") {
			t.Fatalf("failing call %d: %v", i, err)
		}
	}
	// A client mistake does not count; the breaker is open now anyway.
	_, err := tc.UnaryCall(ctx, &testgrpc.SimpleRequest{})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "circuit breaker is open") {
		t.Fatalf("with the breaker open: %v, want Unavailable from the breaker", err)
	}
	// Half open after its timeout: one call goes through and closes it.
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err = tc.UnaryCall(ctx, &testgrpc.SimpleRequest{})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the breaker never let a call through again: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := tc.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
		t.Fatalf("after closing: %v", err)
	}
	// Caller mistakes never open it.
	bad := &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.InvalidArgument), Message: "bad"}}
	for range 3 {
		if _, err := tc.UnaryCall(ctx, bad); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("invalid argument: %v", err)
		}
	}
	if _, err := tc.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
		t.Fatalf("after caller mistakes: %v", err)
	}
}

// flakyService fails its first calls with Unavailable, before answering
// anything: UnaryCall echoes; StreamingInputCall reads every message first,
// then fails or answers their total size.
type flakyService struct {
	testgrpc.UnimplementedTestServiceServer
	fail  atomic.Int32
	calls atomic.Int32
}

func (f *flakyService) UnaryCall(_ context.Context, in *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	if f.calls.Add(1) <= f.fail.Load() {
		return nil, status.Error(codes.Unavailable, "not yet")
	}
	return &testgrpc.SimpleResponse{Payload: in.GetPayload()}, nil
}

func (f *flakyService) StreamingInputCall(stream testgrpc.TestService_StreamingInputCallServer) error {
	total := 0
	for {
		in, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		total += len(in.GetPayload().GetBody())
	}
	if f.calls.Add(1) <= f.fail.Load() {
		return status.Error(codes.Unavailable, "not yet")
	}
	return stream.SendAndClose(&testgrpc.StreamingInputCallResponse{AggregatedPayloadSize: int32(total)})
}

// A retry policy on the app retries proxied gRPC calls that the server
// failed before answering anything, sending the client's messages again;
// a failure the policy does not match is not retried.
func TestGRPCProxyRetries(t *testing.T) {
	svc := &flakyService{}
	svc.fail.Store(2)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(srv, svc)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	res := &mapResolver{}
	callee := startSidecar(t, Config{AppID: "callee", AppPort: l.Addr().(*net.TCPAddr).Port, AppProtocol: ProtocolGRPC, Resolver: res})
	res.set("callee", "default", "127.0.0.1:"+strconv.Itoa(callee.Ports().Internal))
	waitHealthy(t, callee)
	routes := fixedRoutes{app: &outriggerv1alpha1.Resiliency{Source: "resiliency/test", Retry: &outriggerv1alpha1.Retry{
		Name: "three", Duration: durationpb.New(10 * time.Millisecond), MaxRetries: 3, GrpcStatusCodes: "14",
	}}}
	caller := startSidecar(t, Config{AppID: "caller", Resolver: res, Routes: routes})
	tc := testgrpc.NewTestServiceClient(dial(t, caller.Ports().GRPC))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "dapr-app-id", "callee")

	out, err := tc.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("again")}})
	if err != nil || string(out.GetPayload().GetBody()) != "again" || svc.calls.Load() != 3 {
		t.Fatalf("unary after two failures: %v %v, %d calls, want the payload after 3", out, err, svc.calls.Load())
	}

	svc.calls.Store(0)
	stream, err := tc.StreamingInputCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{10, 20, 30} {
		if err := stream.Send(&testgrpc.StreamingInputCallRequest{Payload: &testgrpc.Payload{Body: make([]byte, n)}}); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil || resp.GetAggregatedPayloadSize() != 60 || svc.calls.Load() != 3 {
		t.Fatalf("client stream after two failures: %v %v, %d calls, want 60 after 3", resp, err, svc.calls.Load())
	}

	// More failures than retries: the last status comes back.
	svc.calls.Store(0)
	svc.fail.Store(10)
	if _, err := tc.UnaryCall(ctx, &testgrpc.SimpleRequest{}); status.Code(err) != codes.Unavailable || svc.calls.Load() != 4 {
		t.Fatalf("retries run out: %v after %d calls, want Unavailable after 4", err, svc.calls.Load())
	}
}
