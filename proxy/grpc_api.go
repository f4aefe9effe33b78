package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	commonv1pb "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/outrigger/outrigger/nameresolution"
	"github.com/outrigger/outrigger/proxy/route"
	"github.com/outrigger/outrigger/resiliency"
	"github.com/outrigger/outrigger/telemetry"
)

// daprAPI is the sidecar's dapr.proto.runtime.v1.Dapr service. Methods of
// building blocks that are not built yet answer Unimplemented.
type daprAPI struct {
	runtimev1pb.UnimplementedDaprServer
	s *Sidecar
}

// grpcStreamWorkers is how many goroutines the gRPC API keeps to run calls
// on. A call given a goroutine of its own starts on a small stack and grows
// it (on the publish path, 11% of a sidecar's CPU under sequential gRPC
// publishes went to copying stacks); a worker keeps the stack it grew for
// the next call. Calls beyond the workers still get a goroutine each.
const grpcStreamWorkers = 16

func (s *Sidecar) newGRPCServer() *grpc.Server {
	srv := grpc.NewServer(
		grpc.NumStreamWorkers(grpcStreamWorkers),
		grpc.ForceServerCodecV2(frameCodec{}),
		grpc.UnknownServiceHandler(s.proxyGRPC),
		grpc.MaxRecvMsgSize(int(s.cfg.MaxBodySize)),
		grpc.MaxSendMsgSize(int(s.cfg.MaxBodySize)),
		grpc.MaxConcurrentStreams(1000),
		grpc.ChainUnaryInterceptor(s.recoverUnary, s.observeUnary, s.apiTokenUnary),
		grpc.ChainStreamInterceptor(s.recoverStream, s.observeStream, s.apiTokenStream),
	)
	runtimev1pb.RegisterDaprServer(srv, &daprAPI{s: s})
	return srv
}

// recoverUnary turns a panic in a handler into an Internal status, so one
// bad call never takes the sidecar down.
func (s *Sidecar) recoverUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("panic in a gRPC handler", "method", info.FullMethod, "panic", p, "stack", string(debug.Stack()))
			err = status.Errorf(codes.Internal, "internal error in %s", info.FullMethod)
		}
	}()
	return handler(ctx, req)
}

func (s *Sidecar) recoverStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("panic in a gRPC handler", "method", info.FullMethod, "panic", p, "stack", string(debug.Stack()))
			err = status.Errorf(codes.Internal, "internal error in %s", info.FullMethod)
		}
	}()
	return handler(srv, ss)
}

