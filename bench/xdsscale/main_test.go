package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestRunSmall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	cfg := Config{
		Clients: 20, Components: 10, Rounds: 1, Timeout: 40 * time.Second,
		IdleWindow: 100 * time.Millisecond, Settle: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(res.Rounds); got != 1 {
		t.Fatalf("rounds: got %d, want 1", got)
	}
	r := res.Rounds[0]
	if r.Last <= 0 || r.First <= 0 || r.First > r.Last {
		t.Errorf("round: first %s, last %s; want 0 < first <= last", r.First, r.Last)
	}
	if res.SnapshotsPerRound != float64(cfg.Clients) {
		t.Errorf("snapshots per change: got %v, want %d (one per sidecar)", res.SnapshotsPerRound, cfg.Clients)
	}
	if res.ChangeResources != 1 {
		t.Errorf("a one-component change carried %d resources to some sidecar, want 1: unchanged resources are being resent", res.ChangeResources)
	}
	if res.NACKs != 0 {
		t.Errorf("NACKs: got %v, want 0", res.NACKs)
	}
	if res.CPUShareErr != nil {
		t.Logf("CPU share: %v", res.CPUShareErr)
	}
	var out strings.Builder
	writeReport(&out, "go test", res)
	if !strings.Contains(out.String(), "| 1 | c0000 |") {
		t.Errorf("report lacks the round's row:\n%s", out.String())
	}
}
