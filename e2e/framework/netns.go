package framework

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/outrigger/outrigger/proxy"
)

// A Net is a small network of hosts made of Linux network namespaces: a
// switch namespace holding a bridge, and hosts each joined to it by a veth
// pair, all in 10.214.0.0/24 (the switch is .1, host i is .10+i). Nothing of
// it appears in the machine's own namespace, and all traffic stays inside.
// Namespaces are named ore2e-<pid>-<n>-...; NewNet first removes those of
// an earlier run whose process is gone, and the test's cleanup removes its own.
type Net struct {
	Prefix string
	// Switch is the namespace of the bridge; services every host reaches
	// (a Consul agent) run there, at SwitchIP.
	Switch string
	Hosts  []*Host
}

// SwitchIP is the switch namespace's address on the bridge.
const SwitchIP = "10.214.0.1"

// Host is one namespace of a Net.
type Host struct {
	Name string // the namespace
	IP   string
	link string // the veth end on the switch
	sw   string
}

var netSeq atomic.Int32

var leftover = regexp.MustCompile(`^ore2e-(\d+)-\d+-`)

// RequireRoot fails the test when network namespaces cannot be made: the
// multi-host tests need root and iproute2, and fail rather than skip.
func RequireRoot(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("e2e: the multi-host tests run in network namespaces and need iproute2's ip: %v", err)
	}
	if os.Geteuid() != 0 {
		t.Fatalf("e2e: the multi-host tests run in network namespaces and need root (euid %d)", os.Geteuid())
	}
}

func ip(t testing.TB, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("e2e: ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// removeLeftovers deletes the namespaces of earlier runs whose test
// process no longer exists, killing what still runs in them.
func removeLeftovers(t testing.TB) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		m := leftover.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue // ours, or a run still going
		}
		deleteNetns(name)
		t.Logf("e2e: removed namespace %s left by an earlier run", name)
	}
}

// deleteNetns kills the processes in a namespace and deletes it.
func deleteNetns(name string) {
	if out, err := exec.Command("ip", "netns", "pids", name).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	_ = exec.Command("ip", "netns", "del", name).Run()
	_ = os.RemoveAll("/etc/netns/" + name) // an app namespace's hosts file
}

// NewNet makes a switch and n hosts.
func NewNet(t testing.TB, n int) *Net {
	t.Helper()
	RequireRoot(t)
	removeLeftovers(t)
	nw := &Net{Prefix: fmt.Sprintf("ore2e-%d-%d", os.Getpid(), netSeq.Add(1))}
	nw.Switch = nw.Prefix + "-sw"
	ip(t, "netns", "add", nw.Switch)
	t.Cleanup(func() { deleteNetns(nw.Switch) })
	ip(t, "-n", nw.Switch, "link", "set", "lo", "up")
	ip(t, "-n", nw.Switch, "link", "add", "br0", "type", "bridge")
	ip(t, "-n", nw.Switch, "addr", "add", SwitchIP+"/24", "dev", "br0")
	ip(t, "-n", nw.Switch, "link", "set", "br0", "up")
	for i := 1; i <= n; i++ {
		h := &Host{Name: fmt.Sprintf("%s-h%d", nw.Prefix, i), IP: fmt.Sprintf("10.214.0.%d", 10+i), link: fmt.Sprintf("vh%d", i), sw: nw.Switch}
		ip(t, "netns", "add", h.Name)
		t.Cleanup(func() { deleteNetns(h.Name) })
		ip(t, "-n", h.Name, "link", "set", "lo", "up")
		ip(t, "-n", h.Name, "link", "add", "eth0", "type", "veth", "peer", "name", h.link, "netns", nw.Switch)
		ip(t, "-n", h.Name, "addr", "add", h.IP+"/24", "dev", "eth0")
		ip(t, "-n", h.Name, "link", "set", "eth0", "up")
		ip(t, "-n", nw.Switch, "link", "set", h.link, "master", "br0")
		ip(t, "-n", nw.Switch, "link", "set", h.link, "up")
		nw.Hosts = append(nw.Hosts, h)
	}
	return nw
}

// Cut takes the host's link down at the switch: its packets go nowhere,
// and nothing tells its peers (no reset), as when a cable is pulled.
func (h *Host) Cut(t testing.TB) { t.Helper(); ip(t, "-n", h.sw, "link", "set", h.link, "down") }

// Restore brings the host's link back.
func (h *Host) Restore(t testing.TB) { t.Helper(); ip(t, "-n", h.sw, "link", "set", h.link, "up") }

// InNetns runs fn on a thread moved into namespace ns: sockets fn opens
// belong to ns for their whole life, whichever thread later uses them. The
// thread is moved back before other goroutines may use it. It must not be
// left to die instead: a child process started with Pdeathsig from that
// thread earlier (as every sidecar is) would be killed with it.
func InNetns(ns string, fn func() error) error {
	return proxy.InNetns("/var/run/netns/"+ns, fn)
}

// DialContext dials from inside namespace ns.
func DialContext(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := InNetns(ns, func() error {
			var err error
			c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// HTTPClient is a client whose connections are made inside namespace ns.
func HTTPClient(ns string, timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{DialContext: DialContext(ns), MaxIdleConnsPerHost: 64}}
}

// ListenIn opens a TCP listener inside namespace ns, closed when the test ends.
func ListenIn(t testing.TB, ns, addr string) net.Listener {
	t.Helper()
	var l net.Listener
	if err := InNetns(ns, func() error {
		var err error
		l, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("e2e: listening on %s in %s: %v", addr, ns, err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// NewAppNetns makes a namespace of its own for one app, as `outrigger run
// --transparent` does: only loopback, up, and hosts as its /etc/hosts (ip
// netns exec binds /etc/netns/NAME/hosts over it). It returns the
// namespace's name; the test's cleanup removes it and its hosts file.
func NewAppNetns(t testing.TB, hosts string) string {
	t.Helper()
	RequireRoot(t)
	removeLeftovers(t)
	name := fmt.Sprintf("ore2e-%d-%d-app", os.Getpid(), netSeq.Add(1))
	ip(t, "netns", "add", name)
	t.Cleanup(func() { deleteNetns(name) })
	ip(t, "-n", name, "link", "set", "lo", "up")
	dir := "/etc/netns/" + name
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("e2e: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.WriteFile(dir+"/hosts", []byte(hosts), 0o644); err != nil {
		t.Fatalf("e2e: %v", err)
	}
	return name
}