// invokeRequest is the HTTP request InvokeService sends to the callee's
// sidecar at addr.
func (s *Sidecar) invokeRequest(ctx context.Context, addr, name, ns string, msg *commonv1pb.InvokeRequest, md metadata.MD) (*http.Request, error) {
	target := s.peers.scheme() + "://" + addr + "/" + route.CleanMethod(msg.GetMethod())
	if qs := msg.GetHttpExtension().GetQuerystring(); qs != "" {
		target += "?" + qs
	}
	req, err := http.NewRequestWithContext(ctx, methodFromVerb(msg.GetHttpExtension().GetVerb()), target, bytes.NewReader(msg.GetData().GetValue()))
	if err != nil {
		return nil, err
	}
	for k, vs := range md {
		if strings.HasPrefix(k, ":") || strings.HasPrefix(k, "grpc-") || k == "content-type" || k == "user-agent" || k == "te" || k == route.AppIDHeader {
			continue
		}
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if ct := msg.GetContentType(); ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if tu := msg.GetData().GetTypeUrl(); tu != "" {
		req.Header.Set(hdrDataTypeURL, tu)
	}
	h := req.Header
	h[hdrCalleeAppID] = []string{name}
	h[hdrCalleeNamespace] = []string{ns}
	h[hdrCallerAppID] = []string{s.cfg.AppID}
	h[hdrCallerNamespace] = []string{s.cfg.Namespace}
	// The trace context: this sidecar's span, or the app's carried on
	// (grpc-trace-bin becomes traceparent on the mesh).
	telemetry.ToHTTP(ctx, h)
	return req, nil
}

// InvokeService sends an invocation to another app and waits for its whole answer.
func (d *daprAPI) InvokeService(ctx context.Context, in *runtimev1pb.InvokeServiceRequest) (*commonv1pb.InvokeResponse, error) {
	s := d.s
	msg := in.GetMessage()
	if in.GetId() == "" {
		return nil, status.Error(codes.InvalidArgument, "failed to invoke: the app id is empty")
	}
	if msg == nil {
		return nil, status.Errorf(codes.InvalidArgument, "failed to invoke, id: %s, err: the message is empty", in.GetId())
	}
	name, ns, err := route.SplitAppID(in.GetId(), s.cfg.Namespace)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "failed to invoke, id: %s, err: %v", in.GetId(), err)
	}
	md, _ := metadata.FromIncomingContext(ctx)
	key := s.hashKeyMD(name, ns, md)
	if s.tracer != nil {
		nameInvokeSpan(ctx, name, msg.GetMethod())
	}
	run := s.appRunner(name, ns)
	run.Applied()
	caller := ctx
	ctx, cancel := s.invokeContext(ctx, name, ns)
	defer cancel()
	defer timedOut(run, ctx, caller)
	pol := s.policyFor(name, ns)
	// Without any policy of its own, the call has the built-in retry.
	var builtIn *resiliency.Retry
	if run == nil {
		builtIn = s.builtInRetry()
	}
	start := time.Now()
	var resp *http.Response
	for attempt, retries := 1, 0; ; attempt++ {
		var breakerDone func(bool)
		if pol != nil && pol.Breaker != nil {
			var err error
			if breakerDone, err = pol.Breaker.Allow(); err != nil {
				return nil, status.Errorf(codes.Internal, "failed to invoke, id: %s, err: %v", in.GetId(), err)
			}
		}
		ep, err := s.lb.Pick(ctx, name, ns, key)
		if err != nil {
			if breakerDone != nil {
				breakerDone(false)
			}
			s.stats.outbound.WithLabelValues(name, "resolve_error").Inc()
			return nil, status.Errorf(codes.Internal, "failed to invoke, id: %s, err: %v", in.GetId(), err)
		}
		req, err := s.invokeRequest(ctx, ep.Address(), name, ns, msg, md)
		if err != nil {
			ep.Done(nil)
			if breakerDone != nil {
				breakerDone(true)
			}
			return nil, status.Errorf(codes.InvalidArgument, "failed to invoke, id: %s, err: %v", in.GetId(), err)
		}
		resp, err = s.peers.transport(name, ns).RoundTrip(req)
		if err != nil && attempt < maxConnectAttempts && connectFailed(err) && ctx.Err() == nil {
			ep.Done(err)
			if breakerDone != nil {
				breakerDone(false)
			}
			continue // the request was not sent: another instance
		}
		st := 0
		if resp != nil {
			st = resp.StatusCode
		}
		ep.Done(callOutcome(ctx, st, err))
		if breakerDone != nil {
			breakerDone(err == nil && st < 500)
		}
		// The built-in retry: no answer from the callee's sidecar.
		if err != nil && builtIn.Allowed(retries) && ctx.Err() == nil {
			s.stats.outbound.WithLabelValues(name, "error").Inc()
			retries++
			s.stats.retries.WithLabelValues(name).Inc()
			s.log.Debug("no answer; retrying (built-in retry)", "app_id", name, "err", err)
			if !s.pause(ctx, builtIn.Backoff(retries)) {
				return nil, status.Errorf(invokeErrorCode(ctx.Err()), "failed to invoke, id: %s, err: %v", in.GetId(), ctx.Err())
			}
			attempt = 0
			continue
		}
		// The app's retry policy: the message is in memory, so every
		// attempt sends it whole.
		if pol != nil && pol.Retry.Allowed(retries) && ctx.Err() == nil && (err != nil || pol.Retry.RetriesHTTP(st)) {
			if resp != nil {
				_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
				resp.Body.Close()
			}
			if err != nil {
				s.stats.outbound.WithLabelValues(name, "error").Inc()
			} else {
				s.stats.outbound.WithLabelValues(name, statusLabel(st)).Inc()
			}
			retries++
			s.stats.retries.WithLabelValues(name).Inc()
			pol.Retrying()
			t := time.NewTimer(pol.Retry.Backoff(retries))
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil, status.Errorf(invokeErrorCode(ctx.Err()), "failed to invoke, id: %s, err: %v", in.GetId(), ctx.Err())
			}
			attempt = 0 // a new attempt may try every instance again
			continue
		}
		if err != nil {
			s.stats.outbound.WithLabelValues(name, "error").Inc()
			if s.dapr != nil {
				s.dapr.invoked(name, "unary", "", 0)
			}
			return nil, status.Errorf(invokeErrorCode(err), "failed to invoke, id: %s, err: %v", in.GetId(), err)
		}
		break
	}
	defer resp.Body.Close()
	s.stats.outbound.WithLabelValues(name, statusLabel(resp.StatusCode)).Inc()
	if s.dapr != nil {
		s.dapr.invoked(name, "unary", statusLabel(resp.StatusCode), time.Since(start))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, s.cfg.MaxBodySize+1))
	if err != nil {
		return nil, status.Errorf(invokeErrorCode(err), "failed to invoke, id: %s, err: reading the answer: %v", in.GetId(), err)
	}
	if int64(len(body)) > s.cfg.MaxBodySize {
		return nil, status.Errorf(codes.ResourceExhausted, "failed to invoke, id: %s, err: the answer is larger than --max-body-size", in.GetId())
	}
	outMD := metadata.MD{"dapr-http-status": []string{statusLabel(resp.StatusCode)}}
	for k, vs := range resp.Header {
		lk := strings.ToLower(k)
		if lk == "content-length" || lk == "connection" || lk == "transfer-encoding" || strings.HasPrefix(lk, "outrigger-") {
			continue
		}
		outMD[lk] = vs
	}
	_ = grpc.SetHeader(ctx, outMD)
	if code := grpcCodeFromHTTP(resp.StatusCode); code != codes.OK {
		return nil, status.Error(code, strings.TrimSpace(string(body)))
	}
	return &commonv1pb.InvokeResponse{
		Data:        &anypb.Any{TypeUrl: resp.Header.Get(hdrDataTypeURL), Value: body},
		ContentType: resp.Header.Get("Content-Type"),
	}, nil
}

