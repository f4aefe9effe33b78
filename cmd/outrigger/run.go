package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"

	"github.com/outrigger/outrigger/devmode"
	"github.com/outrigger/outrigger/proxy"
)

const runUsage = `Usage:
  outrigger run --app-id ID [--app-port N] [sidecar flags] [-- CMD ARGS...]
  outrigger run -f FILE

Runs an app (CMD ARGS...) beside its sidecar, or every app of a run file
(Dapr's multi-app run template), each beside its own. Apps get
DAPR_HTTP_PORT, DAPR_GRPC_PORT and APP_ID in their environment; sidecar
ports not given are picked free. Apps find one another through the
development control process, which the first run starts in the background
($OUTRIGGER_HOME, default ~/.outrigger) and ` + "`outrigger stop`" + ` stops.
An app that names no resources path gets $OUTRIGGER_HOME/resources, made on
first use with a SQLite state store named statestore (see outrigger init).
Apps call other apps by name (http://orders/..., a gRPC client dialling
orders:50051) with no Dapr API: through their sidecar's explicit proxy
(HTTP_PROXY, grpc_proxy and the like are set), or, with --transparent (Linux,
root), from a network namespace of their own whose outbound TCP the sidecar
intercepts. See docs/interception.md.
Ctrl-C stops the apps, then their sidecars; the run ends when an app exits,
with that app's exit code.

Flags (every ` + "`outrigger sidecar`" + ` flag is accepted and passed on):
`

// runCommand runs `outrigger run` and returns the exit code.
func runCommand(ctx context.Context, args []string) int {
	code, err := runApps(ctx, args)
	if err == nil {
		return code
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintf(os.Stderr, "outrigger run: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	if code == 0 {
		code = 1
	}
	return code
}

func runApps(ctx context.Context, args []string) (int, error) {
	fs := flag.NewFlagSet("outrigger run", flag.ContinueOnError)
	f := newSidecarFlags(fs)
	var runFile string
	fs.StringVar(&runFile, "f", "", "run file: run every app it lists (Dapr's multi-app run template)")
	fs.StringVar(&runFile, "run-file", "", "same as -f (with --transparent, the only other flag it takes)")
	var transparent bool
	fs.BoolVar(&transparent, "transparent", false, "run each app in a network namespace of its own whose outbound TCP its sidecar intercepts: apps call one another by name with no Dapr API and no proxy settings (Linux, root; docs/interception.md)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), runUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, err
		}
		return 2, usageError{err}
	}

	if f.concurrency.set && f.concurrency.n > 0 {
		runtime.GOMAXPROCS(f.concurrency.n)
	}
	home, err := devmode.DefaultHome()
	if err != nil {
		return 1, err
	}
	var apps []devmode.App
	controlPlane := ""
	if runFile != "" {
		var extra []string
		fs.Visit(func(fl *flag.Flag) {
			if fl.Name != "f" && fl.Name != "run-file" && fl.Name != "transparent" {
				extra = append(extra, "--"+fl.Name)
			}
		})
		if len(extra) > 0 || fs.NArg() > 0 {
			what := strings.Join(extra, ", ")
			if fs.NArg() > 0 {
				what = strings.TrimPrefix(what+", "+fs.Arg(0), ", ")
			}
			return 2, usageError{fmt.Errorf("-f takes every setting from the run file; remove %s from the command line", what)}
		}
		specs, err := devmode.LoadRunFile(runFile)
		if err != nil {
			return 2, usageError{err}
		}
		flags := make([]*sidecarFlags, len(specs))
		sets := make([]*flag.FlagSet, len(specs))
		// No sidecar takes a port one of the apps listens on: the apps
		// start after their sidecars.
		var appPorts []int
		for i, spec := range specs {
			for _, w := range spec.Warnings {
				fmt.Fprintf(os.Stderr, "outrigger run: app %s: %s\n", spec.AppID, w)
			}
			flags[i], sets[i], err = parseSidecarFlags("run file app "+spec.AppID, spec.SidecarArgs)
			if err != nil {
				return 2, usageError{fmt.Errorf("app %s: %w", spec.AppID, err)}
			}
			if p := flags[i].cfg.AppPort; p > 0 {
				appPorts = append(appPorts, p)
			}
		}
		for i, spec := range specs {
			app, err := devApp(flags[i], sets[i], spec.Command, spec.Dir, spec.Env, home, appPorts)
			if err != nil {
				return 2, fmt.Errorf("app %s: %w", spec.AppID, err)
			}
			apps = append(apps, app)
		}
	} else {
		app, err := devApp(f, fs, fs.Args(), "", nil, home, nil)
		if err != nil {
			return 2, err
		}
		apps = append(apps, app)
		controlPlane = f.controlPlane
	}

	return devmode.Run(ctx, devmode.Options{Home: home, ControlPlaneAddress: controlPlane, Version: version, Transparent: transparent}, apps)
}

