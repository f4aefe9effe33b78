package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/outrigger/outrigger/bench/harness"
)

// addedTarget is the target the report checks the Outrigger rows against:
// the sidecar adds at most this much at p50.
const addedTarget = 100 * time.Microsecond

// operations of a target run, as the report names them.
var operations = []struct {
	name string
	get  func(*TargetRun) *harness.OpStats
}{
	{"save", func(t *TargetRun) *harness.OpStats { return &t.Save }},
	{"get", func(t *TargetRun) *harness.OpStats { return &t.Get }},
}

// percentiles the report shows.
var percentiles = []struct {
	name string
	get  func(*harness.OpStats) time.Duration
}{
	{"p50", func(s *harness.OpStats) time.Duration { return s.P50 }},
	{"p90", func(s *harness.OpStats) time.Duration { return s.P90 }},
	{"p99", func(s *harness.OpStats) time.Duration { return s.P99 }},
}

// writeReport prints res as markdown.
func writeReport(w io.Writer, res *Result) {
	c, e := res.Config, res.Env
	fmt.Fprintf(w, "## State API through a sidecar vs direct: %s\n\n", strings.Join(c.Backends, ", "))
	fmt.Fprintf(w, "- Command: `%s`\n", c.Command)
	fmt.Fprintf(w, "- Date: %s\n", e.Date.Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(w, "- Machine: %s, %d CPUs (nproc); load average %s at the end of the run\n", e.CPU, e.CPUs, e.LoadAvg)
	fmt.Fprintf(w, "- Go: %s (the harness, its clients and the direct stores)\n", e.Go)
	fmt.Fprintf(w, "- Outrigger: %s, built from ./cmd/outrigger unless --outrigger was given\n", e.Outrigger)
	if e.Daprd != "" {
		fmt.Fprintf(w, "- daprd: %s (%s)\n", e.Daprd, c.Daprd)
	}
	for _, n := range res.Notes {
		fmt.Fprintf(w, "- Note: %s\n", n)
	}
	consistency := "eventual"
	if c.Strong {
		consistency = "strong"
	}
	fmt.Fprintf(w, "- Setup: %d interleaved round(s); each round runs, per backend (%s), every target in turn (%s). "+
		"Per target per round: %d warm-up saves and gets (not recorded), then %d sequential saves of a %d-byte JSON value to distinct keys, then %d gets of those keys; "+
		"one client, closed loop, each operation timed alone, every value read back checked; %s consistency on every target. "+
		"A fresh sidecar per target per round, and for SQLite a fresh database file; Redis at %s with keys under a per-run, per-target prefix, deleted afterwards. "+
		"gRPC through the Dapr Go SDK, HTTP with one keep-alive connection; everything on 127.0.0.1.\n\n",
		c.Rounds, strings.Join(c.Backends, ", "), strings.Join(res.Targets, ", "), c.Warmup, c.Ops, c.ValueSize, c.Ops, consistency, c.RedisAddr)
	fmt.Fprintf(w, "Cells are the median across rounds, with the lowest and highest round in brackets. Latencies in milliseconds; percentiles are exact (nearest rank) over the %d operations of a round.\n\n", c.Ops)

	for _, backend := range c.Backends {
		for _, op := range operations {
			fmt.Fprintf(w, "### %s: %s\n\n", backend, op.name)
			fmt.Fprintln(w, "| target | p50 ms | p90 ms | p99 ms |")
			fmt.Fprintln(w, "| --- | --- | --- | --- |")
			for _, target := range res.Targets {
				fmt.Fprintf(w, "| %s |", target)
				for _, p := range percentiles {
					v := perRound(res, backend, target, func(t *TargetRun) float64 { return harness.MsOf(p.get(op.get(t))) })
					fmt.Fprintf(w, " %s |", cell(v, false))
				}
				fmt.Fprintln(w)
			}
			fmt.Fprintln(w)
		}
	}

	fmt.Fprintf(w, "### Latency the sidecar adds over direct\n\n")
	fmt.Fprintf(w, "Target: **the sidecar adds at most %.1f ms at p50** (checked on the Outrigger rows). Per round, the target's percentile minus direct's for the same backend and operation; then the median across rounds.\n\n", harness.MsOf(addedTarget))
	fmt.Fprintln(w, "| backend | operation | target | added p50 ms | added p99 ms | at most 0.1 ms at p50 |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- |")
	for _, backend := range c.Backends {
		for _, op := range operations {
			for _, target := range res.Targets {
				if target == targetDirect {
					continue
				}
				p50 := added(res, backend, target, func(t *TargetRun) time.Duration { return op.get(t).P50 })
				p99 := added(res, backend, target, func(t *TargetRun) time.Duration { return op.get(t).P99 })
				verdict := "(reference)"
				if isMinimal(target) {
					verdict = "(floor)"
				}
				if isOutrigger(target) {
					verdict = "not met"
					if s, ok := harness.SpreadOf(p50); ok && s.Med <= harness.MsOf(addedTarget) {
						verdict = "met"
					}
				}
				fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", backend, op.name, target, cell(p50, true), cell(p99, true), verdict)
			}
		}
	}
	fmt.Fprintln(w)

	if slices.Contains(res.Targets, targetMinimalGRPC) {
		fmt.Fprintf(w, "### Latency a sidecar adds over the minimal one\n\n")
		fmt.Fprintf(w, "The minimal targets are the floor under any sidecar built on net/http and grpc-go: a process that serves only these saves and gets and calls the store as direct does. Per round, the sidecar's percentile minus the minimal target's of the same protocol, backend and operation; then the median across rounds.\n\n")
		fmt.Fprintln(w, "| backend | operation | target | over minimal p50 ms | over minimal p99 ms |")
		fmt.Fprintln(w, "| --- | --- | --- | --- | --- |")
		for _, backend := range c.Backends {
			for _, op := range operations {
				for _, target := range res.Targets {
					sidecar, protocol, ok := sidecarOf(target)
					if !ok || sidecar == "minimal" {
						continue
					}
					base := "minimal-" + protocol
					p50 := addedOver(res, backend, target, base, func(t *TargetRun) time.Duration { return op.get(t).P50 })
					p99 := addedOver(res, backend, target, base, func(t *TargetRun) time.Duration { return op.get(t).P99 })
					fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", backend, op.name, target, cell(p50, true), cell(p99, true))
				}
			}
		}
		fmt.Fprintln(w)
	}

	fmt.Fprintln(w, "### Sidecar start-up")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "From process start until `GET /v1.0/healthz/outbound` answered 204 (polled every 5 ms), with the state store component loaded.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| backend | target | start-up ms |")
	fmt.Fprintln(w, "| --- | --- | --- |")
	for _, backend := range c.Backends {
		for _, target := range res.Targets {
			if target == targetDirect {
				continue
			}
			v := perRound(res, backend, target, func(t *TargetRun) float64 { return harness.MsOf(t.StartUp) })
			fmt.Fprintf(w, "| %s | %s | %s |\n", backend, target, cell(v, false))
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Everything (the harness's client, the direct stores, the sidecar, Redis) shares the machine's %d CPUs; compare targets within this run, not across machines (see bench/statebench/README.md).\n", e.CPUs)
}

// perRound is f of the run of backend and target in each round.
func perRound(res *Result, backend, target string, f func(*TargetRun) float64) []float64 {
	var v []float64
	for i := range res.Rounds {
		if t := res.Rounds[i].find(backend, target); t != nil {
			v = append(v, f(t))
		}
	}
	return v
}

// added is, per round, f of target minus f of direct for backend, in ms.
func added(res *Result, backend, target string, f func(*TargetRun) time.Duration) []float64 {
	return addedOver(res, backend, target, targetDirect, f)
}

// addedOver is, per round, f of target minus f of base for backend, in ms.
func addedOver(res *Result, backend, target, base string, f func(*TargetRun) time.Duration) []float64 {
	var v []float64
	for i := range res.Rounds {
		t, d := res.Rounds[i].find(backend, target), res.Rounds[i].find(backend, base)
		if t != nil && d != nil {
			v = append(v, harness.MsOf(f(t)-f(d)))
		}
	}
	return v
}

// cell formats the median and range of v, e.g. "0.212 (0.201–0.230)";
// signed shows the signs, for differences.
func cell(v []float64, signed bool) string {
	s, ok := harness.SpreadOf(v)
	if !ok {
		return "–"
	}
	f := "%.3f"
	if signed {
		f = "%+.3f"
	}
	if len(v) == 1 {
		return fmt.Sprintf(f, s.Med)
	}
	return fmt.Sprintf(f+" ("+f+"–"+f+")", s.Med, s.Lo, s.Hi)
}

// writeJSON writes res, every round's numbers and samples included.
func writeJSON(path string, res *Result) error {
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
