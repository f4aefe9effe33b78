package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/outrigger/outrigger/mtls"
	"github.com/outrigger/outrigger/mtls/ca"
	"github.com/outrigger/outrigger/xds/controlplane"
	"github.com/outrigger/outrigger/xds/registry"
	xdsserver "github.com/outrigger/outrigger/xds/server"
)

// Config is one benchmark run.
type Config struct {
	// Clients is the number of simulated sidecars (M).
	Clients int
	// Components is the number of Component documents served (N).
	Components int
	// Rounds is the number of single-component changes timed (R).
	Rounds int
	// Timeout bounds the whole run: set-up, connecting, every round.
	Timeout time.Duration
	// ConnectConcurrency is how many sidecars may be connecting (handshake
	// to first full state) at once; default 64.
	ConnectConcurrency int
	// IdleWindow is how long the process's CPU is measured with every
	// sidecar connected and nothing changing; default 1 s.
	IdleWindow time.Duration
	// Settle is the pause after each round, inside its CPU measurement, so
	// the server's trailing work (the ACKs it reads, the watches it opens
	// again) is counted in the round; default 200 ms.
	Settle time.Duration
	// Logger receives the xDS server's own logs; default: errors to stderr.
	Logger *slog.Logger
}

func (c *Config) defaults() error {
	if c.Clients < 1 || c.Components < 1 || c.Rounds < 1 {
		return errors.New("clients, components and rounds must be at least 1")
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Minute
	}
	if c.ConnectConcurrency <= 0 {
		c.ConnectConcurrency = 64
	}
	if c.IdleWindow <= 0 {
		c.IdleWindow = time.Second
	}
	if c.Settle <= 0 {
		c.Settle = 200 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	}
	return nil
}

// Round is one timed change of one component file.
type Round struct {
	Component string
	// First, Median and Last are, over the sidecars, the time from the file
	// write until the sidecar had received the new version and sent its ACK.
	// Last is the round's result: every sidecar has it.
	First, Median, Last time.Duration
	// CPU is the process's user+system CPU from the write until Settle after
	// the last ACK (clients included).
	CPU time.Duration
}

// Result is what a run measured.
type Result struct {
	Config Config

	// NoFile is the open-file limit (soft, hard) before and after the
	// harness raised it; Needed is its estimate of what the run uses.
	NoFile NoFileLimit

	// Connect is the time to connect every sidecar and deliver each its
	// first full state (N components), ConnectConcurrency at a time.
	Connect time.Duration
	// InitialBytes is the size of one sidecar's first delta response.
	InitialBytes int
	// ChangeResources is the most resources a sidecar received in the
	// response that carried a round's one-component change (1 when the
	// delta protocol sends only what changed).
	ChangeResources int
	// ReadyProbes is how many probes it took before the server served every
	// component (1 unless the start-up race of README.md happened).
	ReadyProbes int

	// Per connected sidecar, both ends of the connection counted (the
	// clients run in this process): deltas of the Go heap in use, goroutine
	// stacks, RSS and goroutines between before and after connecting the M
	// sidecars, divided by M (after a forced GC each time).
	HeapPerClient, StackPerClient, RSSPerClient, GoroutinesPerClient float64
	RSSKnown                                                         bool
	// GoroutinesByRole splits GoroutinesPerClient by the goroutines'
	// "role" pprof label: "server", "client" ("" for the rest).
	GoroutinesByRole map[string]float64

	// IdleCPU is the process's CPU over IdleWindow with every sidecar
	// connected and nothing changing.
	IdleCPU time.Duration

	Rounds []Round
	// RoundsCPU is the process's CPU over all rounds; CPUShare splits it by
	// the pprof label of the goroutine that burned it (a CPU profile at
	// 100 Hz over the rounds): "server", "client", and "" for the rest
	// (GC background workers, the scheduler, the driver).
	RoundsCPU   time.Duration
	CPUShare    map[string]float64
	CPUShareErr error

	// SnapshotsPerRound is how many node snapshots the server set per
	// change (outrigger_xds_snapshots_total); NACKs should stay 0.
	SnapshotsPerRound float64
	NACKs             float64
}

// round is the change clients look for; the driver publishes it before
// writing the file.
type round struct {
	id        int
	name      string // resource name, component/cNNNN
	value     string // the new prefix
	start     time.Time
	acked     []time.Duration // by client; each client writes its own slot once
	remaining atomic.Int64
	done      chan struct{}
}

// bench is the shared state of one run.
type bench struct {
	cfg   Config
	addr  string
	trust *ca.Authority

	current atomic.Pointer[round]

	readyN       atomic.Int64
	allReady     chan struct{}
	initialBytes atomic.Int64
	// changeResources is the most resources any sidecar got in the
	// response that carried a round's change.
	changeResources atomic.Int64

	errOnce sync.Once
	errCh   chan error
}

