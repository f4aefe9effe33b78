package e2e

import (
	"errors"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"testing"

	"github.com/outrigger/outrigger/e2e/framework"
)

// TestFreePortsPassOverAppPort: a sidecar started before its app, with a
// port left free (0), must not be handed the app's port by the kernel, or
// the app cannot bind it and the sidecar calls itself as its app. The
// sidecar runs in a namespace whose ephemeral range is two ports, and the
// app's port is the one the kernel hands out first. (The app itself does
// not start: with one port left for connections, the sidecar's probes of
// its port connect to themselves, as TCP allows.)
func TestFreePortsPassOverAppPort(t *testing.T) {
	ns := framework.NewAppNetns(t, "127.0.0.1 localhost\n")
	// Below the machine's own ephemeral range: FreePort never gives these.
	// bind hands out the range's odd port first.
	const low, appPort = 20000, 20001
	portRange(t, ns, low, appPort)
	// The premise: there, a free port is the app's port first.
	probe := framework.ListenIn(t, ns, "127.0.0.1:0")
	if got := probe.Addr().(*net.TCPAddr).Port; got != appPort {
		t.Fatalf("the namespace's first free port is %d, not %d: this test cannot tell", got, appPort)
	}
	_ = probe.Close()

	sc := framework.StartSidecar(t, framework.SidecarOptions{
		AppID:   "freeports",
		AppPort: appPort,
		Netns:   ns,
		Wait:    framework.ReadyNone,
		Args:    []string{"--dapr-grpc-port", "0"},
	})
	up := regexp.MustCompile(`sidecar is up.* grpc_port=(\d+)`)
	var m []string
	if err := framework.Poll(framework.WaitTimeout, func() error {
		if m = up.FindStringSubmatch(sc.Logs()); m == nil {
			return errors.New("not up yet")
		}
		return nil
	}); err != nil {
		t.Fatalf("the sidecar does not say it is up: %v\n%s", err, sc.Logs())
	}
	if m[1] != strconv.Itoa(low) {
		t.Errorf("the sidecar's free gRPC port is %s, want %d (the app's is %d)", m[1], low, appPort)
	}
}

// portRange sets the ephemeral port range of namespace ns.
func portRange(t *testing.T, ns string, low, high int) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "sh", "-c",
		fmt.Sprintf("echo '%d %d' > /proc/sys/net/ipv4/ip_local_port_range", low, high)).CombinedOutput()
	if err != nil {
		t.Fatalf("setting the ephemeral port range of %s: %v\n%s", ns, err, out)
	}
}
