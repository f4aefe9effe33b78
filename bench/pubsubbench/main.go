// Command pubsubbench measures Dapr's pub/sub API through a sidecar over NATS
// JetStream, the broker of Outrigger's development setup, which the harness
// embeds (a NATS server with JetStream in its own process, on a random
// loopback port). In interleaved rounds it measures:
//
//  1. publish latency, one publish at a time, of a 1 KiB JSON payload:
//     - direct: nats.go's jetstream client, waiting for the PubAck;
//     - outrigger-grpc and outrigger-http: through an `outrigger sidecar`
//     with a pubsub.jetstream component, with the Dapr Go SDK's
//     PublishEvent, or with POST /v1.0/publish/pubsub/{topic};
//     - daprd-grpc and daprd-http: the same through daprd 1.18.1 with
//     Dapr's own pubsub.jetstream component, when its binary is present;
//  2. end-to-end throughput: messages published through one sidecar (in
//     bulk batches, or one by one) until a second sidecar has delivered
//     every one (in bulk, or one by one) to an app in the harness.
//
// Run it from the repository:
//
//	go run ./bench/pubsubbench                      # 5 rounds: 2,000 publishes per target, 20,000 messages end to end
//	go run ./bench/pubsubbench --rounds 7 --out /tmp/pubsub.md --json /tmp/pubsub.json
//
// The report is markdown on stdout, headed by the exact command; README.md
// says what each number means.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/outrigger/outrigger/bench/harness"
)

func main() {
	if v := os.Getenv(relayEnv); v != "" {
		os.Exit(runRelay(v))
	}
	os.Exit(run(os.Args[1:]))
}

// relayEnv, set to "listenAddr,targetAddr", makes this program the relay
// of the relay target instead of the harness.
const relayEnv = "PUBSUBBENCH_RELAY"

// runRelay relays connections to spec's listen address to its target, on
// one thread, until SIGTERM or SIGINT.
func runRelay(spec string) int {
	addr, target, ok := strings.Cut(spec, ",")
	if !ok {
		fmt.Fprintf(os.Stderr, "pubsubbench relay: %s=%q: want listenAddr,targetAddr\n", relayEnv, spec)
		return 2
	}
	runtime.GOMAXPROCS(1)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pubsubbench relay: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- harness.ServeRelay(l, target) }()
	select {
	case <-ctx.Done():
		_ = l.Close()
		return 0
	case err := <-errc:
		fmt.Fprintf(os.Stderr, "pubsubbench relay: %v\n", err)
		return 1
	}
}

func run(args []string) int {
	fs := flag.NewFlagSet("pubsubbench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: go run ./bench/pubsubbench [flags]\n\n"+
			"Measures publishes through the Dapr pub/sub API of an Outrigger sidecar (and daprd), over gRPC and\n"+
			"HTTP, against publishing to NATS JetStream directly, and end-to-end throughput through two sidecars.\n\n")
		fs.PrintDefaults()
	}
	var cfg Config
	fs.IntVar(&cfg.Rounds, "rounds", 5, "interleaved rounds (each runs every target of both parts once)")
	fs.IntVar(&cfg.Ops, "ops", 2000, "recorded sequential publishes per latency target per round")
	fs.IntVar(&cfg.Warmup, "warmup", 200, "publishes before the recorded ones (not recorded)")
	fs.IntVar(&cfg.PayloadSize, "payload-size", 1024, "bytes of each published JSON payload")
	fs.IntVar(&cfg.Messages, "messages", 20000, "messages per end-to-end run (per sidecar, per mode, per round)")
	fs.IntVar(&cfg.Batch, "batch", 100, "entries per bulk publish, and the bulk subscription's maxMessagesCount")
	fs.DurationVar(&cfg.BulkAwait, "bulk-await", 50*time.Millisecond, "the bulk subscription's maxAwaitDurationMs")
	fs.IntVar(&cfg.Publishers, "publishers", 4, "concurrent publishers of an end-to-end run")
	fs.IntVar(&cfg.E2EWarmup, "e2e-warmup", 1000, "messages sent and awaited before an end-to-end run's timed ones")
	fs.Func("modes", "end-to-end modes to measure, comma-separated: bulk, single (default both)", func(v string) error {
		cfg.Modes = append(cfg.Modes, strings.Split(v, ",")...)
		return nil
	})
	fs.StringVar(&cfg.E2EAPI, "e2e-api", "http", "API the end-to-end runs publish with: http (bulk and single publish routes) or grpc (Go SDK PublishEvents/PublishEvent)")
	fs.StringVar(&cfg.Outrigger, "outrigger", "", "outrigger binary (default: go build ./cmd/outrigger into the working folder)")
	fs.StringVar(&cfg.Daprd, "daprd", harness.DefaultDaprd(), "daprd binary (scripts/tools.sh daprd); the daprd targets are skipped when the default is missing")
	fs.StringVar(&cfg.DaprdConcurrency, "daprd-concurrency", "parallel", "concurrency metadata of daprd's pubsub.jetstream component: parallel, or single (Dapr's default: one delivery at a time)")
	fs.DurationVar(&cfg.StartTimeout, "start-timeout", 30*time.Second, "longest a sidecar may take to become ready, and a subscriber to subscribe")
	fs.DurationVar(&cfg.OpTimeout, "op-timeout", 10*time.Second, "bound on one publish or bulk publish (a timeout fails the run)")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", 60*time.Second, "once publishing ended, longest the app may go without a new message before the missing ones count as lost")
	fs.DurationVar(&cfg.Timeout, "timeout", 0, "bound on the whole run (0: computed from rounds and sizes, generously)")
	out := fs.String("out", "", "also write the markdown report to this file")
	jsonOut := fs.String("json", "", "write every round's numbers, and every publish's latency, to this JSON file")
	fs.BoolVar(&cfg.Keep, "keep", false, "keep the working folder (sidecar logs, components, the NATS store)")
	quiet := fs.Bool("q", false, "no progress lines on stderr")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the harness process (NATS server, app, clients) to this file")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "pubsubbench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "daprd" {
			cfg.DaprdRequired = true
		}
	})
	cfg.Command = commandLine(args)
	if !*quiet {
		cfg.Progress = os.Stderr
	}

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "pubsubbench: %v\n", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(os.Stderr, "pubsubbench: %v\n", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pubsubbench: FAILED: %v\n", err)
		return 1
	}
	var report strings.Builder
	writeReport(&report, res)
	fmt.Print(report.String())
	if *out != "" {
		if err := os.WriteFile(*out, []byte(report.String()), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "pubsubbench: %v\n", err)
			return 1
		}
	}
	if *jsonOut != "" {
		if err := writeJSON(*jsonOut, res); err != nil {
			fmt.Fprintf(os.Stderr, "pubsubbench: %v\n", err)
			return 1
		}
	}
	if res.Workdir != "" {
		fmt.Fprintf(os.Stderr, "pubsubbench: kept the working folder %s\n", res.Workdir)
	}
	return 0
}

// commandLine is the command as typed, for the report.
func commandLine(args []string) string {
	parts := []string{"go run ./bench/pubsubbench"}
	for _, a := range args {
		parts = append(parts, shellQuote(a))
	}
	return strings.Join(parts, " ")
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,@%+", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
