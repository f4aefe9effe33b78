package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/outrigger/outrigger/proxy"
	"github.com/outrigger/outrigger/proxy/iptables"
)

const transparentInitUsage = `Usage:
  outrigger transparent-init --app-port N [flags]
  outrigger transparent-init --remove [--netns NAME]

Installs the iptables rules of transparent interception in a network
namespace (the current one, as a Kubernetes init container would, or
--netns NAME): the app's outbound TCP goes to the sidecar's transparent
listener (outrigger sidecar --enable-transparent). Run it as root, or with
CAP_NET_ADMIN; without either, use the explicit proxy
(--enable-explicit-proxy). See docs/interception.md.

Flags:
`

// transparentInitCommand installs (or removes) the interception rules.
func transparentInitCommand(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("outrigger transparent-init", flag.ContinueOnError)
	var (
		o       = iptables.Options{ProxyUID: -1, ProxyGID: -1}
		ports   string
		netns   string
		remove  bool
		lockOff bool
	)
	fs.IntVar(&o.TransparentPort, "transparent-port", proxy.DefaultTransparentPort, "the sidecar's --transparent-port")
	fs.StringVar(&ports, "app-port", "", "the app's ports, comma-separated: never redirected, and locked to loopback (the sidecar) unless --no-inbound-lock")
	fs.IntVar(&o.ProxyUID, "proxy-uid", -1, "the sidecar's user id: its own traffic is not redirected (when it shares the app's namespace)")
	fs.IntVar(&o.ProxyGID, "proxy-gid", -1, "the sidecar's group id, likewise")
	fs.BoolVar(&o.RedirectLoopback, "redirect-loopback", false, "redirect connections to 127.0.0.1 too (the sidecar runs outside the namespace: outrigger sidecar --app-netns)")
	fs.BoolVar(&lockOff, "no-inbound-lock", false, "let the app's ports take connections from outside the namespace")
	fs.StringVar(&netns, "netns", "", "named network namespace (ip netns) to install the rules in; default: the current one")
	fs.BoolVar(&remove, "remove", false, "remove Outrigger's rules instead")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), transparentInitUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	if remove {
		iptables.Remove(ctx, netns)
		fmt.Println("interception rules removed")
		return nil
	}
	for p := range strings.SplitSeq(ports, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 || n > 65535 {
			return usageError{fmt.Errorf("--app-port %q: want ports from 1 to 65535", p)}
		}
		o.AppPorts = append(o.AppPorts, n)
	}
	if o.ProxyUID < 0 && o.ProxyGID < 0 && !o.RedirectLoopback {
		fmt.Fprintln(os.Stderr, "outrigger transparent-init: neither --proxy-uid nor --proxy-gid: the sidecar's own connections are told apart only by their mark, which only pass-through connections carry; run the sidecar under its own user and name it, or run it outside the namespace (--app-netns, --redirect-loopback)")
	}
	o.LockInbound = !lockOff
	if err := iptables.Apply(ctx, netns, o); err != nil {
		if errors.Is(err, iptables.ErrNoIptables) {
			return err
		}
		return fmt.Errorf("installing the interception rules: %w", err)
	}
	fmt.Printf("interception rules installed: outbound TCP to 127.0.0.1:%d\n", o.TransparentPort)
	return nil
}
