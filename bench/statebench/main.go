// Command statebench measures what the Dapr state API through a sidecar adds
// over the same operation made directly with the backend, for the SQLite and
// Redis state stores. In interleaved rounds it times, one operation at a
// time, saves and then gets of 256-byte JSON values:
//
//   - direct: the repo's own store (building-blocks/state/sqlite or redis)
//     in this process, called with Set and Get;
//   - minimal-grpc and minimal-http: this binary again, as a process of
//     its own that serves only those two calls of the state API over
//     grpc-go and net/http (the floor under any sidecar built on them);
//   - outrigger-grpc and outrigger-http: a fresh `outrigger sidecar`
//     reached with the Dapr Go SDK over gRPC, or over HTTP;
//   - daprd-grpc and daprd-http: the same with daprd 1.18.1, when its
//     binary is present.
//
// Run it from the repository:
//
//	go run ./bench/statebench                     # 5 rounds of 2,000 saves and gets per target
//	go run ./bench/statebench --rounds 7 --out /tmp/state.md --json /tmp/state.json
//
// The report is markdown on stdout, headed by the exact command; README.md
// says what each number means.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/outrigger/outrigger/bench/harness"
)

func main() {
	if spec := os.Getenv(minimalEnv); spec != "" {
		os.Exit(runMinimal(spec))
	}
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("statebench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: go run ./bench/statebench [flags]\n\n"+
			"Measures saves and gets through the Dapr state API of an Outrigger sidecar (and daprd),\n"+
			"over gRPC and HTTP, against the same store called in process, for SQLite and Redis.\n\n")
		fs.PrintDefaults()
	}
	var cfg Config
	fs.IntVar(&cfg.Rounds, "rounds", 5, "interleaved rounds (each runs every target of every backend once)")
	fs.IntVar(&cfg.Ops, "ops", 2000, "recorded saves, then recorded gets, per target per round")
	fs.IntVar(&cfg.Warmup, "warmup", 200, "saves, then gets, before the recorded ones (not recorded)")
	fs.IntVar(&cfg.ValueSize, "value-size", 256, "bytes of each saved JSON value")
	backends := fs.String("backends", strings.Join(allBackends, ","), "comma-separated backends: sqlite, redis")
	fs.StringVar(&cfg.RedisAddr, "redis", "127.0.0.1:6379", "Redis server (loopback only, no password)")
	consistency := fs.String("consistency", "eventual", "consistency of every save and get, on every target: eventual or strong")
	fs.StringVar(&cfg.Outrigger, "outrigger", "", "outrigger binary (default: go build ./cmd/outrigger into the working folder)")
	fs.StringVar(&cfg.Daprd, "daprd", harness.DefaultDaprd(), "daprd binary (scripts/tools.sh daprd); the daprd targets are skipped when the default is missing")
	fs.DurationVar(&cfg.StartTimeout, "start-timeout", 30*time.Second, "longest a sidecar may take to become ready")
	fs.DurationVar(&cfg.OpTimeout, "op-timeout", 5*time.Second, "bound on one save or get (a timeout fails the run)")
	fs.DurationVar(&cfg.Timeout, "timeout", 0, "bound on the whole run (0: computed from rounds and ops, generously)")
	out := fs.String("out", "", "also write the markdown report to this file")
	jsonOut := fs.String("json", "", "write every round's numbers, and every operation's latency, to this JSON file")
	fs.BoolVar(&cfg.Keep, "keep", false, "keep the working folder (sidecar logs, databases, components)")
	quiet := fs.Bool("q", false, "no progress lines on stderr")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "statebench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "daprd" {
			cfg.DaprdRequired = true
		}
	})
	cfg.Backends = nil
	for b := range strings.SplitSeq(*backends, ",") {
		if b = strings.TrimSpace(b); b != "" {
			cfg.Backends = append(cfg.Backends, b)
		}
	}
	if len(cfg.Backends) == 0 {
		fmt.Fprintln(os.Stderr, "statebench: --backends: no backend")
		return 2
	}
	switch *consistency {
	case "eventual":
	case "strong":
		cfg.Strong = true
	default:
		fmt.Fprintf(os.Stderr, "statebench: --consistency %q: want eventual or strong\n", *consistency)
		return 2
	}
	cfg.Command = commandLine(args)
	if !*quiet {
		cfg.Progress = os.Stderr
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "statebench: FAILED: %v\n", err)
		return 1
	}
	var report strings.Builder
	writeReport(&report, res)
	fmt.Print(report.String())
	if *out != "" {
		if err := os.WriteFile(*out, []byte(report.String()), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "statebench: %v\n", err)
			return 1
		}
	}
	if *jsonOut != "" {
		if err := writeJSON(*jsonOut, res); err != nil {
			fmt.Fprintf(os.Stderr, "statebench: %v\n", err)
			return 1
		}
	}
	if res.Workdir != "" {
		fmt.Fprintf(os.Stderr, "statebench: kept the working folder %s\n", res.Workdir)
	}
	return 0
}

// commandLine is the command as typed, for the report.
func commandLine(args []string) string {
	parts := []string{"go run ./bench/statebench"}
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
