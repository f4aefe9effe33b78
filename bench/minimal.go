package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/outrigger/outrigger/bench/harness"
)

// The minimal target puts two plain Go forwarders in the sidecars' place:
// this harness's own binary, started twice more as separate processes, each
// on one thread as an Outrigger sidecar runs by default, each an
// httputil.ReverseProxy. The caller takes the client's HTTP/1.1 request on
// its --dapr-http-port, strips the /v1.0/invoke/callee/method prefix and
// sends it over h2c (net/http's HTTP/2, one multiplexed connection) to the
// callee's mesh port; the callee sends it over HTTP/1.1 keep-alive to the
// app. Nothing else is on the path: no name resolution, routing table,
// middleware, metrics, resiliency or caller headers. minimal minus direct is
// what two forwarders built on Go's standard HTTP stacks as they come cost on
// this machine (not a floor: Outrigger's own app client and mesh connections
// do better, docs/benchmarks.md).

// The relay target goes one step further down: two TCP relays that copy
// bytes between connections (one outgoing connection per incoming one, the
// kernel's splice under io.Copy) and parse nothing. The client's request is
// the app's own (POST /echo), sent to the caller relay's port. relay minus
// direct is what two more processes on the path cost with no protocol work
// at all: no pair of proxies on this machine can add less.

// minimalRoleCaller and minimalRoleCallee are roleEnv's values for the two
// minimal sidecars, relayRoleCaller and relayRoleCallee for the relays;
// minimalArgsEnv carries "httpPort,meshPort,targetPort" (a relay answers
// the harness's readiness probes on httpPort and relays meshPort to
// targetPort).
const (
	minimalRoleCaller = "minimal-caller"
	minimalRoleCallee = "minimal-callee"
	relayRoleCaller   = "relay-caller"
	relayRoleCallee   = "relay-callee"
	minimalArgsEnv    = "OUTRIGGER_BENCH_MINIMAL"
)

// minimalInvokePrefix is the path prefix the caller takes off before sending
// the rest to the callee.
const minimalInvokePrefix = "/v1.0/invoke/" + calleeID + "/method"

// runMinimal serves as the minimal caller or callee until SIGTERM or SIGINT.
func runMinimal(role string) int {
	ports, err := parseMinimalPorts(os.Getenv(minimalArgsEnv))
	if err == nil {
		runtime.GOMAXPROCS(1)
		err = serveMinimal(role, ports)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench %s: %v\n", role, err)
		return exitFailed
	}
	return exitOK
}

// minimalPorts are a minimal sidecar's ports: the API port the harness
// polls (and, for the caller, the client's port), its mesh port, and the
// port it forwards to (the callee's mesh port, or the app's).
type minimalPorts struct{ http, mesh, target int }

func parseMinimalPorts(s string) (minimalPorts, error) {
	f := strings.Split(s, ",")
	if len(f) != 3 {
		return minimalPorts{}, fmt.Errorf("%s=%q: want httpPort,meshPort,targetPort", minimalArgsEnv, s)
	}
	var p [3]int
	for i, v := range f {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > 65535 {
			return minimalPorts{}, fmt.Errorf("%s=%q: bad port %q", minimalArgsEnv, s, v)
		}
		p[i] = n
	}
	return minimalPorts{p[0], p[1], p[2]}, nil
}

func serveMinimal(role string, ports minimalPorts) error {
	target := "127.0.0.1:" + strconv.Itoa(ports.target)
	if role == relayRoleCaller || role == relayRoleCallee {
		return serveUntilSignal(ports, nil, func(l net.Listener) error { return harness.ServeRelay(l, target) })
	}
	var (
		transport http.RoundTripper
		strip     string
	)
	switch role {
	case minimalRoleCaller:
		var protos http.Protocols
		protos.SetUnencryptedHTTP2(true)
		transport = &http.Transport{
			Protocols:          &protos,
			DisableCompression: true,
			HTTP2:              &http.HTTP2Config{MaxConcurrentStreams: 1000},
		}
		strip = minimalInvokePrefix
	case minimalRoleCallee:
		transport = &http.Transport{
			DisableCompression:  true,
			MaxIdleConnsPerHost: 1024,
			IdleConnTimeout:     10 * time.Minute,
		}
	default:
		return fmt.Errorf("unknown role %q", role)
	}
	fwd := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL.Scheme, r.Out.URL.Host = "http", target
			if strip != "" {
				r.Out.URL.Path, r.Out.URL.RawPath = strings.TrimPrefix(r.In.URL.Path, strip), ""
			}
		},
		Transport: transport,
	}
	var meshProtos http.Protocols
	meshProtos.SetUnencryptedHTTP2(true)
	mesh := &http.Server{Handler: fwd, Protocols: &meshProtos, HTTP2: &http.HTTP2Config{MaxConcurrentStreams: 1000}}
	return serveUntilSignal(ports, fwd, mesh.Serve)
}

// serveUntilSignal serves the harness's readiness probes (and, when api is
// set, everything else with api) on ports.http, and calls mesh with a
// listener on ports.mesh, until SIGTERM or SIGINT or until either fails.
func serveUntilSignal(ports minimalPorts, api http.Handler, mesh func(net.Listener) error) error {
	hl, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(ports.http))
	if err != nil {
		return err
	}
	ml, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(ports.mesh))
	if err != nil {
		hl.Close()
		return err
	}
	front := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if api == nil || strings.HasPrefix(r.URL.Path, "/v1.0/healthz") {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		api.ServeHTTP(w, r)
	})}
	errc := make(chan error, 2)
	go func() { errc <- front.Serve(hl) }()
	go func() { errc <- mesh(ml) }()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	_ = front.Close()
	_ = ml.Close()
	return err
}
