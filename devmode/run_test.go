package devmode_test

import (
	"context"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/outrigger/outrigger/devmode"
	"github.com/outrigger/outrigger/proxy"
	"github.com/outrigger/outrigger/xds/registry"
)

// serveRegistry serves a registry on a free loopback port for the test's
// length, standing in for the development control process.
func serveRegistry(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New(registry.Options{})
	srv := &http.Server{Handler: reg.Handler(), ReadHeaderTimeout: 5 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = reg.Run(ctx) })
	wg.Go(func() { _ = srv.Serve(ln) })
	t.Cleanup(func() {
		cancel()
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = srv.Shutdown(sctx)
		wg.Wait()
	})
	return ln.Addr().String()
}

// sidecar is the configuration of a test sidecar: every port free, nothing
// bound beyond loopback.
func sidecar(appID string, appPort int) devmode.SidecarFunc {
	return devmode.RegistrySidecar(proxy.Config{
		AppID:             appID,
		AppPort:           appPort,
		ListenAddress:     "127.0.0.1",
		MeshListenAddress: "127.0.0.1",
		MetricsDisabled:   true,
	})
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func options(t *testing.T, out *syncBuffer) devmode.Options {
	t.Helper()
	home := t.TempDir()
	t.Setenv(devmode.HomeEnv, home)
	return devmode.Options{
		Home:                home,
		ControlPlaneAddress: serveRegistry(t),
		Output:              out,
		GracePeriod:         3 * time.Second,
	}
}

func run(t *testing.T, ctx context.Context, o devmode.Options, apps ...devmode.App) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	code, err := devmode.Run(ctx, o, apps)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return code
}

