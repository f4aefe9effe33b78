package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	goredis "github.com/redis/go-redis/v9"

	"github.com/outrigger/outrigger/bench/harness"
	"github.com/outrigger/outrigger/building-blocks/state"
	"github.com/outrigger/outrigger/building-blocks/state/redis"
	"github.com/outrigger/outrigger/building-blocks/state/sqlite"
)

// Backends and targets, in the order a round runs them.
const (
	backendSQLite = "sqlite"
	backendRedis  = "redis"

	targetDirect        = "direct"
	targetMinimalGRPC   = "minimal-grpc"
	targetMinimalHTTP   = "minimal-http"
	targetOutriggerGRPC = "outrigger-grpc"
	targetOutriggerHTTP = "outrigger-http"
	targetDaprdGRPC     = "daprd-grpc"
	targetDaprdHTTP     = "daprd-http"
)

var (
	allBackends = []string{backendSQLite, backendRedis}
	allTargets  = []string{targetDirect, targetMinimalGRPC, targetMinimalHTTP, targetOutriggerGRPC, targetOutriggerHTTP, targetDaprdGRPC, targetDaprdHTTP}
)

// sidecarOf splits a sidecar target into its sidecar ("minimal",
// "outrigger" or "daprd") and protocol ("grpc" or "http"); ok is false for direct.
func sidecarOf(target string) (sidecar, protocol string, ok bool) {
	sidecar, protocol, ok = strings.Cut(target, "-")
	return sidecar, protocol, ok
}

func isMinimal(target string) bool {
	return target == targetMinimalGRPC || target == targetMinimalHTTP
}

func isOutrigger(target string) bool {
	return target == targetOutriggerGRPC || target == targetOutriggerHTTP
}

// appID is the --app-id of every sidecar.
const appID = "statebench"

// Config is one run of the harness.
type Config struct {
	// Rounds is how many interleaved rounds run; each runs every target of
	// every backend once.
	Rounds int `json:"rounds"`
	// Ops is the number of recorded saves, and then of recorded gets, per
	// target per round.
	Ops int `json:"ops"`
	// Warmup is the number of saves, and then gets, before the recorded
	// ones, not recorded.
	Warmup int `json:"warmup"`
	// ValueSize is the size in bytes of each saved JSON value.
	ValueSize int `json:"value_size"`
	// Backends are the state stores measured: "sqlite", "redis".
	Backends []string `json:"backends"`
	// Strong asks for strong consistency on every save and get (every
	// target alike); the default is eventual, the state API's default.
	Strong bool `json:"strong"`
	// RedisAddr is the Redis server, host:port with a loopback host;
	// default 127.0.0.1:6379, no password.
	RedisAddr string `json:"redis_addr"`
	// Outrigger is the outrigger binary; empty builds ./cmd/outrigger into
	// the working folder.
	Outrigger string `json:"outrigger,omitempty"`
	// Daprd is the daprd binary; empty skips the daprd targets. A missing
	// file skips them with a note, or fails the run when DaprdRequired.
	Daprd         string `json:"daprd,omitempty"`
	DaprdRequired bool   `json:"daprd_required,omitempty"`
	// StartTimeout bounds a sidecar's start until it is ready.
	StartTimeout time.Duration `json:"start_timeout_ns"`
	// OpTimeout bounds one save or get.
	OpTimeout time.Duration `json:"op_timeout_ns"`
	// Timeout bounds the whole run; 0 computes a generous bound.
	Timeout time.Duration `json:"timeout_ns"`
	// Keep keeps the working folder (sidecar logs, databases, component
	// files).
	Keep bool `json:"keep,omitempty"`
	// Command is the command line shown at the head of the report.
	Command string `json:"command"`
	// Progress receives one line per target per round; nil discards.
	Progress io.Writer `json:"-"`
}

