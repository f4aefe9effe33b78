package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/outrigger/outrigger/bench/harness"
)

// App ids: every callee sidecar serves calleeID; the load goes to the one
// caller sidecar.
const (
	calleeID = "lb-callee"
	callerID = "lb-caller"
)

const (
	// stopGrace is how long a process has to stop after SIGTERM.
	stopGrace = 5 * time.Second
	// pollEvery is the readiness poll interval. Up to StartConcurrency
	// sidecars are polled at once, each with a fresh connection, so it is
	// not as tight as the other harnesses' 5 ms.
	pollEvery = 20 * time.Millisecond
	// deliveredMetric counts, per callee sidecar, the calls it delivered to
	// its app, by calling app and status.
	deliveredMetric = "outrigger_service_invocation_requests_received_total"
)

// Config is one run of the harness.
type Config struct {
	// Rounds is how many interleaved rounds run; each measures every
	// configuration once.
	Rounds int `json:"rounds"`
	// QPS is the request rate over all connections, in requests/s.
	QPS float64 `json:"qps"`
	// Duration is the length of the measured load per configuration per
	// round.
	Duration time.Duration `json:"duration_ns"`
	// Warmup is the load at QPS before the measured one, not recorded. Its
	// requests must reach every endpoint before the measured load starts.
	Warmup time.Duration `json:"warmup_ns"`
	// Endpoints are the configurations: how many callee sidecars answer
	// for the one app-id. The first is the baseline the others are
	// compared with.
	Endpoints []int `json:"endpoints"`
	// Connections is the load generator's number of connections to the
	// caller sidecar (fortio -c).
	Connections int `json:"connections"`
	// BodySize is the size in bytes of each POST body; the app echoes it.
	BodySize int `json:"body_size"`
	// Outrigger is the outrigger binary; empty builds ./cmd/outrigger into
	// the working folder.
	Outrigger string `json:"outrigger,omitempty"`
	// StartConcurrency is how many callee sidecars start at once.
	StartConcurrency int `json:"start_concurrency"`
	// StartTimeout bounds one process's start until it is ready.
	StartTimeout time.Duration `json:"start_timeout_ns"`
	// ReqTimeout bounds one request under load (a timeout is an error).
	ReqTimeout time.Duration `json:"request_timeout_ns"`
	// Timeout bounds the whole run; 0 computes a generous bound.
	Timeout time.Duration `json:"timeout_ns"`
	// Keep keeps the working folder (logs, resolution files) after a run
	// that succeeded; a failed run always keeps it.
	Keep bool `json:"keep,omitempty"`
	// Command is the command line shown at the head of the report.
	Command string `json:"command"`
	// Progress receives one line per configuration per round; nil
	// discards.
	Progress io.Writer `json:"-"`
}

