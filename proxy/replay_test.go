package proxy

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	commonv1pb "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	outriggerv1alpha1 "github.com/outrigger/outrigger/xds/api/v1alpha1"
)

// fixedRoutes gives one Resiliency to every app and a built-in retry.
type fixedRoutes struct {
	app     *outriggerv1alpha1.Resiliency
	builtIn *outriggerv1alpha1.Retry
}

func (f fixedRoutes) InvokeTimeout(string, string) time.Duration { return 0 }
func (f fixedRoutes) InvokeResiliency(string, string) *outriggerv1alpha1.Resiliency {
	return f.app
}
func (f fixedRoutes) BuiltInServiceRetry() *outriggerv1alpha1.Retry { return f.builtIn }
func (f fixedRoutes) InvokeHashHeader(string, string) string        { return "" }

// fastBuiltIn is DaprBuiltInServiceRetries redefined to 20 ms apart.
var fastBuiltIn = &outriggerv1alpha1.Retry{Name: "DaprBuiltInServiceRetries", Duration: durationpb.New(20 * time.Millisecond), MaxRetries: 3}

// flakyPeer stands in for a callee's sidecar on the mesh (h2c): attempt n
// (from 1) is handled by handle, which returns false to reset the stream
// without an answer.
type flakyPeer struct {
	attempts atomic.Int32
	handle   func(n int32, w http.ResponseWriter, r *http.Request) bool
}

func (p *flakyPeer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !p.handle(p.attempts.Add(1), w, r) {
		panic(http.ErrAbortHandler) // RST_STREAM: no answer
	}
}

func startFlakyPeer(t *testing.T, p *flakyPeer) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: p, Protocols: &protos, ErrorLog: nil}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

func callerTo(t *testing.T, peer string, routes InvokeRoutes) *Sidecar {
	t.Helper()
	res := &mapResolver{}
	res.set("callee", "default", peer)
	return startSidecar(t, Config{AppID: "caller", Resolver: res, Routes: routes})
}

func invokeURL(s *Sidecar) string {
	return "http://127.0.0.1:" + strconv.Itoa(s.Ports().HTTP) + "/v1.0/invoke/callee/method/echo"
}

// A call that got no answer is sent again, and its body, streamed and not
// yet whole when the first attempt failed, reaches the second attempt
// whole: what was sent is replayed and the rest read on.
func TestBuiltInRetryReplaysStreamedBody(t *testing.T) {
	firstFailed := make(chan struct{})
	peer := &flakyPeer{handle: func(n int32, w http.ResponseWriter, r *http.Request) bool {
		if n == 1 {
			buf := make([]byte, 5)
			if _, err := io.ReadFull(r.Body, buf); err != nil || string(buf) != "hello" {
				t.Errorf("first attempt read %q, %v", buf, err)
			}
			close(firstFailed)
			return false
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("attempt %d: %v", n, err)
		}
		w.Header().Set("X-Attempt", strconv.Itoa(int(n)))
		_, _ = w.Write(b)
		return true
	}}
	caller := callerTo(t, startFlakyPeer(t, peer), fixedRoutes{builtIn: fastBuiltIn})

	pr, pw := io.Pipe()
	go func() {
		_, _ = pw.Write([]byte("hello"))
		select {
		case <-firstFailed:
		case <-time.After(30 * time.Second):
		}
		_, _ = pw.Write([]byte(", world"))
		_ = pw.Close()
	}()
	resp, err := http.Post(invokeURL(caller), "text/plain", pr)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "hello, world" || resp.Header.Get("X-Attempt") != "2" {
		t.Fatalf("got %d %q from attempt %q, want 200 %q from attempt 2", resp.StatusCode, b, resp.Header.Get("X-Attempt"), "hello, world")
	}
}

