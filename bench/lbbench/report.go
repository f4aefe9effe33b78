package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"time"

	"github.com/outrigger/outrigger/bench/harness"
)

// percentiles the report compares.
var percentiles = []struct {
	name string
	get  func(*harness.LoadResult) time.Duration
}{
	{"p50", func(l *harness.LoadResult) time.Duration { return l.P50 }},
	{"p90", func(l *harness.LoadResult) time.Duration { return l.P90 }},
	{"p99", func(l *harness.LoadResult) time.Duration { return l.P99 }},
}

// errors is the number of measured requests, over every round, that got
// no 2xx answer.
func (res *Result) errors() int64 {
	var n int64
	for _, r := range res.Rounds {
		for _, run := range r.Runs {
			if run.Load != nil {
				n += run.Load.Errors
			}
		}
	}
	return n
}

// perRound is f of the run with n endpoints in each round.
func perRound(res *Result, n int, f func(*ConfigRun) float64) []float64 {
	var v []float64
	for i := range res.Rounds {
		if r := res.Rounds[i].find(n); r != nil && r.Load != nil {
			v = append(v, f(r))
		}
	}
	return v
}

// Comparison is one percentile of one configuration against the baseline
// (the first configuration).
type Comparison struct {
	Percentile string         `json:"percentile"`
	Base       harness.Spread `json:"base_ms"`
	Other      harness.Spread `json:"other_ms"`
	// Difference is the other's median minus the baseline's, in ms.
	Difference float64 `json:"difference_ms"`
	// Spread is the wider of the two ranges (highest round minus lowest
	// round), in ms.
	Spread float64 `json:"spread_ms"`
	// Within says whether |Difference| < Spread; false with one round,
	// which has no spread.
	Within bool `json:"within_spread"`
	Rounds int  `json:"rounds"`
}

// compare compares percentile p of n endpoints with the baseline.
func compare(res *Result, base, n, p int) (Comparison, bool) {
	get := percentiles[p].get
	ms := func(r *ConfigRun) float64 { return harness.MsOf(get(r.Load)) }
	b, okB := harness.SpreadOf(perRound(res, base, ms))
	o, okO := harness.SpreadOf(perRound(res, n, ms))
	if !okB || !okO {
		return Comparison{}, false
	}
	c := Comparison{
		Percentile: percentiles[p].name, Base: b, Other: o,
		Difference: o.Med - b.Med,
		Spread:     math.Max(b.Hi-b.Lo, o.Hi-o.Lo),
		Rounds:     len(perRound(res, n, ms)),
	}
	c.Within = math.Abs(c.Difference) < c.Spread
	return c, true
}

// verdict is the answer to "do the medians differ by less than their
// spread".
func (c Comparison) verdict() string {
	switch {
	case c.Rounds < 2:
		return "n/a (one round has no spread)"
	case c.Within:
		return "yes"
	default:
		return "**no**"
	}
}

