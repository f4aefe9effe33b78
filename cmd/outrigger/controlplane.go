package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/outrigger/outrigger/devmode"
	"github.com/outrigger/outrigger/xds/registry"
)

// defaultControlPlaneListen is the control plane's address unless told otherwise.
const defaultControlPlaneListen = "127.0.0.1:50010"

// controlPlaneCommand runs `outrigger control-plane`: for now the registry
// of sidecars; later also the xDS server and the certificate authority, all
// on one address (HTTP/JSON and gRPC share the port).
func controlPlaneCommand(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("outrigger control-plane", flag.ContinueOnError)
	dev := fs.Bool("dev", false, "run as the development control process that `outrigger run` shares: record the address in $OUTRIGGER_HOME/"+devmode.ControlPlaneFile)
	listen := fs.String("listen", defaultControlPlaneListen, "address to listen on (with --dev and this default taken, a free port)")
	dataDir := fs.String("data-dir", "", "folder of the control plane's state (default with --dev: $OUTRIGGER_HOME/control-plane)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	logAsJSON := fs.Bool("log-as-json", false, "write logs as JSON")
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

	var home string
	if *dev {
		if home, err = devmode.DefaultHome(); err != nil {
			return err
		}
		if rec, ok := devmode.ControlPlaneAnswers(ctx, home); ok {
			return fmt.Errorf("a development control process already runs at %s (pid %d); `outrigger stop` stops it", rec.Address, rec.PID)
		}
		if *dataDir == "" {
			*dataDir = filepath.Join(home, "control-plane")
		}
	}
	if *dataDir != "" {
		if err := os.MkdirAll(*dataDir, 0o700); err != nil {
			return fmt.Errorf("--data-dir: %w", err)
		}
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

	reg := registry.New(registry.Options{Logger: logger})
	mux := http.NewServeMux()
	mux.Handle(registry.PathPrefix, reg.Handler())
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true) // gRPC services will share the port
	srv := &http.Server{
		Handler:           mux,
		Protocols:         &protocols,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	regCtx, stopRegistry := context.WithCancel(context.Background())
	regDone := make(chan struct{})
	go func() { _ = reg.Run(regCtx); close(regDone) }()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	if *dev {
		rec := devmode.ControlPlaneRecord{Address: addr, PID: os.Getpid(), Started: time.Now().UTC(), Version: version}
		if err := devmode.WriteControlPlaneRecord(home, rec); err != nil {
			stopRegistry()
			_ = srv.Close()
			return err
		}
		defer func() { _ = devmode.RemoveControlPlaneRecord(home, rec.PID) }()
	}
	logger.Info("control plane is up", "address", addr, "dev", *dev, "pid", os.Getpid(), "data_dir", *dataDir)

	select {
	case <-ctx.Done():
		err = nil
	case err = <-serveErr:
		err = fmt.Errorf("serving: %w", err)
	}
	logger.Info("control plane stopping")
	stopRegistry() // answers every long-poll, so Shutdown need not wait for them
	<-regDone
	shCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shCtx)
	return err
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
