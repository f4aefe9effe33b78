package framework

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Readiness is what StartSidecar waits for before it returns.
type Readiness int

const (
	// ReadyAuto waits for /v1.0/healthz when the sidecar has an app (the app
	// is then reachable) and for /v1.0/healthz/outbound otherwise.
	ReadyAuto Readiness = iota
	// ReadyOutbound waits for /v1.0/healthz/outbound only.
	ReadyOutbound
	// ReadyNone returns as soon as the process has started.
	ReadyNone
)

// Endpoint is one entry of the static name-resolution file: where the
// sidecar of an app listens for other sidecars.
type Endpoint struct {
	AppID     string
	Namespace string // "" is the default namespace
	Address   string // host:port of the sidecar's --dapr-internal-grpc-port
}

// AppHealthCheck turns on daprd-style app health checks.
type AppHealthCheck struct {
	Path          string // --app-health-check-path ("" leaves the default, /healthz)
	ProbeInterval int    // --app-health-probe-interval in seconds (0 leaves the default)
	Threshold     int    // --app-health-threshold (0 leaves the default)
}

// SidecarOptions describes one `outrigger sidecar` process.
type SidecarOptions struct {
	AppID     string
	Namespace string // --namespace; "" leaves the default
	// AppPort is the app's port; 0 starts the sidecar without an app.
	AppPort     int
	AppProtocol string // --app-protocol; "" leaves the default (http)
	// MaxBodySize is --max-body-size, e.g. "128Mi"; "" leaves the default.
	MaxBodySize       string
	AppMaxConcurrency int // --app-max-concurrency; 0 leaves the default
	AppHealthCheck    *AppHealthCheck
	// Resolve lists the apps this sidecar finds through the static resolver.
	Resolve []Endpoint
	// Args are appended to the command line.
	Args []string
	// Env is added to the sidecar's environment (KEY=VALUE).
	Env []string
	// MTLS joins the sidecar to the mesh of a control plane's CA with a
	// join token for its app-id.
	MTLS *ControlPlane
	// Wait is what to wait for before returning.
	Wait Readiness
	// Netns runs the sidecar inside that network namespace (see NewNet);
	// the harness reaches its ports from inside it too.
	Netns string
}

// Sidecar is a running `outrigger sidecar` process. The test's cleanup stops
// it, fails the test if its log shows a panic or a data race, and prints its
// log when the test has failed.
type Sidecar struct {
	AppID     string
	Namespace string
	// Home is the sidecar's OUTRIGGER_HOME.
	Home string

	HTTPPort     int
	GRPCPort     int
	InternalPort int
	MetricsPort  int

	// Netns is the network namespace the sidecar runs in ("" for the
	// machine's own); Client reaches it there.
	Netns string

	cmd      *exec.Cmd
	logs     *logBuffer
	done     chan struct{}
	exitCode int
	exitErr  error
}

