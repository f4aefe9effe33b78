package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/outrigger/outrigger/bench/harness"
)

// Ports inside the namespace: fixed, and below Linux's ephemeral range so
// that no client connection's source port can take one between rounds.
const appPort = 20080

type sidecarPorts struct{ http, grpc, internal, metrics, profile int }

var (
	callerPorts = sidecarPorts{http: 20500, grpc: 20501, internal: 20502, metrics: 20503, profile: 20504}
	calleePorts = sidecarPorts{http: 20510, grpc: 20511, internal: 20512, metrics: 20513, profile: 20514}
)

const (
	callerID   = "caller"
	calleeID   = "callee"
	stopGrace  = 3 * time.Second
	pollEvery  = time.Millisecond
	rssEvery   = 100 * time.Millisecond
	logTailLen = 60
)

// roundResult is one target's measurements in one round. Sidecar fields are
// zero for the direct target.
type roundResult struct {
	Target        string              `json:"target"`
	Round         int                 `json:"round"`
	Fixed         *harness.LoadResult `json:"fixed,omitempty"`
	Max           *harness.LoadResult `json:"max,omitempty"`
	CallerStartup time.Duration       `json:"caller_startup_ns,omitempty"`
	CalleeStartup time.Duration       `json:"callee_startup_ns,omitempty"`
	CallerIdleKiB int64               `json:"caller_idle_rss_kib,omitempty"`
	CallerPeakKiB int64               `json:"caller_peak_rss_kib,omitempty"`
	CalleeIdleKiB int64               `json:"callee_idle_rss_kib,omitempty"`
	CalleePeakKiB int64               `json:"callee_peak_rss_kib,omitempty"`
	// SentRequests counts every request the round sent: first calls,
	// warm-up and both scenarios.
	SentRequests int64 `json:"sent_requests,omitempty"`
	// Spans is how many spans the span sink received from the round's
	// sidecars, their shutdown flush included; nil for a target that does
	// not trace.
	Spans *int64 `json:"spans,omitempty"`
}

func (r roundResult) errors() int64 {
	var n int64
	if r.Fixed != nil {
		n += r.Fixed.Errors
	}
	if r.Max != nil {
		n += r.Max.Errors
	}
	return n
}

// bench runs the measurements inside the namespace.
type bench struct {
	cfg     *config
	workdir string
	verbose bool
	body    []byte
	app     *process
	cp      *controlPlane // for the outrigger-mtls target

	sink          *spanSink // for the outrigger-traced target
	appNetns      *appNetns // for the outrigger-transparent target
	tracingConfig string    // its sidecars' --config file, exporting to sink
}

func (b *bench) logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", a...)
}

