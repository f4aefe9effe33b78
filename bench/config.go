package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/outrigger/outrigger/bench/harness"
)

// Target names, in the order rounds interleave them. outrigger is the plain
// h2c mesh with its defaults (metrics on, tracing off); outrigger-bare is the
// same sidecars with metrics off, outrigger-traced the same with metrics on
// and tracing at tracingSamplingRate, exported by OTLP/gRPC to the harness's
// span sink; outrigger-mtls is the plain mesh with mutual TLS, its
// certificates from one `outrigger control-plane` per run.
const (
	targetDirect = "direct"
	// targetMinimal is two minimal Go forwarders (bench/minimal.go) in
	// the sidecars' place: the floor under any pair of Go sidecars.
	targetMinimal = "minimal"
	// targetRelay is two TCP relays in the sidecars' place: the floor
	// under any pair of proxies (bench/minimal.go).
	targetRelay           = "relay"
	targetOutriggerBare   = "outrigger-bare"
	targetOutrigger       = "outrigger"
	targetOutriggerTraced = "outrigger-traced"
	targetOutriggerMTLS   = "outrigger-mtls"
	// targetOutriggerTransparent is the outrigger target's sidecars, the
	// client in an app network namespace of its own calling the callee
	// by its virtual address with no Dapr API, intercepted by the caller
	// sidecar's transparent listener.
	targetOutriggerTransparent = "outrigger-transparent"
	// targetOutriggerAllCPUs is the outrigger target's sidecars with
	// --concurrency 0: Go's default of a thread per CPU instead of one.
	targetOutriggerAllCPUs = "outrigger-allcpus"
	// targetOutriggerB is the outrigger target's sidecars from another
	// binary (--outrigger-b), for before/after comparisons in one run.
	targetOutriggerB = "outrigger-b"
	targetDaprd      = "daprd"
)

var allTargets = []string{targetDirect, targetRelay, targetMinimal, targetOutriggerBare, targetOutrigger, targetOutriggerTraced, targetOutriggerMTLS, targetOutriggerTransparent, targetOutriggerAllCPUs, targetOutriggerB, targetDaprd}

// defaultTargets is every target but relay and minimal (analyses of the
// floor, asked for by name) and outrigger-b, which needs a second binary.
func defaultTargets() []string {
	return slices.DeleteFunc(slices.Clone(allTargets), func(t string) bool { return t == targetRelay || t == targetMinimal || t == targetOutriggerB })
}

// isOutrigger says whether target t runs Outrigger sidecars.
func isOutrigger(t string) bool {
	switch t {
	case targetOutriggerBare, targetOutrigger, targetOutriggerTraced, targetOutriggerMTLS, targetOutriggerTransparent, targetOutriggerAllCPUs, targetOutriggerB:
		return true
	}
	return false
}

// tracingSamplingRate is the share of requests the outrigger-traced
// sidecars sample.
const tracingSamplingRate = 0.1

