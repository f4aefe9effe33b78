package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/nameresolution/balance"
	"github.com/outrigger/outrigger/nameresolution/consul"
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
	case "consul":
		m, unknown, err := consul.ParseMetadata(backendConfig)
		if err != nil {
			return nil, nil, usageError{fmt.Errorf("--config %s: nameResolution.configuration: %w", cfg.ConfigPath, err)}
		}
		warnUnknown(unknown)
		w, err := consul.NewWatcher(m, consul.WithLogger(log))
		if err != nil {
			return nil, nil, usageError{fmt.Errorf("consul name resolution: %w", err)}
		}
		host, local := consulHost(m.Client.Address)
		opts := []consul.Option{consul.WithLogger(log)}
		if local && isLoopback(cfg.ListenAddress) {
			// An agent on this host checks the sidecar's health endpoint;
			// one elsewhere cannot reach the loopback API, and the
			// announcer keeps a TTL check passing instead.
			opts = append(opts, consul.WithHealthURL(fmt.Sprintf("http://127.0.0.1:%d/v1.0/healthz", cfg.HTTPPort)))
		}
		a, err := consul.NewAnnouncer(m, opts...)
		if err != nil {
			return nil, nil, usageError{fmt.Errorf("consul name resolution: %w", err)}
		}
		// A sidecar without an app (a pure client) registers nothing: no
		// call should ever be sent to it.
		return balanced(w, nil), announcer{a: a, host: host, withoutPort: cfg.AppPort == 0}, nil
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
		return balanced(r, r), announcer{a: registry.NewAnnouncer(f.controlPlane, opts...), host: "127.0.0.1"}, nil
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
		return balanced(r, r), announcer{a: mdns.NewAnnouncer(opts...)}, nil
	}
	return nil, nil, usageError{fmt.Errorf("name resolution %q: want mdns, consul, kubernetes, static or registry", mode)}
}

// consulHost is the address this sidecar registers with the agent at
// agentAddr (host:port; empty: the consul default on loopback): DAPR_HOST_IP
// when set, as daprd reads it; else the local address this host reaches the
// agent from, which is how other hosts reach it (no packet is sent to find
// it). local reports an agent on loopback.
func consulHost(agentAddr string) (host string, local bool) {
	if agentAddr == "" {
		agentAddr = "127.0.0.1:8500"
	}
	agentAddr = strings.TrimPrefix(strings.TrimPrefix(agentAddr, "http://"), "https://")
	h, _, err := net.SplitHostPort(agentAddr)
	if err != nil {
		h = agentAddr
	}
	local = h == "localhost" || isLoopback(h)
	if v := os.Getenv("DAPR_HOST_IP"); v != "" {
		return v, local
	}
	if local {
		return "127.0.0.1", true
	}
	c, err := net.Dial("udp", net.JoinHostPort(h, "9"))
	if err != nil {
		return "", false // the agent fills in its node address
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).IP.String(), false
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
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
	// withoutPort announces no port (the backend then registers nothing).
	withoutPort bool
}

func (a announcer) Announce(ctx context.Context, appID, namespace string, meshPort int) error {
	if a.withoutPort {
		meshPort = 0
	}
	return a.a.Announce(ctx, nameresolution.Instance{AppID: appID, Namespace: namespace, Host: a.host, Port: meshPort})
}
