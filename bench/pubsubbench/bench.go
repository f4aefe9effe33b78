package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/outrigger/outrigger/bench/harness"
)

// Targets of the publish-latency part, in the order a round runs them.
const (
	targetDirect        = "direct"
	targetRelay         = "relay"
	targetOutriggerGRPC = "outrigger-grpc"
	targetOutriggerHTTP = "outrigger-http"
	targetDaprdGRPC     = "daprd-grpc"
	targetDaprdHTTP     = "daprd-http"
)

// Sidecars, and the modes of the end-to-end part.
const (
	sidecarOutrigger = "outrigger"
	sidecarDaprd     = "daprd"

	modeBulk   = "bulk"
	modeSingle = "single"
)

// allModes are the end-to-end modes a run measures unless Config.Modes
// names fewer, in the order they run.
var allModes = []string{modeBulk, modeSingle}

// sidecarOf splits a sidecar target into its sidecar and protocol ("grpc"
// or "http"); ok is false for direct.
func sidecarOf(target string) (sidecar, protocol string, ok bool) {
	return strings.Cut(target, "-")
}

// App IDs of the sidecars: the one that publishes (no app) and the one
// whose app subscribes.
const (
	publisherID  = "pubsubbench-pub"
	subscriberID = "pubsubbench-sub"
)

// Config is one run of the harness.
type Config struct {
	// Rounds is how many interleaved rounds run; each runs every target of
	// both parts once.
	Rounds int `json:"rounds"`
	// Ops is the number of recorded sequential publishes per latency
	// target per round.
	Ops int `json:"ops"`
	// Warmup is the number of publishes before the recorded ones, not
	// recorded.
	Warmup int `json:"warmup"`
	// PayloadSize is the size in bytes of each published JSON payload.
	PayloadSize int `json:"payload_size"`
	// Messages is the number of messages of each end-to-end run.
	Messages int `json:"messages"`
	// Batch is the size of a bulk publish, and the bulk subscription's
	// maxMessagesCount.
	Batch int `json:"batch"`
	// BulkAwait is the bulk subscription's maxAwaitDurationMs.
	BulkAwait time.Duration `json:"bulk_await_ns"`
	// Publishers is the number of concurrent publishers of an end-to-end
	// run.
	Publishers int `json:"publishers"`
	// E2EWarmup is the number of messages sent, and awaited, through the
	// same path before an end-to-end run's timed messages.
	E2EWarmup int `json:"e2e_warmup"`
	// Modes are the end-to-end modes measured, in allModes's order; empty
	// means all of them.
	Modes []string `json:"modes"`
	// E2EAPI is the publisher sidecar's API the end-to-end runs publish
	// with: "http" or "grpc".
	E2EAPI string `json:"e2e_api"`
	// Outrigger is the outrigger binary; empty builds ./cmd/outrigger into
	// the working folder.
	Outrigger string `json:"outrigger,omitempty"`
	// Daprd is the daprd binary; empty skips the daprd targets. A missing
	// file skips them with a note, or fails the run when DaprdRequired.
	Daprd         string `json:"daprd,omitempty"`
	DaprdRequired bool   `json:"daprd_required,omitempty"`
	// DaprdConcurrency is the concurrency metadata of daprd's component:
	// "parallel" (default) or "single" (Dapr's default, one delivery at a
	// time).
	DaprdConcurrency string `json:"daprd_concurrency"`
	// StartTimeout bounds a sidecar's start until it is ready (and, for a
	// subscriber, until it has subscribed).
	StartTimeout time.Duration `json:"start_timeout_ns"`
	// OpTimeout bounds one publish or bulk publish.
	OpTimeout time.Duration `json:"op_timeout_ns"`
	// DrainTimeout is how long the subscriber may go without receiving a
	// new message, once publishing ended, before the missing ones count as
	// lost and fail the run.
	DrainTimeout time.Duration `json:"drain_timeout_ns"`
	// Timeout bounds the whole run; 0 computes a generous bound.
	Timeout time.Duration `json:"timeout_ns"`
	// Keep keeps the working folder (sidecar logs, components, the NATS
	// store).
	Keep bool `json:"keep,omitempty"`
	// Command is the command line shown at the head of the report.
	Command string `json:"command"`
	// Progress receives one line per target per round; nil discards.
	Progress io.Writer `json:"-"`
}