func (c *Config) defaults() error {
	if len(c.Endpoints) == 0 {
		c.Endpoints = []int{1, 100}
	}
	if c.Connections == 0 {
		c.Connections = 16
	}
	if c.StartConcurrency == 0 {
		c.StartConcurrency = 10
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = 30 * time.Second
	}
	if c.ReqTimeout == 0 {
		c.ReqTimeout = 5 * time.Second
	}
	switch {
	case c.Rounds < 1:
		return errors.New("rounds: want at least 1")
	case c.QPS <= 0:
		return errors.New("qps: want a positive rate")
	case c.Duration <= 0:
		return errors.New("duration: want a positive duration")
	case c.Warmup <= 0:
		return errors.New("warmup: want a positive duration (its requests show that every endpoint answers)")
	case c.Connections < 1 || c.StartConcurrency < 1:
		return errors.New("connections and start concurrency: want at least 1")
	case c.BodySize < 0:
		return errors.New("body size: must not be negative")
	case c.StartTimeout < 0 || c.ReqTimeout < 0:
		return errors.New("start and request timeouts must be positive")
	}
	for i, n := range c.Endpoints {
		if n < 1 {
			return fmt.Errorf("endpoints: %d: want at least 1", n)
		}
		if slices.Contains(c.Endpoints[:i], n) {
			return fmt.Errorf("endpoints: %d given twice", n)
		}
	}
	if c.Timeout <= 0 {
		c.Timeout = c.budget()
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	return nil
}

// budget is the default bound on a run: per configuration per round the
// warm-up and the measured load, every wave of sidecar starts taking its
// whole start timeout, and 30 s of slack; plus 5 minutes for building.
func (c *Config) budget() time.Duration {
	var perRound time.Duration
	for _, n := range c.Endpoints {
		waves := (n + c.StartConcurrency - 1) / c.StartConcurrency
		perRound += c.Warmup + c.Duration + time.Duration(waves+2)*c.StartTimeout + 30*time.Second
	}
	return time.Duration(c.Rounds)*perRound + 5*time.Minute
}

// Environment describes where and when the run happened.
type Environment struct {
	Date      time.Time `json:"date"`
	CPU       string    `json:"cpu"`
	CPUs      int       `json:"cpus"` // runtime.NumCPU
	Go        string    `json:"go"`
	LoadStart string    `json:"loadavg_start"`
	LoadEnd   string    `json:"loadavg_end"`
	// MemAvailableKiB is MemAvailable at the start, from /proc/meminfo.
	MemAvailableKiB int64  `json:"mem_available_kib"`
	Outrigger       string `json:"outrigger_version"`
}

// Result is what a run measured.
type Result struct {
	Config Config      `json:"config"`
	Env    Environment `json:"environment"`
	Rounds []Round     `json:"rounds"`
	// Workdir is the working folder, kept with Config.Keep.
	Workdir string `json:"workdir,omitempty"`
}

// Round is one pass over every configuration.
type Round struct {
	Round int `json:"round"`
	// Runs are in the order the round ran them.
	Runs []ConfigRun `json:"runs"`
}

// find returns the run with n endpoints in r.
func (r *Round) find(n int) *ConfigRun {
	for i := range r.Runs {
		if r.Runs[i].Endpoints == n {
			return &r.Runs[i]
		}
	}
	return nil
}

// ConfigRun is one configuration in one round, on fresh processes.
type ConfigRun struct {
	Endpoints int `json:"endpoints"`
	// LoadBefore is the 1, 5 and 15 minute load average before the
	// configuration's processes started.
	LoadBefore string `json:"loadavg_before"`
	// Ready is the time from the first callee sidecar's start until the
	// last sidecar, the caller included, answered /v1.0/healthz 204.
	Ready time.Duration `json:"ready_ns"`
	// WarmupRequests and WarmupErrors are the warm-up's counts.
	WarmupRequests int64 `json:"warmup_requests"`
	WarmupErrors   int64 `json:"warmup_errors"`
	// Load is the measured load; Load.SidecarCPU is the CPU time of all
	// the configuration's sidecars, the caller included, during it.
	Load *harness.LoadResult `json:"load"`
	// Delivered is, per callee sidecar, the calls it delivered to the app
	// with status 200 during the measured load (the load generator's one
	// opening request per connection included), from its metrics.
	Delivered []int64 `json:"delivered"`
	// SidecarRSSKiB is the sum of every sidecar's RSS, the caller's
	// included, right after the measured load; CallerRSSKiB and
	// MaxCalleeRSSKiB are its largest parts.
	SidecarRSSKiB   int64 `json:"sidecar_rss_kib"`
	CallerRSSKiB    int64 `json:"caller_rss_kib"`
	MaxCalleeRSSKiB int64 `json:"max_callee_rss_kib"`
}

// Run measures every configuration in cfg.Rounds interleaved rounds, each
// on fresh processes. A process that fails to start or exits, an endpoint
// that answers nothing in the warm-up, or a failed request in the warm-up
// fails the run; failed requests in the measured load are counted in the
// result (and fail the command).
func Run(ctx context.Context, cfg Config) (res *Result, err error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeoutCause(ctx, cfg.Timeout, fmt.Errorf("the run hit its time bound (%v)", cfg.Timeout))
	defer cancel()
	harness.QuietFortio()

	dir, err := os.MkdirTemp("", "lbbench-")
	if err != nil {
		return nil, err
	}
	defer func() {
		switch {
		case err != nil:
			err = fmt.Errorf("%w\n(working folder kept: %s)", err, dir)
		case cfg.Keep:
			res.Workdir = dir
		default:
			os.RemoveAll(dir)
		}
	}()
	res = &Result{}
	res.Env.LoadStart, res.Env.MemAvailableKiB = harness.LoadAvg(), harness.MemAvailableKiB()
	if cfg.Outrigger == "" {
		fmt.Fprintf(cfg.Progress, "lbbench: building ./cmd/outrigger...\n")
		if cfg.Outrigger, err = harness.BuildOutrigger(ctx, dir); err != nil {
			return nil, err
		}
	} else if _, err := os.Stat(cfg.Outrigger); err != nil {
		return nil, fmt.Errorf("outrigger binary: %v", err)
	}
	res.Env.Outrigger = harness.CommandOutput(cfg.Outrigger, "version")
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	res.Config = cfg
	b := &bench{cfg: &cfg, workdir: dir, self: self, body: bytes.Repeat([]byte("x"), cfg.BodySize)}
	fmt.Fprintf(cfg.Progress, "lbbench: %d round(s) of %s endpoints, %.0f req/s for %v (+%v warm-up) each (timeout %v)\n",
		cfg.Rounds, joinInts(cfg.Endpoints, ","), cfg.QPS, cfg.Duration, cfg.Warmup, cfg.Timeout)

	for r := 1; r <= cfg.Rounds; r++ {
		round := Round{Round: r}
		for i, n := range roundOrder(cfg.Endpoints, r) {
			run, err := b.runConfig(ctx, r, n)
			if err != nil {
				if ctx.Err() != nil {
					err = fmt.Errorf("%w (%v)", err, context.Cause(ctx))
				}
				return nil, fmt.Errorf("round %d, %s: %w", r, endpointsWord(n), err)
			}
			l := run.Load
			lo, hi := minMax(run.Delivered)
			fmt.Fprintf(cfg.Progress, "lbbench: round %d/%d, %d/%d: %3d endpoint(s): ready in %.1f s; %.0f req/s p50 %.3f p90 %.3f p99 %.3f ms, %d errors; %d-%d requests per endpoint\n",
				r, cfg.Rounds, i+1, len(cfg.Endpoints), n, run.Ready.Seconds(), l.QPS,
				harness.MsOf(l.P50), harness.MsOf(l.P90), harness.MsOf(l.P99), l.Errors, lo, hi)
			round.Runs = append(round.Runs, run)
		}
		res.Rounds = append(res.Rounds, round)
	}

	res.Env.Date = time.Now().UTC()
	res.Env.CPU, res.Env.CPUs = harness.CPUModel(), runtime.NumCPU()
	res.Env.Go = runtime.Version()
	res.Env.LoadEnd = harness.LoadAvg()
	return res, nil
}

// roundOrder is the order of the configurations in round r (from 1): as
// given in odd rounds, reversed in even ones, so that each goes first as
// often as the others with two configurations.
func roundOrder(endpoints []int, r int) []int {
	order := slices.Clone(endpoints)
	if r%2 == 0 {
		slices.Reverse(order)
	}
	return order
}

// bench is the state of one run.
type bench struct {
	cfg     *Config
	workdir string
	self    string // this binary, started again as the echo app
	body    []byte
}

// sidecarPorts are one sidecar's ports.
type sidecarPorts struct{ http, grpc, internal, metrics int }

// runConfig starts the app, n callee sidecars and the caller, warms up,
// checks that every endpoint answered, measures, and stops every process
// it started, also on failure.
func (b *bench) runConfig(ctx context.Context, round, n int) (ConfigRun, error) {
	run := ConfigRun{Endpoints: n, LoadBefore: harness.LoadAvg()}
	dir := filepath.Join(b.workdir, fmt.Sprintf("r%d-n%d", round, n))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return run, err
	}
	pp, err := harness.FreePorts(1 + 4*(n+1))
	if err != nil {
		return run, err
	}
	appPort := pp[0]
	ports := make([]sidecarPorts, n+1) // the callees, then the caller
	for i := range ports {
		p := pp[1+4*i:]
		ports[i] = sidecarPorts{http: p[0], grpc: p[1], internal: p[2], metrics: p[3]}
	}
	callerPorts := ports[n]
	resolution := filepath.Join(dir, "resolution.yaml")
	if err := os.WriteFile(resolution, resolutionFile(ports[:n]), 0o644); err != nil {
		return run, err
	}

	appAddr := "127.0.0.1:" + strconv.Itoa(appPort)
	app, err := harness.StartProcess("echo app", filepath.Join(dir, "app.log"),
		[]string{roleEnv + "=" + roleApp, appAddrEnv + "=" + appAddr}, b.self)
	if err != nil {
		return run, err
	}
	defer app.Stop(stopGrace)
	if _, err := app.WaitStatus(ctx, "http://"+appAddr+appPath, http.StatusOK, pollEvery, b.cfg.StartTimeout); err != nil {
		return run, err
	}

	start := time.Now()
	callees, err := b.startCallees(ctx, dir, ports[:n], appPort, resolution)
	defer stopAll(callees)
	if err != nil {
		return run, err
	}
	caller, err := b.startSidecar(dir, callerID, callerID, callerPorts, 0, resolution)
	if err != nil {
		return run, err
	}
	defer caller.Stop(stopGrace)
	if _, err := caller.WaitStatus(ctx, sidecarURL(callerPorts, "/v1.0/healthz"), http.StatusNoContent, pollEvery, b.cfg.StartTimeout); err != nil {
		return run, err
	}
	run.Ready = time.Since(start)
	sidecars := append(slices.Clone(callees), caller)

	url := sidecarURL(callerPorts, "/v1.0/invoke/"+calleeID+"/method"+appPath)
	if err := b.firstCall(ctx, url, caller); err != nil {
		return run, err
	}
	spec := harness.LoadSpec{
		URL:         url,
		Body:        b.body,
		QPS:         b.cfg.QPS,
		Duration:    b.cfg.Warmup,
		Connections: b.cfg.Connections,
		ReqTimeout:  b.cfg.ReqTimeout,
	}
	w, err := harness.RunLoad(ctx, spec)
	if err != nil {
		return run, fmt.Errorf("warm-up: %w", err)
	}
	run.WarmupRequests, run.WarmupErrors = w.Requests, w.Errors
	if w.Errors > 0 {
		return run, caller.Failure(fmt.Errorf("warm-up: %d of %d requests got no 2xx answer (codes %v)", w.Errors, w.Requests, w.Codes))
	}
	before, err := delivered(ctx, callees, ports)
	if err != nil {
		return run, err
	}
	for i, d := range before {
		if d == 0 {
			return run, callees[i].Failure(fmt.Errorf("delivered no call to the app in the warm-up's %d requests over %d endpoints; every endpoint must answer before the measured load",
				w.Requests, n))
		}
	}

	cpuBefore, err := cpuTime(sidecars)
	if err != nil {
		return run, err
	}
	spec.Duration = b.cfg.Duration
	run.Load, err = harness.RunLoad(ctx, spec)
	if err != nil {
		return run, err
	}
	cpuAfter, err := cpuTime(sidecars)
	if err != nil {
		return run, err
	}
	run.Load.SidecarCPU = cpuAfter - cpuBefore
	after, err := delivered(ctx, callees, ports)
	if err != nil {
		return run, err
	}
	run.Delivered = make([]int64, n)
	for i := range after {
		run.Delivered[i] = after[i] - before[i]
	}
	for i, p := range sidecars {
		kib, err := p.RSSKiB()
		if err != nil {
			return run, p.Failure(err)
		}
		run.SidecarRSSKiB += kib
		if i == n {
			run.CallerRSSKiB = kib
		} else {
			run.MaxCalleeRSSKiB = max(run.MaxCalleeRSSKiB, kib)
		}
	}
	for _, p := range append(sidecars, app) {
		if p.Exited() {
			return run, p.Failure(errors.New("exited during the load"))
		}
	}
	return run, nil
}

