package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"

	"github.com/outrigger/outrigger/devmode"
	"github.com/outrigger/outrigger/mtls"
	mtlsca "github.com/outrigger/outrigger/mtls/ca"
	"github.com/outrigger/outrigger/xds/controlplane"
	"github.com/outrigger/outrigger/xds/registry"
	xdsserver "github.com/outrigger/outrigger/xds/server"
)

// defaultControlPlaneListen is the control plane's address unless told otherwise.
const defaultControlPlaneListen = "127.0.0.1:50010"

// controlPlaneCommand runs `outrigger control-plane`: the certificate
// authority (Dapr Sentry's API) and the registry of sidecars on one
// address; `outrigger control-plane token` mints a join token.
func controlPlaneCommand(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "token" {
		return tokenCommand(args[1:])
	}
	fs := flag.NewFlagSet("outrigger control-plane", flag.ContinueOnError)
	dev := fs.Bool("dev", false, "run as the development control process that outrigger run shares: record the address in $OUTRIGGER_HOME/"+devmode.ControlPlaneFile+" and sign certificates for loopback callers without a join token")
	listen := fs.String("listen", defaultControlPlaneListen, "address to listen on (with --dev and this default taken, a free port)")
	ca := newCAFlags(fs)
	var resourcesPaths stringsFlag
	fs.Var(&resourcesPaths, "resources-path", "folder of Dapr resource documents (Component, Configuration, Resiliency, Subscription) served to sidecars over xDS (repeatable)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	logAsJSON := fs.Bool("log-as-json", false, "write logs as JSON")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: outrigger control-plane [flags]\n       outrigger control-plane token --app-id ID [--namespace NS] [--ttl 24h] [--data-dir DIR]\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	listenSet := false
	fs.Visit(func(f *flag.Flag) { listenSet = listenSet || f.Name == "listen" })
	logger, err := newLogger(os.Stderr, *logLevel, *logAsJSON, "")
	if err != nil {
		return usageError{err}
	}

	home, err := devmode.DefaultHome()
	if err != nil {
		return err
	}
	if *dev {
		if rec, ok := devmode.ControlPlaneAnswers(ctx, home); ok {
			return fmt.Errorf("a development control process already runs at %s (pid %d); `outrigger stop` stops it", rec.Address, rec.PID)
		}
	}
	authority, err := ca.authority(home, logger)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil && *dev && !listenSet && errors.Is(err, syscall.EADDRINUSE) {
		logger.Warn("default control-plane address taken; listening on a free port", "address", *listen)
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		return fmt.Errorf("--listen %s: %w", *listen, err)
	}
	addr := dialAddress(ln.Addr())

	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	grpcServer := grpc.NewServer()
	mtlsca.NewServer(authority, mtlsca.ServerOptions{Dev: *dev, Registerer: metrics, Logger: logger.With("component", "ca")}).Register(grpcServer)

	reg := registry.New(registry.Options{Logger: logger})
	xds := xdsserver.New(xdsserver.Options{
		ResourcesPaths: resourcesPaths,
		Registry:       reg,
		Balance:        ca.balance,
		Catalog:        ca.catalogRun(),
		TrustAnchors:   func() []byte { return mtls.CertsPEM(authority.Bundle().X509Authorities()) },
		Verify: func(cs tls.ConnectionState) (mtls.Identity, error) {
			return mtls.VerifyPeer(cs, authority, nil)
		},
		Registerer: metrics,
		Logger:     logger.With("component", "xds"),
	})
	xds.Register(grpcServer)
	mux := http.NewServeMux()
	mux.Handle(registry.PathPrefix, reg.Handler())
	mux.Handle("/metrics", promhttp.HandlerFor(metrics, promhttp.HandlerOpts{}))
	mux.Handle(xdsserver.StatusPath, xds.StatusHandler())

	runCtx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	wg.Go(func() { _ = reg.Run(runCtx) })
	wg.Go(func() { authority.Maintain(runCtx, 10*time.Second) })
	wg.Go(func() {
		if err := xds.Run(runCtx); err != nil {
			logger.Error("xDS server", "err", err)
		}
	})
	serveCtx, stopServing := context.WithCancel(context.Background())
	serveErr := make(chan error, 1)
	go func() {
		serveErr <- controlplane.Serve(serveCtx, ln, controlplane.Options{
			TLSConfig: authority.ServerTLSConfig(ca.namespace, servingHosts(ln.Addr())...),
			GRPC:      grpcServer,
			HTTP:      mux,
			// The registry still answers plain HTTP for sidecars without
			// mTLS; ADS over mutual TLS replaces it.
			PlainHTTP: true,
			Logger:    logger,
		})
	}()

	natsURL := ""
	if *dev {
		// The embedded broker of outrigger run's default pub/sub.
		url, stopNATS, err := devmode.StartNATS(home)
		if err != nil {
			logger.Warn("the embedded NATS broker did not start; the default pub/sub will not work", "err", err)
		} else {
			natsURL = url
			defer stopNATS()
			logger.Info("embedded NATS broker with JetStream is up", "url", url, "store", filepath.Join(home, devmode.NATSDir))
		}
	}
	if *dev {
		rec := devmode.ControlPlaneRecord{Address: addr, PID: os.Getpid(), Started: time.Now().UTC(), Version: version, NATSURL: natsURL}
		if err := devmode.WriteControlPlaneRecord(home, rec); err != nil {
			stopServing()
			<-serveErr
			return err
		}
		defer func() { _ = devmode.RemoveControlPlaneRecord(home, rec.PID) }()
	}
	logger.Info("control plane is up", "address", addr, "dev", *dev, "pid", os.Getpid(), "data_dir", ca.dataDir,
		"trust_domain", authority.TrustDomain().Name(), "trust_anchors", filepath.Join(ca.dataDir, mtlsca.TrustAnchorsFile))

	select {
	case <-ctx.Done():
		err = nil
	case err = <-serveErr:
		err = fmt.Errorf("serving: %w", err)
	}
	logger.Info("control plane stopping")
	stop() // answers every long-poll, so the shutdown need not wait for them
	stopServing()
	if err == nil {
		<-serveErr
	}
	grpcServer.Stop()
	wg.Wait()
	return err
}

// servingHosts are the names the control plane's certificate carries
// beside its SPIFFE ID, for clients that check host names (grpc-go's xDS
// "tls" channel credentials): its listen address (loopback when it listens
// on every interface) and localhost.
func servingHosts(a net.Addr) []string {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if tcp, ok := a.(*net.TCPAddr); ok && tcp.IP != nil && !tcp.IP.IsUnspecified() && !tcp.IP.IsLoopback() {
		hosts = append(hosts, tcp.IP.String())
	}
	return hosts
}

// dialAddress turns a listener's address into one a local client can dial:
// an unspecified host (all interfaces) becomes loopback.
func dialAddress(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	host := tcp.IP.String()
	if tcp.IP == nil || tcp.IP.IsUnspecified() {
		host = "127.0.0.1"
		if tcp.IP != nil && tcp.IP.To4() == nil {
			host = "::1"
		}
	}
	return net.JoinHostPort(host, strconv.Itoa(tcp.Port))
}
