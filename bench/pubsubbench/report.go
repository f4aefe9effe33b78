package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/outrigger/outrigger/bench/harness"
)

// Targets the report checks the Outrigger rows against.
const (
	// addedTarget: a publish through the sidecar is at most this much
	// above a direct publish at p50.
	addedTarget = 200 * time.Microsecond
	// rateTarget: bulk end to end, at least this many messages per second.
	rateTarget = 20_000
)

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
	fmt.Fprintf(w, "## Pub/sub through a sidecar vs direct: NATS JetStream\n\n")
	fmt.Fprintf(w, "- Command: `%s`\n", c.Command)
	fmt.Fprintf(w, "- Date: %s\n", e.Date.Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(w, "- Machine: %s, %d CPUs (nproc); load average %s at the end of the run\n", e.CPU, e.CPUs, e.LoadAvg)
	fmt.Fprintf(w, "- Go: %s (the harness: its clients, the subscriber app and the NATS server)\n", e.Go)
	fmt.Fprintf(w, "- NATS server: %s, embedded in the harness process (JetStream, file storage in the working folder), on 127.0.0.1\n", e.NATS)
	fmt.Fprintf(w, "- Outrigger: %s, built from ./cmd/outrigger unless --outrigger was given; component `pubsub.jetstream` with `natsURL` only\n", e.Outrigger)
	if e.Daprd != "" {
		fmt.Fprintf(w, "- daprd: %s (%s); Dapr's component `pubsub.jetstream` with `natsURL` and `concurrency: %s`\n", e.Daprd, c.Daprd, c.DaprdConcurrency)
	}
	for _, n := range res.Notes {
		fmt.Fprintf(w, "- Note: %s\n", n)
	}
	fmt.Fprintf(w, "- Setup: %d interleaved round(s); each round measures the publish latency of every target in turn (%s), then end-to-end throughput through every sidecar in turn (%s). "+
		"Every topic is fresh, with a stream the harness makes (one subject, file storage, limits retention), deleted after its run. Payload: a %d-byte JSON object, content type application/json. Everything on 127.0.0.1.\n",
		c.Rounds, strings.Join(res.Targets, ", "), strings.Join(res.Sidecars, ", "), c.PayloadSize)
	fmt.Fprintf(w, "- Publish latency: per target per round %d warm-up publishes (not recorded), then %d sequential publishes, each timed alone until it was acknowledged; "+
		"direct is nats.go's `jetstream` client (`Publish`, waiting for the PubAck, with a Nats-Msg-Id as both sidecars set); relay is the same client through a TCP relay in a process of its own on one thread (bytes copied, nothing parsed): what one more process on the path costs, the floor under any sidecar; the sidecar targets go through a fresh sidecar with no app, gRPC with the Dapr Go SDK's `PublishEvent`, HTTP with `POST /v1.0/publish/pubsub/{topic}` on one keep-alive connection. "+
		"After each target the stream must hold every message once.\n",
		c.Warmup, c.Ops)
	fmt.Fprintf(w, "- End to end: per sidecar per round a fresh publisher sidecar (no app) and a fresh subscriber sidecar whose app (in the harness) subscribes through `GET /dapr/subscribe` to a bulk topic (`bulkSubscribe` maxMessagesCount %d, maxAwaitDurationMs %d, answered with SUCCESS per entry) and a single one. "+
		"Per mode: %d warm-up messages, awaited; then %d messages published by %d concurrent publishers over %s (%s), timed from the first publish until the app had every message ID at least once.\n\n",
		c.Batch, c.BulkAwait.Milliseconds(), c.E2EWarmup, c.Messages, c.Publishers, strings.ToUpper(c.E2EAPI), publishHow(c))
	fmt.Fprintf(w, "Cells are the median across rounds, with the lowest and highest round in brackets.\n\n")

	fmt.Fprintf(w, "### Publish latency\n\n")
	fmt.Fprintf(w, "Milliseconds; percentiles are exact (nearest rank) over the %d publishes of a round.\n\n", c.Ops)
	fmt.Fprintln(w, "| target | p50 ms | p90 ms | p99 ms |")
	fmt.Fprintln(w, "| --- | --- | --- | --- |")
	for _, target := range res.Targets {
		fmt.Fprintf(w, "| %s |", target)
		for _, p := range percentiles {
			v := perRoundLatency(res, target, func(l *LatencyRun) float64 { return harness.MsOf(p.get(&l.Publish)) })
			fmt.Fprintf(w, " %s |", cell(v, "%.3f"))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)

	fmt.Fprintf(w, "### Latency a sidecar adds to a publish\n\n")
	fmt.Fprintf(w, "Target: **a publish through the sidecar is at most %.1f ms above a direct publish at p50** (checked on the Outrigger rows; daprd's are a reference). Per round, the target's percentile minus direct's; then the median across rounds.\n\n", harness.MsOf(addedTarget))
	fmt.Fprintln(w, "| target | added p50 ms | added p99 ms | at most 0.2 ms at p50 |")
	fmt.Fprintln(w, "| --- | --- | --- | --- |")
	for _, target := range res.Targets {
		if target == targetDirect {
			continue
		}
		p50 := added(res, target, func(s *harness.OpStats) time.Duration { return s.P50 })
		p99 := added(res, target, func(s *harness.OpStats) time.Duration { return s.P99 })
		verdict := "(reference)"
		if target == targetRelay {
			verdict = "(floor: one more process, copying bytes)"
		}
		if sc, _, _ := sidecarOf(target); sc == sidecarOutrigger {
			verdict = "not met"
			if s, ok := harness.SpreadOf(p50); ok && s.Med <= harness.MsOf(addedTarget) {
				verdict = "met"
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", target, cell(p50, "%+.3f"), cell(p99, "%+.3f"), verdict)
	}
	fmt.Fprintln(w)

	fmt.Fprintf(w, "### End-to-end throughput\n\n")
	fmt.Fprintf(w, "Target: **at least %s messages/s bulk end to end** (checked on the Outrigger bulk row). Messages/s: %d messages over the time from the first publish until the app had every one; "+
		"publishing: the same messages over the time until the last publish returned. Duplicates: deliveries of a message the app already had, summed over the rounds (per round in brackets), counted until the sidecars stopped. Per request: messages per app request (bulk: the batch size the app saw).\n\n",
		thousands(rateTarget), c.Messages)
	fmt.Fprintln(w, "| sidecar | mode | messages/s | publishing, messages/s | duplicates | per request | at least 20,000 msg/s bulk |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- |")
	for _, sidecar := range res.Sidecars {
		for _, mode := range c.Modes {
			rate := perRoundE2E(res, sidecar, mode, func(e *E2ERun) float64 { return e.Rate })
			pubRate := perRoundE2E(res, sidecar, mode, func(e *E2ERun) float64 { return float64(e.Messages) / e.PublishElapsed.Seconds() })
			dups := perRoundE2E(res, sidecar, mode, func(e *E2ERun) float64 { return float64(e.Duplicates) })
			perReq := perRoundE2E(res, sidecar, mode, func(e *E2ERun) float64 { return float64(e.Deliveries) / float64(max(e.Requests, 1)) })
			verdict := "(reference)"
			switch {
			case sidecar == sidecarOutrigger && mode == modeBulk:
				verdict = "not met"
				if s, ok := harness.SpreadOf(rate); ok && s.Med >= rateTarget {
					verdict = "met"
				}
			case mode == modeSingle:
				verdict = "(no target)"
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", sidecar, mode, cell(rate, "%.0f"), cell(pubRate, "%.0f"), dupCell(dups), cell(perReq, "%.1f"), verdict)
		}
	}
	fmt.Fprintln(w)

	fmt.Fprintf(w, "### CPU time per 1,000 messages end to end\n\n")
	fmt.Fprintf(w, "User plus system CPU time during the timed part, in milliseconds per 1,000 messages: the publisher and subscriber sidecars (`/proc/PID/stat`) and the harness process (the NATS server, the subscriber app and the publishers; `getrusage`). Less sensitive to other work on the machine than the rates are.\n\n")
	fmt.Fprintln(w, "| sidecar | mode | publisher sidecar ms | subscriber sidecar ms | harness ms |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- |")
	for _, sidecar := range res.Sidecars {
		for _, mode := range c.Modes {
			per := func(f func(*E2ERun) time.Duration) []float64 {
				return perRoundE2E(res, sidecar, mode, func(e *E2ERun) float64 { return harness.MsOf(f(e)) * 1000 / float64(e.Messages) })
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", sidecar, mode,
				cell(per(func(e *E2ERun) time.Duration { return e.CPUPublisher }), "%.0f"),
				cell(per(func(e *E2ERun) time.Duration { return e.CPUSubscriber }), "%.0f"),
				cell(per(func(e *E2ERun) time.Duration { return e.CPUHarness }), "%.0f"))
		}
	}
	fmt.Fprintln(w)

	fmt.Fprintf(w, "### Sidecar start-up\n\n")
	fmt.Fprintf(w, "From process start until `GET /v1.0/healthz/outbound` answered 204 (polled every 5 ms), in milliseconds.\n\n")
	fmt.Fprintln(w, "| sidecar | latency part (no app) | end to end: publisher (no app) | end to end: subscriber (with app) |")
	fmt.Fprintln(w, "| --- | --- | --- | --- |")
	for _, sidecar := range res.Sidecars {
		lat := perRoundLatency(res, sidecar+"-grpc", func(l *LatencyRun) float64 { return harness.MsOf(l.StartUp) })
		pub := perRoundE2E(res, sidecar, c.Modes[0], func(e *E2ERun) float64 { return harness.MsOf(e.PublisherStartUp) })
		sub := perRoundE2E(res, sidecar, c.Modes[0], func(e *E2ERun) float64 { return harness.MsOf(e.SubscriberStartUp) })
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", sidecar, cell(lat, "%.0f"), cell(pub, "%.0f"), cell(sub, "%.0f"))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Everything (the harness with the NATS server, its clients and the subscriber app, and every sidecar) shares the machine's %d CPUs; compare targets within this run, not across machines (see bench/pubsubbench/README.md).\n", e.CPUs)
}

// publishHow says how the end-to-end runs publish.
func publishHow(c Config) string {
	if c.E2EAPI == "grpc" {
		return fmt.Sprintf("bulk: the Go SDK's `PublishEvents` of %d entries; single: `PublishEvent`; one gRPC connection", c.Batch)
	}
	return fmt.Sprintf("bulk: `POST /v1.0-alpha1/publish/bulk/pubsub/{topic}` of %d entries; single: `POST /v1.0/publish/pubsub/{topic}`; a keep-alive connection per publisher", c.Batch)
}

// perRoundLatency is f of target's latency run in each round.
func perRoundLatency(res *Result, target string, f func(*LatencyRun) float64) []float64 {
	var v []float64
	for i := range res.Rounds {
		if l := res.Rounds[i].latency(target); l != nil {
			v = append(v, f(l))
		}
	}
	return v
}

// perRoundE2E is f of the end-to-end run of sidecar and mode in each round.
func perRoundE2E(res *Result, sidecar, mode string, f func(*E2ERun) float64) []float64 {
	var v []float64
	for i := range res.Rounds {
		if e := res.Rounds[i].e2e(sidecar, mode); e != nil {
			v = append(v, f(e))
		}
	}
	return v
}

// added is, per round, f of target minus f of direct, in ms.
func added(res *Result, target string, f func(*harness.OpStats) time.Duration) []float64 {
	var v []float64
	for i := range res.Rounds {
		t, d := res.Rounds[i].latency(target), res.Rounds[i].latency(targetDirect)
		if t != nil && d != nil {
			v = append(v, harness.MsOf(f(&t.Publish)-f(&d.Publish)))
		}
	}
	return v
}

// cell formats the median and range of v with format f, e.g.
// "0.212 (0.201–0.230)".
func cell(v []float64, f string) string {
	s, ok := harness.SpreadOf(v)
	if !ok {
		return "–"
	}
	if len(v) == 1 {
		return fmt.Sprintf(f, s.Med)
	}
	return fmt.Sprintf(f+" ("+f+"–"+f+")", s.Med, s.Lo, s.Hi)
}

// dupCell is the sum of per-round duplicates, with each round's.
func dupCell(v []float64) string {
	if len(v) == 0 {
		return "–"
	}
	var sum float64
	parts := make([]string, len(v))
	for i, x := range v {
		sum += x
		parts[i] = fmt.Sprintf("%.0f", x)
	}
	if len(v) == 1 {
		return fmt.Sprintf("%.0f", sum)
	}
	return fmt.Sprintf("%.0f (%s)", sum, strings.Join(parts, ", "))
}

// thousands formats n with commas.
func thousands(n int) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// writeJSON writes res, every round's numbers and samples included.
func writeJSON(path string, res *Result) error {
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
