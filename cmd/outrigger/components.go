package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/outrigger/outrigger/building-blocks/secrets"
	"github.com/outrigger/outrigger/building-blocks/secrets/localenv"
	"github.com/outrigger/outrigger/building-blocks/secrets/localfile"
	"github.com/outrigger/outrigger/components"
	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/mtls/svid"
	"github.com/outrigger/outrigger/proxy"
	xdsclient "github.com/outrigger/outrigger/xds/client"
)

// componentTypes is every component type this binary is built with.
func componentTypes() (*components.Registry, error) {
	r := components.NewRegistry()
	for _, t := range []components.Type{
		{Name: localenv.Type, New: func(_ context.Context, meta map[string]string) (io.Closer, []string, error) {
			s, unknown, err := localenv.New(meta)
			if err != nil {
				return nil, nil, err
			}
			return s, unknown, nil
		}},
		{Name: localfile.Type, New: func(_ context.Context, meta map[string]string) (io.Closer, []string, error) {
			s, unknown, err := localfile.New(meta)
			if err != nil {
				return nil, nil, err
			}
			return s, unknown, nil
		}},
	} {
		if err := r.Register(t); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// secretValue reads one key of a secret from a live secret store, for
// secretKeyRef.
func secretValue(ctx context.Context, store io.Closer, name, key string) (string, error) {
	s, ok := store.(secrets.Store)
	if !ok {
		return "", fmt.Errorf("component is not a secret store")
	}
	values, err := s.GetSecret(ctx, name, nil)
	if err != nil {
		return "", err
	}
	v, ok := values[key]
	if !ok {
		return "", fmt.Errorf("secret %q has no key %q", name, key)
	}
	return v, nil
}

// xdsSource is the control plane as the source of the sidecar's
// resources: used when the sidecar has a control plane and no
// --resources-path of its own (a folder given with a control plane, as under
// `outrigger run --resources-path`, stays the source).
type xdsSource struct {
	address  string
	identity *svid.Manager
}

// start runs the xDS client, waits for the first configuration (applied
// with start-up rules: a broken component fails the start unless
// spec.ignoreErrors) and keeps applying changes.
func (x *xdsSource) start(ctx context.Context, set *components.Set, logger *slog.Logger) (func(), error) {
	log := logger.With("component", "xds")
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	ready := make(chan struct{})
	firstErr := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = xdsclient.Run(runCtx, xdsclient.Options{
			Address: x.address,
			Node:    x.identity.Identity().String(),
			TLS:     x.identity.ControlPlaneTLS,
			Apply: func(res *config.Resources) error {
				return set.Apply(runCtx, res.Components)
			},
			Applied: func(version string, err error) {
				select {
				case firstErr <- err:
				default:
				}
				if err == nil {
					log.Debug("configuration applied", "version", version)
				}
			},
			Logger: log,
		}, ready)
	}()
	stop := func() { cancel(); <-done; _ = set.Close() }
	select {
	case <-ready:
		if err := <-firstErr; err != nil {
			stop()
			return func() {}, fmt.Errorf("components from the control plane: %w", err)
		}
		return stop, nil
	case <-time.After(certificateTimeout):
		stop()
		return func() {}, fmt.Errorf("no configuration from the control plane at %s within %s", x.address, certificateTimeout)
	case <-ctx.Done():
		stop()
		return func() {}, ctx.Err()
	}
}

// startComponents loads the components of --resources-path, watches the
// folders so an edit is live within a second, and mounts the building
// blocks' APIs on cfg. A component that fails at start fails the sidecar
// unless it sets spec.ignoreErrors, as in daprd.
func startComponents(ctx context.Context, cfg *proxy.Config, doc *config.Configuration, xds *xdsSource, logger *slog.Logger) (stop func(), err error) {
	stop = func() {}
	reg, err := componentTypes()
	if err != nil {
		return stop, err
	}
	log := logger.With("component", "components")
	set := components.NewSet(components.Options{
		AppID: cfg.AppID, Namespace: cfg.Namespace, Registry: reg, Secret: secretValue, Logger: log,
	})
	policy, err := doc.SecretsPolicy()
	if err != nil {
		return stop, usageError{fmt.Errorf("--config %s: %w", cfg.ConfigPath, err)}
	}
	cfg.Secrets = &secrets.API{
		Lookup: func(name string) (secrets.Store, bool) {
			c, ok := set.Get(name)
			if !ok || c.Type.Block() != "secretstores" {
				return nil, false
			}
			s, ok := c.Instance.(secrets.Store)
			return s, ok
		},
		Configured: func() bool { return len(set.List("secretstores")) > 0 },
		Policy:     policy,
		Logger:     logger,
	}
	if xds != nil {
		return xds.start(ctx, set, logger)
	}
	if len(cfg.ResourcesPaths) == 0 {
		return stop, nil
	}
	watcher, res, loadErr := config.NewResourceWatcher(cfg.ResourcesPaths)
	if watcher == nil {
		return stop, usageError{fmt.Errorf("--resources-path: %w", loadErr)}
	}
	if loadErr != nil {
		// daprd refuses to start on a component file it cannot read.
		return stop, usageError{fmt.Errorf("--resources-path: %w", loadErr)}
	}
	if err := set.Apply(ctx, res.Components); err != nil {
		return stop, fmt.Errorf("components: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = watcher.Run(runCtx, func(res *config.Resources, err error) {
			if err != nil {
				log.Error("resources: keeping the last good version of what failed", "err", err)
			}
			if res == nil {
				return
			}
			if err := set.Apply(runCtx, res.Components); err != nil {
				log.Error("components: keeping the last good version of what failed", "err", err)
			}
		})
	}()
	return func() { cancel(); <-done; _ = set.Close() }, nil
}
