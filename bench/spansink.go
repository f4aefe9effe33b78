package main

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
)

// spanSink is the OTLP/gRPC trace collector the outrigger-traced target's
// sidecars export to. It counts the spans it receives, keeps nothing else,
// and accepts every export, so the sidecars' cost of tracing is their own
// and not a slow collector's. One serves the whole run, on loopback in the
// namespace.
type spanSink struct {
	coltracepb.UnimplementedTraceServiceServer

	srv   *grpc.Server
	lis   net.Listener
	spans atomic.Int64
	done  chan struct{} // closed when Serve has returned
}

// startSpanSink listens on a free loopback port and serves the OTLP trace
// service until stop.
func startSpanSink() (*spanSink, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("span sink: %v", err)
	}
	s := &spanSink{srv: grpc.NewServer(), lis: lis, done: make(chan struct{})}
	coltracepb.RegisterTraceServiceServer(s.srv, s)
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(lis) // returns nil after stop; an error only if the listener fails
	}()
	return s, nil
}

// addr is the sink's host:port, for a Configuration's endpointAddress.
func (s *spanSink) addr() string { return s.lis.Addr().String() }

// count is the number of spans received so far.
func (s *spanSink) count() int64 { return s.spans.Load() }

// Export counts the request's spans and answers an empty (full success)
// response.
func (s *spanSink) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	s.spans.Add(countSpans(req))
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// countSpans sums the spans over a request's ResourceSpans and ScopeSpans.
func countSpans(req *coltracepb.ExportTraceServiceRequest) int64 {
	var n int64
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			n += int64(len(ss.GetSpans()))
		}
	}
	return n
}

// stop ends the sink: exports under way finish, for at most grace.
func (s *spanSink) stop(grace time.Duration) {
	stopped := make(chan struct{})
	go func() {
		s.srv.GracefulStop()
		close(stopped)
	}()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-stopped:
	case <-t.C:
		s.srv.Stop()
		<-stopped
	}
	<-s.done
}

var _ coltracepb.TraceServiceServer = (*spanSink)(nil)