// devApp turns parsed sidecar flags and an app's command into a devmode
// app. Development-mode defaults apply to what the flags leave unset: every
// port is picked free (not daprd's fixed defaults, nor DAPR_HTTP_PORT from
// the environment, so several apps run side by side), the mesh listener
// binds loopback only, and name resolution goes through the development
// control process. A port left free is never one of appPorts, the ports
// the run's apps listen on.
func devApp(f *sidecarFlags, fs *flag.FlagSet, command []string, dir string, env []string, home string, appPorts []int) (devmode.App, error) {
	cfg, _, err := f.config()
	if err != nil {
		return devmode.App{}, err
	}
	cfg.ReservedPorts = appPorts
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	for name, port := range map[string]*int{
		"dapr-http-port":          &cfg.HTTPPort,
		"dapr-grpc-port":          &cfg.GRPCPort,
		"dapr-internal-grpc-port": &cfg.InternalGRPCPort,
		"metrics-port":            &cfg.MetricsPort,
	} {
		if !set[name] {
			*port = 0
		}
	}
	if !set["dapr-internal-listen-address"] {
		cfg.MeshListenAddress = "127.0.0.1"
	}
	// The app calls other apps by name through its sidecar's explicit
	// proxy (HTTP_PROXY and the like, set by devmode).
	if !set["enable-explicit-proxy"] {
		cfg.ExplicitProxy = true
	}
	if !set["proxy-port"] {
		cfg.ProxyPort = 0
	}
	if len(cfg.ResourcesPaths) == 0 {
		// As `dapr run` takes ~/.dapr/components: the default resources,
		// made on first use.
		dir, _, err := devmode.DefaultResources(home)
		if err != nil {
			return devmode.App{}, fmt.Errorf("default resources: %w", err)
		}
		cfg.ResourcesPaths = []string{dir}
	}
	sidecar := func(controlPlane string, logs io.Writer) (proxy.Config, io.Closer, error) {
		c := cfg
		logger, err := newLogger(logs, f.logLevel, f.logAsJSON, "")
		if err != nil {
			return c, nil, err
		}
		c.Logger = logger
		if f.controlPlane == "" {
			f.controlPlane = controlPlane
		}
		resolver, announcer, err := f.nameResolver(&c, logger)
		if err != nil {
			return c, nil, err
		}
		c.Resolver, c.Announcer = resolver, announcer
		// Every app under `outrigger run` joins the mesh with mutual TLS,
		// its certificate from the development control process's CA.
		f.enableMTLS = true
		stop, err := f.startSidecarParts(context.Background(), &c, home, logger)
		if err != nil {
			_ = resolver.Close()
			return c, nil, err
		}
		return c, closerFunc(func() error { stop(); return resolver.Close() }), nil
	}
	if sock := f.workloadSocket(home, cfg.AppID); sock != "" {
		// go-spiffe's workloadapi finds the sidecar's Workload API here.
		env = append(append([]string(nil), env...), "SPIFFE_ENDPOINT_SOCKET=unix://"+sock)
	}
	return devmode.App{ID: cfg.AppID, Command: command, Dir: dir, Env: env, Sidecar: sidecar}, nil
}

// closerFunc adapts a function to io.Closer.
type closerFunc func() error

func (f closerFunc) Close() error { return f() }
