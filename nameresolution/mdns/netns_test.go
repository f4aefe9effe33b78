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
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
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

// newNetns creates a network namespace with loopback up and multicast on,
// routes multicast to loopback, and deletes the namespace when the test
// ends. It returns the namespace's name.
func newNetns(t *testing.T) string {
	t.Helper()
	requireNetns(t)
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

// child is a re-run of the test binary inside a namespace.
type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *bytes.Buffer
	done   chan error
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
	c := &child{cmd: cmd, out: new(bytes.Buffer), done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = c.out, c.out
	var err error
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %v: %v", cmd.Args, err)
	}
	go func() { c.done <- cmd.Wait() }()
	// A test that fails before waiting for its child does not leave it
	// running (cleanups run last-in first-out: before the namespace goes).
	t.Cleanup(func() {
		if !c.waited {
			_ = cmd.Process.Kill()
			<-c.done
		}
	})
	return c
}

// wait waits for the child to exit, at most timeout, killing it then, and
// fails the test unless it passed. It logs the child's output when it fails
// or when the test runs verbose.
func (c *child) wait(t *testing.T, timeout time.Duration) {
	t.Helper()
	c.waited = true
	var err error
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case err = <-c.done:
	case <-timer.C:
		_ = c.cmd.Process.Kill()
		<-c.done
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