func (d *daprAPI) GetSecret(ctx context.Context, in *runtimev1pb.GetSecretRequest) (*runtimev1pb.GetSecretResponse, error) {
	if d.s.cfg.Secrets == nil {
		return nil, status.Error(codes.FailedPrecondition, "secret store is not configured")
	}
	return d.s.cfg.Secrets.GetSecret(ctx, in)
}

func (d *daprAPI) GetBulkSecret(ctx context.Context, in *runtimev1pb.GetBulkSecretRequest) (*runtimev1pb.GetBulkSecretResponse, error) {
	if d.s.cfg.Secrets == nil {
		return nil, status.Error(codes.FailedPrecondition, "secret store is not configured")
	}
	return d.s.cfg.Secrets.GetBulkSecret(ctx, in)
}

func (d *daprAPI) stateAPI(store string) (StateAPI, error) {
	if d.s.cfg.State == nil {
		return nil, status.Errorf(codes.FailedPrecondition, "state store %s is not configured", store)
	}
	return d.s.cfg.State, nil
}

func (d *daprAPI) GetState(ctx context.Context, in *runtimev1pb.GetStateRequest) (*runtimev1pb.GetStateResponse, error) {
	api, err := d.stateAPI(in.GetStoreName())
	if err != nil {
		return nil, err
	}
	return api.GetState(ctx, in)
}

func (d *daprAPI) GetBulkState(ctx context.Context, in *runtimev1pb.GetBulkStateRequest) (*runtimev1pb.GetBulkStateResponse, error) {
	api, err := d.stateAPI(in.GetStoreName())
	if err != nil {
		return nil, err
	}
	return api.GetBulkState(ctx, in)
}