func (c *Config) defaults() error {
	if c.Rounds < 1 || c.Ops < 1 || c.Warmup < 0 {
		return errors.New("rounds and ops must be at least 1, warmup not negative")
	}
	if c.ValueSize == 0 {
		c.ValueSize = 256
	}
	if c.ValueSize < minValueSize {
		return fmt.Errorf("value size %d: want at least %d bytes", c.ValueSize, minValueSize)
	}
	if len(c.Backends) == 0 {
		c.Backends = slices.Clone(allBackends)
	}
	for _, b := range c.Backends {
		if !slices.Contains(allBackends, b) {
			return fmt.Errorf("unknown backend %q (want %s)", b, strings.Join(allBackends, ", "))
		}
	}
	// Canonical order, no duplicates.
	c.Backends = slices.DeleteFunc(slices.Clone(allBackends), func(b string) bool { return !slices.Contains(c.Backends, b) })
	if c.RedisAddr == "" {
		c.RedisAddr = "127.0.0.1:6379"
	}
	host, _, err := net.SplitHostPort(c.RedisAddr)
	if err != nil {
		return fmt.Errorf("redis address %q: %v", c.RedisAddr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("redis address %q: want a loopback IP address (all traffic stays on 127.0.0.1)", c.RedisAddr)
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = 30 * time.Second
	}
	if c.OpTimeout <= 0 {
		c.OpTimeout = 5 * time.Second
	}
	if c.Timeout <= 0 {
		c.Timeout = c.budget()
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	return nil
}

// budget is the default bound on a run: per target per round a sidecar's
// start-up, 10 ms per operation (several times what any target takes on a
// slow machine) and 10 s of slack, plus 5 minutes for building.
func (c *Config) budget() time.Duration {
	perTarget := c.StartTimeout + time.Duration(2*(c.Warmup+c.Ops))*10*time.Millisecond + 10*time.Second
	return time.Duration(c.Rounds*len(c.Backends)*len(allTargets))*perTarget + 5*time.Minute
}

// Environment describes where and when the run happened.
type Environment struct {
	Date      time.Time `json:"date"`
	CPU       string    `json:"cpu"`
	CPUs      int       `json:"cpus"` // nproc
	Go        string    `json:"go"`
	LoadAvg   string    `json:"loadavg_end"`
	Outrigger string    `json:"outrigger_version"`
	Daprd     string    `json:"daprd_version,omitempty"`
}

// Result is what a run measured.
type Result struct {
	Config  Config      `json:"config"`
	Env     Environment `json:"environment"`
	RunID   string      `json:"run_id"`
	Targets []string    `json:"targets"`
	// Notes say what was skipped, and why.
	Notes  []string `json:"notes,omitempty"`
	Rounds []Round  `json:"rounds"`
	// Workdir is the working folder, kept with Config.Keep.
	Workdir string `json:"workdir,omitempty"`
}

// Round is one pass over every backend and target.
type Round struct {
	Round int         `json:"round"`
	Runs  []TargetRun `json:"runs"`
}

// TargetRun is one target of one backend in one round.
type TargetRun struct {
	Backend string `json:"backend"`
	Target  string `json:"target"`
	// StartUp is, for a sidecar, the time from its start until
	// /v1.0/healthz/outbound answered 204.
	StartUp time.Duration   `json:"startup_ns,omitempty"`
	Save    harness.OpStats `json:"save"`
	Get     harness.OpStats `json:"get"`
}

// find returns the run of backend and target in r.
func (r *Round) find(backend, target string) *TargetRun {
	for i := range r.Runs {
		if r.Runs[i].Backend == backend && r.Runs[i].Target == target {
			return &r.Runs[i]
		}
	}
	return nil
}

// Run measures every target of every backend in cfg.Rounds interleaved
// rounds. Any failed operation or sidecar fails the whole run.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeoutCause(ctx, cfg.Timeout, fmt.Errorf("the run hit its time bound (%v)", cfg.Timeout))
	defer cancel()
	// The SDK logs to stdout, where the report goes.
	dapr.SetLogger(log.New(io.Discard, "", 0))

	res := &Result{Config: cfg, RunID: "statebench-" + strconv.Itoa(os.Getpid()) + "-" + randomHex(4)}
	b := &bench{cfg: &cfg, res: res}

	if slices.Contains(cfg.Backends, backendRedis) {
		// Fail early, and loudly, when Redis is not there.
		b.redis = goredis.NewClient(&goredis.Options{Addr: cfg.RedisAddr, DialTimeout: 3 * time.Second, MaxRetries: 1})
		defer b.redis.Close()
		pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
		err := b.redis.Ping(pctx).Err()
		pcancel()
		if err != nil {
			return nil, fmt.Errorf("redis at %s: %v (the redis backend needs it; start it or pass --backends sqlite)", cfg.RedisAddr, err)
		}
		defer b.sweepRedis()
	}

	dir, err := os.MkdirTemp("", "statebench-")
	if err != nil {
		return nil, err
	}
	b.workdir = dir
	if cfg.Keep {
		res.Workdir = dir
	} else {
		defer os.RemoveAll(dir)
	}

	if cfg.Outrigger == "" {
		fmt.Fprintf(cfg.Progress, "statebench: building ./cmd/outrigger...\n")
		if cfg.Outrigger, err = harness.BuildOutrigger(ctx, dir); err != nil {
			return nil, err
		}
	} else if _, err := os.Stat(cfg.Outrigger); err != nil {
		return nil, fmt.Errorf("outrigger binary: %v", err)
	}
	res.Env.Outrigger = harness.CommandOutput(cfg.Outrigger, "version")

	res.Targets = []string{targetDirect, targetMinimalGRPC, targetMinimalHTTP, targetOutriggerGRPC, targetOutriggerHTTP}
	switch _, statErr := os.Stat(cfg.Daprd); {
	case cfg.Daprd == "":
		res.Notes = append(res.Notes, "daprd targets skipped: no daprd binary given")
	case statErr != nil && cfg.DaprdRequired:
		return nil, fmt.Errorf("--daprd: %v", statErr)
	case statErr != nil:
		res.Notes = append(res.Notes, fmt.Sprintf("daprd targets skipped: no daprd binary at %s (build it with scripts/tools.sh daprd)", cfg.Daprd))
		cfg.Daprd = ""
	default:
		res.Targets = append(res.Targets, targetDaprdGRPC, targetDaprdHTTP)
		res.Env.Daprd = harness.CommandOutput(cfg.Daprd, "--version")
	}
	res.Config = cfg
	fmt.Fprintf(cfg.Progress, "statebench: %d round(s) of %s x %s, %d ops (+%d warm-up) each (timeout %v)\n",
		cfg.Rounds, strings.Join(cfg.Backends, ","), strings.Join(res.Targets, ","), cfg.Ops, cfg.Warmup, cfg.Timeout)

	for r := 1; r <= cfg.Rounds; r++ {
		round := Round{Round: r}
		for _, backend := range cfg.Backends {
			for _, target := range res.Targets {
				tr, err := b.runTarget(ctx, r, backend, target)
				if err != nil {
					if ctx.Err() != nil {
						err = fmt.Errorf("%w (%v)", err, context.Cause(ctx))
					}
					return nil, fmt.Errorf("round %d, %s, %s: %w", r, backend, target, err)
				}
				fmt.Fprintf(cfg.Progress, "statebench: round %d/%d %-6s %-14s save p50 %.3f p99 %.3f ms, get p50 %.3f p99 %.3f ms\n",
					r, cfg.Rounds, backend, target, harness.MsOf(tr.Save.P50), harness.MsOf(tr.Save.P99), harness.MsOf(tr.Get.P50), harness.MsOf(tr.Get.P99))
				round.Runs = append(round.Runs, tr)
			}
		}
		res.Rounds = append(res.Rounds, round)
	}

	res.Env.Date = time.Now().UTC()
	res.Env.CPU, res.Env.CPUs = cpuModel(), runtime.NumCPU()
	res.Env.Go = runtime.Version()
	res.Env.LoadAvg = loadAvg()
	return res, nil
}

// bench is the state of one run.
type bench struct {
	cfg     *Config
	res     *Result
	workdir string
	redis   *goredis.Client // nil without the redis backend
}

// stopGrace is how long a sidecar has to stop after SIGTERM.
const stopGrace = 5 * time.Second

// runTarget sets up one target (a store in process, or a fresh sidecar
// with a fresh SQLite file or its own Redis key prefix), measures it and
// tears it down.
func (b *bench) runTarget(ctx context.Context, round int, backend, target string) (TargetRun, error) {
	tr := TargetRun{Backend: backend, Target: target}
	dir := filepath.Join(b.workdir, fmt.Sprintf("r%d-%s-%s", round, backend, target))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return tr, err
	}
	// keyPrefix is unique per run, round and target: the Redis keys of one
	// target are "<prefix>||<key>", deleted after it and swept at the end.
	// SQLite gets a fresh file instead and the default prefix, the app id.
	keyPrefix := appID
	if backend == backendRedis {
		keyPrefix = fmt.Sprintf("%s-r%d-%s", b.res.RunID, round, target)
		defer b.deleteRedisPrefix(keyPrefix)
	}
	meta := b.backendMeta(backend, dir)

	var (
		c    opClient
		proc *harness.Process
	)
	if target == targetDirect {
		var (
			s   state.Store
			err error
		)
		switch backend {
		case backendSQLite:
			s, _, err = sqlite.New(meta)
		case backendRedis:
			s, _, err = redis.New(meta)
		}
		if err != nil {
			return tr, fmt.Errorf("opening the store: %w", err)
		}
		c = &directClient{store: s, keyPrefix: keyPrefix, strong: b.cfg.Strong}
	} else {
		sidecar, protocol, _ := sidecarOf(target)
		var (
			port sidecarPorts
			err  error
		)
		proc, port, tr.StartUp, err = b.startSidecar(ctx, sidecar, backend, target, dir, meta, keyPrefix)
		if proc != nil {
			defer proc.Stop(stopGrace)
		}
		if err != nil {
			return tr, err
		}
		switch protocol {
		case "grpc":
			c, err = newGRPCClient(port.grpc, b.cfg.Strong)
		case "http":
			c = newHTTPClient(port.http, b.cfg.Strong)
		}
		if err != nil {
			return tr, proc.Failure(err)
		}
	}
	defer c.close()

	save, get, err := b.measure(ctx, c)
	if err != nil {
		if proc != nil {
			return tr, proc.Failure(err)
		}
		return tr, err
	}
	if proc != nil && proc.Exited() {
		return tr, proc.Failure(errors.New("exited during the measurements"))
	}
	tr.Save, tr.Get = harness.Summarize(save), harness.Summarize(get)
	return tr, nil
}

