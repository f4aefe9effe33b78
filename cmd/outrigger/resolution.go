package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"github.com/outrigger/outrigger/nameresolution"
	"github.com/outrigger/outrigger/nameresolution/mdns"
	"github.com/outrigger/outrigger/nameresolution/registry"
	"github.com/outrigger/outrigger/nameresolution/static"
	"github.com/outrigger/outrigger/proxy"
)

// nameResolver builds the resolver the flags ask for, and the announcer
// that makes this sidecar findable by the same kind of resolver:
//   - registry (the default with --control-plane-address): the control
//     plane's registry of running sidecars, no multicast at all;
//   - static: a YAML file of app addresses; nothing to announce;
//   - mdns (daprd's default for a bare sidecar): multicast DNS on the LAN.
func (f *sidecarFlags) nameResolver(logger *slog.Logger) (nameresolution.Resolver, proxy.Announcer, error) {
	mode := f.nameResolution
	if mode == "" {
		mode = "mdns"
		if f.controlPlane != "" {
			mode = "registry"
		}
	}
	log := logger.With("name_resolution", mode)
	switch mode {
	case "static":
		r, err := static.New(f.staticFile, static.WithLogger(log))
		if err != nil {
			return nil, nil, usageError{fmt.Errorf("--static-resolution-file: %w", err)}
		}
		return r, nil, nil
	case "registry":
		opts := []registry.Option{registry.WithLogger(log)}
		return registry.NewResolver(f.controlPlane, opts...), announcer{registry.NewAnnouncer(f.controlPlane, opts...), "127.0.0.1"}, nil
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
	return nil, nil, usageError{fmt.Errorf("--name-resolution %q: want mdns, static or registry", f.nameResolution)}
}

// announcer adapts a nameresolution.Announcer to the sidecar's.
type announcer struct {
	a    nameresolution.Announcer
	host string
}

func (a announcer) Announce(ctx context.Context, appID, namespace string, meshPort int) error {
	return a.a.Announce(ctx, nameresolution.Instance{AppID: appID, Namespace: namespace, Host: a.host, Port: meshPort})
}