// config is the harness's parsed command line.
type config struct {
	targets       []string
	rounds        int
	qps           float64
	fixedDuration time.Duration
	maxDuration   time.Duration
	warmup        time.Duration
	connections   int
	bodySize      int
	uniform       bool

	daprd      string
	daprdSet   bool // --daprd was given: a missing binary is an error, not a skip
	outrigger  string
	outriggerB string // the outrigger-b target's binary
	resolution string // name resolution of the Outrigger sidecars: static or mdns

	out          string
	jsonOut      string
	startTimeout time.Duration
	reqTimeout   time.Duration
	idleSettle   time.Duration
	timeout      time.Duration
	netns        bool
	keep         bool
	verbose      bool
	// profile, when set, is the folder that receives CPU profiles of the
	// Outrigger sidecars over each fixed-rate scenario.
	profile string
	// profileKind is what --profile records: a CPU profile (cpu) or Go's
	// execution trace (trace).
	profileKind string
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: go run ./bench [flags]\n\n"+
			"Measures client -> app directly, through two Outrigger sidecars and through two daprd\n"+
			"sidecars, in interleaved rounds, inside a network namespace (needs root). Targets:\n\n"+
			"  direct            client -> app\n"+
			"  relay             two TCP relays (bytes copied, nothing parsed, one thread each) in the\n"+
			"                    sidecars' place; the client sends the app's own request (not in the\n"+
			"                    default targets)\n"+
			"  minimal           two minimal Go forwarders (net/http, h2c between them, one thread each)\n"+
			"                    in the sidecars' place (not in the default targets)\n"+
			"  outrigger-bare    Outrigger over h2c, metrics off (--enable-metrics=false), no tracing\n"+
			"  outrigger         Outrigger over h2c, defaults: metrics on, no tracing\n"+
			"  outrigger-traced  Outrigger over h2c, metrics on, tracing at %s sampling exported by\n"+
			"                    OTLP/gRPC to a span sink the harness runs (spans counted per round)\n"+
			"  outrigger-mtls    Outrigger with mutual TLS, certificates from an outrigger control-plane\n"+
			"  outrigger-transparent  as outrigger, but the client runs in an app namespace of its own and\n"+
			"                    calls the callee by its virtual address (no Dapr API), intercepted by\n"+
			"                    the caller sidecar's transparent listener (iptables)\n"+
			"  outrigger-allcpus as outrigger, with --concurrency 0 (a thread per CPU, Go's default)\n"+
			"                    instead of the sidecar's default of one\n"+
			"  outrigger-b       as outrigger, from the binary --outrigger-b names (not in the default\n"+
			"                    targets): a before/after comparison in one run\n"+
			"  daprd             daprd (skipped when the default binary is missing)\n\n", percentf(tracingSamplingRate))
		fs.PrintDefaults()
	}
	targets := fs.String("targets", strings.Join(defaultTargets(), ","), "comma-separated targets to measure: "+strings.Join(allTargets, ", ")+" (leave one out to skip it)")
	fs.IntVar(&c.rounds, "rounds", 5, "interleaved rounds (each target once per round, each round starting one target later)")
	fs.Float64Var(&c.qps, "qps", 1000, "request rate of the fixed-rate scenario, requests/s over all connections")
	fs.DurationVar(&c.fixedDuration, "fixed-duration", 15*time.Second, "length of the fixed-rate scenario per round (0 skips it)")
	fs.DurationVar(&c.maxDuration, "max-duration", 10*time.Second, "length of the maximum-throughput scenario per round (0 skips it)")
	fs.DurationVar(&c.warmup, "warmup", 2*time.Second, "warm-up at the fixed rate before each target's measurements, not recorded")
	fs.IntVar(&c.connections, "connections", 16, "concurrent connections (fortio -c) in both scenarios")
	fs.IntVar(&c.bodySize, "body-size", 1024, "bytes in each POST body (the app echoes it back)")
	fs.BoolVar(&c.uniform, "uniform", false, "stagger the fixed-rate requests uniformly across connections (fortio -uniform)")
	fs.StringVar(&c.daprd, "daprd", defaultDaprd(), "daprd binary (built by scripts/tools.sh daprd); the daprd target is skipped when the default is missing")
	fs.StringVar(&c.outrigger, "outrigger", "", "outrigger binary (default: go build ./cmd/outrigger into a temporary folder)")
	fs.StringVar(&c.outriggerB, "outrigger-b", "", "outrigger binary of the outrigger-b target (needed for it)")
	fs.StringVar(&c.resolution, "outrigger-resolution", "static", "name resolution of the Outrigger sidecars: static or mdns (daprd always uses its default, mDNS)")
	fs.StringVar(&c.out, "out", "", "also write the markdown report to this file")
	fs.StringVar(&c.jsonOut, "json", "", "write every round's raw results to this JSON file")
	fs.DurationVar(&c.startTimeout, "start-timeout", 30*time.Second, "longest a process may take to become ready")
	fs.DurationVar(&c.reqTimeout, "request-timeout", 5*time.Second, "timeout of one request under load (counted as an error)")
	fs.DurationVar(&c.idleSettle, "idle-settle", time.Second, "wait after a sidecar is ready before reading its idle RSS")
	fs.DurationVar(&c.timeout, "timeout", 0, "bound on the whole run (0: computed from rounds, targets and durations)")
	fs.BoolVar(&c.netns, "netns", true, "run inside a fresh network namespace; false only where the machine is already isolated (daprd's mDNS multicasts)")
	fs.BoolVar(&c.keep, "keep", false, "keep the working folder (process logs, resources) after the run")
	fs.BoolVar(&c.verbose, "v", false, "log progress details")
	fs.StringVar(&c.profileKind, "profile-kind", "cpu", "what --profile records of each sidecar: cpu (a CPU profile, .pprof) or trace (Go's execution trace, .trace, for `go tool trace`: scheduling delays, system calls, GC)")
	fs.StringVar(&c.profile, "profile", "", "write a CPU profile of each Outrigger sidecar over each fixed-rate scenario to this folder (<target>-round<N>-<app-id>.pprof); profiling is on in every Outrigger target, so compare targets from the same kind of run")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "daprd" {
			c.daprdSet = true
		}
	})
	for t := range strings.SplitSeq(*targets, ",") {
		t = strings.TrimSpace(t)
		if t == "" {
			continue
		}
		if !slices.Contains(allTargets, t) {
			return nil, fmt.Errorf("--targets: unknown target %q (want %s)", t, strings.Join(allTargets, ", "))
		}
		if !slices.Contains(c.targets, t) {
			c.targets = append(c.targets, t)
		}
	}
	// Interleave in the canonical order whatever order the flag gave.
	slices.SortFunc(c.targets, func(a, b string) int {
		return slices.Index(allTargets, a) - slices.Index(allTargets, b)
	})
	switch {
	case len(c.targets) == 0:
		return nil, errors.New("--targets: no target")
	case slices.Contains(c.targets, targetOutriggerB) && c.outriggerB == "":
		return nil, errors.New("--targets: outrigger-b needs --outrigger-b BINARY")
	case !slices.Contains(c.targets, targetOutriggerB) && c.outriggerB != "":
		return nil, errors.New("--outrigger-b: add outrigger-b to --targets to measure it")
	case c.rounds < 1:
		return nil, errors.New("--rounds: want at least 1")
	case c.connections < 1:
		return nil, errors.New("--connections: want at least 1")
	case c.bodySize < 0:
		return nil, errors.New("--body-size: must not be negative")
	case c.fixedDuration < 0 || c.maxDuration < 0 || c.warmup < 0:
		return nil, errors.New("durations must not be negative")
	case c.fixedDuration == 0 && c.maxDuration == 0:
		return nil, errors.New("--fixed-duration and --max-duration are both 0: nothing to measure")
	case c.fixedDuration > 0 && c.qps <= 0:
		return nil, errors.New("--qps: want a positive rate for the fixed-rate scenario")
	case c.resolution != "static" && c.resolution != "mdns":
		return nil, fmt.Errorf("--outrigger-resolution %q: want static or mdns", c.resolution)
	case c.startTimeout <= 0 || c.reqTimeout <= 0:
		return nil, errors.New("--start-timeout and --request-timeout must be positive")
	}
	if c.profileKind != "cpu" && c.profileKind != "trace" {
		return nil, fmt.Errorf("--profile-kind %q: want cpu or trace", c.profileKind)
	}
	if c.profile != "" {
		abs, err := filepath.Abs(c.profile)
		if err != nil {
			return nil, fmt.Errorf("--profile: %w", err)
		}
		c.profile = abs
	}
	return c, nil
}

