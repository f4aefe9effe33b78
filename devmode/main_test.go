package devmode_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/outrigger/outrigger/devmode"
	"github.com/outrigger/outrigger/xds/registry"
)

// helperEnv makes the test binary act as one of the helper programs below
// instead of running tests.
const helperEnv = "DEVMODE_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "control-plane":
		os.Exit(fakeControlPlane())
	case "callee":
		os.Exit(callee())
	case "caller":
		os.Exit(caller())
	default:
		fmt.Fprintf(os.Stderr, "unknown %s %q\n", helperEnv, os.Getenv(helperEnv))
		os.Exit(2)
	}
}

// fakeControlPlane is a development control process made of the real
// registry and record: what `outrigger control-plane --dev` does.
func fakeControlPlane() int {
	home := os.Getenv(devmode.HomeEnv)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	reg := registry.New(registry.Options{})
	srv := &http.Server{Handler: reg.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	go func() { _ = reg.Run(rctx) }()
	// Start slowly, as a real process may: callers must wait by polling.
	time.Sleep(200 * time.Millisecond)
	if err := devmode.WriteControlPlaneRecord(home, devmode.ControlPlaneRecord{Address: ln.Addr().String(), PID: os.Getpid(), Started: time.Now()}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("fake control plane listening on", ln.Addr())
	<-ctx.Done()
	rcancel()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	_ = srv.Shutdown(sctx)
	_ = devmode.RemoveControlPlaneRecord(home, os.Getpid())
	return 0
}

// callee answers GET /hello on APP_PORT.
func callee() int {
	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("APP_PORT"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("callee listening, APP_ID=" + os.Getenv("APP_ID"))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "hello from "+os.Getenv("APP_ID"))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); _ = srv.Close() }()
	_ = srv.Serve(ln)
	fmt.Println("callee stopping")
	return 0
}

// caller invokes callee's /hello through its sidecar until it answers, and
// prints the answer.
func caller() int {
	url := "http://127.0.0.1:" + os.Getenv("DAPR_HTTP_PORT") + "/v1.0/invoke/callee/method/hello"
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				fmt.Printf("caller got %q\n", body)
				return 0
			}
			err = fmt.Errorf("%s: %s", resp.Status, body)
		}
		if time.Now().After(deadline) {
			fmt.Println("caller gave up:", err)
			return 4
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// syncBuffer is an io.Writer the test reads while a run writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls until cond holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