func (d *daprAPI) SaveState(ctx context.Context, in *runtimev1pb.SaveStateRequest) (*emptypb.Empty, error) {
	api, err := d.stateAPI(in.GetStoreName())
	if err != nil {
		return nil, err
	}
	return api.SaveState(ctx, in)
}

func (d *daprAPI) DeleteState(ctx context.Context, in *runtimev1pb.DeleteStateRequest) (*emptypb.Empty, error) {
	api, err := d.stateAPI(in.GetStoreName())
	if err != nil {
		return nil, err
	}
	return api.DeleteState(ctx, in)
}

func (d *daprAPI) DeleteBulkState(ctx context.Context, in *runtimev1pb.DeleteBulkStateRequest) (*emptypb.Empty, error) {
	api, err := d.stateAPI(in.GetStoreName())
	if err != nil {
		return nil, err
	}
	return api.DeleteBulkState(ctx, in)
}

func (d *daprAPI) ExecuteStateTransaction(ctx context.Context, in *runtimev1pb.ExecuteStateTransactionRequest) (*emptypb.Empty, error) {
	api, err := d.stateAPI(in.GetStoreName())
	if err != nil {
		return nil, err
	}
	return api.ExecuteStateTransaction(ctx, in)
}

func (d *daprAPI) QueryStateAlpha1(ctx context.Context, in *runtimev1pb.QueryStateRequest) (*runtimev1pb.QueryStateResponse, error) {
	api, err := d.stateAPI(in.GetStoreName())
	if err != nil {
		return nil, err
	}
	return api.QueryStateAlpha1(ctx, in)
}

func (d *daprAPI) pubsubAPI() (PubSubAPI, error) {
	if d.s.cfg.PubSub == nil {
		return nil, status.Error(codes.FailedPrecondition, "pubsub is not configured")
	}
	return d.s.cfg.PubSub, nil
}

func (d *daprAPI) PublishEvent(ctx context.Context, in *runtimev1pb.PublishEventRequest) (*emptypb.Empty, error) {
	api, err := d.pubsubAPI()
	if err != nil {
		return nil, err
	}
	return api.PublishEvent(ctx, in)
}

func (d *daprAPI) BulkPublishEvent(ctx context.Context, in *runtimev1pb.BulkPublishRequest) (*runtimev1pb.BulkPublishResponse, error) {
	api, err := d.pubsubAPI()
	if err != nil {
		return nil, err
	}
	return api.BulkPublishEvent(ctx, in)
}

func (d *daprAPI) BulkPublishEventAlpha1(ctx context.Context, in *runtimev1pb.BulkPublishRequest) (*runtimev1pb.BulkPublishResponse, error) {
	api, err := d.pubsubAPI()
	if err != nil {
		return nil, err
	}
	return api.BulkPublishEventAlpha1(ctx, in)
}

func (d *daprAPI) SubscribeTopicEventsAlpha1(stream runtimev1pb.Dapr_SubscribeTopicEventsAlpha1Server) error {
	api, err := d.pubsubAPI()
	if err != nil {
		return err
	}
	return api.SubscribeTopicEventsAlpha1(stream)
}

func (d *daprAPI) GetMetadata(context.Context, *runtimev1pb.GetMetadataRequest) (*runtimev1pb.GetMetadataResponse, error) {
	return d.s.metadata(), nil
}

func (d *daprAPI) SetMetadata(_ context.Context, in *runtimev1pb.SetMetadataRequest) (*emptypb.Empty, error) {
	if in.GetKey() == "" {
		return nil, status.Error(codes.InvalidArgument, "metadata key is empty")
	}
	d.s.setExtended(in.GetKey(), in.GetValue())
	return &emptypb.Empty{}, nil
}

func (d *daprAPI) Shutdown(context.Context, *runtimev1pb.ShutdownRequest) (*emptypb.Empty, error) {
	go func() {
		// Let the answer leave before the listeners close.
		time.Sleep(10 * time.Millisecond)
		d.s.Shutdown()
	}()
	return &emptypb.Empty{}, nil
}