// writeReport prints res as markdown.
func writeReport(w io.Writer, res *Result) {
	c, e := res.Config, res.Env
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	base := c.Endpoints[0]
	p("## Service invocation latency with %s endpoints behind one app-id\n\n", joinInts(c.Endpoints, " and "))
	p("- Command: `%s`\n", c.Command)
	p("- Date: %s\n", e.Date.Format("2006-01-02 15:04 UTC"))
	p("- Machine: %s, %d CPUs; load average %s at the start, %s at the end; %.1f GiB memory available at the start\n",
		e.CPU, e.CPUs, e.LoadStart, e.LoadEnd, float64(e.MemAvailableKiB)/(1<<20))
	p("- Go: %s (the harness, its load generator and the echo app)\n", e.Go)
	p("- Outrigger: %s, built from ./cmd/outrigger unless --outrigger was given\n", e.Outrigger)
	p("- Setup: %d interleaved round(s); each round measures every configuration (%s endpoints; the order is reversed in even rounds) on fresh processes: "+
		"one echo app, N `outrigger sidecar --app-id %s --app-port APP` in front of that one app, and one caller sidecar (`--app-id %s`, no app) "+
		"whose `--name-resolution static` file lists the N callees' mesh addresses (round robin, the default balancing). "+
		"Load: fortio in the harness process, %d connections to the caller's `POST /v1.0/invoke/%s/method/echo`, %.0f requests/s with %d-byte bodies echoed back, "+
		"%v of warm-up (not recorded; every endpoint must have delivered a call in it), then %v measured. Everything on 127.0.0.1.\n\n",
		c.Rounds, joinInts(c.Endpoints, ", "), calleeID, callerID, c.Connections, calleeID, c.QPS, c.BodySize, c.Warmup, c.Duration)
	p("Cells are the median across rounds, with the lowest and highest round in brackets. Latencies in milliseconds, from the load generator's send to its receipt of the whole answer; " +
		"percentiles are exact (nearest rank) over every request of a round's measured load.\n\n")

	p("### Latency\n\n")
	p("| endpoints | p50 ms | p90 ms | p99 ms | max ms | achieved req/s | requests | errors |\n")
	p("| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, n := range c.Endpoints {
		ms := func(f func(*harness.LoadResult) time.Duration) []float64 {
			return perRound(res, n, func(r *ConfigRun) float64 { return harness.MsOf(f(r.Load)) })
		}
		p("| %d | %s | %s | %s | %s | %s | %s | %s |\n", n,
			cell(ms(percentiles[0].get), "%.3f"), cell(ms(percentiles[1].get), "%.3f"), cell(ms(percentiles[2].get), "%.3f"),
			cell(ms(func(l *harness.LoadResult) time.Duration { return l.Max }), "%.3f"),
			cell(perRound(res, n, func(r *ConfigRun) float64 { return r.Load.QPS }), "%.0f"),
			cell(perRound(res, n, func(r *ConfigRun) float64 { return float64(r.Load.Requests) }), "%.0f"),
			cell(perRound(res, n, func(r *ConfigRun) float64 { return float64(r.Load.Errors) }), "%.0f"))
	}
	p("\n")

	if len(c.Endpoints) > 1 {
		p("### %s against the others\n\n", endpointsWord(base))
		p("Do the medians differ by less than their spread? The difference is the other configuration's median minus that of %s; "+
			"the spread is the wider of the two configurations' ranges (highest round minus lowest round). The answer is yes when the difference, either way, is smaller.\n\n", endpointsWord(base))
		p("| endpoints | percentile | %s, ms | other, ms | difference ms | spread ms | differ by less than their spread |\n", endpointsWord(base))
		p("| --- | --- | --- | --- | --- | --- | --- |\n")
		for _, n := range c.Endpoints[1:] {
			for i := range percentiles {
				cmp, ok := compare(res, base, n, i)
				if !ok {
					continue
				}
				p("| %d | %s | %s | %s | %+.3f | %.3f | %s |\n", n, cmp.Percentile,
					spreadCell(cmp.Base, cmp.Rounds, "%.3f"), spreadCell(cmp.Other, cmp.Rounds, "%.3f"), cmp.Difference, cmp.Spread, cmp.verdict())
			}
		}
		p("\n")
		for _, n := range c.Endpoints[1:] {
			if cmp, ok := compare(res, base, n, 2); ok {
				p("**p99 with %d and with %d endpoints behind one app-id at %.0f requests/s: the medians of %d interleaved round(s) differ by %.3f ms, their spread is %.3f ms: %s.**\n\n",
					base, n, c.QPS, cmp.Rounds, math.Abs(cmp.Difference), cmp.Spread, cmp.verdict())
			}
		}
	}

	p("### Endpoints and sidecars\n\n")
	p("Calls per endpoint: the fewest and the most calls one callee delivered to the app (status 200) during the measured load, from its metrics (`%s`). "+
		"CPU: user plus system time of all the configuration's sidecars, the caller's included, during the measured load (`/proc/PID/stat`, 10 ms ticks per process). "+
		"RSS: every sidecar's, summed, right after the measured load. Ready: from the first callee's start until every sidecar answered `/v1.0/healthz` 204, %d callees starting at once.\n\n",
		deliveredMetric, c.StartConcurrency)
	p("| endpoints | calls per endpoint, fewest | most | sidecar CPU ms per 1k requests | sidecar RSS MiB, all | caller RSS MiB | largest callee RSS MiB | ready s |\n")
	p("| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, n := range c.Endpoints {
		lo := perRound(res, n, func(r *ConfigRun) float64 { l, _ := minMax(r.Delivered); return float64(l) })
		hi := perRound(res, n, func(r *ConfigRun) float64 { _, h := minMax(r.Delivered); return float64(h) })
		cpu := perRound(res, n, func(r *ConfigRun) float64 {
			return harness.MsOf(r.Load.SidecarCPU) / float64(max(r.Load.Requests, 1)) * 1000
		})
		mib := func(f func(*ConfigRun) int64) []float64 {
			return perRound(res, n, func(r *ConfigRun) float64 { return float64(f(r)) / 1024 })
		}
		p("| %d | %s | %s | %s | %s | %s | %s | %s |\n", n, cell(lo, "%.0f"), cell(hi, "%.0f"), cell(cpu, "%.0f"),
			cell(mib(func(r *ConfigRun) int64 { return r.SidecarRSSKiB }), "%.0f"),
			cell(mib(func(r *ConfigRun) int64 { return r.CallerRSSKiB }), "%.1f"),
			cell(mib(func(r *ConfigRun) int64 { return r.MaxCalleeRSSKiB }), "%.1f"),
			cell(perRound(res, n, func(r *ConfigRun) float64 { return r.Ready.Seconds() }), "%.1f"))
	}
	p("\n")

	p("### Rounds\n\n")
	p("Delivered is the sum over the callees; it includes the load generator's one opening request per connection, sent before its clock starts and not in requests.\n\n")
	p("| round | position | endpoints | p50 ms | p90 ms | p99 ms | max ms | req/s | requests | delivered | errors | load average before |\n")
	p("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range res.Rounds {
		for i, run := range r.Runs {
			l := run.Load
			var delivered int64
			for _, d := range run.Delivered {
				delivered += d
			}
			p("| %d | %d | %d | %.3f | %.3f | %.3f | %.3f | %.0f | %d | %d | %d | %s |\n", r.Round, i+1, run.Endpoints,
				harness.MsOf(l.P50), harness.MsOf(l.P90), harness.MsOf(l.P99), harness.MsOf(l.Max), l.QPS, l.Requests, delivered, l.Errors, run.LoadBefore)
		}
	}
	p("\n")

	var bad []string
	for _, r := range res.Rounds {
		for _, run := range r.Runs {
			l := run.Load
			if l.Errors > 0 {
				bad = append(bad, fmt.Sprintf("round %d, %s: %d of %d requests not 2xx (%v)", r.Round, endpointsWord(run.Endpoints), l.Errors, l.Requests, l.Codes))
			}
			if l.QPS < 0.95*c.QPS {
				bad = append(bad, fmt.Sprintf("round %d, %s: achieved %.0f req/s of the %.0f asked; the load generator or the sidecars could not keep up", r.Round, endpointsWord(run.Endpoints), l.QPS, c.QPS))
			}
		}
	}
	if len(bad) > 0 {
		p("**⚠ This run is not clean:**\n\n")
		for _, s := range bad {
			p("- %s\n", s)
		}
		p("\n")
	}
	p("The load generator, the echo app and every sidecar share the machine's %d CPUs; compare configurations within this run, not across machines (see bench/lbbench/README.md).\n", e.CPUs)
}

