package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/outrigger/outrigger/building-blocks/secrets"
	"github.com/outrigger/outrigger/building-blocks/secrets/localenv"
	"github.com/outrigger/outrigger/building-blocks/secrets/localfile"
	"github.com/outrigger/outrigger/components"
	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/proxy"
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

// startComponents loads the components of --resources-path, watches the
// folders so an edit is live within a second, and mounts the building
// blocks' APIs on cfg. A component that fails at start fails the sidecar
// unless it sets spec.ignoreErrors, as in daprd.
func startComponents(ctx context.Context, cfg *proxy.Config, doc *config.Configuration, logger *slog.Logger) (stop func(), err error) {
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