// backendMeta is the backend's metadata, the same for the store in process
// and the sidecars' components.
func (b *bench) backendMeta(backend, dir string) map[string]string {
	switch backend {
	case backendSQLite:
		return map[string]string{"connectionString": filepath.Join(dir, "state.db")}
	default:
		return map[string]string{"redisHost": b.cfg.RedisAddr, "redisPassword": ""}
	}
}

// sidecarPorts are one sidecar's ports.
type sidecarPorts struct{ http, grpc, internal, metrics int }

// startSidecar writes the component and starts one sidecar, ready to
// serve: /v1.0/healthz/outbound answers 204.
func (b *bench) startSidecar(ctx context.Context, sidecar, backend, target, dir string, meta map[string]string, keyPrefix string) (*harness.Process, sidecarPorts, time.Duration, error) {
	var ports sidecarPorts
	resources := filepath.Join(dir, "resources")
	if err := os.MkdirAll(resources, 0o755); err != nil {
		return nil, ports, 0, err
	}
	compMeta := map[string]string{}
	for k, v := range meta {
		compMeta[k] = v
	}
	if backend == backendRedis && sidecar != "minimal" {
		compMeta["keyPrefix"] = keyPrefix
	}
	if err := os.WriteFile(filepath.Join(resources, "statestore.yaml"), componentYAML(backend, compMeta), 0o644); err != nil {
		return nil, ports, 0, err
	}
	pp, err := harness.FreePorts(4)
	if err != nil {
		return nil, ports, 0, err
	}
	ports = sidecarPorts{http: pp[0], grpc: pp[1], internal: pp[2], metrics: pp[3]}
	args := []string{
		"--app-id", appID,
		"--dapr-http-port", strconv.Itoa(ports.http),
		"--dapr-grpc-port", strconv.Itoa(ports.grpc),
		"--dapr-internal-grpc-port", strconv.Itoa(ports.internal),
		"--metrics-port", strconv.Itoa(ports.metrics),
		"--resources-path", resources,
	}
	var (
		bin string
		env []string
	)
	// Nothing is invoked here: name resolution that sends nothing.
	switch sidecar {
	case "outrigger":
		bin = b.cfg.Outrigger
		quiet, err := harness.OutriggerQuietResolution(dir)
		if err != nil {
			return nil, ports, 0, err
		}
		args = append(append([]string{"sidecar"}, args...), quiet...)
		home := filepath.Join(dir, "home")
		if err := os.MkdirAll(home, 0o755); err != nil {
			return nil, ports, 0, err
		}
		env = []string{"OUTRIGGER_HOME=" + home}
	case "minimal":
		// This binary again, as a process of its own that opens the store
		// the way direct does and puts the key prefix in front itself.
		exe, err := os.Executable()
		if err != nil {
			return nil, ports, 0, err
		}
		spec, err := json.Marshal(minimalConfig{Backend: backend, Meta: meta, KeyPrefix: keyPrefix, HTTPPort: ports.http, GRPCPort: ports.grpc})
		if err != nil {
			return nil, ports, 0, err
		}
		bin, args = exe, nil
		env = []string{minimalEnv + "=" + string(spec)}
	case "daprd":
		bin = b.cfg.Daprd
		quiet, err := harness.DaprdQuietResolution(dir)
		if err != nil {
			return nil, ports, 0, err
		}
		args = append(append(args, "--log-level", "warn"), quiet...)
		// daprd wants an address to announce and may find only loopback.
		env = []string{"DAPR_HOST_IP=127.0.0.1"}
	default:
		return nil, ports, 0, fmt.Errorf("unknown sidecar %q", sidecar)
	}
	p, err := harness.StartProcess(fmt.Sprintf("%s sidecar (%s, %s)", sidecar, backend, target), filepath.Join(dir, sidecar+".log"), env, bin, args...)
	if err != nil {
		return nil, ports, 0, err
	}
	startUp, err := p.WaitStatus(ctx, fmt.Sprintf("http://127.0.0.1:%d/v1.0/healthz/outbound", ports.http), 204, 5*time.Millisecond, b.cfg.StartTimeout)
	return p, ports, startUp, err
}