// metadata builds the metadata API's answer.
func (s *Sidecar) metadata() *runtimev1pb.GetMetadataResponse {
	s.metaMu.RLock()
	ext := make(map[string]string, len(s.extended))
	for k, v := range s.extended {
		ext[k] = v
	}
	s.metaMu.RUnlock()
	m := &runtimev1pb.GetMetadataResponse{
		Id:               s.cfg.AppID,
		RuntimeVersion:   Version,
		ExtendedMetadata: ext,
		ActorRuntime:     &runtimev1pb.ActorRuntime{RuntimeStatus: runtimev1pb.ActorRuntime_DISABLED},
	}
	if s.cfg.Components != nil {
		m.RegisteredComponents = s.cfg.Components()
	}
	if s.cfg.Subscriptions != nil {
		m.Subscriptions = s.cfg.Subscriptions()
	}
	if s.cfg.AppPort > 0 {
		acp := &runtimev1pb.AppConnectionProperties{
			Port:           int32(s.cfg.AppPort),
			Protocol:       s.cfg.AppProtocol,
			ChannelAddress: s.cfg.AppChannelAddress,
		}
		if s.cfg.AppMaxConcurrency > 0 {
			acp.MaxConcurrency = int32(s.cfg.AppMaxConcurrency)
		}
		if s.cfg.AppHealth.Enabled {
			acp.Health = &runtimev1pb.AppConnectionHealthProperties{
				HealthCheckPath:     s.cfg.AppHealth.Path,
				HealthProbeInterval: s.cfg.AppHealth.Interval.String(),
				HealthProbeTimeout:  s.cfg.AppHealth.Timeout.String(),
				HealthThreshold:     int32(s.cfg.AppHealth.Threshold),
			}
		}
		m.AppConnectionProperties = acp
	}
	return m
}

// frame is one gRPC message carried through the proxy without decoding.
type frame struct{ data []byte }

// frameCodec passes frames through as raw bytes and encodes everything else
// with the proto codec, so that one server serves both the Dapr API and
// proxied calls to any service.
type frameCodec struct{}

func (frameCodec) Marshal(v any) (mem.BufferSlice, error) {
	if f, ok := v.(*frame); ok {
		return mem.BufferSlice{mem.SliceBuffer(f.data)}, nil
	}
	return encoding.GetCodecV2("proto").Marshal(v)
}

func (frameCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if f, ok := v.(*frame); ok {
		f.data = data.Materialize()
		return nil
	}
	return encoding.GetCodecV2("proto").Unmarshal(data, v)
}

func (frameCodec) Name() string { return "proto" }

var proxyStreamDesc = &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}