func (b *bench) fail(err error) {
	b.errOnce.Do(func() { b.errCh <- err })
}

// Run runs the benchmark: a CA, a resources folder of N components, the real
// xDS server behind the control plane's TLS listener, M delta-ADS sidecars,
// and R timed changes.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	res := &Result{Config: cfg}

	// Each sidecar holds two descriptors here (its socket and the server's).
	res.NoFile = raiseNoFile(uint64(2*cfg.Clients + 256))
	if res.NoFile.After.Soft < res.NoFile.Needed {
		return res, fmt.Errorf("open-file limit %d (hard %d) is below the ~%d this run needs", res.NoFile.After.Soft, res.NoFile.After.Hard, res.NoFile.Needed)
	}

	dir, err := os.MkdirTemp("", "xdsscale-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	resDir := filepath.Join(dir, "resources")
	if err := os.Mkdir(resDir, 0o700); err != nil {
		return res, err
	}
	for i := range cfg.Components {
		if err := writeComponent(resDir, i, prefixValue(i, 0)); err != nil {
			return res, err
		}
	}

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	authority, err := ca.New(ca.Options{DataDir: filepath.Join(dir, "ca"), Logger: quiet})
	if err != nil {
		return res, err
	}

	// The control plane's wiring (cmd/outrigger/controlplane.go): the xDS
	// server on a gRPC server behind controlplane.Serve's TLS listener.
	metrics := prometheus.NewRegistry()
	reg := registry.New(registry.Options{Logger: quiet})
	xds := xdsserver.New(xdsserver.Options{
		ResourcesPaths: []string{resDir},
		Registry:       reg,
		TrustAnchors:   func() []byte { return mtls.CertsPEM(authority.Bundle().X509Authorities()) },
		Verify: func(cs tls.ConnectionState) (mtls.Identity, error) {
			return mtls.VerifyPeer(cs, authority, nil)
		},
		Registerer: metrics,
		Logger:     cfg.Logger.With("component", "xds"),
	})
	grpcServer := grpc.NewServer()
	xds.Register(grpcServer)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return res, err
	}

	serverCtx := pprof.WithLabels(context.Background(), pprof.Labels("role", "server"))
	runCtx, stopRun := context.WithCancel(serverCtx)
	serveCtx, stopServing := context.WithCancel(serverCtx)
	var serverWG sync.WaitGroup
	serverWG.Go(func() {
		pprof.SetGoroutineLabels(serverCtx)
		_ = reg.Run(runCtx)
	})
	serverWG.Go(func() {
		pprof.SetGoroutineLabels(serverCtx)
		if err := xds.Run(runCtx); err != nil {
			cfg.Logger.Error("xDS server", "err", err)
		}
	})
	serverWG.Go(func() {
		pprof.SetGoroutineLabels(serverCtx)
		_ = controlplane.Serve(serveCtx, ln, controlplane.Options{
			TLSConfig: authority.ServerTLSConfig(mtls.DefaultNamespace),
			GRPC:      grpcServer,
			Logger:    cfg.Logger,
		})
	})
	defer func() {
		stopServing()
		grpcServer.Stop()
		stopRun()
		serverWG.Wait()
	}()

	// Every sidecar's certificate, signed before the baseline is read.
	certs := make([]sidecarCert, cfg.Clients)
	for i := range certs {
		if certs[i], err = signSidecar(authority, i); err != nil {
			return res, err
		}
	}

	b := &bench{cfg: cfg, addr: ln.Addr().String(), trust: authority, allReady: make(chan struct{}), errCh: make(chan error, 1)}
	if res.ReadyProbes, err = b.awaitServer(ctx, certs[0], resDir); err != nil {
		return res, err
	}
	before := readMem()

	clientCtx, stopClients := context.WithCancel(pprof.WithLabels(ctx, pprof.Labels("role", "client")))
	var clientWG sync.WaitGroup
	defer func() { stopClients(); clientWG.Wait() }()
	sem := make(chan struct{}, cfg.ConnectConcurrency)
	start := time.Now()
	for i := range cfg.Clients {
		clientWG.Go(func() {
			pprof.SetGoroutineLabels(clientCtx)
			if err := b.runSidecar(clientCtx, i, certs[i], sem); err != nil {
				b.fail(fmt.Errorf("sidecar %d: %w", i, err))
			}
		})
	}
	select {
	case <-b.allReady:
	case err := <-b.errCh:
		return res, err
	case <-ctx.Done():
		return res, fmt.Errorf("connecting: %d of %d sidecars had their %d components when the run timed out (%s)", b.readyN.Load(), cfg.Clients, cfg.Components, cfg.Timeout)
	}
	res.Connect = time.Since(start)
	res.InitialBytes = int(b.initialBytes.Load())

	after := readMem()
	m := float64(cfg.Clients)
	res.HeapPerClient = float64(int64(after.heap)-int64(before.heap)) / m
	res.StackPerClient = float64(int64(after.stack)-int64(before.stack)) / m
	res.GoroutinesPerClient = float64(after.goroutines-before.goroutines) / m
	if before.roles != nil && after.roles != nil {
		res.GoroutinesByRole = map[string]float64{}
		for _, role := range []string{"server", "client", ""} {
			res.GoroutinesByRole[role] = float64(after.roles[role]-before.roles[role]) / m
		}
	}
	if before.rss > 0 && after.rss > 0 {
		res.RSSKnown = true
		res.RSSPerClient = float64(int64(after.rss)-int64(before.rss)) / m
	}

	// Idle: every sidecar connected, nothing changing.
	cpu0 := processCPU()
	if err := sleep(ctx, cfg.IdleWindow); err != nil {
		return res, err
	}
	res.IdleCPU = processCPU() - cpu0

	snaps0, _ := counter(metrics, "outrigger_xds_snapshots_total")
	stopProfile, profErr := startCPUProfile()
	roundsCPU0 := processCPU()
	for r := 1; r <= cfg.Rounds; r++ {
		rd, err := b.round(ctx, resDir, r)
		if err != nil {
			if stopProfile != nil {
				_, _ = stopProfile()
			}
			return res, err
		}
		res.Rounds = append(res.Rounds, rd)
	}
	res.RoundsCPU = processCPU() - roundsCPU0
	if stopProfile != nil {
		res.CPUShare, res.CPUShareErr = stopProfile()
	} else {
		res.CPUShareErr = profErr
	}
	snaps1, _ := counter(metrics, "outrigger_xds_snapshots_total")
	res.SnapshotsPerRound = (snaps1 - snaps0) / float64(cfg.Rounds)
	res.NACKs, _ = counter(metrics, "outrigger_xds_nacks_total")
	res.ChangeResources = int(b.changeResources.Load())
	return res, nil
}

