// Command bench is Outrigger's benchmark harness. In one run it measures a
// client calling a tiny echo app directly, through two Outrigger sidecars
// (client -> caller sidecar -> callee sidecar -> app) over plain h2c and over
// mutual TLS (certificates from one `outrigger control-plane` per run) and,
// when the daprd binary built by scripts/tools.sh is present, through two
// daprd sidecars, the same way, in interleaved rounds. Two more Outrigger
// targets show what observability costs: outrigger-bare with metrics off,
// and outrigger-traced with tracing at 10% sampling, exported by OTLP/gRPC to
// a span sink the harness runs, which counts the spans of each round:
//
//	go run ./bench                                  # all targets, defaults
//	go run ./bench --targets direct,daprd --rounds 7 --out /tmp/bench.md
//
// Each round, for each target, it starts fresh sidecars (real processes with
// daprd's flag names, which `outrigger sidecar` accepts too), times the caller
// sidecar from process start until GET /v1.0/healthz/outbound answers 204,
// reads both sidecars' idle RSS, warms up, then runs a fixed-rate scenario
// (default 1,000 requests/s of 1 KiB POST bodies over 16 connections, the
// shape Dapr and Istio publish) and a maximum-throughput scenario, sampling
// the sidecars' RSS every 100 ms. Load comes from fortio's pacing and HTTP
// client (fortio.org/fortio/periodic and fhttp); latencies are recorded per
// request, so percentiles are exact rather than histogram buckets.
//
// Everything runs inside a network namespace the harness makes and deletes
// (so daprd's default mDNS name resolution multicasts only on that
// namespace's loopback), which needs root and the ip command. The report is a
// markdown table on stdout (and --out FILE) for docs/benchmarks.md. A target
// that does not come up fails the run with its processes' logs; answers other
// than 2xx are counted, flagged in the report, and make the exit status 1.
package main

import (
	"os"
)

func main() {
	os.Exit(run(os.Args[1:]))
}