// measure starts the app (and, for the outrigger-mtls target, the control
// plane; for the outrigger-traced target, the span sink), then runs every
// round: each target once per round, in the order roundOrder gives.
func (b *bench) measure(ctx context.Context) ([]roundResult, error) {
	b.body = bytes.Repeat([]byte("x"), b.cfg.bodySize)
	if err := b.startApp(ctx); err != nil {
		return nil, err
	}
	defer b.app.stop(stopGrace)
	if slices.Contains(b.cfg.targets, targetOutriggerMTLS) {
		var err error
		b.cp, err = startControlPlane(ctx, b.cfg.outrigger, filepath.Join(b.workdir, "control-plane"),
			[]string{callerID, calleeID}, b.cfg.startTimeout)
		if err != nil {
			return nil, err
		}
		defer b.cp.stop()
	}
	if slices.Contains(b.cfg.targets, targetOutriggerTraced) {
		var err error
		if b.sink, err = startSpanSink(); err != nil {
			return nil, err
		}
		defer b.sink.stop(stopGrace)
		b.tracingConfig = filepath.Join(b.workdir, "tracing.yaml")
		if err := os.WriteFile(b.tracingConfig, []byte(tracingConfiguration(b.sink.addr())), 0o644); err != nil {
			return nil, err
		}
	}

	if slices.Contains(b.cfg.targets, targetOutriggerTransparent) {
		var err error
		if b.appNetns, err = newAppNetns(ctx, b.cfg.outrigger, b.workdir); err != nil {
			return nil, err
		}
		defer b.appNetns.remove()
	}

	var results []roundResult
	for round := 1; round <= b.cfg.rounds; round++ {
		for _, t := range roundOrder(b.cfg.targets, round) {
			var (
				r   roundResult
				err error
			)
			b.logf("round %d/%d: %s", round, b.cfg.rounds, t)
			var spansBefore int64
			if t == targetOutriggerTraced {
				spansBefore = b.sink.count()
			}
			if t == targetDirect {
				r, err = b.directRound(ctx)
			} else {
				r, err = b.sidecarRound(ctx, t, round)
			}
			if t == targetOutriggerTraced {
				// sidecarRound has stopped the sidecars, and a sidecar
				// exports its queued spans before it exits.
				n := b.sink.count() - spansBefore
				r.Spans = &n
			}
			if err != nil && t == targetOutriggerMTLS {
				// The sidecars' certificates come from the control plane;
				// its log may say why they did not come up.
				err = errors.Join(err, b.cp.proc.failure(errors.New("its log, for the failed round")))
			}
			if err != nil {
				return nil, fmt.Errorf("round %d, target %s: %w", round, t, err)
			}
			if b.app.exited() {
				return nil, b.app.failure(fmt.Errorf("the app exited during round %d, target %s", round, t))
			}
			if b.cp != nil && b.cp.proc.exited() {
				return nil, b.cp.proc.failure(fmt.Errorf("the control plane exited during round %d, target %s", round, t))
			}
			r.Target, r.Round = t, round
			b.logf("round %d/%d: %s: %s", round, b.cfg.rounds, t, r.summary())
			results = append(results, r)
		}
	}
	return results, nil
}

func (b *bench) startApp(ctx context.Context) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	addr := "127.0.0.1:" + strconv.Itoa(appPort)
	b.app, err = startProcess("app", filepath.Join(b.workdir, "app.log"),
		[]string{roleEnv + "=app", appAddrEnv + "=" + addr}, self)
	if err != nil {
		return err
	}
	if _, err := b.app.waitStatus(ctx, http.MethodGet, "http://"+addr+appPath, http.StatusOK, pollEvery, b.cfg.startTimeout); err != nil {
		b.app.stop(stopGrace)
		return err
	}
	return nil
}

func (b *bench) directRound(ctx context.Context) (roundResult, error) {
	var r roundResult
	err := b.scenarios(ctx, fmt.Sprintf("http://127.0.0.1:%d%s", appPort, appPath), "", &r, nil)
	return r, err
}

