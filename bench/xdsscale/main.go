// Command xdsscale measures how Outrigger's xDS server scales: in one
// process it makes a CA and a folder of N Component documents, starts the
// real xDS server (xds/server) behind the control plane's TLS listener
// (xds/controlplane) as `outrigger control-plane` does, connects M
// simulated sidecars, each with its own SPIFFE certificate over mutual TLS
// and one incremental (delta) ADS stream subscribed to every extension
// config, then changes one component file R times and times each change
// until every sidecar has received and ACKed it:
//
//	go run ./bench/xdsscale                          # 1,000 sidecars, 500 components, 5 rounds
//	go run ./bench/xdsscale --clients 100 --components 50 --rounds 3
//
// It also reports memory and goroutines per connected sidecar and the
// process's CPU during the pushes. The report is a markdown table on
// stdout; README.md says what each number means.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("xdsscale", flag.ContinueOnError)
	clients := fs.Int("clients", 1000, "simulated sidecars (M), each with its own certificate and delta ADS stream")
	components := fs.Int("components", 500, "Component documents served (N), one file each")
	rounds := fs.Int("rounds", 5, "single-component changes timed (R)")
	timeout := fs.Duration("timeout", 5*time.Minute, "bound on the whole run")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "xdsscale: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	cfg := Config{Clients: *clients, Components: *components, Rounds: *rounds, Timeout: *timeout}
	fmt.Fprintf(os.Stderr, "xdsscale: %d sidecars, %d components, %d rounds (timeout %s)...\n", cfg.Clients, cfg.Components, cfg.Rounds, cfg.Timeout)
	res, err := Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "xdsscale: %v\n", err)
		return 1
	}
	cmd := fmt.Sprintf("go run ./bench/xdsscale --clients %d --components %d --rounds %d --timeout %s", *clients, *components, *rounds, *timeout)
	writeReport(os.Stdout, cmd, res)
	return 0
}