// resolutionFile is the static name resolution file: one app, calleeID,
// at the mesh addresses of the callee sidecars.
func resolutionFile(callees []sidecarPorts) []byte {
	var w bytes.Buffer
	fmt.Fprintf(&w, "apps:\n  - appID: %s\n    addresses: [", calleeID)
	for i, p := range callees {
		if i > 0 {
			w.WriteString(", ")
		}
		fmt.Fprintf(&w, "%q", "127.0.0.1:"+strconv.Itoa(p.internal))
	}
	w.WriteString("]\n")
	return w.Bytes()
}

// startCallees starts the callee sidecars, StartConcurrency at a time, and
// waits until each answers /v1.0/healthz 204 (its app channel is up). It
// returns every process it started, also on failure, when the first
// failure stops the starts still to come.
func (b *bench) startCallees(ctx context.Context, dir string, ports []sidecarPorts, appPort int, resolution string) ([]*harness.Process, error) {
	procs := make([]*harness.Process, len(ports))
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, b.cfg.StartConcurrency)
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for i, p := range ports {
		wg.Go(func() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			if ctx.Err() != nil {
				return
			}
			proc, err := b.startSidecar(dir, fmt.Sprintf("callee-%03d", i), calleeID, p, appPort, resolution)
			procs[i] = proc
			if err == nil {
				_, err = proc.WaitStatus(ctx, sidecarURL(p, "/v1.0/healthz"), http.StatusNoContent, pollEvery, b.cfg.StartTimeout)
			}
			if err != nil {
				once.Do(func() {
					first = err
					cancel(err)
				})
			}
		})
	}
	wg.Wait()
	return slices.DeleteFunc(procs, func(p *harness.Process) bool { return p == nil }), first
}