// StartSidecar starts a sidecar on fresh loopback ports, with its own
// OUTRIGGER_HOME and static name resolution, and waits until it is ready.
func StartSidecar(t testing.TB, o SidecarOptions) *Sidecar {
	t.Helper()
	if o.AppID == "" {
		t.Fatal("e2e: SidecarOptions.AppID is required")
	}
	// An app listening in a namespace of its own got its port there, where
	// FreePort does not look: the sidecar's own ports must not take it.
	reservePort(o.AppPort)
	s := &Sidecar{
		AppID:        o.AppID,
		Namespace:    o.Namespace,
		HTTPPort:     FreePort(t),
		GRPCPort:     FreePort(t),
		InternalPort: FreePort(t),
		MetricsPort:  FreePort(t),
		logs:         &logBuffer{},
		done:         make(chan struct{}),
		Netns:        o.Netns,
	}
	if s.Namespace == "" {
		s.Namespace = "default"
	}
	home := ShortTempDir(t)
	s.Home = home
	resolution := filepath.Join(home, "resolution.yaml")
	if err := os.WriteFile(resolution, []byte(StaticResolutionFile(o.Resolve)), 0o600); err != nil {
		t.Fatalf("e2e: %v", err)
	}
	args := []string{"sidecar",
		"--app-id", o.AppID,
		"--dapr-http-port", strconv.Itoa(s.HTTPPort),
		"--dapr-grpc-port", strconv.Itoa(s.GRPCPort),
		"--dapr-internal-grpc-port", strconv.Itoa(s.InternalPort),
		"--metrics-port", strconv.Itoa(s.MetricsPort),
		"--name-resolution", "static",
		"--static-resolution-file", resolution,
		"--log-level", "debug",
	}
	if o.Namespace != "" {
		args = append(args, "--namespace", o.Namespace)
	}
	if o.AppPort != 0 {
		args = append(args, "--app-port", strconv.Itoa(o.AppPort))
	}
	if o.AppProtocol != "" {
		args = append(args, "--app-protocol", o.AppProtocol)
	}
	if o.MaxBodySize != "" {
		args = append(args, "--max-body-size", o.MaxBodySize)
	}
	if o.AppMaxConcurrency != 0 {
		args = append(args, "--app-max-concurrency", strconv.Itoa(o.AppMaxConcurrency))
	}
	if h := o.AppHealthCheck; h != nil {
		args = append(args, "--enable-app-health-check")
		if h.Path != "" {
			args = append(args, "--app-health-check-path", h.Path)
		}
		if h.ProbeInterval != 0 {
			args = append(args, "--app-health-probe-interval", strconv.Itoa(h.ProbeInterval))
		}
		if h.Threshold != 0 {
			args = append(args, "--app-health-threshold", strconv.Itoa(h.Threshold))
		}
	}
	env := o.Env
	if cp := o.MTLS; cp != nil {
		args = append(args, "--enable-mtls", "--sentry-address", cp.Addr, "--trust-anchors-file", cp.TrustAnchors())
		env = append(append([]string(nil), env...), "OUTRIGGER_JOIN_TOKEN="+cp.Token(t, o.AppID, s.Namespace))
	}
	if m := os.Getenv("OUTRIGGER_TEST_MESH_SERVER"); m != "" {
		// scripts/test.sh runs the suite again against the lean mesh server.
		args = append(args, "--mesh-server", m)
	}
	if m := os.Getenv("OUTRIGGER_TEST_API_SERVER"); m != "" {
		// and against net/http's API server.
		args = append(args, "--api-server", m)
	}
	args = append(args, o.Args...)

	s.cmd = command(Binary(t), home, args)
	if o.Netns != "" {
		// ip execs the binary: the process, its pid and its signals are
		// the sidecar's.
		s.cmd.Args = append([]string{"ip", "netns", "exec", o.Netns, s.cmd.Path}, args...)
		s.cmd.Path, _ = exec.LookPath("ip")
	}
	s.cmd.Env = append(s.cmd.Env, env...)
	s.cmd.Stdout = s.logs
	s.cmd.Stderr = s.logs
	fmt.Fprintf(s.logs, "$ outrigger %s\n", strings.Join(args, " "))
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("e2e: starting sidecar %s: %v", o.AppID, err)
	}
	go func() {
		err := s.cmd.Wait()
		s.exitErr = err
		s.exitCode = s.cmd.ProcessState.ExitCode()
		close(s.done)
	}()
	t.Cleanup(func() { s.cleanup(t) })

	switch o.Wait {
	case ReadyNone:
	case ReadyOutbound:
		s.waitReady(t, "/v1.0/healthz/outbound")
	case ReadyAuto:
		if o.AppPort != 0 {
			s.waitReady(t, "/v1.0/healthz")
		} else {
			s.waitReady(t, "/v1.0/healthz/outbound")
		}
	}
	for _, v := range []struct{ env, key string }{{"OUTRIGGER_TEST_MESH_SERVER", "mesh_server"}, {"OUTRIGGER_TEST_API_SERVER", "api_server"}} {
		m := os.Getenv(v.env)
		if m == "" || o.Wait == ReadyNone {
			continue
		}
		// The run against another server must be one.
		deadline := time.Now().Add(10 * time.Second)
		for logs := s.Logs(); !strings.Contains(logs, v.key+"="+m) && !strings.Contains(logs, `"`+v.key+`":"`+m+`"`); logs = s.Logs() {
			if time.Now().After(deadline) {
				t.Fatalf("e2e: sidecar %s does not say %s=%s:\n%s", o.AppID, v.key, m, s.Logs())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return s
}

// command makes an exec.Cmd for the binary with a clean Dapr environment,
// OUTRIGGER_HOME set to home, and the process killed if the test process dies.
func command(bin, home string, args []string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	env := make([]string, 0, len(os.Environ())+1)
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "DAPR_") || k == "APP_ID" || k == "NAMESPACE" || k == "OUTRIGGER_HOME" {
			continue
		}
		env = append(env, kv)
	}
	cmd.Env = append(env, "OUTRIGGER_HOME="+home)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// StaticResolutionFile renders the static resolver's YAML for eps.
func StaticResolutionFile(eps []Endpoint) string {
	if len(eps) == 0 {
		return "apps: []\n"
	}
	var b strings.Builder
	b.WriteString("apps:\n")
	for _, ep := range eps {
		fmt.Fprintf(&b, "  - appID: %s\n", ep.AppID)
		if ep.Namespace != "" {
			fmt.Fprintf(&b, "    namespace: %s\n", ep.Namespace)
		}
		fmt.Fprintf(&b, "    addresses: [%q]\n", ep.Address)
	}
	return b.String()
}

func (s *Sidecar) waitReady(t testing.TB, path string) {
	t.Helper()
	url := s.URL(path)
	err := Poll(WaitTimeout, func() error {
		select {
		case <-s.done:
			return errExited
		default:
		}
		if s.Netns != "" {
			return wantStatusWith(HTTPClient(s.Netns, 5*time.Second), url, 204)
		}
		return wantStatus(url, 204)
	})
	if errors.Is(err, errExited) {
		t.Fatalf("e2e: sidecar %s exited with status %d (%v) before %s answered 204", s.AppID, s.exitCode, s.exitErr, path)
	}
	if err != nil {
		t.Fatalf("e2e: sidecar %s not ready within %v: %v", s.AppID, WaitTimeout, err)
	}
}

var errExited = errors.New("process exited")

// WaitReady waits until path (e.g. "/v1.0/healthz") answers 204.
func (s *Sidecar) WaitReady(t testing.TB, path string) {
	t.Helper()
	s.waitReady(t, path)
}

// URL is the address of path on the sidecar's HTTP API.
func (s *Sidecar) URL(path string) string {
	return "http://127.0.0.1:" + strconv.Itoa(s.HTTPPort) + path
}

// HTTPAddr is host:port of the sidecar's HTTP API.
func (s *Sidecar) HTTPAddr() string { return "127.0.0.1:" + strconv.Itoa(s.HTTPPort) }

// GRPCAddr is host:port of the sidecar's gRPC API.
func (s *Sidecar) GRPCAddr() string { return "127.0.0.1:" + strconv.Itoa(s.GRPCPort) }

// Endpoint is the entry other sidecars' static resolvers need to find this one.
func (s *Sidecar) Endpoint() Endpoint {
	return Endpoint{AppID: s.AppID, Namespace: s.Namespace, Address: net.JoinHostPort("127.0.0.1", strconv.Itoa(s.InternalPort))}
}

// WorkloadAPISocket is where the sidecar serves the SPIFFE Workload API.
func (s *Sidecar) WorkloadAPISocket() string {
	return filepath.Join(s.Home, "run", s.AppID, "spiffe.sock")
}

// Pid is the sidecar's process id.
func (s *Sidecar) Pid() int { return s.cmd.Process.Pid }

// Logs returns what the process has written so far.
func (s *Sidecar) Logs() string { return s.logs.String() }

// Exited is closed once the process has exited.
func (s *Sidecar) Exited() <-chan struct{} { return s.done }

// WaitExit waits up to WaitTimeout for the process to exit on its own and
// returns its exit code (-1 if a signal ended it).
func (s *Sidecar) WaitExit(t testing.TB) int {
	t.Helper()
	timer := time.NewTimer(WaitTimeout)
	defer timer.Stop()
	select {
	case <-s.done:
		return s.exitCode
	case <-timer.C:
		t.Fatalf("e2e: sidecar %s still running after %v", s.AppID, WaitTimeout)
		return 0
	}
}

// Dial opens a gRPC connection to the sidecar's gRPC API, closed when the test ends.
func (s *Sidecar) Dial(t testing.TB) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(s.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("e2e: dialling %s: %v", s.GRPCAddr(), err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// stop ends the process: SIGTERM, then SIGKILL if it has not exited within
// WaitTimeout. It reports whether SIGTERM was enough.
func (s *Sidecar) stop() (graceful bool) {
	select {
	case <-s.done:
		return true
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(WaitTimeout)
	defer timer.Stop()
	select {
	case <-s.done:
		return true
	case <-timer.C:
		_ = s.cmd.Process.Kill()
		<-s.done
		return false
	}
}

func (s *Sidecar) cleanup(t testing.TB) {
	running := true
	select {
	case <-s.done:
		running = false
	default:
	}
	if running {
		if !s.stop() {
			t.Errorf("e2e: sidecar %s did not stop within %v of SIGTERM; killed", s.AppID, WaitTimeout)
		} else if s.exitCode != 0 {
			t.Errorf("e2e: sidecar %s exited with status %d on SIGTERM, want 0", s.AppID, s.exitCode)
		}
	}
	logs := s.logs.String()
	for _, bad := range []string{"panic:", "WARNING: DATA RACE", "fatal error:"} {
		if strings.Contains(logs, bad) {
			t.Errorf("e2e: sidecar %s logged %q", s.AppID, bad)
		}
	}
	if t.Failed() {
		t.Logf("---- log of sidecar %s (pid %d, exit status %d) ----\n%s---- end of log of sidecar %s ----",
			s.AppID, s.cmd.Process.Pid, s.exitCode, logs, s.AppID)
	}
}

// RunResult is the outcome of a short-lived run of the binary.
type RunResult struct {
	ExitCode int
	Output   string // stdout and stderr, interleaved
}

// RunBinary runs the binary with args and waits up to WaitTimeout for it to
// exit; a run that does not exit by then fails the test.
func RunBinary(t testing.TB, args ...string) RunResult {
	t.Helper()
	return RunBinaryEnv(t, nil, args...)
}

// RunBinaryEnv is RunBinary with env (KEY=VALUE) added to the environment.
func RunBinaryEnv(t testing.TB, env []string, args ...string) RunResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
	defer cancel()
	cmd := command(Binary(t), t.TempDir(), args)
	cmd.Env = append(cmd.Env, env...)
	var out logBuffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("e2e: starting %v: %v", args, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("e2e: outrigger %s did not exit within %v; output:\n%s", strings.Join(args, " "), WaitTimeout, out.String())
	}
	return RunResult{ExitCode: cmd.ProcessState.ExitCode(), Output: out.String()}
}