// sidecarRound starts a fresh callee and caller sidecar of the given kind,
// times the caller's start, reads idle RSS, and runs the scenarios through
// them while sampling RSS.
func (b *bench) sidecarRound(ctx context.Context, kind string, round int) (roundResult, error) {
	var r roundResult
	dir := filepath.Join(b.workdir, fmt.Sprintf("%s-round%d", kind, round))
	resources := filepath.Join(dir, "resources")
	if err := os.MkdirAll(resources, 0o755); err != nil {
		return r, err
	}
	resolution := filepath.Join(dir, "resolution.yaml")
	file := fmt.Sprintf("apps:\n  - appID: %s\n    addresses: [\"127.0.0.1:%d\"]\n", calleeID, calleePorts.internal)
	if err := os.WriteFile(resolution, []byte(file), 0o644); err != nil {
		return r, err
	}

	callee, err := b.startSidecar(kind, calleeID, calleePorts, appPort, dir, resources, resolution)
	if err != nil {
		return r, err
	}
	defer callee.stop(stopGrace)
	if r.CalleeStartup, err = callee.waitStatus(ctx, http.MethodGet, sidecarURL(calleePorts, "/v1.0/healthz/outbound"), http.StatusNoContent, pollEvery, b.cfg.startTimeout); err != nil {
		return r, err
	}
	// /v1.0/healthz answers 204 once the app channel is up as well.
	if _, err := callee.waitStatus(ctx, http.MethodGet, sidecarURL(calleePorts, "/v1.0/healthz"), http.StatusNoContent, pollEvery, b.cfg.startTimeout); err != nil {
		return r, err
	}

	caller, err := b.startSidecar(kind, callerID, callerPorts, 0, dir, resources, resolution)
	if err != nil {
		return r, err
	}
	defer caller.stop(stopGrace)
	if r.CallerStartup, err = caller.waitStatus(ctx, http.MethodGet, sidecarURL(callerPorts, "/v1.0/healthz/outbound"), http.StatusNoContent, pollEvery, b.cfg.startTimeout); err != nil {
		return r, err
	}

	if err := sleepCtx(ctx, b.cfg.idleSettle); err != nil {
		return r, err
	}
	if r.CallerIdleKiB, err = caller.rssKiB(); err != nil {
		return r, caller.failure(err)
	}
	if r.CalleeIdleKiB, err = callee.rssKiB(); err != nil {
		return r, callee.failure(err)
	}

	if isOutrigger(kind) {
		// Check that metrics are off for outrigger-bare and on otherwise.
		for _, s := range []struct {
			p     *process
			ports sidecarPorts
		}{{caller, callerPorts}, {callee, calleePorts}} {
			if err := checkMetrics(ctx, s.ports.metrics, kind != targetOutriggerBare); err != nil {
				return r, s.p.failure(err)
			}
		}
	}

	url := sidecarURL(callerPorts, "/v1.0/invoke/"+calleeID+"/method"+appPath)
	if kind == targetRelay {
		// The app's own request, to the caller relay's relaying port.
		url = fmt.Sprintf("http://127.0.0.1:%d%s", callerPorts.internal, appPath)
	}
	netns := ""
	if kind == targetOutriggerTransparent {
		// No Dapr API: the callee by its virtual address, from the app's
		// namespace.
		url, netns = "http://"+calleeVirtualAddr+appPath, b.appNetns.path()
	}
	// Name resolution may need a moment (mDNS); wait for one good answer.
	if r.SentRequests, err = b.firstCall(ctx, url, netns, caller, callee); err != nil {
		return r, err
	}
	if kind == targetOutriggerMTLS {
		// The call went through the callee; if its mesh port refuses
		// plain text, the caller spoke mutual TLS to it.
		if err := refusesPlainText(ctx, fmt.Sprintf("127.0.0.1:%d", calleePorts.internal)); err != nil {
			return r, callee.failure(err)
		}
	}
	sampler := startRSSSampler(caller, callee)
	var profiles func() error
	if b.cfg.profile != "" && isOutrigger(kind) {
		profiles = b.startProfiles(ctx, fmt.Sprintf("%s-round%d", kind, round))
	}
	err = b.scenarios(ctx, url, netns, &r, []*process{caller, callee})
	if profiles != nil {
		if perr := profiles(); perr != nil && err == nil {
			err = perr
		}
	}
	peaks := sampler.stop()
	r.CallerPeakKiB, r.CalleePeakKiB = peaks[0], peaks[1]
	for _, p := range []*process{caller, callee} {
		if p.exited() {
			return r, p.failure(fmt.Errorf("exited during the load"))
		}
	}
	return r, err
}

