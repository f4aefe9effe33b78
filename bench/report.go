package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/outrigger/outrigger/bench/harness"
)

// environment is what the report says about where and how it ran.
type environment struct {
	Command   string    `json:"command"`
	Date      time.Time `json:"date"`
	CPU       string    `json:"cpu"`
	CPUs      int       `json:"cpus"`
	Kernel    string    `json:"kernel"`
	LoadAvg   string    `json:"loadavg"` // at the end of the run: other work on the machine skews results
	Go        string    `json:"go"`
	Daprd     string    `json:"daprd,omitempty"`
	Outrigger string    `json:"outrigger,omitempty"`
}

func describeEnvironment(cfg *config, h *handoff) environment {
	env := environment{
		Command: shellJoin(h.Command),
		Date:    time.Now().UTC().Truncate(time.Second),
		CPU:     cpuModel(),
		CPUs:    runtime.NumCPU(),
		Kernel:  firstLine(readFile("/proc/sys/kernel/osrelease")),
		LoadAvg: loadAvg(),
		Go:      runtime.Version(),
	}
	if slices.Contains(cfg.targets, targetDaprd) {
		env.Daprd = firstLine(commandOutput(cfg.daprd, "--version"))
	}
	if slices.ContainsFunc(cfg.targets, isOutrigger) {
		env.Outrigger = firstLine(commandOutput(cfg.outrigger, "version"))
	}
	return env
}

func cpuModel() string {
	for line := range strings.Lines(readFile("/proc/cpuinfo")) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

// loadAvg is the 1, 5 and 15 minute load averages.
func loadAvg() string {
	f := strings.Fields(readFile("/proc/loadavg"))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	return string(b)
}

func commandOutput(bin string, args ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).Output()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return string(out)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(line)
}