func (c *Config) defaults() error {
	if c.Rounds < 1 || c.Ops < 1 || c.Messages < 1 || c.Warmup < 0 || c.E2EWarmup < 0 {
		return errors.New("rounds, ops and messages must be at least 1, the warm-ups not negative")
	}
	if c.Messages > 9_999_999 || c.E2EWarmup > 9_999_999 || c.Ops+c.Warmup > 9_999_999 {
		return errors.New("at most 9,999,999 messages per run")
	}
	if c.PayloadSize == 0 {
		c.PayloadSize = 1024
	}
	if c.PayloadSize < minPayloadSize {
		return fmt.Errorf("payload size %d: want at least %d bytes", c.PayloadSize, minPayloadSize)
	}
	if c.Batch == 0 {
		c.Batch = 100
	}
	if c.Publishers == 0 {
		c.Publishers = 4
	}
	if c.Batch < 1 || c.Publishers < 1 {
		return errors.New("batch and publishers must be at least 1")
	}
	if c.BulkAwait == 0 {
		c.BulkAwait = 50 * time.Millisecond
	}
	if c.BulkAwait < time.Millisecond {
		return fmt.Errorf("bulk await %v: want at least 1ms", c.BulkAwait)
	}
	want := map[string]bool{}
	for _, m := range c.Modes {
		if !slices.Contains(allModes, m) {
			return fmt.Errorf("mode %q: want %s", m, strings.Join(allModes, " or "))
		}
		want[m] = true
	}
	c.Modes = nil
	for _, m := range allModes {
		if want[m] || len(want) == 0 {
			c.Modes = append(c.Modes, m)
		}
	}
	switch c.E2EAPI {
	case "":
		c.E2EAPI = "http"
	case "http", "grpc":
	default:
		return fmt.Errorf("e2e API %q: want http or grpc", c.E2EAPI)
	}
	switch c.DaprdConcurrency {
	case "":
		c.DaprdConcurrency = "parallel"
	case "parallel", "single":
	default:
		return fmt.Errorf("daprd concurrency %q: want parallel or single", c.DaprdConcurrency)
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = 30 * time.Second
	}
	if c.OpTimeout <= 0 {
		c.OpTimeout = 10 * time.Second
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 60 * time.Second
	}
	if c.Timeout <= 0 {
		c.Timeout = c.budget()
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	return nil
}

// budget is the default bound on a run, for both sidecars: per round, each
// latency target's sidecar start-up plus 10 ms per publish and 10 s; each
// end-to-end run's two start-ups plus 5 ms per message (a quarter of the
// slowest rate seen) and the drain timeout twice; plus 5 minutes for
// building.
func (c *Config) budget() time.Duration {
	latency := 5 * (c.StartTimeout + time.Duration(c.Warmup+c.Ops)*10*time.Millisecond + 10*time.Second)
	e2e := 2 * (2*c.StartTimeout + time.Duration(len(c.Modes))*(time.Duration(c.Messages+c.E2EWarmup)*5*time.Millisecond+2*c.DrainTimeout))
	return time.Duration(c.Rounds)*(latency+e2e) + 5*time.Minute
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
	NATS      string    `json:"nats_server_version"`
}

// Result is what a run measured.
type Result struct {
	Config Config      `json:"config"`
	Env    Environment `json:"environment"`
	RunID  string      `json:"run_id"`
	// Targets are the publish-latency targets, Sidecars the sidecars of the
	// end-to-end part.
	Targets  []string `json:"targets"`
	Sidecars []string `json:"sidecars"`
	// Notes say what was skipped, and why.
	Notes  []string `json:"notes,omitempty"`
	Rounds []Round  `json:"rounds"`
	// Workdir is the working folder, kept with Config.Keep.
	Workdir string `json:"workdir,omitempty"`
}

// Round is one pass over every target of both parts.
type Round struct {
	Round   int          `json:"round"`
	Latency []LatencyRun `json:"latency"`
	E2E     []E2ERun     `json:"e2e"`
}

// LatencyRun is one publish-latency target in one round.
type LatencyRun struct {
	Target string `json:"target"`
	Topic  string `json:"topic"`
	// StartUp is, for a sidecar target, the time from the sidecar's start
	// until /v1.0/healthz/outbound answered 204 (one sidecar serves both
	// protocols of a round).
	StartUp time.Duration   `json:"startup_ns,omitempty"`
	Publish harness.OpStats `json:"publish"`
}

// E2ERun is one end-to-end run: one sidecar, one mode, one round.
type E2ERun struct {
	Sidecar  string `json:"sidecar"`
	Mode     string `json:"mode"`
	Topic    string `json:"topic"`
	Messages int    `json:"messages"`
	// Elapsed runs from just before the first publish until the app had
	// received every message at least once; Rate is Messages over it.
	Elapsed time.Duration `json:"elapsed_ns"`
	Rate    float64       `json:"messages_per_s"`
	// PublishElapsed runs from the first publish until the last one
	// returned.
	PublishElapsed time.Duration `json:"publish_elapsed_ns"`
	// Deliveries counts every message the app received, Duplicates those
	// it had received before (until the sidecars stopped, after both
	// modes); Requests the app requests that carried them.
	Deliveries int64 `json:"deliveries"`
	Duplicates int64 `json:"duplicates"`
	Requests   int64 `json:"requests"`
	// CPU time (user plus system) used during Elapsed by the publisher
	// sidecar, the subscriber sidecar and the harness (NATS server,
	// subscriber app, publishers).
	CPUPublisher  time.Duration `json:"cpu_publisher_ns"`
	CPUSubscriber time.Duration `json:"cpu_subscriber_ns"`
	CPUHarness    time.Duration `json:"cpu_harness_ns"`
	// Start-up of the two sidecars (shared by both modes of a round).
	PublisherStartUp  time.Duration `json:"publisher_startup_ns"`
	SubscriberStartUp time.Duration `json:"subscriber_startup_ns"`
}

func (r *Round) latency(target string) *LatencyRun {
	for i := range r.Latency {
		if r.Latency[i].Target == target {
			return &r.Latency[i]
		}
	}
	return nil
}

func (r *Round) e2e(sidecar, mode string) *E2ERun {
	for i := range r.E2E {
		if r.E2E[i].Sidecar == sidecar && r.E2E[i].Mode == mode {
			return &r.E2E[i]
		}
	}
	return nil
}

// Run measures every target in cfg.Rounds interleaved rounds. Any failed
// publish, lost message or sidecar fails the whole run.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeoutCause(ctx, cfg.Timeout, fmt.Errorf("the run hit its time bound (%v)", cfg.Timeout))
	defer cancel()
	// The SDK logs to stdout, where the report goes.
	dapr.SetLogger(log.New(io.Discard, "", 0))

	res := &Result{Config: cfg, RunID: "pubsubbench-" + strconv.Itoa(os.Getpid()) + "-" + randomHex(4)}
	dir, err := os.MkdirTemp("", "pubsubbench-")
	if err != nil {
		return nil, err
	}
	if cfg.Keep {
		res.Workdir = dir
	} else {
		defer os.RemoveAll(dir)
	}
	b := &bench{cfg: &cfg, res: res, workdir: dir}

	if cfg.Outrigger == "" {
		fmt.Fprintf(cfg.Progress, "pubsubbench: building ./cmd/outrigger...\n")
		if cfg.Outrigger, err = harness.BuildOutrigger(ctx, dir); err != nil {
			return nil, err
		}
	} else if _, err := os.Stat(cfg.Outrigger); err != nil {
		return nil, fmt.Errorf("outrigger binary: %v", err)
	}
	res.Env.Outrigger = harness.CommandOutput(cfg.Outrigger, "version")

	res.Targets = []string{targetDirect, targetRelay, targetOutriggerGRPC, targetOutriggerHTTP}
	res.Sidecars = []string{sidecarOutrigger}
	daprd, note, err := chooseDaprd(cfg.Daprd, cfg.DaprdRequired)
	if err != nil {
		return nil, err
	}
	if note != "" {
		res.Notes = append(res.Notes, note)
	}
	if cfg.Daprd = daprd; daprd != "" {
		res.Targets = append(res.Targets, targetDaprdGRPC, targetDaprdHTTP)
		res.Sidecars = append(res.Sidecars, sidecarDaprd)
		res.Env.Daprd = harness.CommandOutput(cfg.Daprd, "--version")
	}
	res.Config = cfg

	if b.broker, err = startBroker(filepath.Join(dir, "nats")); err != nil {
		return nil, err
	}
	defer b.broker.close()
	res.Env.NATS = natsserver.VERSION
	if b.app, err = startApp(); err != nil {
		return nil, err
	}
	defer b.app.close()

	fmt.Fprintf(cfg.Progress, "pubsubbench: %d round(s); publish latency of %s, %d publishes (+%d warm-up) each; end to end through %s, %d messages bulk and single (timeout %v)\n",
		cfg.Rounds, strings.Join(res.Targets, ","), cfg.Ops, cfg.Warmup, strings.Join(res.Sidecars, ","), cfg.Messages, cfg.Timeout)
	fail := func(r int, what string, err error) error {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", err, context.Cause(ctx))
		}
		return fmt.Errorf("round %d, %s: %w", r, what, err)
	}
	for r := 1; r <= cfg.Rounds; r++ {
		round := Round{Round: r}
		// Part 1: publish latency, every target in turn.
		lr, err := b.latencyDirect(ctx, r)
		if err != nil {
			return nil, fail(r, targetDirect, err)
		}
		b.progressLatency(r, lr)
		round.Latency = append(round.Latency, lr)
		if lr, err = b.latencyRelay(ctx, r); err != nil {
			return nil, fail(r, targetRelay, err)
		}
		b.progressLatency(r, lr)
		round.Latency = append(round.Latency, lr)
		for _, sidecar := range res.Sidecars {
			runs, err := b.latencySidecar(ctx, r, sidecar)
			if err != nil {
				return nil, fail(r, sidecar+" publish latency", err)
			}
			for _, lr := range runs {
				b.progressLatency(r, lr)
			}
			round.Latency = append(round.Latency, runs...)
		}
		// Part 2: end-to-end throughput, every sidecar in turn.
		for _, sidecar := range res.Sidecars {
			runs, err := b.runE2E(ctx, r, sidecar)
			if err != nil {
				return nil, fail(r, sidecar+" end to end", err)
			}
			for _, e := range runs {
				fmt.Fprintf(cfg.Progress, "pubsubbench: round %d/%d %-9s %-6s %8.0f msg/s (publishing %.2f s, all delivered %.2f s), %d duplicate(s), %d app request(s)\n",
					r, cfg.Rounds, e.Sidecar, e.Mode, e.Rate, e.PublishElapsed.Seconds(), e.Elapsed.Seconds(), e.Duplicates, e.Requests)
			}
			round.E2E = append(round.E2E, runs...)
		}
		res.Rounds = append(res.Rounds, round)
	}

	res.Env.Date = time.Now().UTC()
	res.Env.CPU, res.Env.CPUs = cpuModel(), runtime.NumCPU()
	res.Env.Go = runtime.Version()
	res.Env.LoadAvg = loadAvg()
	return res, nil
}

