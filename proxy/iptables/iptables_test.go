package iptables

import (
	"slices"
	"strings"
	"testing"
)

func joined(rules [][]string) []string {
	out := make([]string, len(rules))
	for i, r := range rules {
		out[i] = strings.Join(r, " ")
	}
	return out
}

// The two layouts: a pod (the sidecar shares the namespace, excluded by its
// user; loopback left alone; the app's port locked to loopback) and an app
// namespace whose sidecar is outside (loopback redirected but for the app's
// own port).
func TestRules(t *testing.T) {
	pod := joined(Rules(Options{TransparentPort: 15001, AppPorts: []int{8080}, ProxyUID: 1337, ProxyGID: -1, LockInbound: true}))
	for _, want := range []string{
		"-t nat -A OUTRIGGER_OUTPUT -m mark --mark 0x4f52 -j RETURN",
		"-t nat -A OUTRIGGER_OUTPUT -m owner --uid-owner 1337 -j RETURN",
		"-t nat -A OUTRIGGER_OUTPUT -d 127.0.0.1/32 -p tcp --dport 8080 -j RETURN",
		"-t nat -A OUTRIGGER_OUTPUT -d 127.0.0.1/32 -j RETURN",
		"-t nat -A OUTRIGGER_OUTPUT -p tcp -j REDIRECT --to-ports 15001",
		"-t nat -A OUTPUT -p tcp -j OUTRIGGER_OUTPUT",
		"-A OUTRIGGER_INBOUND -p tcp --dport 8080 ! -i lo -j REJECT --reject-with tcp-reset",
	} {
		if !slices.Contains(pod, want) {
			t.Errorf("pod rules lack %q:\n%s", want, strings.Join(pod, "\n"))
		}
	}
	// Every exception comes before the redirect.
	if i, j := slices.Index(pod, "-t nat -A OUTRIGGER_OUTPUT -d 127.0.0.1/32 -j RETURN"), slices.Index(pod, "-t nat -A OUTRIGGER_OUTPUT -p tcp -j REDIRECT --to-ports 15001"); i > j {
		t.Errorf("the loopback exception comes after the redirect")
	}

	ns := joined(Rules(Options{TransparentPort: 15001, AppPorts: []int{8080}, ProxyUID: -1, ProxyGID: -1, RedirectLoopback: true}))
	if slices.Contains(ns, "-t nat -A OUTRIGGER_OUTPUT -d 127.0.0.1/32 -j RETURN") {
		t.Errorf("with the sidecar outside, loopback must be redirected:\n%s", strings.Join(ns, "\n"))
	}
	for _, r := range ns {
		if strings.Contains(r, "owner") || strings.Contains(r, "OUTRIGGER_INBOUND") {
			t.Errorf("unasked rule %q", r)
		}
	}
	if !slices.Contains(ns, "-t nat -A OUTRIGGER_OUTPUT -d 127.0.0.1/32 -p tcp --dport 15001 -j RETURN") {
		t.Errorf("the transparent listener itself must not be redirected")
	}
}
