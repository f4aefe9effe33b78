package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outrigger/outrigger/bench/harness"
)

// TestMain lets the test binary serve as the relay target's relay, as the
// program does (latencyRelay starts os.Executable()).
func TestMain(m *testing.M) {
	if v := os.Getenv(relayEnv); v != "" {
		os.Exit(runRelay(v))
	}
	os.Exit(m.Run())
}

// TestRunSmall runs the whole harness at a tiny size: both parts, through
// Outrigger and, when a daprd with pubsub.jetstream is in the tools cache,
// daprd.
func TestRunSmall(t *testing.T) {
	// The build is not part of the run's budget: on a loaded machine it
	// can take minutes.
	bctx, bcancel := context.WithTimeout(context.Background(), 10*time.Minute)
	bin, err := harness.BuildOutrigger(bctx, t.TempDir())
	bcancel()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 58*time.Second)
	defer cancel()
	cfg := Config{
		Outrigger: bin,
		Rounds:    1, Ops: 20, Warmup: 5, Messages: 300, E2EWarmup: 20, Batch: 50, Publishers: 2,
		DrainTimeout: 15 * time.Second, Timeout: 55 * time.Second, Command: "go test ./bench/pubsubbench",
	}
	daprd, note, err := chooseDaprd(harness.DefaultDaprd(), false)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Daprd = daprd; daprd == "" {
		t.Logf("daprd targets skipped: %s", note)
	}
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	targets := []string{targetDirect, targetRelay, targetOutriggerGRPC, targetOutriggerHTTP}
	sidecars := []string{sidecarOutrigger}
	if daprd != "" {
		targets = append(targets, targetDaprdGRPC, targetDaprdHTTP)
		sidecars = append(sidecars, sidecarDaprd)
	}
	if len(res.Rounds) != 1 {
		t.Fatalf("rounds: got %d, want 1", len(res.Rounds))
	}
	r := &res.Rounds[0]
	for _, target := range targets {
		l := r.latency(target)
		if l == nil {
			t.Errorf("no publish latency for %s", target)
			continue
		}
		s := l.Publish
		if s.N != cfg.Ops || len(s.Samples) != cfg.Ops || s.P50 <= 0 || s.P50 > s.P90 || s.P90 > s.P99 || s.P99 > s.Max {
			t.Errorf("%s: n %d, samples %d, p50 %v p90 %v p99 %v max %v", target, s.N, len(s.Samples), s.P50, s.P90, s.P99, s.Max)
		}
		if target != targetDirect && l.StartUp <= 0 {
			t.Errorf("%s: no start-up time", target)
		}
	}
	for _, sidecar := range sidecars {
		for _, mode := range allModes {
			e := r.e2e(sidecar, mode)
			if e == nil {
				t.Errorf("no end-to-end numbers for %s %s", sidecar, mode)
				continue
			}
			if e.Messages != cfg.Messages || e.Rate <= 0 || e.Elapsed <= 0 || e.PublishElapsed <= 0 ||
				e.Deliveries < int64(cfg.Messages) || e.Deliveries != int64(cfg.Messages)+e.Duplicates || e.Requests <= 0 {
				t.Errorf("%s %s: %+v", sidecar, mode, *e)
			}
			if mode == modeBulk && e.Requests >= int64(cfg.Messages) {
				t.Errorf("%s bulk: %d app requests for %d messages: no batches", sidecar, e.Requests, cfg.Messages)
			}
			if mode == modeSingle && e.Requests != e.Deliveries {
				t.Errorf("%s single: %d app requests for %d deliveries", sidecar, e.Requests, e.Deliveries)
			}
		}
	}

	var out strings.Builder
	writeReport(&out, res)
	report := out.String()
	want := []string{
		"- Command: `go test ./bench/pubsubbench`",
		"### Publish latency", "| target | p50 ms | p90 ms | p99 ms |",
		"### Latency a sidecar adds to a publish",
		"a publish through the sidecar is at most 0.2 ms above a direct publish at p50",
		"### End-to-end throughput",
		"at least 20,000 messages/s bulk end to end",
		"| outrigger | bulk | ", "| outrigger | single | ",
		"### CPU time per 1,000 messages end to end",
		"### Sidecar start-up",
	}
	if daprd != "" {
		want = append(want, "| daprd-grpc |", "| daprd-http |", "| daprd | bulk | ", "| daprd | single | ")
	}
	for _, s := range want {
		if !strings.Contains(report, s) {
			t.Errorf("report lacks %q", s)
		}
	}
	// The latency a sidecar adds is signed: over 20 publishes a direct
	// publish can come out slower than one through the sidecar.
	for _, target := range []string{"outrigger-grpc", "outrigger-http"} {
		if !regexp.MustCompile(`(?m)^\| ` + target + ` \| [+-][0-9]`).MatchString(report) {
			t.Errorf("report lacks the latency %s adds", target)
		}
	}
	if t.Failed() {
		t.Logf("report:\n%s", report)
	}
	if res.Workdir != "" {
		t.Errorf("working folder kept without Keep: %s", res.Workdir)
	}
}