// startSidecar starts one `outrigger sidecar` with static name resolution
// (so that it announces nothing), every listener on loopback.
func (b *bench) startSidecar(dir, name, appID string, ports sidecarPorts, appPort int, resolution string) (*harness.Process, error) {
	home := filepath.Join(dir, "home", name)
	if err := os.MkdirAll(home, 0o755); err != nil {
		return nil, err
	}
	args := []string{
		"sidecar",
		"--app-id", appID,
		"--dapr-http-port", strconv.Itoa(ports.http),
		"--dapr-grpc-port", strconv.Itoa(ports.grpc),
		"--dapr-internal-grpc-port", strconv.Itoa(ports.internal),
		"--dapr-internal-listen-address", "127.0.0.1",
		"--metrics-port", strconv.Itoa(ports.metrics),
		"--name-resolution", "static",
		"--static-resolution-file", resolution,
	}
	if appPort != 0 {
		args = append(args, "--app-port", strconv.Itoa(appPort))
	}
	return harness.StartProcess("sidecar "+name, filepath.Join(dir, name+".log"),
		[]string{"OUTRIGGER_HOME=" + home}, b.cfg.Outrigger, args...)
}

func sidecarURL(p sidecarPorts, path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", p.http, path)
}

// stopAll stops procs at once (each SIGTERM, then SIGKILL after
// stopGrace).
func stopAll(procs []*harness.Process) {
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(func() { p.Stop(stopGrace) })
	}
	wg.Wait()
}