// componentYAML is the one state store component, named statestore.
func componentYAML(backend string, meta map[string]string) []byte {
	var w bytes.Buffer
	fmt.Fprintf(&w, "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: %s\nspec:\n  type: state.%s\n  version: v1\n  metadata:\n", storeName, backend)
	keys := make([]string, 0, len(meta))
	for k := range meta {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v, _ := json.Marshal(meta[k]) // a JSON string is a YAML string
		fmt.Fprintf(&w, "  - name: %s\n    value: %s\n", k, v)
	}
	return w.Bytes()
}

// measure runs the warm-up, then the recorded saves, then the recorded gets,
// one at a time, and checks every value read back.
func (b *bench) measure(ctx context.Context, c opClient) (save, get []time.Duration, err error) {
	cfg := b.cfg
	op := func(what, key string, f func(context.Context) error) (time.Duration, error) {
		octx, cancel := context.WithTimeout(ctx, cfg.OpTimeout)
		defer cancel()
		start := time.Now()
		err := f(octx)
		d := time.Since(start)
		if err != nil {
			return 0, fmt.Errorf("%s %q: %w", what, key, err)
		}
		return d, nil
	}
	run := func(prefix string, n int, record bool) error {
		keys := make([]string, n)
		values := make([][]byte, n)
		for i := range n {
			keys[i] = fmt.Sprintf("%s%07d", prefix, i)
			values[i] = makeValue(keys[i], cfg.ValueSize)
		}
		for i, k := range keys {
			d, err := op("save", k, func(ctx context.Context) error { return c.save(ctx, k, values[i]) })
			if err != nil {
				return err
			}
			if record {
				save = append(save, d)
			}
		}
		for i, k := range keys {
			var got []byte
			d, err := op("get", k, func(ctx context.Context) (err error) { got, err = c.get(ctx, k); return err })
			if err != nil {
				return err
			}
			if !sameJSON(got, values[i]) {
				return fmt.Errorf("get %q: read back %.80q, saved %.80q", k, got, values[i])
			}
			if record {
				get = append(get, d)
			}
		}
		return nil
	}
	if err := run("w", cfg.Warmup, false); err != nil {
		return nil, nil, fmt.Errorf("warm-up: %w", err)
	}
	save = make([]time.Duration, 0, cfg.Ops)
	get = make([]time.Duration, 0, cfg.Ops)
	if err := run("k", cfg.Ops, true); err != nil {
		return nil, nil, err
	}
	return save, get, nil
}