// proxyGRPC forwards a call for any service other than the Dapr API to the
// app named by its dapr-app-id metadata, through that app's sidecar, in both
// directions at once. The app's Resiliency timeout bounds the call and its
// circuit breaker guards it (retries need a buffered request, and a stream
// is not buffered).
func (s *Sidecar) proxyGRPC(_ any, ss grpc.ServerStream) (callErr error) {
	fullMethod, ok := grpc.MethodFromServerStream(ss)
	if !ok {
		return status.Error(codes.Internal, "gRPC proxy: no method in the stream")
	}
	md, _ := metadata.FromIncomingContext(ss.Context())
	ids := md.Get(route.AppIDHeader)
	if len(ids) == 0 || ids[0] == "" {
		return status.Errorf(codes.Unimplemented, "unknown service or method %s (a proxied call needs dapr-app-id metadata)", fullMethod)
	}
	name, ns, err := route.SplitAppID(ids[0], s.cfg.Namespace)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "gRPC proxy: %v", err)
	}
	key := s.hashKeyMD(name, ns, md)
	out := make(metadata.MD, len(md)+5)
	for k, v := range md {
		if strings.HasPrefix(k, ":") || k == "content-type" || k == "user-agent" || k == "te" || strings.HasPrefix(k, "outrigger-") {
			continue
		}
		out[k] = v
	}
	out["dapr-callee-app-id"] = []string{name}
	out["outrigger-callee-namespace"] = []string{ns}
	out["dapr-caller-app-id"] = []string{s.cfg.AppID}
	out["dapr-caller-namespace"] = []string{s.cfg.Namespace}
	out["outrigger-grpc-proxy"] = []string{"1"}
	telemetry.ToGRPC(ss.Context(), out)
	run := s.appRunner(name, ns)
	run.Applied()
	if run != nil && run.Breaker != nil {
		done, err := run.Breaker.Allow()
		if err != nil {
			return status.Errorf(codes.Unavailable, "failed to proxy request: %v", err)
		}
		defer func() { done(!grpcServerFailure(ss.Context(), callErr)) }()
	}
	bounded, cancelBound := s.invokeContext(ss.Context(), name, ns)
	defer cancelBound()
	defer timedOut(run, bounded, ss.Context())
	ctx, cancel := context.WithCancel(metadata.NewOutgoingContext(bounded, out))
	defer cancel()
	// The stream opens on an instance; one that cannot be reached (nothing
	// of the call was sent yet) gives way to another, up to
	// maxConnectAttempts.
	open := func() (grpc.ClientStream, nameresolution.Endpoint, error) {
		for attempt := 1; ; attempt++ {
			ep, err := s.lb.Pick(ss.Context(), name, ns, key)
			if err != nil {
				s.stats.outbound.WithLabelValues(name, "resolve_error").Inc()
				return nil, nil, status.Errorf(codes.Unavailable, "failed to proxy request: %v", err)
			}
			conn, err := s.peers.grpcConn(ep.Address(), name, ns)
			var cs grpc.ClientStream
			if err == nil {
				cs, err = conn.NewStream(ctx, proxyStreamDesc, fullMethod, grpc.ForceCodecV2(frameCodec{}))
			}
			if err == nil {
				return cs, ep, nil
			}
			if attempt < maxConnectAttempts && status.Code(err) == codes.Unavailable && ctx.Err() == nil {
				ep.Done(err)
				s.log.Debug("opening a proxied gRPC stream failed; trying another instance", "app_id", name, "err", err)
				continue
			}
			ep.Done(grpcOutcome(ss.Context(), err))
			if status.Code(err) == codes.Unknown {
				return nil, nil, status.Errorf(codes.Unavailable, "failed to proxy request: %v", err)
			}
			return nil, nil, err
		}
	}
	cs, ep, err := open()
	if err != nil {
		return err
	}
	var openErr error // no answer at all from the peer
	defer func() {
		if ep != nil {
			ep.Done(grpcOutcome(ss.Context(), openErr))
		}
	}()
	// Client to server. Under a retry policy the client's messages are
	// kept (within maxReplayBody) until the server's first answer, so
	// that a call the server failed at once can be sent again whole.
	var retry *resiliency.Retry
	if run != nil {
		retry = run.Retry
	}
	up := &upstream{cs: cs, replay: retry != nil}
	go up.relay(ss, cancel)
	// Server to client.
	for retries := 0; ; retries++ {
		hdr, err := cs.Header()
		var failed error
		switch {
		case err != nil:
			failed = err
		case hdr == nil:
			// Trailers only: the call ended without an answer; its
			// status comes from RecvMsg.
			if rerr := cs.RecvMsg(&frame{}); rerr != nil && rerr != io.EOF {
				failed = rerr
			}
		}
		if failed != nil && retry.Allowed(retries) && ctx.Err() == nil && retry.RetriesGRPC(int(status.Code(failed))) && up.replayable() {
			ep.Done(grpcOutcome(ss.Context(), failed))
			s.stats.outbound.WithLabelValues(name, "grpc_error").Inc()
			s.stats.retries.WithLabelValues(name).Inc()
			run.Retrying()
			if !s.pause(ctx, retry.Backoff(retries+1)) {
				return status.Errorf(invokeErrorCode(ctx.Err()), "failed to proxy request: %v", ctx.Err())
			}
			next, nextEP, oerr := open()
			if oerr != nil {
				ep = nil
				return oerr
			}
			if !up.resend(next) {
				nextEP.Done(nil)
				ep = nil
				return failed
			}
			cs, ep = next, nextEP
			continue
		}
		up.stopKeeping()
		if err != nil {
			openErr = err
		}
		if err == nil && hdr != nil {
			if err := ss.SendHeader(hdr); err != nil {
				cancel()
				return err
			}
		}
		if failed != nil {
			ss.SetTrailer(cs.Trailer())
			s.stats.outbound.WithLabelValues(name, "grpc_error").Inc()
			return failed
		}
		break
	}
	for {
		f := &frame{}
		if err := cs.RecvMsg(f); err != nil {
			ss.SetTrailer(cs.Trailer())
			if err == io.EOF {
				s.stats.outbound.WithLabelValues(name, "grpc_ok").Inc()
				return nil
			}
			s.stats.outbound.WithLabelValues(name, "grpc_error").Inc()
			return err
		}
		if err := ss.SendMsg(f); err != nil {
			cancel()
			return err
		}
	}
}

