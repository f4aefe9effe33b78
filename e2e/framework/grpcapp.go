package framework

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	commonv1pb "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
)

// InvokeEcho is what the gRPC app's OnInvoke answers (as JSON): the
// InvokeRequest and metadata as the app saw them.
type InvokeEcho struct {
	Method      string              `json:"method"`
	Verb        string              `json:"verb"`
	Querystring string              `json:"querystring"`
	ContentType string              `json:"contentType"`
	TypeURL     string              `json:"typeUrl"`
	Data        string              `json:"data"`
	Metadata    map[string][]string `json:"metadata"`
}

// GRPCApp is a gRPC app the sidecars call, served from the test process. It
// serves Dapr's AppCallback (OnInvoke echoes the request as InvokeEcho JSON;
// a method "fail/{code}" answers that gRPC code), AppCallbackHealthCheck,
// and grpc-go's interop TestService:
//   - UnaryCall echoes the payload (or answers ResponseSize bytes), sets an
//     "x-app-header" header and an "x-app-trailer" trailer, and answers
//     ResponseStatus when it is set;
//   - StreamingOutputCall sends one message per ResponseParameters entry with
//     that many Pattern bytes;
//   - FullDuplexCall answers each request at once: one message per
//     ResponseParameters entry, or the request's payload echoed.
//
// Every call's incoming metadata is kept (see Metadata).
type GRPCApp struct {
	Port int

	srv     *grpc.Server
	healthy atomic.Bool

	mu    sync.Mutex
	md    map[string]metadata.MD // by full method name
	calls map[string]int         // by full method name
	// What the next unary calls of the test service get (FailNext, SetDelay).
	failNext  int
	failCode  codes.Code
	unaryWait time.Duration
}

// StartGRPCApp serves a GRPCApp on a fresh loopback port until the test ends.
func StartGRPCApp(t testing.TB) *GRPCApp {
	t.Helper()
	l := Listen(t)
	a := &GRPCApp{Port: l.Addr().(*net.TCPAddr).Port, md: map[string]metadata.MD{}, calls: map[string]int{}}
	a.healthy.Store(true)
	a.srv = grpc.NewServer(grpc.ChainUnaryInterceptor(a.recordUnary), grpc.ChainStreamInterceptor(a.recordStream))
	runtimev1pb.RegisterAppCallbackServer(a.srv, appCallback{a: a})
	runtimev1pb.RegisterAppCallbackHealthCheckServer(a.srv, appHealth{a: a})
	testgrpc.RegisterTestServiceServer(a.srv, testService{})
	go func() { _ = a.srv.Serve(l) }()
	t.Cleanup(a.srv.Stop)
	return a
}

// Close stops the app.
func (a *GRPCApp) Close() { a.srv.Stop() }

// SetHealthy sets what HealthCheck answers.
func (a *GRPCApp) SetHealthy(ok bool) { a.healthy.Store(ok) }

// Metadata is the incoming metadata of the last call of fullMethod
// (e.g. "/grpc.testing.TestService/UnaryCall"), or nil.
func (a *GRPCApp) Metadata(fullMethod string) metadata.MD {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.md[fullMethod].Copy()
}

// Calls is how many calls of fullMethod the app has received.
func (a *GRPCApp) Calls(fullMethod string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls[fullMethod]
}

// FailNext makes the next n unary calls of the test service fail with code.
func (a *GRPCApp) FailNext(n int, code codes.Code) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.failNext, a.failCode = n, code
}

// SetDelay makes every unary call of the test service wait d (or until
// its caller gives up) before it answers.
func (a *GRPCApp) SetDelay(d time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.unaryWait = d
}

func (a *GRPCApp) record(ctx context.Context, method string) {
	md, _ := metadata.FromIncomingContext(ctx)
	a.mu.Lock()
	a.md[method] = md.Copy()
	a.calls[method]++
	a.mu.Unlock()
}

func (a *GRPCApp) recordUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	a.record(ctx, info.FullMethod)
	if strings.HasPrefix(info.FullMethod, "/grpc.testing.TestService/") {
		a.mu.Lock()
		fail, code, wait := a.failNext > 0, a.failCode, a.unaryWait
		if fail {
			a.failNext--
		}
		a.mu.Unlock()
		if fail {
			return nil, status.Errorf(code, "the app fails this call on purpose")
		}
		if wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return nil, status.FromContextError(ctx.Err()).Err()
			}
		}
	}
	return h(ctx, req)
}

