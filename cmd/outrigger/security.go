package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/devmode"
	"github.com/outrigger/outrigger/mtls"
	"github.com/outrigger/outrigger/mtls/ca"
	"github.com/outrigger/outrigger/mtls/svid"
	"github.com/outrigger/outrigger/mtls/workloadapi"
	"github.com/outrigger/outrigger/proxy"
	"github.com/outrigger/outrigger/telemetry"
)

// certificateTimeout bounds how long a starting sidecar waits for its
// first certificate.
const certificateTimeout = 30 * time.Second

// mtlsEnabled says whether the sidecar joins the mesh with mutual TLS:
// when asked (--enable-mtls, daprd's flag) and whenever a control plane is
// given.
func (f *sidecarFlags) mtlsEnabled() bool { return f.enableMTLS || f.controlPlane != "" }

// caAddress is where the sidecar asks for its certificate.
func (f *sidecarFlags) caAddress() string {
	switch {
	case f.sentryAddress != "":
		return f.sentryAddress
	case f.controlPlane != "":
		return f.controlPlane
	}
	return defaultControlPlaneListen
}

// trustAnchors reads --trust-anchors-file, DAPR_TRUST_ANCHORS (PEM text, as
// daprd), or, under `outrigger run`, the development control plane's file.
func (f *sidecarFlags) trustAnchors(home string) ([]*x509.Certificate, error) {
	if f.trustAnchorsFile != "" {
		certs, err := mtls.ReadCertsPEM(f.trustAnchorsFile)
		if err != nil {
			return nil, fmt.Errorf("--trust-anchors-file: %w", err)
		}
		return certs, nil
	}
	if pemText := os.Getenv("DAPR_TRUST_ANCHORS"); pemText != "" {
		certs, err := mtls.ParseCertsPEM([]byte(pemText))
		if err != nil {
			return nil, fmt.Errorf("DAPR_TRUST_ANCHORS: %w", err)
		}
		return certs, nil
	}
	if home != "" {
		path := filepath.Join(home, devmode.ControlPlaneDataDir, ca.TrustAnchorsFile)
		if certs, err := mtls.ReadCertsPEM(path); err == nil {
			return certs, nil
		}
	}
	return nil, errors.New("mutual TLS needs the trust anchors: --trust-anchors-file (the control plane writes " + ca.TrustAnchorsFile + " in its data directory) or DAPR_TRUST_ANCHORS")
}

// joinToken reads the join token from OUTRIGGER_JOIN_TOKEN or
// --join-token-file at every request, so a rotated file is picked up.
func (f *sidecarFlags) joinToken() (string, error) {
	if f.joinTokenFile != "" {
		b, err := os.ReadFile(f.joinTokenFile)
		if err != nil {
			return "", fmt.Errorf("--join-token-file: %w", err)
		}
		return string(b), nil
	}
	return os.Getenv("OUTRIGGER_JOIN_TOKEN"), nil
}

// workloadSocket is where the SPIFFE Workload API is served to the app:
// --workload-api-socket, or $OUTRIGGER_HOME/run/<app-id>/spiffe.sock.
func (f *sidecarFlags) workloadSocket(home, appID string) string {
	if f.workloadAPISocket != "" {
		return f.workloadAPISocket
	}
	if home == "" {
		return ""
	}
	return filepath.Join(home, "run", appID, "spiffe.sock")
}

// loadConfiguration reads --config; nil without one.
func loadConfiguration(path string) (*config.Configuration, error) {
	if path == "" {
		return nil, nil
	}
	doc, err := config.Load(path)
	if err != nil {
		return nil, usageError{fmt.Errorf("--config: %w", err)}
	}
	return doc, nil
}

// startSidecarParts reads the Configuration and starts what the sidecar
// needs before it listens: its identity and mTLS, and its components.
func (f *sidecarFlags) startSidecarParts(ctx context.Context, cfg *proxy.Config, home string, logger *slog.Logger) (stop func(), err error) {
	doc, err := loadConfiguration(cfg.ConfigPath)
	if err != nil {
		return func() {}, err
	}
	stopTracing, err := startTracing(cfg, doc, logger)
	if err != nil {
		return func() {}, err
	}
	stopSecurity, err := f.secure(ctx, cfg, doc, home, logger)
	if err != nil {
		stopTracing()
		return func() {}, err
	}
	var fromXDS *xdsSource
	if f.controlPlane != "" && f.identity != nil {
		fromXDS = &xdsSource{
			address:    f.controlPlane,
			identity:   f.identity,
			components: len(cfg.ResourcesPaths) == 0,
			endpoints:  f.resolutionMode == "registry",
			balance:    f.balance,
		}

	}
	stopComponents, err := startComponents(ctx, cfg, doc, fromXDS, f.subscribed, logger)
	if err != nil {
		stopSecurity()
		stopTracing()
		return func() {}, err
	}
	return func() { stopComponents(); stopSecurity(); stopTracing() }, nil
}

