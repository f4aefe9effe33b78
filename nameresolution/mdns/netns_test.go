package mdns_test

// mDNS multicasts, so every test here that touches the network runs inside
// network namespaces it makes, never on the machine's own interfaces. The
// test (the parent) creates the namespaces with iproute2 and re-runs the test
// binary inside them with `ip netns exec`; the re-run (the child) sees
// childEnv set and does the real work. Sockets belong to the namespace of the
// process that opens them, so everything hashicorp/mdns opens in the child
// is inside the namespace. The parent deletes the namespaces when the test
// ends.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// childEnv marks a child process and says which part it plays.
const childEnv = "OUTRIGGER_MDNS_NETNS_CHILD"

// role returns the part this process plays: "" in the parent.
func role() string { return os.Getenv(childEnv) }

var netnsSeq atomic.Int32

// ipCmd runs iproute2 and fails the test when it fails.
func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// requireNetns fails the test when namespaces cannot be made here: these
// tests need root and iproute2, and do not skip without them.
func requireNetns(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("the mDNS tests run in network namespaces and need iproute2's ip: %v", err)
	}
	if os.Geteuid() != 0 {
		t.Fatalf("the mDNS tests run in network namespaces and need root (euid %d)", os.Geteuid())
	}
}

// netnsName matches the names newNetns gives, with the test process's pid.
var netnsName = regexp.MustCompile(`^or-mdns-(\d+)-\d+$`)

var leftovers sync.Once

// removeLeftovers deletes the namespaces that test processes no longer
// running made (a run killed before its cleanups): only names newNetns
// gives, and only those whose process is gone.
func removeLeftovers(t *testing.T) {
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		m := netnsName.FindStringSubmatch(fields[0])
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if pid == os.Getpid() || !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			continue
		}
		if out, err := exec.Command("ip", "netns", "del", fields[0]).CombinedOutput(); err != nil {
			t.Logf("removing the leftover namespace %s: %v\n%s", fields[0], err, out)
		}
	}
}

// newNetns creates a network namespace with loopback up and multicast on,
// routes multicast to loopback, and deletes the namespace when the test
// ends. It returns the namespace's name.
func newNetns(t *testing.T) string {
	t.Helper()
	requireNetns(t)
	leftovers.Do(func() { removeLeftovers(t) })
	name := fmt.Sprintf("or-mdns-%d-%d", os.Getpid(), netnsSeq.Add(1))
	ipCmd(t, "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", name, err, out)
		}
	})
	ipCmd(t, "-n", name, "link", "set", "lo", "up")
	ipCmd(t, "-n", name, "link", "set", "lo", "multicast", "on")
	// Joining a group and sending to it look the group up in the routing
	// table; a new namespace has no route for multicast.
	ipCmd(t, "-n", name, "route", "add", "224.0.0.0/4", "dev", "lo")
	return name
}

// connect joins two namespaces with a veth pair, gives each end an address
// in 10.213.0.0/24 (host 1 in a, host 2 in b), routes multicast over it, and
// returns the interface names in a and b. The pair is created inside a with
// its peer inside b, so nothing appears in the machine's own namespace.
func connect(t *testing.T, a, b string) (ifA, ifB string) {
	t.Helper()
	ifA, ifB = "or-a", "or-b"
	ipCmd(t, "-n", a, "link", "add", ifA, "type", "veth", "peer", "name", ifB, "netns", b)
	for i, end := range []struct{ ns, dev string }{{a, ifA}, {b, ifB}} {
		ipCmd(t, "-n", end.ns, "addr", "add", fmt.Sprintf("10.213.0.%d/24", i+1), "dev", end.dev)
		ipCmd(t, "-n", end.ns, "link", "set", end.dev, "multicast", "on")
		ipCmd(t, "-n", end.ns, "link", "set", end.dev, "up")
		ipCmd(t, "-n", end.ns, "route", "replace", "224.0.0.0/4", "dev", end.dev)
	}
	return ifA, ifB
}

// The LAN newLAN makes: host i (from 0) has lanIface with lanV4(i) and
// lanV6(i).
const lanIface = "or-lan"

func lanV4(i int) string { return fmt.Sprintf("10.213.1.%d", i+1) }
func lanV6(i int) string { return fmt.Sprintf("fd00:213:1::%d", i+1) }