func (b *bench) startSidecar(kind, appID string, ports sidecarPorts, appPort int, dir, resources, resolution string) (*process, error) {
	args := []string{
		"--app-id", appID,
		"--dapr-http-port", strconv.Itoa(ports.http),
		"--dapr-grpc-port", strconv.Itoa(ports.grpc),
		"--dapr-internal-grpc-port", strconv.Itoa(ports.internal),
		"--metrics-port", strconv.Itoa(ports.metrics),
		"--resources-path", resources,
	}
	if appPort != 0 {
		args = append(args, "--app-port", strconv.Itoa(appPort))
	}
	var (
		bin string
		env []string
	)
	switch {
	case isOutrigger(kind):
		bin = b.cfg.outrigger
		if kind == targetOutriggerB {
			bin = b.cfg.outriggerB
		}
		args = append([]string{"sidecar"}, args...)
		args = append(args, "--name-resolution", b.cfg.resolution)
		if b.cfg.resolution == "static" {
			args = append(args, "--static-resolution-file", resolution)
		}
		home := filepath.Join(dir, "home-"+appID)
		if err := os.MkdirAll(home, 0o755); err != nil {
			return nil, err
		}
		env = []string{"OUTRIGGER_HOME=" + home}
		if b.cfg.profile != "" {
			args = append(args, "--enable-profiling", "--profile-port", strconv.Itoa(ports.profile))
		}
		switch kind {
		case targetOutriggerBare:
			args = append(args, "--enable-metrics=false")
		case targetOutriggerAllCPUs:
			args = append(args, "--concurrency", "0")
		case targetOutriggerTraced:
			args = append(args, "--config", b.tracingConfig)
		case targetOutriggerTransparent:
			if appID == callerID {
				args = append(args, "--enable-transparent", "--transparent-port", strconv.Itoa(transparentPort),
					"--app-netns", b.appNetns.path(), "--virtual-hosts", b.appNetns.hosts)
			}
		case targetOutriggerMTLS:
			a, e := b.cp.sidecarArgs(appID)
			args = append(args, a...)
			// The SPIFFE Workload API socket, served as a real sidecar's
			// would be; named here because the default path under home
			// can pass the 107 bytes a Unix socket path may have.
			args = append(args, "--workload-api-socket", filepath.Join(dir, appID+".sock"))
			env = append(env, e...)
		}
	case kind == targetMinimal || kind == targetRelay:
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		bin, args = self, nil
		role, target := minimalRoleCallee, appPort
		if appID == callerID {
			role, target = minimalRoleCaller, calleePorts.internal
		}
		if kind == targetRelay {
			role = map[string]string{minimalRoleCaller: relayRoleCaller, minimalRoleCallee: relayRoleCallee}[role]
		}
		env = []string{roleEnv + "=" + role,
			fmt.Sprintf("%s=%d,%d,%d", minimalArgsEnv, ports.http, ports.internal, target)}
	case kind == targetDaprd:
		bin = b.cfg.daprd // default name resolution: mDNS
		// daprd looks for a non-loopback address to announce and stops
		// when there is none; the namespace has only loopback.
		env = []string{"DAPR_HOST_IP=127.0.0.1"}
	default:
		return nil, fmt.Errorf("unknown sidecar kind %q", kind)
	}
	name := fmt.Sprintf("%s sidecar %s", kind, appID)
	return startProcess(name, filepath.Join(dir, appID+".log"), env, bin, args...)
}

// tracingConfiguration is the Dapr Configuration the outrigger-traced
// sidecars get: tracing at tracingSamplingRate, exported by OTLP/gRPC in
// plain text to the span sink at addr. Metrics stay at their default, on.
func tracingConfiguration(addr string) string {
	return fmt.Sprintf(`apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: tracing
spec:
  tracing:
    samplingRate: "%s"
    otel:
      protocol: grpc
      endpointAddress: %s
      isSecure: false
`, strconv.FormatFloat(tracingSamplingRate, 'g', -1, 64), addr)
}

// checkMetrics checks that the sidecar's metrics endpoint on port answers
// GET /metrics with 200 (wantOn) or that nothing listens there (the
// connection is refused).
func checkMetrics(ctx context.Context, port int, wantOn bool) error {
	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := pollClient.Do(req)
	if err == nil {
		resp.Body.Close()
	}
	switch {
	case wantOn && err != nil:
		return fmt.Errorf("metrics should be on, but GET %s: %v", url, err)
	case wantOn && resp.StatusCode != http.StatusOK:
		return fmt.Errorf("metrics should be on, but GET %s answered %d", url, resp.StatusCode)
	case !wantOn && err == nil:
		return fmt.Errorf("metrics should be off (--enable-metrics=false), but GET %s answered %d", url, resp.StatusCode)
	case !wantOn && !errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("metrics should be off (--enable-metrics=false), so GET %s should be refused, but: %v", url, err)
	}
	return nil
}

