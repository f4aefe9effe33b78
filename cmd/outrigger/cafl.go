package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/devmode"
	"github.com/outrigger/outrigger/mtls"
	mtlsca "github.com/outrigger/outrigger/mtls/ca"
	"github.com/outrigger/outrigger/nameresolution"
	"github.com/outrigger/outrigger/nameresolution/balance"
	"github.com/outrigger/outrigger/nameresolution/consul"
)

// caFlags are the certificate authority's flags, shared by
// `outrigger control-plane` and `outrigger control-plane token`.
type caFlags struct {
	dataDir    string
	configPath string
	// balance is the load balancing and outlier detection of the
	// Configuration's nameResolution, served on every app's cluster (and
	// ring hash's header as the hash_policy of every app's route).
	balance balance.AppOptions
	// catalog follows the Consul catalog when the Configuration's
	// nameResolution is consul: the control plane serves its sidecars as
	// EDS too.
	catalog          *consul.Catalog
	trustDomain      string
	namespace        string
	issuerCert       string
	issuerKey        string
	trustAnchorsFile string
}

func newCAFlags(fs *flag.FlagSet) *caFlags {
	f := &caFlags{}
	fs.StringVar(&f.dataDir, "data-dir", "", "folder of the control plane's state: its CA keys and "+mtlsca.TrustAnchorsFile+" (default $OUTRIGGER_HOME/"+devmode.ControlPlaneDataDir+")")
	fs.StringVar(&f.configPath, "config", "", "Dapr Configuration file; its mtls section sets workloadCertTTL and allowedClockSkew")
	fs.StringVar(&f.trustDomain, "trust-domain", mtls.DefaultTrustDomain, "SPIFFE trust domain of the certificates signed")
	fs.StringVar(&f.namespace, "namespace", envOr("NAMESPACE", mtls.DefaultNamespace), "the control plane's own namespace (its identity is spiffe://<trust-domain>/ns/<namespace>/"+mtls.ControlPlaneName+")")
	fs.StringVar(&f.issuerCert, "issuer-cert", "", "PEM issuer certificate (chain) to sign with, instead of a generated one")
	fs.StringVar(&f.issuerKey, "issuer-key", "", "PEM private key of --issuer-cert")
	fs.StringVar(&f.trustAnchorsFile, "trust-anchors", "", "PEM roots that --issuer-cert chains to")
	return f
}

// authority opens the certificate authority the flags describe.
func (f *caFlags) authority(home string, logger *slog.Logger) (*mtlsca.Authority, error) {
	if f.dataDir == "" {
		if home == "" {
			return nil, usageError{errors.New("--data-dir is required when there is no Outrigger home")}
		}
		f.dataDir = filepath.Join(home, devmode.ControlPlaneDataDir)
	}
	var ttl, skew time.Duration
	if f.configPath != "" {
		doc, err := config.Load(f.configPath)
		if err != nil {
			return nil, usageError{fmt.Errorf("--config: %w", err)}
		}
		if ttl, skew, err = doc.Spec.MTLS.Durations(); err != nil {
			return nil, usageError{fmt.Errorf("--config %s: %w", f.configPath, err)}
		}
		if nr := doc.Spec.NameResolution; nr != nil {
			settings, backend, err := balance.ParseSettings(nr.Configuration)
			if err != nil {
				return nil, usageError{fmt.Errorf("--config %s: %w", f.configPath, err)}
			}
			f.balance = balance.AppOptions{Policy: settings.Options.Policy, Outlier: settings.Options.Outlier, HashHeader: settings.HashHeader}
			if nr.Component == "consul" {
				m, unknown, err := consul.ParseMetadata(backend)
				if err != nil {
					return nil, usageError{fmt.Errorf("--config %s: nameResolution.configuration: %w", f.configPath, err)}
				}
				for _, k := range unknown {
					logger.Warn("nameResolution.configuration key not used by the consul catalog", "key", k)
				}
				if f.catalog, err = consul.NewCatalog(m, consul.WithLogger(logger.With("component", "consul-catalog"))); err != nil {
					return nil, usageError{fmt.Errorf("--config %s: %w", f.configPath, err)}
				}
			}
		}
	}
	if err := os.MkdirAll(f.dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("--data-dir: %w", err)
	}
	a, err := mtlsca.New(mtlsca.Options{
		DataDir:          f.dataDir,
		TrustDomain:      f.trustDomain,
		WorkloadCertTTL:  ttl,
		AllowedClockSkew: skew,
		IssuerCertFile:   f.issuerCert,
		IssuerKeyFile:    f.issuerKey,
		TrustAnchorsFile: f.trustAnchorsFile,
		Logger:           logger.With("component", "ca"),
	})
	if err != nil {
		return nil, usageError{err}
	}
	return a, nil
}

// tokenCommand runs `outrigger control-plane token`: it mints a join token
// offline, with the authority's key from the data directory (or the
// issuer key), and prints it.
func tokenCommand(args []string) error {
	fs := flag.NewFlagSet("outrigger control-plane token", flag.ContinueOnError)
	appID := fs.String("app-id", "", "the app the token proves (required)")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the token is valid")
	ca := newCAFlags(fs)
	fs.Lookup("namespace").Usage = "namespace of the app the token proves"
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	if *appID == "" {
		return usageError{errors.New("--app-id is required")}
	}
	home, _ := devmode.DefaultHome()
	logger, _ := newLogger(os.Stderr, "warn", false, "")
	a, err := ca.authority(home, logger)
	if err != nil {
		return err
	}
	tok, err := a.MintToken(*appID, ca.namespace, *ttl)
	if err != nil {
		return usageError{err}
	}
	fmt.Println(tok)
	return nil
}

// catalogRun is the Consul catalog as the xDS server's second source of
// endpoints; nil without one.
func (f *caFlags) catalogRun() func(context.Context, func([]nameresolution.Instance)) error {
	if f.catalog == nil {
		return nil
	}
	return f.catalog.Run
}