// The built-in retry gives up after its retries with Dapr's error, and
// never retries an answer, whatever its status.
func TestBuiltInRetryLimits(t *testing.T) {
	for _, tc := range []struct {
		name         string
		routes       fixedRoutes
		handle       func(n int32, w http.ResponseWriter, r *http.Request) bool
		wantStatus   int
		wantAttempts int32
	}{
		{"never answers", fixedRoutes{builtIn: fastBuiltIn}, func(int32, http.ResponseWriter, *http.Request) bool { return false }, 500, 4},
		{"answers 503", fixedRoutes{builtIn: fastBuiltIn}, func(_ int32, w http.ResponseWriter, _ *http.Request) bool {
			w.WriteHeader(http.StatusServiceUnavailable)
			return true
		}, 503, 1},
		{"redefined to no retries", fixedRoutes{builtIn: &outriggerv1alpha1.Retry{Duration: durationpb.New(time.Millisecond)}}, func(int32, http.ResponseWriter, *http.Request) bool { return false }, 500, 1},
		// A policy of the app's own (here only a timeout) replaces the
		// built-in retry, as in daprd.
		{"app has a policy", fixedRoutes{builtIn: fastBuiltIn, app: &outriggerv1alpha1.Resiliency{Timeout: durationpb.New(time.Minute)}}, func(int32, http.ResponseWriter, *http.Request) bool { return false }, 500, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			peer := &flakyPeer{handle: tc.handle}
			caller := callerTo(t, startFlakyPeer(t, peer), tc.routes)
			resp, err := http.Post(invokeURL(caller), "text/plain", strings.NewReader("body"))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.wantStatus || peer.attempts.Load() != tc.wantAttempts {
				t.Fatalf("got %d %q after %d attempts, want %d after %d", resp.StatusCode, b, peer.attempts.Load(), tc.wantStatus, tc.wantAttempts)
			}
			if tc.wantStatus == 500 && !strings.Contains(string(b), "ERR_DIRECT_INVOKE") {
				t.Fatalf("error body %q, want ERR_DIRECT_INVOKE", b)
			}
		})
	}
}

// A body larger than the replay bound is not sent again: the call fails
// rather than reach the callee with part of its body.
func TestBuiltInRetryLargeBodyNotReplayed(t *testing.T) {
	peer := &flakyPeer{handle: func(n int32, w http.ResponseWriter, r *http.Request) bool {
		_, _ = io.Copy(io.Discard, r.Body)
		return false
	}}
	caller := callerTo(t, startFlakyPeer(t, peer), fixedRoutes{builtIn: fastBuiltIn})
	// Chunked, so that the size is known only once read.
	body := io.MultiReader(bytes.NewReader(make([]byte, maxReplayBody+1)))
	resp, err := http.Post(invokeURL(caller), "application/octet-stream", body)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 500 || peer.attempts.Load() != 1 {
		t.Fatalf("got %d %q after %d attempts, want 500 after 1", resp.StatusCode, b, peer.attempts.Load())
	}
}

// Dapr's own built-in retry, without a redefinition: a second apart.
func TestBuiltInRetryDefaultsToDapr(t *testing.T) {
	var mu sync.Mutex
	var at []time.Time
	peer := &flakyPeer{handle: func(n int32, w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		at = append(at, time.Now())
		mu.Unlock()
		return n > 1
	}}
	caller := callerTo(t, startFlakyPeer(t, peer), nil)
	resp, err := http.Get(invokeURL(caller))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	mu.Lock()
	defer mu.Unlock()
	if resp.StatusCode != 200 || len(at) != 2 {
		t.Fatalf("got %d after %d attempts, want 200 after 2", resp.StatusCode, len(at))
	}
	if gap := at[1].Sub(at[0]); gap < 900*time.Millisecond {
		t.Fatalf("the retry came %v after the first attempt, want Dapr's 1s", gap)
	}
}

// InvokeService over gRPC has the same built-in retry.
func TestBuiltInRetryGRPC(t *testing.T) {
	peer := &flakyPeer{handle: func(n int32, w http.ResponseWriter, r *http.Request) bool {
		if n == 1 {
			return false
		}
		b, _ := io.ReadAll(r.Body)
		_, _ = w.Write(b)
		return true
	}}
	caller := callerTo(t, startFlakyPeer(t, peer), fixedRoutes{builtIn: fastBuiltIn})
	conn, err := grpc.NewClient("127.0.0.1:"+strconv.Itoa(caller.Ports().GRPC), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := runtimev1pb.NewDaprClient(conn).InvokeService(ctx, &runtimev1pb.InvokeServiceRequest{
		Id: "callee",
		Message: &commonv1pb.InvokeRequest{
			Method: "echo", Data: &anypb.Any{Value: []byte("ping")},
			HttpExtension: &commonv1pb.HTTPExtension{Verb: commonv1pb.HTTPExtension_POST},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if string(out.GetData().GetValue()) != "ping" || peer.attempts.Load() != 2 {
		t.Fatalf("got %q after %d attempts, want %q after 2", out.GetData().GetValue(), peer.attempts.Load(), "ping")
	}
}