func sidecarURL(p sidecarPorts, path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", p.http, path)
}

// firstCall invokes the app through the sidecars until one call answers
// 200, and returns how many calls the caller sidecar answered.
func (b *bench) firstCall(ctx context.Context, url, netns string, caller, callee *process) (int64, error) {
	client := pollClient
	if netns != "" {
		client = netnsClient(netns)
	}
	deadline := time.Now().Add(b.cfg.startTimeout)
	var (
		last string
		sent int64
	)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b.body))
		if err != nil {
			return sent, err
		}
		resp, err := client.Do(req)
		if err == nil {
			sent++
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return sent, nil
			}
			last = "status " + strconv.Itoa(resp.StatusCode)
		} else {
			last = err.Error()
		}
		for _, p := range []*process{caller, callee} {
			if p.exited() {
				return sent, p.failure(fmt.Errorf("exited before the first invocation succeeded"))
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			err := fmt.Errorf("POST %s did not answer 200 within %v (last: %s)", url, b.cfg.startTimeout, last)
			if ctx.Err() != nil {
				err = fmt.Errorf("POST %s: %v", url, ctx.Err())
			}
			return sent, errors.Join(caller.failure(err), callee.failure(err))
		}
		if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
			return sent, err
		}
	}
}

// scenarios runs the warm-up and the measured scenarios against url, and
// counts the CPU time the sidecars use in each measured scenario.
func (b *bench) scenarios(ctx context.Context, url, netns string, r *roundResult, sidecars []*process) error {
	spec := harness.LoadSpec{
		Netns:       netns,
		URL:         url,
		Body:        b.body,
		QPS:         b.cfg.qps,
		Connections: b.cfg.connections,
		ReqTimeout:  b.cfg.reqTimeout,
		Uniform:     b.cfg.uniform,
	}
	if b.cfg.warmup > 0 {
		spec.Duration = b.cfg.warmup
		w, err := harness.RunLoad(ctx, spec)
		if err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
		r.SentRequests += w.Requests
		if w.Errors > 0 {
			b.logf("warm-up: %d of %d requests failed (codes %v)", w.Errors, w.Requests, w.Codes)
		}
	}
	if b.cfg.fixedDuration > 0 {
		spec.Duration = b.cfg.fixedDuration
		res, err := runLoadCPU(ctx, spec, sidecars)
		if err != nil {
			return fmt.Errorf("fixed-rate scenario: %w", err)
		}
		r.Fixed = res
		r.SentRequests += res.Requests
	}
	if b.cfg.maxDuration > 0 {
		spec.Duration, spec.QPS = b.cfg.maxDuration, 0
		res, err := runLoadCPU(ctx, spec, sidecars)
		if err != nil {
			return fmt.Errorf("maximum-throughput scenario: %w", err)
		}
		r.Max = res
		r.SentRequests += res.Requests
	}
	return nil
}

// runLoadCPU is harness.RunLoad that also counts the CPU time of procs.
func runLoadCPU(ctx context.Context, spec harness.LoadSpec, procs []*process) (*harness.LoadResult, error) {
	cpu := func() (time.Duration, error) {
		var sum time.Duration
		for _, p := range procs {
			t, err := p.cpuTime()
			if err != nil {
				return 0, p.failure(err)
			}
			sum += t
		}
		return sum, nil
	}
	before, err := cpu()
	if err != nil {
		return nil, err
	}
	res, err := harness.RunLoad(ctx, spec)
	if err != nil {
		return nil, err
	}
	after, err := cpu()
	if err != nil {
		return nil, err
	}
	res.SidecarCPU = after - before
	return res, nil
}