// round changes one component's prefix and waits until every sidecar has
// ACKed the new version.
func (b *bench) round(ctx context.Context, resDir string, r int) (Round, error) {
	idx := (r - 1) % b.cfg.Components
	rd := &round{
		id:    r,
		name:  "component/" + componentName(idx),
		value: prefixValue(idx, r),
		acked: make([]time.Duration, b.cfg.Clients),
		done:  make(chan struct{}),
	}
	rd.remaining.Store(int64(b.cfg.Clients))
	cpu0 := processCPU()
	rd.start = time.Now()
	b.current.Store(rd)
	if err := writeComponent(resDir, idx, rd.value); err != nil {
		return Round{}, err
	}
	select {
	case <-rd.done:
	case err := <-b.errCh:
		return Round{}, fmt.Errorf("round %d: %w", r, err)
	case <-ctx.Done():
		return Round{}, fmt.Errorf("round %d: %d of %d sidecars still without the change of %s when the run timed out (%s)",
			r, rd.remaining.Load(), b.cfg.Clients, rd.name, b.cfg.Timeout)
	}
	if err := sleep(ctx, b.cfg.Settle); err != nil {
		return Round{}, err
	}
	acked := slices.Clone(rd.acked)
	slices.Sort(acked)
	return Round{
		Component: componentName(idx),
		First:     acked[0],
		Median:    acked[len(acked)/2],
		Last:      acked[len(acked)-1],
		CPU:       processCPU() - cpu0,
	}, nil
}

// sidecarCert is one simulated sidecar's identity and certificate.
type sidecarCert struct {
	id   mtls.Identity
	cert tls.Certificate
}

// signSidecar makes app-NNNN's key and has the CA sign its SVID, as the
// CA's SignCertificate does for a real sidecar.
func signSidecar(a *ca.Authority, i int) (sidecarCert, error) {
	id, err := mtls.NewIdentity("", mtls.DefaultNamespace, fmt.Sprintf("app-%04d", i))
	if err != nil {
		return sidecarCert{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return sidecarCert{}, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return sidecarCert{}, err
	}
	chain, err := a.Sign(csr, id)
	if err != nil {
		return sidecarCert{}, err
	}
	c := tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, x := range chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return sidecarCert{id: id, cert: c}, nil
}

// memory is a reading of the process's memory after a forced GC.
type memory struct {
	heap, stack, rss uint64
	goroutines       int
	roles            map[string]int64 // goroutines by role label; nil if unknown
}

func readMem() memory {
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	roles, _ := goroutinesByRole()
	return memory{heap: ms.HeapInuse, stack: ms.StackInuse, rss: rss(), goroutines: runtime.NumGoroutine(), roles: roles}
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// counter sums a counter family of a registry.
func counter(g prometheus.Gatherer, name string) (float64, error) {
	mfs, err := g.Gather()
	if err != nil {
		return 0, err
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum, nil
}
