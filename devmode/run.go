package devmode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/outrigger/outrigger/nameresolution"
	"github.com/outrigger/outrigger/nameresolution/registry"
	"github.com/outrigger/outrigger/proxy"
)

// Defaults of Options.
const (
	DefaultGracePeriod    = 5 * time.Second
	DefaultAppPortTimeout = 2 * time.Minute
)

// Exit codes of a run that do not come from an app.
const (
	// ExitFailure is the exit code of a run that failed outside an app
	// (a sidecar that did not start, an app that could not be started or
	// never listened on its port).
	ExitFailure = 1
)

// waitDelay bounds how long an app's output is read after it exits, when a
// process it left behind still holds the output open.
const waitDelay = 2 * time.Second

// SidecarFunc builds the configuration of an app's sidecar once the control
// plane is known: controlPlane is its address ("host:port") and logs is
// where the sidecar's log lines go (each line is prefixed). The closer, if
// not nil, is closed after the sidecar has stopped (a resolver, say).
type SidecarFunc func(controlPlane string, logs io.Writer) (proxy.Config, io.Closer, error)

// App is one app of a run and its sidecar.
type App struct {
	// ID is the app's id: its log prefix, and APP_ID in its environment.
	ID string
	// Command is the app's command line; empty runs the sidecar alone.
	Command []string
	// Dir is the folder the command runs in ("" for the current one).
	Dir string
	// Env is added to the app's environment (KEY=VALUE), after this
	// process's own and before the Dapr variables.
	Env []string
	// Sidecar builds its sidecar's configuration (required).
	Sidecar SidecarFunc
}

// Options configure Run. Zero fields take the defaults.
type Options struct {
	// Home is OUTRIGGER_HOME (default DefaultHome()).
	Home string
	// ControlPlaneAddress is the control plane to use; empty uses the
	// development control process, started when none runs.
	ControlPlaneAddress string
	// Executable is the outrigger binary started as the development control
	// process (default os.Executable()).
	Executable string
	// ControlPlaneListen is the address a started development control
	// process listens on (default: the control plane's default).
	ControlPlaneListen string
	// StartTimeout bounds the start of the development control process.
	StartTimeout time.Duration
	// Output receives every prefixed line (default os.Stdout).
	Output io.Writer
	// GracePeriod is the wait between SIGTERM and SIGKILL when stopping an app.
	GracePeriod time.Duration
	// AppPortTimeout bounds the wait for an app to listen on its port.
	AppPortTimeout time.Duration
	// Version is this binary's version; a development control process of
	// another version gets a warning.
	Version string
	// Transparent runs each app in a network namespace of its own whose
	// outbound TCP its sidecar intercepts (transparent.go); Linux, root.
	Transparent bool
}