// newLAN makes n hosts, each a namespace, on one Ethernet segment: a bridge
// in a namespace of its own, and a veth pair from each host to it. Host i
// has the interface lanIface with addresses lanV4(i)/24 and lanV6(i)/64 and
// routes IPv4 multicast there (IPv6 multicast needs no route). It returns
// the hosts' namespaces.
func newLAN(t *testing.T, n int) []string {
	t.Helper()
	sw := newNetns(t)
	// No multicast snooping: the bridge floods every group to every port.
	ipCmd(t, "-n", sw, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
	ipCmd(t, "-n", sw, "link", "set", "br0", "up")
	hosts := make([]string, n)
	for i := range hosts {
		h := newNetns(t)
		hosts[i] = h
		port := fmt.Sprintf("or-p%d", i)
		ipCmd(t, "-n", h, "link", "add", lanIface, "type", "veth", "peer", "name", port, "netns", sw)
		ipCmd(t, "-n", sw, "link", "set", port, "master", "br0")
		ipCmd(t, "-n", sw, "link", "set", port, "up")
		ipCmd(t, "-n", h, "addr", "add", lanV4(i)+"/24", "dev", lanIface)
		ipCmd(t, "-n", h, "addr", "add", lanV6(i)+"/64", "dev", lanIface, "nodad")
		ipCmd(t, "-n", h, "link", "set", lanIface, "multicast", "on")
		ipCmd(t, "-n", h, "link", "set", lanIface, "up")
		ipCmd(t, "-n", h, "route", "replace", "224.0.0.0/4", "dev", lanIface)
	}
	return hosts
}

// connectIPv6 joins two namespaces with a veth pair that carries IPv6
// alone: each end has no IPv4 address, a link-local address of the test's
// choosing (none made by the kernel) and an address in fd00:213::/64 (host
// 1 in a, host 2 in b). It returns the interface names in a and b.
func connectIPv6(t *testing.T, a, b string) (ifA, ifB string) {
	t.Helper()
	ifA, ifB = "or-a6", "or-b6"
	ipCmd(t, "-n", a, "link", "add", ifA, "type", "veth", "peer", "name", ifB, "netns", b)
	for i, end := range []struct{ ns, dev string }{{a, ifA}, {b, ifB}} {
		ipCmd(t, "-n", end.ns, "link", "set", end.dev, "addrgenmode", "none")
		ipCmd(t, "-n", end.ns, "addr", "add", fmt.Sprintf("fe80::213:%d/64", i+1), "dev", end.dev, "nodad")
		ipCmd(t, "-n", end.ns, "addr", "add", fmt.Sprintf("fd00:213::%d/64", i+1), "dev", end.dev, "nodad")
		ipCmd(t, "-n", end.ns, "link", "set", end.dev, "multicast", "on")
		ipCmd(t, "-n", end.ns, "link", "set", end.dev, "up")
	}
	return ifA, ifB
}

// lockedBuffer is a bytes.Buffer that the child's output goroutines write
// while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// child is a re-run of the test binary inside a namespace.
type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *lockedBuffer
	exited chan struct{} // closed when the process has exited; err is set
	err    error
	waited bool
}

// startChild re-runs the test named test inside namespace ns as role, with
// extra environment variables env ("K=V"). The child's stdin is a pipe;
// closing it is how the parent tells a long-running child to stop.
func startChild(t *testing.T, ns, test, role string, env ...string) *child {
	t.Helper()
	args := []string{"netns", "exec", ns, os.Args[0], "-test.run=^" + test + "$", "-test.v", "-test.count=1"}
	if d, ok := t.Deadline(); ok {
		args = append(args, "-test.timeout="+time.Until(d).Round(time.Second).String())
	}
	cmd := exec.Command("ip", args...)
	cmd.Env = append(append(os.Environ(), childEnv+"="+role), env...)
	c := &child{cmd: cmd, out: new(lockedBuffer), exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = c.out, c.out
	var err error
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %v: %v", cmd.Args, err)
	}
	go func() {
		c.err = cmd.Wait()
		close(c.exited)
	}()
	// A test that fails before waiting for its child does not leave it
	// running (cleanups run last-in first-out: before the namespace goes).
	t.Cleanup(func() {
		if !c.waited {
			_ = cmd.Process.Kill()
			<-c.exited
		}
	})
	return c
}

// waitFor polls the child's output until a line of it is line, failing the
// test (with the output) when timeout passes first or the child exits.
func (c *child) waitFor(t *testing.T, line string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for range int(timeout/(20*time.Millisecond)) + 1 {
		if strings.Contains("\n"+c.out.String(), "\n"+line+"\n") {
			return
		}
		select {
		case <-c.exited:
			if strings.Contains("\n"+c.out.String(), "\n"+line+"\n") {
				return
			}
			c.waited = true
			t.Fatalf("child %v exited (%v) before printing %q:\n%s", c.cmd.Args, c.err, line, c.out)
		default:
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("child %v did not print %q within %v:\n%s", c.cmd.Args, line, timeout, c.out)
}

// kill kills the child, as a crash would: the announcements it made are not
// withdrawn.
func (c *child) kill(t *testing.T) {
	t.Helper()
	c.waited = true
	_ = c.cmd.Process.Kill()
	<-c.exited
}

// wait waits for the child to exit, at most timeout, killing it then, and
// fails the test unless it passed. It logs the child's output when it fails
// or when the test runs verbose.
func (c *child) wait(t *testing.T, timeout time.Duration) {
	t.Helper()
	c.waited = true
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	err := error(nil)
	select {
	case <-c.exited:
		err = c.err
	case <-timer.C:
		_ = c.cmd.Process.Kill()
		<-c.exited
		err = fmt.Errorf("killed after %v", timeout)
	}
	out := c.out.String()
	if err != nil || !strings.Contains(out, "\nPASS\n") {
		t.Fatalf("child %v: %v\n%s", c.cmd.Args, err, out)
	}
	if testing.Verbose() {
		t.Logf("child %v:\n%s", c.cmd.Args, out)
	}
}

// stop closes the child's stdin and waits for it as wait does.
func (c *child) stop(t *testing.T, timeout time.Duration) {
	t.Helper()
	_ = c.stdin.Close()
	c.wait(t, timeout)
}

// runInNetns runs test, in a child, inside a new namespace of its own, and
// waits for it to pass.
func runInNetns(t *testing.T, test string) {
	t.Helper()
	ns := newNetns(t)
	startChild(t, ns, test, "run").wait(t, 5*time.Minute)
}
