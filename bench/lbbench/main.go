// Command lbbench measures whether the number of endpoints behind one
// app-id changes the latency of service invocation through Outrigger. At a
// fixed rate (1,000 requests/s of 1 KiB POST bodies that the app echoes) it
// measures p50, p90 and p99 through one caller sidecar to one app-id served
// by 1 and by 100 callee sidecars, in interleaved rounds, and says whether
// the medians across rounds differ by less than their spread.
//
// Every configuration runs on fresh processes: one echo app, N `outrigger
// sidecar` callees all in front of that app (so N changes the number of
// endpoints, not the app's capacity), and one caller sidecar that finds the
// N callees in a static name resolution file. The load goes to the caller's
// /v1.0/invoke/lb-callee/method/echo. Everything runs on 127.0.0.1.
//
// Run it from the repository:
//
//	go run ./bench/lbbench                                  # 5 rounds of 1 and 100 endpoints, 15 s each
//	go run ./bench/lbbench --rounds 1 --duration 5s         # a quick look
//	go run ./bench/lbbench --out /tmp/lb.md --json /tmp/lb.json
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
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if os.Getenv(roleEnv) == roleApp {
		os.Exit(appMain())
	}
	os.Exit(run(os.Args[1:]))
}

// Exit statuses.
const (
	exitOK     = 0
	exitFailed = 1 // the run failed, or some measured request got no 2xx answer
	exitUsage  = 2
)

func run(args []string) int {
	fs := flag.NewFlagSet("lbbench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: go run ./bench/lbbench [flags]\n\n"+
			"Measures service invocation latency through Outrigger at a fixed rate with 1 and with 100\n"+
			"endpoints (callee sidecars) behind one app-id, in interleaved rounds, on loopback.\n\n")
		fs.PrintDefaults()
	}
	var cfg Config
	fs.IntVar(&cfg.Rounds, "rounds", 5, "interleaved rounds (each measures every configuration once, on fresh processes)")
	fs.Float64Var(&cfg.QPS, "qps", 1000, "request rate, requests/s over all connections")
	fs.DurationVar(&cfg.Duration, "duration", 15*time.Second, "length of the measured load per configuration per round")
	fs.DurationVar(&cfg.Warmup, "warmup", 2*time.Second, "load at the same rate before the measured one, not recorded; every endpoint must answer in it")
	endpoints := fs.String("endpoints", "1,100", "comma-separated numbers of callee sidecars behind the app-id; the first is the baseline")
	fs.IntVar(&cfg.Connections, "connections", 16, "connections of the load generator to the caller sidecar (fortio -c)")
	fs.IntVar(&cfg.BodySize, "body-size", 1024, "bytes in each POST body (the app echoes it back)")
	fs.StringVar(&cfg.Outrigger, "outrigger", "", "outrigger binary (default: go build ./cmd/outrigger into the working folder)")
	fs.IntVar(&cfg.StartConcurrency, "start-concurrency", 10, "callee sidecars started at once")
	fs.DurationVar(&cfg.StartTimeout, "start-timeout", 30*time.Second, "longest one process may take to become ready")
	fs.DurationVar(&cfg.ReqTimeout, "request-timeout", 5*time.Second, "timeout of one request under load (counted as an error)")
	fs.DurationVar(&cfg.Timeout, "timeout", 0, "bound on the whole run (0: computed from rounds, endpoints and durations, generously)")
	out := fs.String("out", "", "also write the markdown report to this file")
	jsonOut := fs.String("json", "", "write the configuration, environment and every round's numbers to this JSON file")
	fs.BoolVar(&cfg.Keep, "keep", false, "keep the working folder (process logs, resolution files); a failed run always keeps it")
	quiet := fs.Bool("q", false, "no progress lines on stderr")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "lbbench: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	var err error
	if cfg.Endpoints, err = parseEndpoints(*endpoints); err != nil {
		fmt.Fprintf(os.Stderr, "lbbench: --endpoints: %v\n", err)
		return exitUsage
	}
	cfg.Command = commandLine(args)
	if !*quiet {
		cfg.Progress = os.Stderr
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "lbbench: FAILED: %v\n", err)
		return exitFailed
	}
	var report strings.Builder
	writeReport(&report, res)
	fmt.Print(report.String())
	if *out != "" {
		if err := os.WriteFile(*out, []byte(report.String()), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "lbbench: %v\n", err)
			return exitFailed
		}
	}
	if *jsonOut != "" {
		if err := writeJSON(*jsonOut, res); err != nil {
			fmt.Fprintf(os.Stderr, "lbbench: %v\n", err)
			return exitFailed
		}
	}
	if res.Workdir != "" {
		fmt.Fprintf(os.Stderr, "lbbench: kept the working folder %s\n", res.Workdir)
	}
	if res.errors() > 0 {
		fmt.Fprintf(os.Stderr, "lbbench: FAILED: %d measured requests got no 2xx answer (see the report); the numbers are not valid\n", res.errors())
		return exitFailed
	}
	return exitOK
}

// parseEndpoints parses "1,100".
func parseEndpoints(s string) ([]int, error) {
	var v []int
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q: want a positive whole number", f)
		}
		v = append(v, n)
	}
	if len(v) == 0 {
		return nil, errors.New("no configuration")
	}
	return v, nil
}

// commandLine is the command as typed, for the report.
func commandLine(args []string) string {
	parts := []string{"go run ./bench/lbbench"}
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