// httpClient is for the first call and the metrics: no proxy, and no
// connection kept to a sidecar that is about to stop.
var httpClient = &http.Client{
	Timeout:   5 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
}

// firstCall invokes the app through the caller until one call answers 200.
func (b *bench) firstCall(ctx context.Context, url string, caller *harness.Process) error {
	deadline := time.Now().Add(b.cfg.StartTimeout)
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b.body))
		if err != nil {
			return err
		}
		resp, err := httpClient.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && bytes.Equal(body, b.body[:min(len(b.body), 4096)]) {
				return nil
			}
			last = fmt.Sprintf("status %d, %.200q", resp.StatusCode, body)
		} else {
			last = err.Error()
		}
		switch {
		case caller.Exited():
			return caller.Failure(errors.New("exited before the first invocation succeeded"))
		case ctx.Err() != nil:
			return caller.Failure(fmt.Errorf("POST %s: %w", url, context.Cause(ctx)))
		case time.Now().After(deadline):
			return caller.Failure(fmt.Errorf("POST %s did not echo the body with 200 within %v (last: %s)", url, b.cfg.StartTimeout, last))
		}
		t := time.NewTimer(10 * time.Millisecond)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
}

// delivered reads from each callee sidecar's metrics how many calls from
// callerID it has delivered to its app with status 200.
func delivered(ctx context.Context, callees []*harness.Process, ports []sidecarPorts) ([]int64, error) {
	n := make([]int64, len(callees))
	for i, p := range callees {
		v, err := scrapeDelivered(ctx, ports[i].metrics)
		if err != nil {
			return nil, p.Failure(fmt.Errorf("reading its metrics: %w", err))
		}
		n[i] = v
	}
	return n, nil
}

// scrapeDelivered sums deliveredMetric{src_app_id="lb-caller",status="200"}
// from the Prometheus text on the metrics port.
func scrapeDelivered(ctx context.Context, port int) (int64, error) {
	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	return parseDelivered(resp.Body)
}

// parseDelivered sums the samples of deliveredMetric from callerID with
// status 200 in Prometheus text r; a metric not there yet is 0.
func parseDelivered(r io.Reader) (int64, error) {
	var sum int64
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		labels, ok := strings.CutPrefix(line, deliveredMetric+"{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(labels, "} ")
		if !ok || !strings.Contains(labels, `src_app_id="`+callerID+`"`) || !strings.Contains(labels, `status="200"`) {
			continue
		}
		value, _, _ = strings.Cut(value, " ") // a timestamp may follow
		f, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %v", line, err)
		}
		sum += int64(f)
	}
	return sum, sc.Err()
}

// cpuTime is the CPU time procs have used, summed.
func cpuTime(procs []*harness.Process) (time.Duration, error) {
	var sum time.Duration
	for _, p := range procs {
		t, err := p.CPUTime()
		if err != nil {
			return 0, p.Failure(err)
		}
		sum += t
	}
	return sum, nil
}

func minMax(v []int64) (lo, hi int64) {
	if len(v) == 0 {
		return 0, 0
	}
	return slices.Min(v), slices.Max(v)
}

func joinInts(v []int, sep string) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, sep)
}