func (b *bench) progressLatency(r int, lr LatencyRun) {
	fmt.Fprintf(b.cfg.Progress, "pubsubbench: round %d/%d %-15s publish p50 %.3f p90 %.3f p99 %.3f ms\n",
		r, b.cfg.Rounds, lr.Target, harness.MsOf(lr.Publish.P50), harness.MsOf(lr.Publish.P90), harness.MsOf(lr.Publish.P99))
}

// bench is the state of one run.
type bench struct {
	cfg     *Config
	res     *Result
	workdir string
	broker  *broker
	app     *app
}

// stopGrace is how long a sidecar has to stop after SIGTERM.
const stopGrace = 5 * time.Second

// topic names a fresh topic (and its stream) of this run.
func (b *bench) topic(round int, what string) string {
	return fmt.Sprintf("%s-r%d-%s", b.res.RunID, round, what)
}

// latencyDirect measures direct publishes to a fresh stream.
func (b *bench) latencyDirect(ctx context.Context, round int) (LatencyRun, error) {
	lr := LatencyRun{Target: targetDirect, Topic: b.topic(round, "lat-"+targetDirect)}
	if err := b.broker.createStream(ctx, lr.Topic); err != nil {
		return lr, err
	}
	defer b.broker.deleteStream(lr.Topic)
	c, err := newDirectClient(b.broker.url)
	if err != nil {
		return lr, err
	}
	defer c.close()
	lr.Publish, err = b.measurePublish(ctx, c, lr.Topic)
	return lr, err
}