func shellJoin(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if i == 0 || (a != "" && !strings.ContainsAny(a, " \t\n'\"\\$`*?[]{}()<>|&;#~!")) {
			out[i] = a
		} else {
			out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(out, " ")
}

// spread is a median with the min and max across rounds.
type spread struct{ med, lo, hi float64 }

func spreadOf(v []float64) (spread, bool) {
	if len(v) == 0 {
		return spread{}, false
	}
	s := slices.Clone(v)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return spread{med: m, lo: s[0], hi: s[len(s)-1]}, true
}

// cell formats a spread with f, e.g. "0.212 (0.201–0.230)".
func (s spread) cell(f func(float64) string) string {
	lo, hi := f(s.lo), f(s.hi)
	if lo == hi {
		return f(s.med)
	}
	return fmt.Sprintf("%s (%s–%s)", f(s.med), lo, hi)
}

func ms(d time.Duration) string { return msf(float64(d)) }

// msf formats nanoseconds as milliseconds.
func msf(ns float64) string { return fmt.Sprintf("%.3f", ns/1e6) }

// msf1 formats nanoseconds as milliseconds with one decimal.
func msf1(ns float64) string { return fmt.Sprintf("%.1f", ns/1e6) }

// addedMs formats a latency difference in nanoseconds as signed milliseconds.
func addedMs(ns float64) string { return fmt.Sprintf("%+.3f", ns/1e6) }

// cpuPer1k is the sidecars' CPU milliseconds per 1,000 requests.
func cpuPer1k(l *harness.LoadResult) string {
	if l == nil || l.Requests == 0 {
		return "–"
	}
	return msf(cpuPer1kNs(l))
}

func cpuPer1kNs(l *harness.LoadResult) float64 {
	return float64(l.SidecarCPU) / float64(l.Requests) * 1000
}

func mib(kib int64) string    { return mibf(float64(kib)) }
func mibf(kib float64) string { return fmt.Sprintf("%.1f", kib/1024) }
func qpsf(q float64) string   { return fmt.Sprintf("%.0f", q) }
func ratiof(r float64) string { return fmt.Sprintf("%.2f×", r) }

// collect gathers one number per round of target t, skipping rounds where
// get reports nothing.
func collect(res []roundResult, t string, get func(roundResult) (float64, bool)) []float64 {
	var v []float64
	for _, r := range res {
		if r.Target != t {
			continue
		}
		if x, ok := get(r); ok {
			v = append(v, x)
		}
	}
	return v
}

// vsDirect gathers, per round, f(target's round, direct's same round).
func vsDirect(res []roundResult, t string, f func(r, direct roundResult) (float64, bool)) []float64 {
	return vsBase(res, t, targetDirect, f)
}

// vsBase gathers, per round, f(target t's round, target base's same round).
func vsBase(res []roundResult, t, base string, f func(r, b roundResult) (float64, bool)) []float64 {
	byRound := map[int]roundResult{}
	for _, r := range res {
		if r.Target == base {
			byRound[r.Round] = r
		}
	}
	return collect(res, t, func(r roundResult) (float64, bool) {
		b, ok := byRound[r.Round]
		if !ok {
			return 0, false
		}
		return f(r, b)
	})
}

func cellOf(v []float64, f func(float64) string) string {
	s, ok := spreadOf(v)
	if !ok {
		return "–"
	}
	return s.cell(f)
}

type scenario struct {
	get func(roundResult) *harness.LoadResult
}

var (
	fixedScenario = scenario{get: func(r roundResult) *harness.LoadResult { return r.Fixed }}
	maxScenario   = scenario{get: func(r roundResult) *harness.LoadResult { return r.Max }}
)

// Latency percentiles of a scenario's result, in nanoseconds.
func latP50(l *harness.LoadResult) float64 { return float64(l.P50) }
func latP90(l *harness.LoadResult) float64 { return float64(l.P90) }
func latP99(l *harness.LoadResult) float64 { return float64(l.P99) }

// added is, for vsDirect or vsBase, f of round r's result minus f of round
// b's result in the scenario: with b direct's round, the latency r's
// sidecars add.
func (s scenario) added(f func(*harness.LoadResult) float64) func(r, b roundResult) (float64, bool) {
	return func(r, b roundResult) (float64, bool) {
		lr, lb := s.get(r), s.get(b)
		if lr == nil || lb == nil {
			return 0, false
		}
		return f(lr) - f(lb), true
	}
}

func (s scenario) stat(f func(*harness.LoadResult) float64) func(roundResult) (float64, bool) {
	return func(r roundResult) (float64, bool) {
		l := s.get(r)
		if l == nil {
			return 0, false
		}
		return f(l), true
	}
}

func (s scenario) errorsCell(res []roundResult, t string) string {
	var errs, reqs int64
	codes := map[int]int64{}
	for _, r := range res {
		if l := s.get(r); r.Target == t && l != nil {
			errs += l.Errors
			reqs += l.Requests
			for c, n := range l.Codes {
				if c < 200 || c > 299 {
					codes[c] += n
				}
			}
		}
	}
	if errs == 0 {
		return fmt.Sprintf("0 of %d", reqs)
	}
	var parts []string
	for _, c := range slices.Sorted(maps.Keys(codes)) {
		name := fmt.Sprint(c)
		if c == -1 {
			name = "socket error"
		}
		parts = append(parts, fmt.Sprintf("%s: %d", name, codes[c]))
	}
	return fmt.Sprintf("**⚠ %d of %d** (%s)", errs, reqs, strings.Join(parts, ", "))
}

// renderReport is the markdown report.
func renderReport(cfg *config, env environment, res []roundResult, skipped []string) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	sidecars := slices.DeleteFunc(slices.Clone(cfg.targets), func(t string) bool { return t == targetDirect })
	hasDirect := slices.Contains(cfg.targets, targetDirect)
	hasMTLS := slices.Contains(cfg.targets, targetOutriggerMTLS)
	fixed, maxs := fixedScenario, maxScenario
	p50, p90, p99 := latP50, latP90, latP99

	p("### Run of %s\n\n", env.Date.Format("2006-01-02 15:04 MST"))
	p("- Command: `%s`\n", env.Command)
	p("- Machine: %s, %d logical CPUs, Linux %s; load average %s at the end of the run\n", env.CPU, env.CPUs, env.Kernel, env.LoadAvg)
	p("- Go: %s\n", env.Go)
	if env.Daprd != "" {
		p("- daprd: %s (scripts/tools.sh, `-tags stablecomponents`), default mDNS name resolution\n", env.Daprd)
	}
	if env.Outrigger != "" {
		p("- Outrigger: %s, `--name-resolution %s`\n", env.Outrigger, cfg.resolution)
	}
	if slices.Contains(cfg.targets, targetOutriggerBare) {
		p("- %s: the same sidecars with `--enable-metrics=false` and no tracing\n", targetOutriggerBare)
	}
	if slices.Contains(cfg.targets, targetOutrigger) {
		p("- %s: the sidecars' defaults, metrics on and no tracing\n", targetOutrigger)
	}
	if slices.Contains(cfg.targets, targetOutriggerB) {
		p("- %s: the outrigger target's sidecars from another binary, %s (%s)\n", targetOutriggerB,
			cfg.outriggerB, firstLine(commandOutput(cfg.outriggerB, "version")))
	}
	if slices.Contains(cfg.targets, targetOutriggerAllCPUs) {
		p("- %s: the same sidecars with `--concurrency 0`: a thread per CPU (Go's default) where the others run on one\n", targetOutriggerAllCPUs)
	}
	if slices.Contains(cfg.targets, targetOutriggerTraced) {
		p("- %s: the same sidecars with metrics on and tracing at %s sampling (`--config` with a tracing section), "+
			"exported by OTLP/gRPC in plain text to a span sink in the harness process that counts the spans; one sink for the whole run\n",
			targetOutriggerTraced, percentf(tracingSamplingRate))
	}
	if hasMTLS {
		p("- %s: the same sidecars with `--enable-mtls`, their certificates from one `outrigger control-plane` "+
			"in the namespace for the whole run (join tokens minted once, before the first round)\n", targetOutriggerMTLS)
	}
	for _, t := range skipped {
		p("- Target %s skipped: its binary was not found\n", t)
	}
	p("- Setup: %d interleaved round(s) (%s), fresh sidecars each round (the Outrigger binaries' page cache dropped before the first), %v warm-up per target per round; "+
		"%d connections, %d-byte POST bodies echoed by the app; all processes in one network namespace on loopback; "+
		"load from fortio (periodic + fhttp) in the harness process; exact per-request percentiles\n\n",
		cfg.rounds, strings.Join(cfg.targets, ", "), cfg.warmup, cfg.connections, cfg.bodySize)
	p("Cells are the median across rounds, with the lowest and highest round in brackets. Latencies in milliseconds.\n\n")

	if cfg.fixedDuration > 0 {
		p("#### Fixed rate: %s requests/s for %v per round\n\n", qpsf(cfg.qps), cfg.fixedDuration)
		p("| target | p50 ms | p90 ms | p99 ms | achieved req/s | non-2xx |\n")
		p("| --- | --- | --- | --- | --- | --- |\n")
		for _, t := range cfg.targets {
			p("| %s | %s | %s | %s | %s | %s |\n", t,
				cellOf(collect(res, t, fixed.stat(p50)), msf),
				cellOf(collect(res, t, fixed.stat(p90)), msf),
				cellOf(collect(res, t, fixed.stat(p99)), msf),
				cellOf(collect(res, t, fixed.stat(func(l *harness.LoadResult) float64 { return l.QPS })), qpsf),
				fixed.errorsCell(res, t))
		}
		p("\n")
		if hasDirect && len(sidecars) > 0 {
			p("Latency the two sidecars add (target minus direct in the same round, then the median across rounds):\n\n")
			p("| target | added p50 ms | added p90 ms | added p99 ms |\n")
			p("| --- | --- | --- | --- |\n")
			for _, t := range sidecars {
				p("| %s | %s | %s | %s |\n", t,
					cellOf(vsDirect(res, t, fixed.added(p50)), addedMs),
					cellOf(vsDirect(res, t, fixed.added(p90)), addedMs),
					cellOf(vsDirect(res, t, fixed.added(p99)), addedMs))
			}
			p("\n")
		}
		for _, q := range []struct {
			name string
			pick func(*harness.LoadResult) float64
		}{{"p50", p50}, {"p90", p90}} {
			if s, ok := spreadOf(vsBase(res, targetOutrigger, targetMinimal, fixed.added(q.pick))); ok {
				p("Outrigger adds %s ms to the median %s over the minimal forwarders (%s minus %s in the same round, then the median across rounds",
					msf(s.med), q.name, targetOutrigger, targetMinimal)
				if s.lo != s.hi {
					p("; lowest and highest round %s and %s ms", msf(s.lo), msf(s.hi))
				}
				p(").\n\n")
			}
		}
		if s, ok := spreadOf(vsBase(res, targetOutriggerMTLS, targetOutrigger, fixed.added(p90))); ok {
			p("mTLS adds %s ms to the median p90 over h2c (%s minus %s in the same round, then the median across rounds",
				msf(s.med), targetOutriggerMTLS, targetOutrigger)
			if s.lo != s.hi {
				p("; lowest and highest round %s and %s ms", msf(s.lo), msf(s.hi))
			}
			p(").\n\n")
			if line, ok := medianP90Cost(res, targetOutriggerMTLS, targetOutrigger, mtlsP90Target); ok {
				p("mTLS's p90 cost as the interception section reads its own: %s\n\n", line)
			}
		}
	}

	writeObservabilityCost(p, cfg, res)
	writeInterceptionCost(p, cfg, res)

	if cfg.maxDuration > 0 {
		p("#### Maximum throughput: %d connections for %v per round\n\n", cfg.connections, cfg.maxDuration)
		p("| target | req/s | vs direct | p50 ms | p99 ms | non-2xx |\n")
		p("| --- | --- | --- | --- | --- | --- |\n")
		for _, t := range cfg.targets {
			ratio := "1.00×"
			if t != targetDirect {
				ratio = cellOf(vsDirect(res, t, func(r, d roundResult) (float64, bool) {
					if r.Max == nil || d.Max == nil || d.Max.QPS == 0 {
						return 0, false
					}
					return r.Max.QPS / d.Max.QPS, true
				}), ratiof)
			} else if !hasDirect {
				ratio = "–"
			}
			p("| %s | %s | %s | %s | %s | %s |\n", t,
				cellOf(collect(res, t, maxs.stat(func(l *harness.LoadResult) float64 { return l.QPS })), qpsf),
				ratio,
				cellOf(collect(res, t, maxs.stat(p50)), msf),
				cellOf(collect(res, t, maxs.stat(p99)), msf),
				maxs.errorsCell(res, t))
		}
		p("\n")
	}

	if len(sidecars) > 0 {
		num := func(f func(roundResult) int64) func(roundResult) (float64, bool) {
			return func(r roundResult) (float64, bool) { return float64(f(r)), true }
		}
		p("#### Sidecars: start-up, memory and CPU\n\n")
		p("Start-up is from process start until `GET /v1.0/healthz/outbound` answers 204 (polled every 1 ms). "+
			"RSS is VmRSS: idle after start-up and %v of rest, before any request; peak sampled every 100 ms under load.", cfg.idleSettle)
		if hasMTLS {
			p(" For %s, start-up includes getting the sidecar's certificate from the control plane.", targetOutriggerMTLS)
		}
		p("\n\n")
		p("| target | caller start-up ms | callee start-up ms | caller RSS idle MiB | caller RSS peak MiB | callee RSS idle MiB | callee RSS peak MiB |\n")
		p("| --- | --- | --- | --- | --- | --- | --- |\n")
		for _, t := range sidecars {
			p("| %s | %s | %s | %s | %s | %s | %s |\n", t,
				cellOf(collect(res, t, num(func(r roundResult) int64 { return int64(r.CallerStartup) })), msf),
				cellOf(collect(res, t, num(func(r roundResult) int64 { return int64(r.CalleeStartup) })), msf),
				cellOf(collect(res, t, num(func(r roundResult) int64 { return r.CallerIdleKiB })), mibf),
				cellOf(collect(res, t, num(func(r roundResult) int64 { return r.CallerPeakKiB })), mibf),
				cellOf(collect(res, t, num(func(r roundResult) int64 { return r.CalleeIdleKiB })), mibf),
				cellOf(collect(res, t, num(func(r roundResult) int64 { return r.CalleePeakKiB })), mibf))
		}
		p("\n")
		cpu := func(s scenario) func(roundResult) (float64, bool) {
			return func(r roundResult) (float64, bool) {
				l := s.get(r)
				if l == nil || l.Requests == 0 {
					return 0, false
				}
				return cpuPer1kNs(l), true
			}
		}
		p("CPU time (user + system, from `/proc/PID/stat`, 10 ms ticks) both sidecars used per 1,000 requests:\n\n")
		p("| target | fixed rate, CPU ms per 1k requests | maximum throughput, CPU ms per 1k requests |\n")
		p("| --- | --- | --- |\n")
		for _, t := range sidecars {
			p("| %s | %s | %s |\n", t, cellOf(collect(res, t, cpu(fixed)), msf1), cellOf(collect(res, t, cpu(maxs)), msf1))
		}
		p("\n")
	}

	var bad []string
	for _, r := range res {
		for _, s := range []struct {
			name string
			l    *harness.LoadResult
		}{{"fixed rate", r.Fixed}, {"maximum throughput", r.Max}} {
			if s.l != nil && s.l.Errors > 0 {
				bad = append(bad, fmt.Sprintf("round %d, %s, %s: %d of %d requests not 2xx (%v)", r.Round, r.Target, s.name, s.l.Errors, s.l.Requests, s.l.Codes))
			}
			if s.name == "fixed rate" && s.l != nil && s.l.QPS < 0.95*cfg.qps {
				bad = append(bad, fmt.Sprintf("round %d, %s: achieved %.0f req/s of the %.0f asked; the load generator or the target could not keep up", r.Round, r.Target, s.l.QPS, cfg.qps))
			}
		}
		if r.Target == targetOutriggerTraced && (r.Spans == nil || *r.Spans == 0) {
			bad = append(bad, fmt.Sprintf("round %d, %s: the span sink received no spans; the sidecars did not trace", r.Round, r.Target))
		}
	}
	if len(bad) > 0 {
		p("**⚠ This run is not clean:**\n\n")
		for _, s := range bad {
			p("- %s\n", s)
		}
		p("\n")
	}
	return b.String()
}

