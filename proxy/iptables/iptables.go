// Package iptables installs and removes the rules of transparent
// interception in a network namespace: the app's outbound TCP is
// redirected to the sidecar's transparent listener, and (in a pod that
// shares its namespace with the outside) the app's port takes connections
// only from the sidecar. docs/interception.md describes the two layouts.
package iptables

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
)

// Chain is the nat chain Outrigger owns; removing it removes every rule.
const Chain = "OUTRIGGER_OUTPUT"

// inboundChain is the filter chain of the inbound lock-down.
const inboundChain = "OUTRIGGER_INBOUND"

// PassthroughMark is the SO_MARK of the sidecar's pass-through
// connections, which the rules leave alone.
const PassthroughMark = 0x4f52

// Options say what the rules redirect.
type Options struct {
	// TransparentPort is the sidecar's transparent listener.
	TransparentPort int
	// AppPorts are the app's own ports on loopback: the sidecar's
	// deliveries to it are not redirected.
	AppPorts []int
	// ProxyUID and ProxyGID, when set (>= 0), exclude the sidecar's own
	// traffic by owner, as Istio's init does, when the sidecar shares the
	// app's namespace. -1 is unset.
	ProxyUID, ProxyGID int
	// RedirectLoopback redirects the app's connections to 127.0.0.1 too
	// (but for its own ports): the sidecar is outside the app's namespace
	// and serves the app's calls to its API through the transparent
	// listener. Otherwise 127.0.0.1 is left alone (a pod, where the
	// sidecar's API is on that loopback); 127.77.0.0/16, the apps'
	// virtual addresses, is always redirected.
	RedirectLoopback bool
	// LockInbound lets the app's ports take connections only over
	// loopback (from the sidecar, in a pod); others are reset.
	LockInbound bool
}

// Rules is the iptables commands (their arguments) that install o.
func Rules(o Options) [][]string {
	port := strconv.Itoa(o.TransparentPort)
	rules := [][]string{
		{"-t", "nat", "-N", Chain},
		{"-t", "nat", "-A", Chain, "-m", "mark", "--mark", fmt.Sprintf("%#x", PassthroughMark), "-j", "RETURN"},
	}
	if o.ProxyUID >= 0 {
		rules = append(rules, []string{"-t", "nat", "-A", Chain, "-m", "owner", "--uid-owner", strconv.Itoa(o.ProxyUID), "-j", "RETURN"})
	}
	if o.ProxyGID >= 0 {
		rules = append(rules, []string{"-t", "nat", "-A", Chain, "-m", "owner", "--gid-owner", strconv.Itoa(o.ProxyGID), "-j", "RETURN"})
	}
	rules = append(rules, []string{"-t", "nat", "-A", Chain, "-d", "127.0.0.1/32", "-p", "tcp", "--dport", port, "-j", "RETURN"})
	for _, p := range o.AppPorts {
		rules = append(rules, []string{"-t", "nat", "-A", Chain, "-d", "127.0.0.1/32", "-p", "tcp", "--dport", strconv.Itoa(p), "-j", "RETURN"})
	}
	if !o.RedirectLoopback {
		rules = append(rules, []string{"-t", "nat", "-A", Chain, "-d", "127.0.0.1/32", "-j", "RETURN"})
	}
	rules = append(rules,
		[]string{"-t", "nat", "-A", Chain, "-p", "tcp", "-j", "REDIRECT", "--to-ports", port},
		[]string{"-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-j", Chain},
	)
	if o.LockInbound && len(o.AppPorts) > 0 {
		rules = append(rules, []string{"-N", inboundChain})
		for _, p := range o.AppPorts {
			rules = append(rules, []string{"-A", inboundChain, "-p", "tcp", "--dport", strconv.Itoa(p), "!", "-i", "lo", "-j", "REJECT", "--reject-with", "tcp-reset"})
		}
		rules = append(rules, []string{"-A", "INPUT", "-p", "tcp", "-j", inboundChain})
	}
	return rules
}

// removal is what undoes Rules; each step may fail when its rule is not
// there.
func removal() [][]string {
	return [][]string{
		{"-t", "nat", "-D", "OUTPUT", "-p", "tcp", "-j", Chain},
		{"-t", "nat", "-F", Chain},
		{"-t", "nat", "-X", Chain},
		{"-D", "INPUT", "-p", "tcp", "-j", inboundChain},
		{"-F", inboundChain},
		{"-X", inboundChain},
	}
}

// Apply installs the rules in the namespace named netns (with ip netns
// exec), or in the current one when netns is empty; earlier Outrigger
// rules there are removed first.
func Apply(ctx context.Context, netns string, o Options) error {
	if o.TransparentPort <= 0 || o.TransparentPort > 65535 {
		return fmt.Errorf("iptables: transparent port %d", o.TransparentPort)
	}
	Remove(ctx, netns)
	for _, args := range Rules(o) {
		if err := run(ctx, netns, args); err != nil {
			Remove(ctx, netns)
			return err
		}
	}
	return nil
}

// Remove takes Outrigger's rules out of the namespace; what is not there
// is skipped.
func Remove(ctx context.Context, netns string) {
	for _, args := range removal() {
		_ = run(ctx, netns, args)
	}
}

// ErrNoIptables is returned when the iptables command is missing.
var ErrNoIptables = errors.New("iptables is not installed (apt-get install iptables); the explicit proxy, --enable-explicit-proxy, needs neither it nor root")

func run(ctx context.Context, netns string, args []string) error {
	bin, err := iptablesPath()
	if err != nil {
		return err
	}
	cmdArgs := append([]string{"-w"}, args...)
	var cmd *exec.Cmd
	if netns != "" {
		cmd = exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", netns, bin}, cmdArgs...)...)
	} else {
		cmd = exec.CommandContext(ctx, bin, cmdArgs...)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("iptables %v: %w: %s (transparent interception needs root, or CAP_NET_ADMIN; the explicit proxy, --enable-explicit-proxy, needs neither)", args, err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}

// iptablesPath finds iptables on PATH, or where Debian and others put it
// (a PATH without the sbin folders is common outside a login shell).
func iptablesPath() (string, error) {
	if p, err := exec.LookPath("iptables"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/iptables", "/sbin/iptables"} {
		if _, err := exec.LookPath(p); err == nil {
			return p, nil
		}
	}
	return "", ErrNoIptables
}