func (r roundResult) summary() string {
	var s string
	if f := r.Fixed; f != nil {
		s += fmt.Sprintf("fixed %.0f req/s p50 %s p90 %s p99 %s ms; ", f.QPS, ms(f.P50), ms(f.P90), ms(f.P99))
	}
	if m := r.Max; m != nil {
		s += fmt.Sprintf("max %.0f req/s p50 %s p99 %s ms; ", m.QPS, ms(m.P50), ms(m.P99))
	}
	if r.CallerStartup > 0 {
		s += fmt.Sprintf("sidecar CPU ms/1k req fixed %s max %s; ", cpuPer1k(r.Fixed), cpuPer1k(r.Max))
		s += fmt.Sprintf("caller ready in %s ms, RSS idle %s/%s peak %s/%s MiB (caller/callee); ",
			ms(r.CallerStartup), mib(r.CallerIdleKiB), mib(r.CalleeIdleKiB), mib(r.CallerPeakKiB), mib(r.CalleePeakKiB))
	}
	if r.Spans != nil {
		s += fmt.Sprintf("spans received %d for %d requests sent; ", *r.Spans, r.SentRequests)
	}
	s += fmt.Sprintf("errors %d", r.errors())
	return s
}

// rssSampler reads the processes' RSS every rssEvery and keeps the peaks.
type rssSampler struct {
	procs []*process
	done  chan struct{}
	wg    sync.WaitGroup
	peaks []int64
}

func startRSSSampler(procs ...*process) *rssSampler {
	s := &rssSampler{procs: procs, done: make(chan struct{}), peaks: make([]int64, len(procs))}
	s.sample()
	s.wg.Go(func() {
		t := time.NewTicker(rssEvery)
		defer t.Stop()
		for {
			select {
			case <-s.done:
				return
			case <-t.C:
				s.sample()
			}
		}
	})
	return s
}

func (s *rssSampler) sample() {
	for i, p := range s.procs {
		if kib, err := p.rssKiB(); err == nil {
			s.peaks[i] = max(s.peaks[i], kib)
		}
	}
}

func (s *rssSampler) stop() []int64 {
	close(s.done)
	s.wg.Wait()
	s.sample()
	return s.peaks
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// startProfiles starts a CPU profile (or, with --profile-kind trace, an
// execution trace) of both sidecars covering the warm-up and the
// fixed-rate scenario; the function it returns waits for them and writes
// them to the profile folder as <name>-<app-id>.pprof (or .trace).
func (b *bench) startProfiles(ctx context.Context, name string) func() error {
	seconds := int((b.cfg.warmup + b.cfg.fixedDuration).Seconds())
	if seconds < 1 {
		seconds = 1
	}
	errs := make(chan error, 2)
	if err := os.MkdirAll(b.cfg.profile, 0o755); err != nil {
		return func() error { return err }
	}
	for _, s := range []struct {
		id    string
		ports sidecarPorts
	}{{callerID, callerPorts}, {calleeID, calleePorts}} {
		go func() {
			endpoint, ext := "profile", ".pprof"
			if b.cfg.profileKind == "trace" {
				endpoint, ext = "trace", ".trace"
			}
			url := fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/%s?seconds=%d", s.ports.profile, endpoint, seconds)
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				errs <- err
				return
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs <- fmt.Errorf("profile of %s: %w", s.id, err)
				return
			}
			defer resp.Body.Close()
			data, err := io.ReadAll(resp.Body)
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %d: %s", resp.StatusCode, data)
			}
			if err != nil {
				errs <- fmt.Errorf("profile of %s: %w", s.id, err)
				return
			}
			errs <- os.WriteFile(filepath.Join(b.cfg.profile, name+"-"+s.id+ext), data, 0o644)
		}()
	}
	return func() error {
		return errors.Join(<-errs, <-errs)
	}
}

// roundOrder is the order of the targets in a round: the chosen order,
// started one target later each round, so that over as many rounds as
// there are targets each takes every place once. The place in a round
// matters on a small machine: with a fixed order, whichever Outrigger
// binary ran first after direct came out slower in four rounds of five,
// more than the difference between the binaries (docs/benchmarks.md).
func roundOrder(targets []string, round int) []string {
	if len(targets) == 0 {
		return nil
	}
	k := (round - 1) % len(targets)
	return append(slices.Clone(targets[k:]), targets[:k]...)
}