// p90CostTarget is the most outrigger-traced's added p90 may be, as a
// multiple of outrigger-bare's.
const p90CostTarget = 1.10

// writeObservabilityCost writes the "Observability cost" section when
// outrigger-bare or outrigger-traced ran: at the fixed rate, the latency
// outrigger (metrics) and outrigger-traced (metrics and tracing) add over
// outrigger-bare, with tracing's p90 ratio against its target; and the spans
// the sink received in each outrigger-traced round.
func writeObservabilityCost(p func(string, ...any), cfg *config, res []roundResult) {
	ran := func(t string) bool { return slices.Contains(cfg.targets, t) }
	if !ran(targetOutriggerBare) && !ran(targetOutriggerTraced) {
		return
	}
	fixed := fixedScenario
	p("#### Observability cost\n\n")
	if cfg.fixedDuration > 0 && ran(targetDirect) && ran(targetOutriggerBare) && (ran(targetOutrigger) || ran(targetOutriggerTraced)) {
		p("Fixed rate, %s requests/s. Added latency is the target's minus direct's in the same round, then the median across rounds, as above; "+
			"over bare is the target's minus %s's in the same round, then the median across rounds.\n\n", qpsf(cfg.qps), targetOutriggerBare)
		p("| target | metrics | tracing | added p50 ms | added p90 ms | p50 over bare ms | p90 over bare ms |\n")
		p("| --- | --- | --- | --- | --- | --- | --- |\n")
		for _, row := range []struct{ t, metrics, tracing string }{
			{targetOutriggerBare, "off", "off"},
			{targetOutrigger, "on", "off"},
			{targetOutriggerTraced, "on", percentf(tracingSamplingRate) + ", OTLP/gRPC"},
		} {
			if !ran(row.t) {
				continue
			}
			over50, over90 := "–", "–"
			if row.t != targetOutriggerBare {
				over50 = cellOf(vsBase(res, row.t, targetOutriggerBare, fixed.added(latP50)), addedMs)
				over90 = cellOf(vsBase(res, row.t, targetOutriggerBare, fixed.added(latP90)), addedMs)
			}
			p("| %s | %s | %s | %s | %s | %s | %s |\n", row.t, row.metrics, row.tracing,
				cellOf(vsDirect(res, row.t, fixed.added(latP50)), addedMs),
				cellOf(vsDirect(res, row.t, fixed.added(latP90)), addedMs),
				over50, over90)
		}
		p("\n")
		if ran(targetOutriggerTraced) {
			bare, okBare := spreadOf(vsDirect(res, targetOutriggerBare, fixed.added(latP90)))
			traced, okTraced := spreadOf(vsDirect(res, targetOutriggerTraced, fixed.added(latP90)))
			switch {
			case !okBare || !okTraced:
				p("Tracing's p90 ratio: no rounds to compare.\n\n")
			case bare.med <= 0:
				p("Tracing's p90 ratio: none, as %s adds no latency at p90 (median %s ms); target at most %.2f.\n\n",
					targetOutriggerBare, addedMs(bare.med), p90CostTarget)
			default:
				ratio := traced.med / bare.med
				verdict := "met"
				if ratio > p90CostTarget {
					verdict = "**not met**"
				}
				p("Tracing's p90 ratio: %s's added p90 over %s's is **%.2f** (%s / %s ms, the medians above); target at most %.2f: %s.\n\n",
					targetOutriggerTraced, targetOutriggerBare, ratio, msf(traced.med), msf(bare.med), p90CostTarget, verdict)
			}
		}
	}
	if ran(targetOutriggerTraced) {
		p("Spans the span sink received from the %s sidecars in each round, their export at shutdown included, "+
			"against every request the round sent through them (first calls, warm-up and both scenarios). "+
			"With %s of requests sampled and one span for each in both sidecars, expect about %.2f spans per request.\n\n",
			targetOutriggerTraced, percentf(tracingSamplingRate), 2*tracingSamplingRate)
		p("| round | spans received | requests sent | spans per request |\n")
		p("| --- | --- | --- | --- |\n")
		for _, r := range res {
			if r.Target != targetOutriggerTraced || r.Spans == nil {
				continue
			}
			per := "–"
			if r.SentRequests > 0 {
				per = fmt.Sprintf("%.3f", float64(*r.Spans)/float64(r.SentRequests))
			}
			p("| %d | %d | %d | %s |\n", r.Round, *r.Spans, r.SentRequests, per)
		}
		p("\n")
	}
}