func (a *GRPCApp) recordStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	a.record(ss.Context(), info.FullMethod)
	return h(srv, ss)
}

type appCallback struct {
	runtimev1pb.UnimplementedAppCallbackServer
	a *GRPCApp
}

func (appCallback) OnInvoke(ctx context.Context, in *commonv1pb.InvokeRequest) (*commonv1pb.InvokeResponse, error) {
	if code, ok := strings.CutPrefix(in.GetMethod(), "fail/"); ok {
		n, err := strconv.Atoi(code)
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, "bad code")
		}
		return nil, status.Errorf(codes.Code(n), "the app fails with code %d", n)
	}
	md, _ := metadata.FromIncomingContext(ctx)
	e := InvokeEcho{
		Method:      in.GetMethod(),
		Verb:        in.GetHttpExtension().GetVerb().String(),
		Querystring: in.GetHttpExtension().GetQuerystring(),
		ContentType: in.GetContentType(),
		TypeURL:     in.GetData().GetTypeUrl(),
		Data:        string(in.GetData().GetValue()),
		Metadata:    md,
	}
	b, err := json.Marshal(e)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &commonv1pb.InvokeResponse{Data: &anypb.Any{Value: b}, ContentType: "application/json"}, nil
}

type appHealth struct {
	runtimev1pb.UnimplementedAppCallbackHealthCheckServer
	a *GRPCApp
}

func (h appHealth) HealthCheck(context.Context, *emptypb.Empty) (*runtimev1pb.HealthCheckResponse, error) {
	if !h.a.healthy.Load() {
		return nil, status.Error(codes.Unavailable, "the app is unhealthy")
	}
	return &runtimev1pb.HealthCheckResponse{}, nil
}

type testService struct {
	testgrpc.UnimplementedTestServiceServer
}

func echoStatus(s *testgrpc.EchoStatus) error {
	if s == nil || s.GetCode() == 0 {
		return nil
	}
	return status.Error(codes.Code(s.GetCode()), s.GetMessage())
}

func patternPayload(size int32, seed uint64) *testgrpc.Payload {
	b, _ := io.ReadAll(Pattern(seed, int64(size)))
	return &testgrpc.Payload{Body: b}
}

func (testService) EmptyCall(context.Context, *testgrpc.Empty) (*testgrpc.Empty, error) {
	return &testgrpc.Empty{}, nil
}

func (testService) UnaryCall(ctx context.Context, in *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	_ = grpc.SetHeader(ctx, metadata.Pairs("x-app-header", "unary"))
	_ = grpc.SetTrailer(ctx, metadata.Pairs("x-app-trailer", "unary"))
	if err := echoStatus(in.GetResponseStatus()); err != nil {
		return nil, err
	}
	out := &testgrpc.SimpleResponse{Payload: in.GetPayload()}
	if in.GetResponseSize() > 0 {
		out.Payload = patternPayload(in.GetResponseSize(), 1)
	}
	return out, nil
}

func (testService) StreamingOutputCall(in *testgrpc.StreamingOutputCallRequest, ss grpc.ServerStreamingServer[testgrpc.StreamingOutputCallResponse]) error {
	_ = ss.SendHeader(metadata.Pairs("x-app-header", "server-streaming"))
	for i, p := range in.GetResponseParameters() {
		if err := ss.Send(&testgrpc.StreamingOutputCallResponse{Payload: patternPayload(p.GetSize(), uint64(i))}); err != nil {
			return err
		}
	}
	ss.SetTrailer(metadata.Pairs("x-app-trailer", "server-streaming"))
	return echoStatus(in.GetResponseStatus())
}

func (testService) FullDuplexCall(ss grpc.BidiStreamingServer[testgrpc.StreamingOutputCallRequest, testgrpc.StreamingOutputCallResponse]) error {
	for {
		in, err := ss.Recv()
		if errors.Is(err, io.EOF) {
			ss.SetTrailer(metadata.Pairs("x-app-trailer", "bidi"))
			return nil
		}
		if err != nil {
			return err
		}
		if err := echoStatus(in.GetResponseStatus()); err != nil {
			return err
		}
		if len(in.GetResponseParameters()) == 0 {
			if err := ss.Send(&testgrpc.StreamingOutputCallResponse{Payload: in.GetPayload()}); err != nil {
				return err
			}
			continue
		}
		for i, p := range in.GetResponseParameters() {
			if err := ss.Send(&testgrpc.StreamingOutputCallResponse{Payload: patternPayload(p.GetSize(), uint64(i))}); err != nil {
				return err
			}
		}
	}
}