// defaultDaprd is where scripts/tools.sh puts daprd.
func defaultDaprd() string {
	cache := os.Getenv("OUTRIGGER_TOOLS")
	if cache == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return ""
			}
			base = filepath.Join(home, ".cache")
		}
		cache = filepath.Join(base, "outrigger-tools")
	}
	return filepath.Join(cache, "daprd-"+daprdVersion, "daprd")
}

// daprdVersion is the daprd scripts/tools.sh builds.
const daprdVersion = "1.18.1"

// budget bounds the whole run when --timeout is 0: every phase's length plus
// generous start and stop allowances.
func (c *config) budget() time.Duration {
	if c.timeout > 0 {
		return c.timeout
	}
	perTarget := c.warmup + c.fixedDuration + c.maxDuration + 2*c.startTimeout + c.idleSettle + 20*time.Second
	d := time.Duration(c.rounds*len(c.targets))*perTarget + 2*time.Minute
	if slices.Contains(c.targets, targetOutriggerMTLS) {
		d += 3 * c.startTimeout // the control plane's start and two join tokens, once per run
	}
	return d
}

// handoff is what the harness outside the network namespace passes to the
// copy of itself it starts inside, in the environment variable handoffEnv.
type handoff struct {
	Netns     string `json:"netns,omitempty"`
	Workdir   string `json:"workdir"`
	Outrigger string `json:"outrigger,omitempty"`
	// OutriggerB is the outrigger-b target's binary.
	OutriggerB string    `json:"outrigger_b,omitempty"`
	Targets    []string  `json:"targets"`
	Skipped    []string  `json:"skipped,omitempty"`
	Command    []string  `json:"command"`
	Deadline   time.Time `json:"deadline"`
}

const (
	handoffEnv = "OUTRIGGER_BENCH_HANDOFF"
	roleEnv    = "OUTRIGGER_BENCH_ROLE" // "app": serve the echo app
	appAddrEnv = "OUTRIGGER_BENCH_APP_ADDR"
)

func (h *handoff) encode() string {
	b, err := json.Marshal(h)
	if err != nil {
		panic(err) // plain strings and a time: cannot fail
	}
	return string(b)
}

func decodeHandoff(s string) (*handoff, error) {
	h := &handoff{}
	if err := json.Unmarshal([]byte(s), h); err != nil {
		return nil, fmt.Errorf("%s: %w", handoffEnv, err)
	}
	return h, nil
}

// appPath is the app's echo method: the direct target calls it, sidecars
// invoke it as method "echo".
const appPath = harness.EchoPath