// percentf formats a share as a percentage, e.g. 0.1 as "10%".
func percentf(share float64) string { return strconv.FormatFloat(share*100, 'g', 4, 64) + "%" }

// writeJSON writes the environment and every round's raw results.
func writeJSON(path string, env environment, res []roundResult) error {
	b, err := json.MarshalIndent(struct {
		Environment environment   `json:"environment"`
		Rounds      []roundResult `json:"rounds"`
	}{env, res}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// mtlsP90Target is the most mutual TLS may add to the median p90 over h2c
// at the fixed rate (the zero-trust mesh issue's target).
const mtlsP90Target = 0.05e6 // ns

// interceptionP90Target is the most transparent interception may add to
// the median p90 of the same sidecars called through the Dapr API.
const interceptionP90Target = 0.05e6 // ns

// writeInterceptionCost writes the "Interception cost" section when both
// outrigger and outrigger-transparent ran at the fixed rate: the p90 of
// calls by virtual address (transparent interception) against the same
// sidecars' calls through the Dapr API, with the target's verdict.
func writeInterceptionCost(p func(string, ...any), cfg *config, res []roundResult) {
	ran := func(t string) bool { return slices.Contains(cfg.targets, t) }
	if cfg.fixedDuration <= 0 || !ran(targetOutrigger) || !ran(targetOutriggerTransparent) {
		return
	}
	fixed := fixedScenario
	p("#### Interception cost\n\n")
	p("Fixed rate, %s requests/s. %s calls the callee by its virtual address from an app namespace of its own, "+
		"with no Dapr API; its caller sidecar intercepts the connections (iptables, SO_ORIGINAL_DST). %s calls the same "+
		"sidecars' Dapr API (/v1.0/invoke). Over the Dapr API is the target's minus %s's in the same round, then the median across rounds.\n\n",
		qpsf(cfg.qps), targetOutriggerTransparent, targetOutrigger, targetOutrigger)
	p("| target | p50 ms | p90 ms | p99 ms | p90 over the Dapr API ms |\n")
	p("| --- | --- | --- | --- | --- |\n")
	for _, t := range []string{targetOutrigger, targetOutriggerTransparent} {
		over := "–"
		if t == targetOutriggerTransparent {
			over = cellOf(vsBase(res, t, targetOutrigger, fixed.added(latP90)), addedMs)
		}
		p("| %s | %s | %s | %s | %s |\n", t,
			cellOf(collect(res, t, fixed.stat(latP50)), msf),
			cellOf(collect(res, t, fixed.stat(latP90)), msf),
			cellOf(collect(res, t, fixed.stat(latP99)), msf), over)
	}
	p("\n")
	line, ok := medianP90Cost(res, targetOutriggerTransparent, targetOutrigger, interceptionP90Target)
	if !ok {
		p("Interception's p90 cost: no rounds to compare.\n\n")
		return
	}
	p("Interception's p90 cost: %s\n\n", line)
}

// medianP90Cost says what target adds over base as the difference of their
// median fixed-rate p90s, against limit (ns): "the median p90 of T minus
// that of B is **+x ms** (a - b ms); target at most +l ms: met."; ok is
// false when either has no rounds.
func medianP90Cost(res []roundResult, target, base string, limit float64) (string, bool) {
	b, okB := spreadOf(collect(res, base, fixedScenario.stat(latP90)))
	t, okT := spreadOf(collect(res, target, fixedScenario.stat(latP90)))
	if !okB || !okT {
		return "", false
	}
	diff := t.med - b.med
	verdict := "met"
	if diff > limit {
		verdict = "**not met**"
	}
	return fmt.Sprintf("the median p90 of %s minus that of %s is **%s ms** (%s - %s ms); target at most +%s ms: %s.",
		target, base, addedMs(diff), msf(t.med), msf(b.med), msf(limit), verdict), true
}