// Run runs apps, each beside its sidecar, until ctx ends or one of them
// stops, then stops them all and returns the exit code of the run: with a
// single app, that app's exit code; with several, the exit code of the
// first that failed, or 0 when none failed. An app stopped by the run
// (because ctx ended or another app stopped) has not failed if it exits with
// 0 or dies of the run's signal. The error reports what kept the run from
// starting at all; failures of single apps are printed and show in the code.
func Run(ctx context.Context, o Options, apps []App) (int, error) {
	if len(apps) == 0 {
		return ExitFailure, errors.New("devmode: no apps to run")
	}
	ids := map[string]bool{}
	for i, a := range apps {
		switch {
		case a.ID == "":
			return ExitFailure, fmt.Errorf("devmode: app %d has no id", i)
		case ids[a.ID]:
			return ExitFailure, fmt.Errorf("devmode: two apps have the id %q", a.ID)
		case a.Sidecar == nil:
			return ExitFailure, fmt.Errorf("devmode: app %q has no sidecar configuration", a.ID)
		}
		ids[a.ID] = true
	}
	if o.Output == nil {
		o.Output = os.Stdout
	}
	if o.GracePeriod <= 0 {
		o.GracePeriod = DefaultGracePeriod
	}
	if o.AppPortTimeout <= 0 {
		o.AppPortTimeout = DefaultAppPortTimeout
	}
	con := newConsole(o.Output)
	r := &runner{o: o, con: con, say: con.writer("== OUTRIGGER == ")}
	defer r.say.Flush()
	if o.Transparent {
		for _, name := range removeLeftoverNetns() {
			r.sayf("removed the network namespace %s, left by a run that is gone", name)
		}
		order := make([]string, len(apps))
		for i, a := range apps {
			order[i] = a.ID
		}
		var err error
		if r.hosts, err = virtualHostsFile(order); err != nil {
			return ExitFailure, err
		}
	}

	r.addr = o.ControlPlaneAddress
	if r.addr == "" {
		home := o.Home
		if home == "" {
			var err error
			if home, err = DefaultHome(); err != nil {
				return ExitFailure, err
			}
		}
		rec, started, err := EnsureControlPlane(ctx, ControlPlaneOptions{
			Home: home, Executable: o.Executable, Listen: o.ControlPlaneListen, StartTimeout: o.StartTimeout,
		})
		if err != nil {
			return ExitFailure, err
		}
		if started {
			r.sayf("started the development control process at %s (pid %d, log %s/%s/%s); `outrigger stop` stops it",
				rec.Address, rec.PID, home, LogsDir, ControlPlaneLog)
		} else {
			r.sayf("using the development control process at %s (pid %d)", rec.Address, rec.PID)
			if o.Version != "" && rec.Version != "" && rec.Version != o.Version {
				r.sayf("warning: the development control process runs version %s, this outrigger is %s; `outrigger stop` it to start the new one", rec.Version, o.Version)
			}
		}
		r.addr = rec.Address
		if rec.NATSURL != "" {
			// The default pub/sub component reads it (envRef).
			_ = os.Setenv(NATSURLEnv, rec.NATSURL)
		}
	}

	runCtx, stopAll := context.WithCancel(ctx)
	defer stopAll()
	r.stopAll = stopAll
	results := make([]result, len(apps))
	var wg sync.WaitGroup
	for i := range apps {
		wg.Go(func() { results[i] = r.runApp(runCtx, apps[i]) })
	}
	wg.Wait()

	var first *result
	for i := range results {
		if res := &results[i]; res.failed && (first == nil || res.seq < first.seq) {
			first = res
		}
	}
	if first == nil {
		r.sayf("done")
		return 0, nil
	}
	code := first.code
	if code == 0 {
		code = ExitFailure
	}
	if len(apps) > 1 {
		r.sayf("done; %s failed first (exit code %d)", first.id, code)
	}
	return code, nil
}

type runner struct {
	o       Options
	con     *console
	say     *lineWriter
	addr    string
	stopAll context.CancelFunc
	seq     atomic.Int64
	hosts   string // the apps' virtual addresses, under Transparent
}

// result is how one app ended.
type result struct {
	id     string
	code   int
	failed bool
	seq    int64 // order in which apps failed; the lowest failed first
}

func (r *runner) sayf(format string, args ...any) {
	fmt.Fprintf(r.say, format+"\n", args...)
}

func (r *runner) failed(id string, code int) result {
	return result{id: id, code: code, failed: true, seq: r.seq.Add(1)}
}