func TestRunPrefixesOutputAndExitsWithAppCode(t *testing.T) {
	out := &syncBuffer{}
	o := options(t, out)
	code := run(t, context.Background(), o, devmode.App{
		ID:      "printer",
		Command: []string{"sh", "-c", `echo "hello $APP_ID"; echo "to stderr" >&2; echo "http=$DAPR_HTTP_PORT grpc=$DAPR_GRPC_PORT extra=$EXTRA"; printf 'no newline'; exit 3`},
		Env:     []string{"EXTRA=yes", "APP_ID=overridden-by-run"},
		Sidecar: sidecar("printer", 0),
	})
	got := out.String()
	if code != 3 {
		t.Errorf("exit code = %d; want 3 (the app's)\n%s", code, got)
	}
	for _, want := range []string{
		"== APP - printer == hello printer\n",
		"== APP - printer == to stderr\n",
		"== APP - printer == no newline\n",
		"== SIDECAR - printer == ",
		"== OUTRIGGER == app printer: exited with code 3",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	m := regexp.MustCompile(`http=(\d+) grpc=(\d+) extra=yes`).FindStringSubmatch(got)
	if m == nil || m[1] == "3500" || m[1] == m[2] {
		t.Errorf("app env: got %v; want free DAPR_HTTP_PORT and DAPR_GRPC_PORT and EXTRA=yes", m)
	}
	for _, line := range strings.Split(strings.TrimSpace(got), "\n") {
		if !strings.HasPrefix(line, "== ") {
			t.Errorf("unprefixed line %q", line)
		}
	}
}

func TestRunStopsAppOnCancel(t *testing.T) {
	out := &syncBuffer{}
	o := options(t, out)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pidFile := t.TempDir() + "/pid"
	done := make(chan int, 1)
	go func() {
		code, err := devmode.Run(ctx, o, []devmode.App{{
			ID: "sleeper",
			// A child of the app (sleep) must be stopped too: the whole group gets the signal.
			Command: []string{"sh", "-c", `echo "port=$DAPR_HTTP_PORT"; sleep 60 & echo $! > ` + pidFile + `; wait`},
			Sidecar: sidecar("sleeper", 0),
		}})
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		done <- code
	}()
	re := regexp.MustCompile(`port=(\d+)`)
	waitFor(t, 30*time.Second, "app start", func() bool { return re.MatchString(out.String()) && fileHas(pidFile) })
	port := re.FindStringSubmatch(out.String())[1]
	// The sidecar serves while the app runs.
	resp, err := http.Get("http://127.0.0.1:" + port + "/v1.0/healthz")
	if err != nil {
		t.Fatalf("sidecar healthz: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("sidecar healthz = %d; want 204", resp.StatusCode)
	}
	data, _ := os.ReadFile(pidFile)
	childPID, _ := strconv.Atoi(strings.TrimSpace(string(data)))

	start := time.Now()
	cancel() // Ctrl-C
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit code after Ctrl-C = %d; want 0 (app stopped cleanly)\n%s", code, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("stopping took %v; want the app to end on SIGTERM, well within the grace period", d)
	}
	// The child got SIGTERM with its group; give it a moment to die (the
	// kernel delivers and the child exits asynchronously).
	for deadline := time.Now().Add(10 * time.Second); childPID > 0 && running(childPID) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if childPID > 0 && running(childPID) {
		t.Errorf("the app's child (pid %d) still runs", childPID)
		_ = syscall.Kill(childPID, syscall.SIGKILL)
	}
	if _, err := http.Get("http://127.0.0.1:" + port + "/v1.0/healthz"); err == nil {
		t.Errorf("the sidecar still answers after the run")
	}
	if !strings.Contains(out.String(), "== OUTRIGGER == app sleeper: stopped") {
		t.Errorf("output lacks the stop notice:\n%s", out.String())
	}
}

// running reports whether pid runs (a zombie, left for a reaper that may
// not reap in a container, does not).
func running(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// The state follows the command name in parentheses.
	s := string(data)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

func fileHas(path string) bool {
	data, err := os.ReadFile(path)
	return err == nil && len(strings.TrimSpace(string(data))) > 0
}

// TestRunTwoApps runs a caller and a callee, the callee with an app port,
// and checks that the caller reaches it through both sidecars by the
// registry, and that the run ends with the caller.
func TestRunTwoApps(t *testing.T) {
	out := &syncBuffer{}
	o := options(t, out)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	code := run(t, context.Background(), o,
		devmode.App{ID: "callee", Command: []string{exe}, Env: []string{helperEnv + "=callee"}, Sidecar: sidecar("callee", port)},
		devmode.App{ID: "caller", Command: []string{exe}, Env: []string{helperEnv + "=caller"}, Sidecar: sidecar("caller", 0)},
	)
	got := out.String()
	if code != 0 {
		t.Errorf("exit code = %d; want 0\n%s", code, got)
	}
	for _, want := range []string{
		`== APP - caller == caller got "hello from callee"`,
		"== APP - callee == callee listening, APP_ID=callee",
		"== OUTRIGGER == app callee: listening on port " + strconv.Itoa(port),
		"== OUTRIGGER == app caller: exited with code 0; stopping",
		"== OUTRIGGER == app callee: stopped",
		"== APP - callee == callee stopping",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}

func TestRunFailures(t *testing.T) {
	for _, tt := range []struct {
		name     string
		app      func(t *testing.T) devmode.App
		wantCode int
		want     string
	}{
		{
			name: "app exits before its port",
			app: func(t *testing.T) devmode.App {
				return devmode.App{ID: "quitter", Command: []string{"sh", "-c", "exit 5"}, Sidecar: sidecar("quitter", freePort(t))}
			},
			wantCode: 5,
			want:     "app quitter: exited with code 5",
		},
		{
			name: "app never listens",
			app: func(t *testing.T) devmode.App {
				return devmode.App{ID: "deaf", Command: []string{"sleep", "60"}, Sidecar: sidecar("deaf", freePort(t))}
			},
			wantCode: devmode.ExitFailure,
			want:     "app deaf: not listening on 127.0.0.1:",
		},
		{
			name: "command not found",
			app: func(*testing.T) devmode.App {
				return devmode.App{ID: "ghost", Command: []string{"no-such-command-xyz"}, Sidecar: sidecar("ghost", 0)}
			},
			wantCode: devmode.ExitFailure,
			want:     `app ghost: starting "no-such-command-xyz"`,
		},
		{
			name: "killed by a signal",
			app: func(*testing.T) devmode.App {
				return devmode.App{ID: "victim", Command: []string{"sh", "-c", "kill -KILL $$"}, Sidecar: sidecar("victim", 0)}
			},
			wantCode: 128 + 9,
			want:     "app victim: killed by signal killed",
		},
		{
			name: "sidecar port taken",
			app: func(t *testing.T) devmode.App {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { ln.Close() })
				return devmode.App{ID: "clash", Command: []string{"true"}, Sidecar: devmode.RegistrySidecar(proxy.Config{
					AppID: "clash", ListenAddress: "127.0.0.1", MeshListenAddress: "127.0.0.1", MetricsDisabled: true,
					HTTPPort: ln.Addr().(*net.TCPAddr).Port,
				})}
			},
			wantCode: devmode.ExitFailure,
			want:     "app clash: its sidecar did not start",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out := &syncBuffer{}
			o := options(t, out)
			o.AppPortTimeout = 500 * time.Millisecond
			code := run(t, context.Background(), o, tt.app(t))
			if code != tt.wantCode || !strings.Contains(out.String(), tt.want) {
				t.Errorf("exit code %d, output:\n%s\nwant code %d and %q", code, out.String(), tt.wantCode, tt.want)
			}
		})
	}
}

func TestRunMultiExitCode(t *testing.T) {
	out := &syncBuffer{}
	o := options(t, out)
	code := run(t, context.Background(), o,
		devmode.App{ID: "server", Command: []string{"sleep", "60"}, Sidecar: sidecar("server", 0)},
		devmode.App{ID: "job", Command: []string{"sh", "-c", "sleep 0.3; exit 7"}, Sidecar: sidecar("job", 0)},
	)
	if code != 7 {
		t.Errorf("exit code = %d; want 7 (the app that failed)\n%s", code, out.String())
	}
	if !strings.Contains(out.String(), "== OUTRIGGER == done; job failed first (exit code 7)") {
		t.Errorf("output lacks the summary:\n%s", out.String())
	}
}

func TestRunSidecarAlone(t *testing.T) {
	out := &syncBuffer{}
	o := options(t, out)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- run(t, ctx, o, devmode.App{ID: "lonely", Sidecar: sidecar("lonely", 0)}) }()
	waitFor(t, 30*time.Second, "sidecar up", func() bool { return strings.Contains(out.String(), "no command given") })
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("exit code = %d; want 0\n%s", code, out.String())
	}
}

func TestRunBadApps(t *testing.T) {
	o := devmode.Options{ControlPlaneAddress: "127.0.0.1:1"}
	for _, tt := range []struct {
		name string
		apps []devmode.App
		want string
	}{
		{"none", nil, "no apps"},
		{"no id", []devmode.App{{Sidecar: sidecar("x", 0)}}, "has no id"},
		{"same id", []devmode.App{{ID: "a", Sidecar: sidecar("a", 0)}, {ID: "a", Sidecar: sidecar("a", 0)}}, `two apps have the id "a"`},
		{"no sidecar", []devmode.App{{ID: "a"}}, "no sidecar"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, err := devmode.Run(context.Background(), o, tt.apps)
			if err == nil || !strings.Contains(err.Error(), tt.want) || code == 0 {
				t.Errorf("Run = %d, %v; want an error naming %q", code, err, tt.want)
			}
		})
	}
}