// latencyRelay measures direct publishes through a TCP relay in a process
// of its own (this program again, on one thread as a sidecar runs): the
// same client and broker as direct, with one more process on the path that
// copies bytes and parses nothing. relay minus direct is what any process
// between the app and the broker adds on this machine, the floor under a
// sidecar's added latency.
func (b *bench) latencyRelay(ctx context.Context, round int) (LatencyRun, error) {
	lr := LatencyRun{Target: targetRelay, Topic: b.topic(round, "lat-"+targetRelay)}
	if err := b.broker.createStream(ctx, lr.Topic); err != nil {
		return lr, err
	}
	defer b.broker.deleteStream(lr.Topic)
	exe, err := os.Executable()
	if err != nil {
		return lr, err
	}
	ports, err := harness.FreePorts(1)
	if err != nil {
		return lr, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	target := strings.TrimPrefix(b.broker.url, "nats://")
	logPath := filepath.Join(b.workdir, fmt.Sprintf("r%d-relay.log", round))
	p, err := harness.StartProcess(fmt.Sprintf("relay (round %d)", round), logPath, []string{relayEnv + "=" + addr + "," + target}, exe)
	if err != nil {
		return lr, err
	}
	defer p.Stop(stopGrace)
	if lr.StartUp, err = harness.WaitListening(ctx, addr, 5*time.Millisecond, b.cfg.StartTimeout); err != nil {
		return lr, p.Failure(err)
	}
	c, err := newDirectClient("nats://" + addr)
	if err != nil {
		return lr, p.Failure(err)
	}
	defer c.close()
	if lr.Publish, err = b.measurePublish(ctx, c, lr.Topic); err != nil {
		return lr, p.Failure(err)
	}
	return lr, nil
}

// latencySidecar starts one sidecar (no app) and measures publishes through
// it over gRPC, then over HTTP, each to a fresh stream.
func (b *bench) latencySidecar(ctx context.Context, round int, sidecar string) ([]LatencyRun, error) {
	dir := filepath.Join(b.workdir, fmt.Sprintf("r%d-lat-%s", round, sidecar))
	targets := []string{sidecar + "-grpc", sidecar + "-http"}
	var runs []LatencyRun
	for _, t := range targets {
		topic := b.topic(round, "lat-"+t)
		if err := b.broker.createStream(ctx, topic); err != nil {
			return nil, err
		}
		defer b.broker.deleteStream(topic)
		runs = append(runs, LatencyRun{Target: t, Topic: topic})
	}
	p, ports, startUp, err := b.startSidecar(ctx, sidecar, "publisher", dir, 0)
	if p != nil {
		defer p.Stop(stopGrace)
	}
	if err != nil {
		return nil, err
	}
	for i := range runs {
		_, protocol, _ := sidecarOf(runs[i].Target)
		var c publisher
		switch protocol {
		case "grpc":
			if c, err = newGRPCClient(ports.grpc); err != nil {
				return nil, p.Failure(err)
			}
		default:
			c = newHTTPClient(ports.http, 1)
		}
		runs[i].StartUp = startUp
		runs[i].Publish, err = b.measurePublish(ctx, c, runs[i].Topic)
		c.close()
		if err != nil {
			return nil, p.Failure(fmt.Errorf("%s: %w", runs[i].Target, err))
		}
		if p.Exited() {
			return nil, p.Failure(errors.New("exited during the measurements"))
		}
	}
	return runs, nil
}

// measurePublish runs the warm-up, then the recorded publishes, one at a
// time, and checks that the stream holds every message once.
func (b *bench) measurePublish(ctx context.Context, c publisher, topic string) (harness.OpStats, error) {
	cfg := b.cfg
	run := func(phase, n int, record []time.Duration) error {
		for i := range n {
			id := messageID(phase, i)
			payload := makePayload(id, cfg.PayloadSize)
			octx, cancel := context.WithTimeout(ctx, cfg.OpTimeout)
			start := time.Now()
			err := c.publish(octx, topic, id, payload)
			d := time.Since(start)
			cancel()
			if err != nil {
				return fmt.Errorf("publish %s to %s: %w", id, topic, err)
			}
			if record != nil {
				record[i] = d
			}
		}
		return nil
	}
	if err := run(phaseWarm, cfg.Warmup, nil); err != nil {
		return harness.OpStats{}, fmt.Errorf("warm-up: %w", err)
	}
	samples := make([]time.Duration, cfg.Ops)
	if err := run(phaseMeasured, cfg.Ops, samples); err != nil {
		return harness.OpStats{}, err
	}
	msgs, _, err := b.broker.streamState(ctx, topic)
	if err != nil {
		return harness.OpStats{}, fmt.Errorf("stream %s: %w", topic, err)
	}
	if want := uint64(cfg.Warmup + cfg.Ops); msgs != want {
		return harness.OpStats{}, fmt.Errorf("stream %s holds %d messages after %d acknowledged publishes", topic, msgs, want)
	}
	return harness.Summarize(samples), nil
}

// runE2E measures one sidecar end to end, in both modes: a fresh publisher
// sidecar (no app) and a fresh subscriber sidecar whose app is the
// harness's, subscribed to a fresh bulk topic and a fresh single one.
func (b *bench) runE2E(ctx context.Context, round int, sidecar string) ([]E2ERun, error) {
	cfg := b.cfg
	dir := filepath.Join(b.workdir, fmt.Sprintf("r%d-e2e-%s", round, sidecar))
	topics := map[string]string{}
	sinks := map[string]*sink{}
	var (
		subs      []subscriptionJSON
		topicList []string
		sinkList  []*sink
	)
	for _, mode := range cfg.Modes {
		t := b.topic(round, "e2e-"+sidecar+"-"+mode)
		if err := b.broker.createStream(ctx, t); err != nil {
			return nil, err
		}
		defer b.broker.deleteStream(t)
		topics[mode] = t
		sinks[mode] = newSink(t, cfg.E2EWarmup, cfg.Messages)
		topicList, sinkList = append(topicList, t), append(sinkList, sinks[mode])
		s := subscriptionJSON{PubsubName: pubsubName, Topic: t, Route: routeSingle}
		if mode == modeBulk {
			s.Route = routeBulk
			s.BulkSubscribe = &bulkSubscribeJSON{Enabled: true, MaxMessagesCount: cfg.Batch, MaxAwaitDurationMs: int(cfg.BulkAwait / time.Millisecond)}
		}
		subs = append(subs, s)
	}
	b.app.serve(subs, sinkList...)
	defer b.app.serve(nil)
	b.app.takeUnexpected()

	sub, _, subStart, err := b.startSidecar(ctx, sidecar, "subscriber", dir, b.app.port)
	if sub != nil {
		defer sub.Stop(stopGrace)
	}
	if err != nil {
		return nil, err
	}
	pub, ports, pubStart, err := b.startSidecar(ctx, sidecar, "publisher", dir, 0)
	if pub != nil {
		defer pub.Stop(stopGrace)
	}
	if err != nil {
		return nil, err
	}
	if err := b.broker.waitConsumers(ctx, sub, cfg.StartTimeout, topicList...); err != nil {
		return nil, err
	}
	var c bulkPublisher
	if cfg.E2EAPI == "grpc" {
		if c, err = newGRPCClient(ports.grpc); err != nil {
			return nil, pub.Failure(err)
		}
	} else {
		c = newHTTPClient(ports.http, cfg.Publishers)
	}
	defer c.close()

	var runs []E2ERun
	for _, mode := range cfg.Modes {
		e := E2ERun{Sidecar: sidecar, Mode: mode, Topic: topics[mode], Messages: cfg.Messages, PublisherStartUp: pubStart, SubscriberStartUp: subStart}
		if err := b.e2eMode(ctx, c, &e, sinks[mode], pub, sub); err != nil {
			return nil, fmt.Errorf("%s: %w", mode, err)
		}
		runs = append(runs, e)
	}
	// Duplicates count until here, the later mode's time included.
	for i := range runs {
		n := sinks[runs[i].Mode].counts(phaseMeasured)
		runs[i].Deliveries, runs[i].Duplicates, runs[i].Requests = n.deliveries, n.dups, n.reqs
	}
	if n, first := b.app.takeUnexpected(); n > 0 {
		return nil, fmt.Errorf("the app received %d deliveries it did not expect; the first: %s", n, first)
	}
	for _, p := range []*harness.Process{pub, sub} {
		if p.Exited() {
			return nil, p.Failure(errors.New("exited during the measurements"))
		}
	}
	return runs, nil
}

// e2eMode publishes the warm-up and waits for it, then times the measured
// messages from the first publish until the app has them all.
func (b *bench) e2eMode(ctx context.Context, c bulkPublisher, e *E2ERun, s *sink, pub, sub *harness.Process) error {
	cfg := b.cfg
	if cfg.E2EWarmup > 0 {
		ids, payloads := makeMessages(phaseWarm, cfg.E2EWarmup, cfg.PayloadSize)
		if _, err := b.pump(ctx, c, e.Mode, e.Topic, ids, payloads); err != nil {
			return pub.Failure(fmt.Errorf("warm-up: %w", err))
		}
		if err := s.wait(ctx, phaseWarm, time.Now(), cfg.DrainTimeout, sub, pub); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	ids, payloads := makeMessages(phaseMeasured, cfg.Messages, cfg.PayloadSize)
	pub0, err1 := pub.CPUTime()
	sub0, err2 := sub.CPUTime()
	self0 := selfCPU()
	start := time.Now()
	published, err := b.pump(ctx, c, e.Mode, e.Topic, ids, payloads)
	if err != nil {
		return pub.Failure(err)
	}
	if err := s.wait(ctx, phaseMeasured, start.Add(published), cfg.DrainTimeout, sub, pub); err != nil {
		return err
	}
	self1 := selfCPU()
	pub1, err3 := pub.CPUTime()
	sub1, err4 := sub.CPUTime()
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return fmt.Errorf("reading the sidecars' CPU time: %w", err)
	}
	e.PublishElapsed = published
	e.Elapsed = s.counts(phaseMeasured).lastNew.Sub(start)
	e.Rate = float64(cfg.Messages) / e.Elapsed.Seconds()
	e.CPUPublisher, e.CPUSubscriber, e.CPUHarness = pub1-pub0, sub1-sub0, self1-self0
	return nil
}

// pump publishes the messages with cfg.Publishers concurrent publishers, in
// bulk batches of cfg.Batch or one at a time, and returns the time until the
// last publish returned. The first failed publish ends it.
func (b *bench) pump(ctx context.Context, c bulkPublisher, mode, topic string, ids []string, payloads [][]byte) (time.Duration, error) {
	cfg := b.cfg
	step := 1
	if mode == modeBulk {
		step = cfg.Batch
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		next    atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
	)
	start := time.Now()
	for range cfg.Publishers {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(int64(step))) - step
				if i >= len(ids) {
					return
				}
				j := min(i+step, len(ids))
				octx, ocancel := context.WithTimeout(ctx, cfg.OpTimeout)
				var err error
				if mode == modeBulk {
					err = c.publishBulk(octx, topic, ids[i:j], payloads[i:j])
				} else {
					err = c.publish(octx, topic, ids[i], payloads[i])
				}
				ocancel()
				if err != nil {
					errOnce.Do(func() { first = fmt.Errorf("publishing %s..%s to %s: %w", ids[i], ids[j-1], topic, err) })
					cancel(first)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if first != nil {
		return 0, first
	}
	if err := context.Cause(ctx); err != nil {
		return 0, err
	}
	return elapsed, nil
}

// sidecarPorts are one sidecar's ports.
type sidecarPorts struct{ http, grpc, internal, metrics int }

// startSidecar writes the pub/sub component and starts one sidecar of role
// "publisher" (appPort 0: no app) or "subscriber", ready to serve:
// /v1.0/healthz/outbound answers 204.
func (b *bench) startSidecar(ctx context.Context, sidecar, role, dir string, appPort int) (*harness.Process, sidecarPorts, time.Duration, error) {
	var ports sidecarPorts
	dir = filepath.Join(dir, role)
	resources := filepath.Join(dir, "resources")
	if err := os.MkdirAll(resources, 0o755); err != nil {
		return nil, ports, 0, err
	}
	meta := map[string]string{"natsURL": b.broker.url}
	if sidecar == sidecarDaprd {
		meta["concurrency"] = b.cfg.DaprdConcurrency
	}
	if err := os.WriteFile(filepath.Join(resources, "pubsub.yaml"), componentYAML(meta), 0o644); err != nil {
		return nil, ports, 0, err
	}
	pp, err := harness.FreePorts(4)
	if err != nil {
		return nil, ports, 0, err
	}
	ports = sidecarPorts{http: pp[0], grpc: pp[1], internal: pp[2], metrics: pp[3]}
	appID := publisherID
	if role == "subscriber" {
		appID = subscriberID
	}
	args := []string{
		"--app-id", appID,
		"--dapr-http-port", strconv.Itoa(ports.http),
		"--dapr-grpc-port", strconv.Itoa(ports.grpc),
		"--dapr-internal-grpc-port", strconv.Itoa(ports.internal),
		"--metrics-port", strconv.Itoa(ports.metrics),
		"--resources-path", resources,
	}
	if appPort > 0 {
		args = append(args, "--app-port", strconv.Itoa(appPort))
	}
	var (
		bin string
		env []string
	)
	// Nothing is invoked here: name resolution that sends nothing.
	switch sidecar {
	case sidecarOutrigger:
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
	case sidecarDaprd:
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
	p, err := harness.StartProcess(fmt.Sprintf("%s %s sidecar (%s)", sidecar, role, filepath.Base(filepath.Dir(dir))), filepath.Join(dir, sidecar+".log"), env, bin, args...)
	if err != nil {
		return nil, ports, 0, err
	}
	startUp, err := p.WaitStatus(ctx, fmt.Sprintf("http://127.0.0.1:%d/v1.0/healthz/outbound", ports.http), 204, 5*time.Millisecond, b.cfg.StartTimeout)
	return p, ports, startUp, err
}

// componentYAML is the one pub/sub component, pubsub.jetstream named
// pubsub.
func componentYAML(meta map[string]string) []byte {
	var w strings.Builder
	fmt.Fprintf(&w, "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: %s\nspec:\n  type: pubsub.jetstream\n  version: v1\n  metadata:\n", pubsubName)
	for _, k := range []string{"natsURL", "concurrency"} {
		if v, ok := meta[k]; ok {
			q, _ := json.Marshal(v) // a JSON string is a YAML string
			fmt.Fprintf(&w, "  - name: %s\n    value: %s\n", k, q)
		}
	}
	return []byte(w.String())
}

// minPayloadSize fits a payload's JSON frame and its ID.
const minPayloadSize = len(`{"id":"m0000000","pad":""}`)

// makePayload is a compact JSON object of exactly size bytes naming id:
// {"id":"ID","pad":"abcd..."}, letters and digits only.
func makePayload(id string, size int) []byte {
	v := make([]byte, 0, size)
	v = append(v, `{"id":"`...)
	v = append(v, id...)
	v = append(v, `","pad":"`...)
	pad := size - len(v) - len(`"}`)
	for i := range pad {
		v = append(v, 'a'+byte(i%26))
	}
	return append(v, `"}`...)
}

// makeMessages are the IDs and payloads of n messages of phase.
func makeMessages(phase, n, size int) ([]string, [][]byte) {
	ids := make([]string, n)
	payloads := make([][]byte, n)
	for i := range n {
		ids[i] = messageID(phase, i)
		payloads[i] = makePayload(ids[i], size)
	}
	return ids, payloads
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