// endpointsWord is "1 endpoint" or "n endpoints".
func endpointsWord(n int) string {
	if n == 1 {
		return "1 endpoint"
	}
	return fmt.Sprintf("%d endpoints", n)
}

// cell formats the median and range of v with format f, e.g.
// "0.212 (0.201–0.230)"; one value has no range.
func cell(v []float64, f string) string {
	s, ok := harness.SpreadOf(v)
	if !ok {
		return "–"
	}
	return spreadCell(s, len(v), f)
}

// spreadCell formats s, of rounds values, with format.
func spreadCell(s harness.Spread, rounds int, format string) string {
	if rounds == 1 {
		return fmt.Sprintf(format, s.Med)
	}
	return fmt.Sprintf(format+" ("+format+"–"+format+")", s.Med, s.Lo, s.Hi)
}

// endpointComparison is a Comparison of one configuration, for the JSON.
type endpointComparison struct {
	Endpoints int `json:"endpoints"`
	Comparison
}

// writeJSON writes res, with the comparisons the report makes.
func writeJSON(path string, res *Result) error {
	var cmps []endpointComparison
	if c := res.Config.Endpoints; len(c) > 1 {
		for _, n := range c[1:] {
			for i := range percentiles {
				if cmp, ok := compare(res, c[0], n, i); ok {
					cmps = append(cmps, endpointComparison{n, cmp})
				}
			}
		}
	}
	b, err := json.MarshalIndent(struct {
		*Result
		Comparisons []endpointComparison `json:"comparisons_with_first,omitempty"`
	}{res, cmps}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