// upstream is the server side of a proxied gRPC call: the stream the
// client's messages go to, which a retry replaces, and the messages kept
// for a retry to send again.
type upstream struct {
	mu     sync.Mutex
	cs     grpc.ClientStream
	kept   []*frame
	size   int
	replay bool // every message so far is kept
	closed bool // the client has sent its last message
}

// relay forwards the client's messages to the current stream until the
// client half-closes (or fails: then the call is cancelled).
func (u *upstream) relay(ss grpc.ServerStream, cancel context.CancelFunc) {
	for {
		f := &frame{}
		if err := ss.RecvMsg(f); err != nil {
			u.mu.Lock()
			cs := u.cs
			if err == io.EOF {
				u.closed = true
			}
			u.mu.Unlock()
			if err == io.EOF {
				_ = cs.CloseSend()
				return
			}
			cancel()
			return
		}
		u.mu.Lock()
		if u.replay {
			if u.size+len(f.data) <= maxReplayBody {
				u.kept = append(u.kept, f)
				u.size += len(f.data)
			} else {
				u.replay, u.kept = false, nil
			}
		}
		cs := u.cs
		u.mu.Unlock()
		// A stream that failed answers its status on RecvMsg; a
		// replaced one gets the message again from resend.
		_ = cs.SendMsg(f)
	}
}

// replayable reports whether every message the client sent is kept.
func (u *upstream) replayable() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.replay
}

// resend makes next the stream of the call, sending it the kept messages
// (and the client's half-close); false when they were not all kept.
func (u *upstream) resend(next grpc.ClientStream) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.replay {
		return false
	}
	for _, f := range u.kept {
		_ = next.SendMsg(f)
	}
	if u.closed {
		_ = next.CloseSend()
	}
	u.cs = next
	return true
}

// stopKeeping ends the keeping of messages: the server has answered.
func (u *upstream) stopKeeping() {
	u.mu.Lock()
	u.replay, u.kept = false, nil
	u.mu.Unlock()
}

// grpcServerFailure reports whether a proxied call's outcome counts against
// the app's circuit breaker: a failure of the server side (unavailable,
// internal, out of time or resources), not the caller's own mistake or
// cancellation.
func grpcServerFailure(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() == context.Canceled {
		return false
	}
	switch status.Code(err) {
	case codes.Unknown, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Internal, codes.Unavailable, codes.DataLoss:
		return true
	}
	return false
}

// grpcOutcome is what a proxied gRPC call tells the balancer: the peer
// unreachable or silent until the deadline is a failure of the instance;
// a status the app gave, or the caller cancelling, is not.
func grpcOutcome(ctx context.Context, err error) error {
	if err == nil || ctx.Err() == context.Canceled {
		return nil
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return err
	}
	return nil
}

// invokeErrorCode is the gRPC code of a failed invocation: a timeout (the
// route's, or the caller's deadline) is DEADLINE_EXCEEDED, anything else
// INTERNAL, as daprd answers.
func invokeErrorCode(err error) codes.Code {
	if errors.Is(err, context.DeadlineExceeded) {
		return codes.DeadlineExceeded
	}
	return codes.Internal
}