// startTracing builds the tracer the Configuration's tracing section asks
// for and puts it, and its metrics, in cfg. The returned stop exports what
// is queued, waiting at most five seconds.
func startTracing(cfg *proxy.Config, doc *config.Configuration, logger *slog.Logger) (stop func(), err error) {
	var spec *telemetry.Spec
	if doc != nil {
		spec = doc.Spec.Tracing
	}
	t, err := telemetry.New(spec, telemetry.Options{
		ServiceName: cfg.AppID,
		Namespace:   cfg.Namespace,
		Logger:      logger.With("component", "tracing"),
	})
	if err != nil {
		return func() {}, usageError{fmt.Errorf("--config %s: %w", cfg.ConfigPath, err)}
	}
	cfg.Tracer = t.Tracer()
	cfg.Collectors = append(cfg.Collectors, t.Collectors()...)
	if cfg.Tracer != nil {
		rate, _ := spec.Rate()
		logger.Info("tracing on", "sampling_rate", rate, "stdout", spec.Stdout, "otel", spec.Otel != nil)
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := t.Shutdown(ctx); err != nil {
			logger.Warn("tracing: spans not exported at shutdown", "err", err)
		}
	}, nil
}

// secure applies the Configuration (--config), the API tokens and, with
// mTLS on, gets the sidecar's certificate and starts the SPIFFE Workload
// API. The returned stop ends what it started.
func (f *sidecarFlags) secure(ctx context.Context, cfg *proxy.Config, doc *config.Configuration, home string, logger *slog.Logger) (stop func(), err error) {
	stop = func() {}
	if cfg.AccessControl, err = doc.AccessControl(); err != nil {
		return stop, usageError{fmt.Errorf("--config %s: %w", cfg.ConfigPath, err)}
	}
	cfg.APIToken = os.Getenv("DAPR_API_TOKEN")
	cfg.AppAPIToken = os.Getenv("APP_API_TOKEN")
	if !f.mtlsEnabled() {
		if cfg.AccessControl != nil {
			logger.Warn("access control without mTLS: callers are not identified, so only default actions apply")
		}
		return stop, nil
	}

	id, err := mtls.NewIdentity(f.trustDomain, cfg.Namespace, cfg.AppID)
	if err != nil {
		return stop, usageError{fmt.Errorf("identity: %w", err)}
	}
	anchors, err := f.trustAnchors(home)
	if err != nil {
		return stop, usageError{err}
	}
	mtlsMetrics := svid.NewMetrics(cfg.AppID)
	cfg.Collectors = append(cfg.Collectors, mtlsMetrics)
	m, err := svid.New(svid.Options{
		Identity:     id,
		CAAddress:    f.caAddress(),
		TrustAnchors: anchors,
		Token:        f.joinToken,
		Logger:       logger.With("component", "mtls"),
		Metrics:      mtlsMetrics,
	})
	if err != nil {
		return stop, err
	}
	startCtx, startCancel := context.WithTimeout(ctx, certificateTimeout)
	defer startCancel()
	if err := m.Start(startCtx); err != nil {
		return stop, err
	}
	// Renewal and the Workload API run until stop, past ctx: the sidecar
	// outlives its start-up context.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	renewDone := make(chan struct{})
	go func() { m.Run(runCtx); close(renewDone) }()
	cfg.MeshTLS = m
	f.identity = m
	logger.Info("mutual TLS on", "id", id.String(), "ca", f.caAddress())

	done := make(chan struct{})
	if path := f.workloadSocket(home, cfg.AppID); path != "" {
		wl := workloadapi.New(m, logger.With("component", "workload-api"))
		go func() {
			defer close(done)
			if err := wl.Serve(runCtx, path); err != nil {
				logger.Warn("SPIFFE Workload API not served", "socket", path, "err", err)
			}
		}()
	} else {
		close(done)
	}
	return func() { cancel(); <-done; <-renewDone }, nil
}