// runApp runs one app and its sidecar until ctx ends or either stops.
func (r *runner) runApp(ctx context.Context, app App) result {
	scLogs := r.con.writer("== SIDECAR - " + app.ID + " == ")
	defer scLogs.Flush()
	cfg, closer, err := app.Sidecar(r.addr, scLogs)
	if err != nil {
		r.sayf("app %s: preparing its sidecar: %v", app.ID, err)
		r.stopAll()
		return r.failed(app.ID, ExitFailure)
	}
	if closer != nil {
		defer closer.Close()
	}
	var netns *appNetns
	if r.o.Transparent {
		var appPorts []int
		if cfg.AppPort > 0 {
			appPorts = []int{cfg.AppPort}
		}
		if netns, err = makeAppNetns(ctx, app.ID, r.hosts, proxy.DefaultTransparentPort, appPorts); err != nil {
			r.sayf("app %s: %v", app.ID, err)
			r.stopAll()
			return r.failed(app.ID, ExitFailure)
		}
		defer netns.Remove() // after the app and its sidecar have stopped
		cfg.Transparent, cfg.TransparentPort = true, proxy.DefaultTransparentPort
		cfg.AppNetns, cfg.VirtualHosts = netns.Path(), netns.HostsPath()
		cfg.ExplicitProxy = false
		cfg.AppChannelAddress = "127.0.0.1"
		r.sayf("app %s: runs in the network namespace %s; its outbound TCP goes through its sidecar", app.ID, netns.Path())
	}
	sc, err := proxy.New(cfg)
	if err != nil {
		r.sayf("app %s: %v", app.ID, err)
		r.stopAll()
		return r.failed(app.ID, ExitFailure)
	}
	// The sidecar outlives ctx: it stops after its app.
	scCtx, scCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer scCancel()
	scDone := make(chan error, 1)
	go func() { scDone <- sc.Run(scCtx) }()
	scStopped := false
	stopSidecar := func() error {
		if scStopped {
			return nil
		}
		scStopped = true
		scCancel()
		return <-scDone
	}
	defer stopSidecar()

	select {
	case <-sc.Ready():
	case err := <-scDone:
		scStopped = true
		r.sayf("app %s: its sidecar did not start: %v", app.ID, err)
		r.stopAll()
		return r.failed(app.ID, ExitFailure)
	case <-ctx.Done():
		return result{id: app.ID}
	}
	ports := sc.Ports()

	if len(app.Command) == 0 {
		r.sayf("app %s: sidecar is up (HTTP port %d, gRPC port %d); no command given, so no app runs", app.ID, ports.HTTP, ports.GRPC)
		select {
		case <-ctx.Done():
			return result{id: app.ID}
		case err := <-scDone:
			scStopped = true
			r.stopAll()
			if err != nil {
				r.sayf("app %s: its sidecar failed: %v", app.ID, err)
				return r.failed(app.ID, ExitFailure)
			}
			r.sayf("app %s: its sidecar shut down", app.ID)
			return result{id: app.ID}
		}
	}

	appLogs := r.con.writer("== APP - " + app.ID + " == ")
	defer appLogs.Flush()
	argv := app.Command
	if netns != nil {
		argv = netns.Command(argv)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = app.Dir
	cmd.Env = append(append(os.Environ(), app.Env...), daprEnv(app.ID, cfg, ports)...)
	cmd.Stdout, cmd.Stderr = appLogs, appLogs
	cmd.SysProcAttr = ownGroup()
	cmd.WaitDelay = waitDelay
	if err := cmd.Start(); err != nil {
		r.sayf("app %s: starting %q: %v", app.ID, app.Command[0], err)
		r.stopAll()
		return r.failed(app.ID, ExitFailure)
	}
	pid := cmd.Process.Pid
	r.sayf("app %s: started (pid %d) with DAPR_HTTP_PORT=%d DAPR_GRPC_PORT=%d", app.ID, pid, ports.HTTP, ports.GRPC)
	appDone := make(chan struct{})
	go func() { _ = cmd.Wait(); close(appDone) }()

	var portCh chan error
	if cfg.AppPort > 0 {
		portCh = make(chan error, 1)
		waitCtx, waitCancel := context.WithCancel(ctx)
		defer waitCancel()
		addr := net.JoinHostPort(orDefault(cfg.AppChannelAddress, "127.0.0.1"), strconv.Itoa(cfg.AppPort))
		if netns != nil {
			// The app listens in its namespace: the sidecar, which
			// reaches it there, says when it does.
			addr = "127.0.0.1:" + strconv.Itoa(ports.HTTP)
			go func() { portCh <- waitForHealthz(waitCtx, addr, r.o.AppPortTimeout) }()
		} else {
			go func() { portCh <- waitForPort(waitCtx, addr, r.o.AppPortTimeout) }()
		}
	}
	var portFailure *result
	for {
		select {
		case <-appDone:
			code, how := exitCode(cmd.ProcessState)
			_ = signalGroup(pid, syscall.SIGTERM) // whatever it left behind
			if portFailure != nil {
				return *portFailure
			}
			res := result{id: app.ID, code: code}
			if code != 0 {
				res = r.failed(app.ID, code)
			}
			if ctx.Err() == nil {
				r.sayf("app %s: %s; stopping", app.ID, how)
				r.stopAll()
			} else {
				r.sayf("app %s: %s", app.ID, how)
			}
			return res

		case err := <-scDone:
			scStopped = true
			r.stopAll()
			if err != nil {
				r.sayf("app %s: its sidecar failed: %v; stopping the app", app.ID, err)
			} else {
				r.sayf("app %s: its sidecar shut down; stopping the app", app.ID)
			}
			code, clean, how := r.terminate(cmd, appDone)
			r.sayf("app %s: %s", app.ID, how)
			switch {
			case portFailure != nil:
				return *portFailure
			case err != nil:
				return r.failed(app.ID, ExitFailure)
			case !clean:
				return r.failed(app.ID, code)
			}
			return result{id: app.ID}

		case <-ctx.Done():
			code, clean, how := r.terminate(cmd, appDone)
			r.sayf("app %s: %s", app.ID, how)
			if portFailure != nil {
				return *portFailure
			}
			if !clean {
				return r.failed(app.ID, code)
			}
			return result{id: app.ID}

		case err := <-portCh:
			portCh = nil
			if err == nil {
				r.sayf("app %s: listening on port %d; you're up and running", app.ID, cfg.AppPort)
				continue
			}
			if ctx.Err() != nil {
				continue
			}
			r.sayf("app %s: %v; stopping", app.ID, err)
			f := r.failed(app.ID, ExitFailure)
			portFailure = &f
			r.stopAll()
		}
	}
}

// terminate stops a running app: SIGTERM to its process group, SIGKILL after
// the grace period. clean reports an exit with 0 or by the signal sent.
func (r *runner) terminate(cmd *exec.Cmd, appDone <-chan struct{}) (code int, clean bool, how string) {
	pid := cmd.Process.Pid
	_ = signalGroup(pid, syscall.SIGTERM)
	t := time.NewTimer(r.o.GracePeriod)
	defer t.Stop()
	select {
	case <-appDone:
	case <-t.C:
		_ = signalGroup(pid, syscall.SIGKILL)
		<-appDone
	}
	ps := cmd.ProcessState
	code, how = exitCode(ps)
	if sig, ok := exitSignal(ps); ok && (sig == syscall.SIGTERM || sig == syscall.SIGKILL || sig == syscall.SIGINT) {
		return 0, true, "stopped"
	}
	switch code {
	case 0, 128 + int(syscall.SIGTERM), 128 + int(syscall.SIGINT), 128 + int(syscall.SIGKILL):
		return 0, true, "stopped (" + how + ")"
	}
	return code, false, how
}

// exitCode returns a finished process's exit code (128+signal when a signal
// ended it, as shells report it) and a description.
func exitCode(ps *os.ProcessState) (int, string) {
	if ps == nil {
		return ExitFailure, "ended without an exit status"
	}
	if sig, ok := exitSignal(ps); ok {
		return 128 + int(sig), "killed by signal " + sig.String()
	}
	code := ps.ExitCode()
	if code < 0 {
		return ExitFailure, ps.String()
	}
	return code, fmt.Sprintf("exited with code %d", code)
}

// waitForPort polls addr with TCP connects until one succeeds, ctx ends or
// timeout passes.
func waitForPort(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var d net.Dialer
	for {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		c, err := d.DialContext(dctx, "tcp", addr)
		cancel()
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not listening on %s after %v", addr, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// waitForHealthz polls the sidecar at addr until /v1.0/healthz answers 204
// (its app reachable), ctx ends or timeout passes.
func waitForHealthz(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil}}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v1.0/healthz", nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not listening in its namespace after %v", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// daprEnv is what the Dapr CLI puts in an app's environment.
func daprEnv(appID string, cfg proxy.Config, ports proxy.Ports) []string {
	env := []string{
		"APP_ID=" + appID,
		"APP_PROTOCOL=" + orDefault(cfg.AppProtocol, proxy.ProtocolHTTP),
		"APP_CHANNEL_ADDRESS=" + orDefault(cfg.AppChannelAddress, "127.0.0.1"),
		"DAPR_HTTP_PORT=" + strconv.Itoa(ports.HTTP),
		"DAPR_GRPC_PORT=" + strconv.Itoa(ports.GRPC),
	}
	if cfg.AppPort > 0 {
		env = append(env, "APP_PORT="+strconv.Itoa(cfg.AppPort))
	}
	if ports.Metrics > 0 {
		env = append(env, "DAPR_METRICS_PORT="+strconv.Itoa(ports.Metrics))
	}
	if ports.Proxy > 0 {
		// Calls to other apps by name (http://orders/..., a gRPC client
		// dialling orders:50051) go through the sidecar's explicit proxy;
		// its own API on loopback does not.
		u := "http://127.0.0.1:" + strconv.Itoa(ports.Proxy)
		for _, k := range []string{"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "grpc_proxy"} {
			env = append(env, k+"="+u)
		}
		env = append(env, "NO_PROXY=localhost,127.0.0.1,::1", "no_proxy=localhost,127.0.0.1,::1")
	}
	return env
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// RegistrySidecar returns a SidecarFunc for cfg that finds other apps
// through the control plane's registry, announces this one there, and logs
// text lines at info level. cmd/outrigger builds its own from the sidecar
// flags; this one serves programs and tests that have a Config at hand.
func RegistrySidecar(cfg proxy.Config) SidecarFunc {
	return func(controlPlane string, logs io.Writer) (proxy.Config, io.Closer, error) {
		c := cfg
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
		res := registry.NewResolver(controlPlane, registry.WithLogger(c.Logger))
		c.Resolver = res
		c.Announcer = announcer{registry.NewAnnouncer(controlPlane, registry.WithLogger(c.Logger))}
		return c, res, nil
	}
}

// announcer adapts a nameresolution.Announcer to the sidecar's.
type announcer struct{ a nameresolution.Announcer }

func (a announcer) Announce(ctx context.Context, appID, namespace string, meshPort int) error {
	return a.a.Announce(ctx, nameresolution.Instance{AppID: appID, Namespace: namespace, Port: meshPort})
}