// TestSidecarFailsLoudly: a sidecar that exits at once fails the run with
// the end of its log.
func TestSidecarFailsLoudly(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "outrigger")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho 'no messages for you' >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := Run(ctx, Config{Rounds: 1, Ops: 1, Messages: 1, Outrigger: bin, StartTimeout: 10 * time.Second})
	if err == nil {
		t.Fatal("a sidecar that exits did not fail the run")
	}
	for _, s := range []string{"outrigger publisher sidecar", "exited", "no messages for you"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error lacks %q: %v", s, err)
		}
	}
}

// TestLostMessageFails: a message that never arrives fails the wait once
// nothing new came for the drain timeout, naming it.
func TestLostMessageFails(t *testing.T) {
	dir := t.TempDir()
	p, err := harness.StartProcess("fake subscriber", filepath.Join(dir, "log"), nil, "sleep", "30")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(time.Second)
	s := newSink("t", 0, 3)
	if bad := s.record(time.Now(), []string{"m0000000", "m0000001", "m0000001"}); bad != "" {
		t.Fatalf("record: unexpected %q", bad)
	}
	if bad := s.record(time.Now(), []string{"m0000003"}); bad != "m0000003" {
		t.Errorf("record of an ID past the end: got %q", bad)
	}
	start := time.Now()
	err = s.wait(context.Background(), phaseMeasured, start, 200*time.Millisecond, p)
	if err == nil {
		t.Fatal("a lost message did not fail the wait")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the wait took %v", d)
	}
	for _, want := range []string{"1 of 3 messages never reached the app", "m0000002", "fake subscriber"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if c := s.counts(phaseMeasured); c.distinct != 2 || c.dups != 1 || c.deliveries != 3 || c.reqs != 1 {
		t.Errorf("counts: %+v", c)
	}
}

// TestDeliveryParsing: the app reads the message IDs of deliveries in
// both sidecars' shape, and in the other shapes a CloudEvent may take.
func TestDeliveryParsing(t *testing.T) {
	payload := makePayload("m0000007", 128)
	ce := func(data any, extra map[string]any) map[string]any {
		m := map[string]any{"id": "abc", "specversion": "1.0", "source": "pub", "type": "com.dapr.event.sent", "topic": "t1", "pubsubname": "pubsub"}
		if data != nil {
			m["data"] = data
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	var obj map[string]any
	if err := json.Unmarshal(payload, &obj); err != nil {
		t.Fatal(err)
	}
	ceString, _ := json.Marshal(ce(obj, nil))
	for name, ev := range map[string]any{
		"object":         ce(obj, nil),
		"data as string": ce(string(payload), nil),
		"data_base64":    ce(nil, map[string]any{"data_base64": base64.StdEncoding.EncodeToString(payload)}),
		"event a string": string(ceString),
	} {
		raw, _ := json.Marshal(ev)
		topic, id, err := eventRef(raw)
		if err != nil || topic != "t1" || id != "m0000007" {
			t.Errorf("%s: eventRef = %q, %q, %v", name, topic, id, err)
		}
		body, _ := json.Marshal(map[string]any{"topic": "t1", "entries": []any{
			map[string]any{"entryId": "e1", "event": ev, "contentType": "application/cloudevents+json"},
			map[string]any{"entryId": "e2", "event": ce(obj, nil)},
		}})
		topic, entries, ids, err := bulkRefs(body)
		if err != nil || topic != "t1" || strings.Join(entries, ",") != "e1,e2" || strings.Join(ids, ",") != "m0000007,m0000007" {
			t.Errorf("%s: bulkRefs = %q, %q, %q, %v", name, topic, entries, ids, err)
		}
	}
	if _, _, err := eventRef([]byte(`{"data":{"other":1}}`)); err == nil {
		t.Error("eventRef took an event without the published message")
	}
	if _, _, _, err := bulkRefs([]byte(`{"entries":[]}`)); err == nil {
		t.Error("bulkRefs took a delivery without entries")
	}
	for name, body := range map[string]string{
		"entry without entryId": `{"topic":"t1","entries":[{"event":{"data":{"id":"m1"}}}]}`,
		"event without data":    `{"topic":"t1","entries":[{"entryId":"e1","event":{"topic":"t1"}}]}`,
		"truncated":             `{"topic":"t1","entries":[{"entryId":"e1","event":{"data":{"id":"m1"}}}`,
		"entries not an array":  `{"topic":"t1","entries":{"entryId":"e1"}}`,
	} {
		if _, _, _, err := bulkRefs([]byte(body)); err == nil {
			t.Errorf("bulkRefs took a delivery: %s", name)
		}
	}
	// The fast path and encoding/json read the sidecars' shape alike.
	body := []byte(`{"topic":"t1","entries":[{"entryId":"e1","event":{"topic":"t1","data":{"id":"m1","n":[1,{"id":"no"}]}}},{"entryId":"e\"2","event":{"data":{"x":"}","id":"m2"}}}]}`)
	if topic, entries, ids, ok := bulkFast(body); !ok || topic != "t1" || strings.Join(entries, ",") != `e1,e"2` || strings.Join(ids, ",") != "m1,m2" {
		t.Errorf("bulkFast = %q, %q, %q, %v", topic, entries, ids, ok)
	}
}

func TestHasJetStream(t *testing.T) {
	dir := t.TempDir()
	// The marker across the first 4 MiB chunk's end.
	with := make([]byte, 5<<20)
	copy(with[4<<20-10:], jetStreamMarker)
	without := make([]byte, 5<<20)
	copy(without[100:], jetStreamMarker[:len(jetStreamMarker)-1])
	for name, c := range map[string]struct {
		b    []byte
		want bool
	}{"with": {with, true}, "without": {without, false}} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, c.b, 0o644); err != nil {
			t.Fatal(err)
		}
		if got, err := hasJetStream(p); err != nil || got != c.want {
			t.Errorf("%s: hasJetStream = %v, %v; want %v", name, got, err, c.want)
		}
	}
}

func TestIDsAndPayload(t *testing.T) {
	for _, c := range []struct{ phase, i int }{{phaseWarm, 0}, {phaseMeasured, 42}, {phaseMeasured, 9_999_999}} {
		id := messageID(c.phase, c.i)
		if p, i, ok := parseID(id); !ok || p != c.phase || i != c.i || len(id) != 8 {
			t.Errorf("messageID(%d, %d) = %q, parsed %d %d %v", c.phase, c.i, id, p, i, ok)
		}
	}
	for _, bad := range []string{"", "x0000001", "m000001", "m00000a1"} {
		if _, _, ok := parseID(bad); ok {
			t.Errorf("parseID(%q) ok", bad)
		}
	}
	v := makePayload("m0000001", 1024)
	var p struct{ ID, Pad string }
	if len(v) != 1024 || json.Unmarshal(v, &p) != nil || p.ID != "m0000001" {
		t.Errorf("makePayload: %d bytes: %.60s", len(v), v)
	}
}

func TestPercentile(t *testing.T) {
	var s []time.Duration
	for i := 1; i <= 200; i++ {
		s = append(s, time.Duration(i))
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 100}, {90, 180}, {99, 198}, {100, 200}, {0.1, 1}} {
		if got := harness.Percentile(s, c.p); got != c.want {
			t.Errorf("p%v of 1..200: got %d, want %d", c.p, got, c.want)
		}
	}
}

func TestModes(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want []string
		bad  bool
	}{
		{in: nil, want: []string{modeBulk, modeSingle}},
		{in: []string{modeSingle}, want: []string{modeSingle}},
		{in: []string{modeSingle, modeBulk, modeSingle}, want: []string{modeBulk, modeSingle}},
		{in: []string{"bulky"}, bad: true},
	} {
		c := Config{Rounds: 1, Ops: 1, Messages: 1, Modes: tc.in}
		err := c.defaults()
		if tc.bad {
			if err == nil {
				t.Errorf("modes %q: no error", tc.in)
			}
			continue
		}
		if err != nil || !slices.Equal(c.Modes, tc.want) {
			t.Errorf("modes %q: got %q, %v; want %q", tc.in, c.Modes, err, tc.want)
		}
	}
}
