package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/nameresolution/balance"
	"github.com/outrigger/outrigger/nameresolution/kubernetes"

	"github.com/outrigger/outrigger/nameresolution"
	"github.com/outrigger/outrigger/nameresolution/mdns"
	"github.com/outrigger/outrigger/nameresolution/registry"
	"github.com/outrigger/outrigger/nameresolution/static"
	"github.com/outrigger/outrigger/proxy"
)

// nameResolver builds the resolver the flags or the Configuration ask for,
// and the announcer that makes this sidecar findable by the same kind of
// resolver:
//   - registry (the default with --control-plane-address): the control
//     plane's registry of running sidecars, no multicast at all;
//   - static: a YAML file of app addresses; nothing to announce;
//   - mdns (daprd's default for a bare sidecar): multicast DNS on the LAN.
//
// --name-resolution wins over the Configuration's nameResolution.component.
// A backend that follows every instance of an app (static, and those of
// the Configuration) is wrapped in a balancer with the Configuration's
// loadBalancing and outlierDetection; cfg.HashHeader is set from it.
func (f *sidecarFlags) nameResolver(cfg *proxy.Config, logger *slog.Logger) (nameresolution.Resolver, proxy.Announcer, error) {
	doc, err := loadConfiguration(cfg.ConfigPath)
	if err != nil {
		return nil, nil, err
	}
	var section config.NameResolution
	if doc != nil && doc.Spec.NameResolution != nil {
		section = *doc.Spec.NameResolution
	}
	settings, backendConfig, err := balance.ParseSettings(section.Configuration)
	if err != nil {
		return nil, nil, usageError{fmt.Errorf("--config %s: %w", cfg.ConfigPath, err)}
	}
	mode := f.nameResolution
	if mode == "" {
		mode = section.Component
	}
	if mode == "" {
		mode = "mdns"
		if f.controlPlane != "" {
			mode = "registry"
		}
	}
	log := logger.With("name_resolution", mode)
	settings.Options.Logger = log
	f.resolutionMode, f.balance = mode, settings.Options
	balanced := func(w nameresolution.Watcher, closer io.Closer) nameresolution.Resolver {
		cfg.HashHeader = settings.HashHeader
		return balancedResolver{balance.New(w, settings.Options), closer}
	}
	warnUnknown := func(unknown []string) {
		for _, k := range unknown {
			log.Warn("nameResolution.configuration key not used by this resolver", "key", k)
		}
	}
	switch mode {
	case "kubernetes":
		m, unknown, err := kubernetes.ParseMetadata(backendConfig)
		if err != nil {
			return nil, nil, usageError{fmt.Errorf("--config %s: nameResolution.configuration: %w", cfg.ConfigPath, err)}
		}
		warnUnknown(unknown)
		w, err := kubernetes.New(m, kubernetes.WithLogger(log))
		if err != nil {
			return nil, nil, usageError{fmt.Errorf("kubernetes name resolution: %w", err)}
		}
		// Kubernetes itself lists the app's pods under its -dapr service:
		// nothing to announce.
		return balanced(w, nil), nil, nil
	case "static":
		r, err := static.New(f.staticFile, static.WithLogger(log))
		if err != nil {
			return nil, nil, usageError{fmt.Errorf("--static-resolution-file: %w", err)}
		}
		return balanced(r, r), nil, nil
	case "registry":
		opts := []registry.Option{registry.WithLogger(log)}
		r := registry.NewResolver(f.controlPlane, opts...)
		return balanced(r, r), announcer{registry.NewAnnouncer(f.controlPlane, opts...), "127.0.0.1"}, nil
	case "mdns":
		opts := []mdns.Option{mdns.WithLogger(log)}
		if f.mdnsInterface != "" {
			iface, err := net.InterfaceByName(f.mdnsInterface)
			if err != nil {
				return nil, nil, usageError{fmt.Errorf("--mdns-interface %q: %w", f.mdnsInterface, err)}
			}
			opts = append(opts, mdns.WithInterface(iface))
		}
		r, err := mdns.NewResolver(opts...)
		if err != nil {
			return nil, nil, fmt.Errorf("mdns name resolution: %w", err)
		}
		return r, announcer{mdns.NewAnnouncer(opts...), ""}, nil
	}
	return nil, nil, usageError{fmt.Errorf("name resolution %q: want mdns, kubernetes, static or registry", mode)}
}

// balancedResolver is a balancer over a backend that must be closed too.
type balancedResolver struct {
	*balance.Balancer
	backend io.Closer
}

func (b balancedResolver) Close() error {
	err := b.Balancer.Close()
	if b.backend != nil {
		err = errors.Join(err, b.backend.Close())
	}
	return err
}

// announcer adapts a nameresolution.Announcer to the sidecar's.
type announcer struct {
	a    nameresolution.Announcer
	host string
}

func (a announcer) Announce(ctx context.Context, appID, namespace string, meshPort int) error {
	return a.a.Announce(ctx, nameresolution.Instance{AppID: appID, Namespace: namespace, Host: a.host, Port: meshPort})
}