// minValueSize fits a value's JSON frame and its key.
const minValueSize = len(`{"id":"k0000000","pad":""}`)

// makeValue is a compact JSON object of exactly size bytes, naming key:
// {"id":"KEY","pad":"xxxx..."}. Its keys are sorted and it holds only
// letters and digits, so a sidecar that re-encodes it gives the same bytes.
func makeValue(key string, size int) []byte {
	v := make([]byte, 0, size)
	v = append(v, `{"id":"`...)
	v = append(v, key...)
	v = append(v, `","pad":"`...)
	pad := size - len(v) - len(`"}`)
	for i := range pad {
		v = append(v, 'a'+byte(i%26))
	}
	return append(v, `"}`...)
}

// sameJSON reports whether got is want, byte for byte or as JSON.
func sameJSON(got, want []byte) bool {
	if bytes.Equal(got, want) {
		return true
	}
	var g, w any
	if json.Unmarshal(got, &g) != nil || json.Unmarshal(want, &w) != nil {
		return false
	}
	return reflect.DeepEqual(g, w)
}

// deleteRedisPrefix deletes the keys of one target, "<prefix>||*".
func (b *bench) deleteRedisPrefix(prefix string) {
	if _, err := b.deleteRedisKeys(prefix + "||*"); err != nil {
		fmt.Fprintf(os.Stderr, "statebench: deleting redis keys %s||*: %v\n", prefix, err)
	}
}

// sweepRedis deletes whatever keys of this run are left, "<run id>*".
func (b *bench) sweepRedis() {
	if _, err := b.deleteRedisKeys(b.res.RunID + "*"); err != nil {
		fmt.Fprintf(os.Stderr, "statebench: deleting redis keys %s*: %v\n", b.res.RunID, err)
	}
}

// deleteRedisKeys deletes the keys matching pattern (SCAN, then DEL in
// batches). It has its own time bound, so it also runs after the run's
// context has ended.
func (b *bench) deleteRedisKeys(pattern string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n := 0
	var cursor uint64
	for {
		keys, next, err := b.redis.Scan(ctx, cursor, pattern, 1000).Result()
		if err != nil {
			return n, err
		}
		if len(keys) > 0 {
			if err := b.redis.Del(ctx, keys...).Err(); err != nil {
				return n, err
			}
			n += len(keys)
		}
		if next == 0 {
			return n, nil
		}
		cursor = next
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for line := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

// loadAvg is the 1, 5 and 15 minute load averages.
func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
