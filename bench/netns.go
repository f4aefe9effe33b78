package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/outrigger/outrigger/proxy"
)

// netns is a network namespace the harness made and must delete.
type netns struct {
	name string
}

// newNetns makes a uniquely named namespace with loopback up and able to
// multicast, so mDNS works there and stays there.
func newNetns() (*netns, error) {
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("the ip command (iproute2) is needed for the network namespace: %v", err)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	ns := &netns{name: fmt.Sprintf("outrigger-bench-%d-%s", os.Getpid(), hex.EncodeToString(b[:]))}
	if err := ip("netns", "add", ns.name); err != nil {
		return nil, fmt.Errorf("making network namespace (needs root): %v", err)
	}
	steps := [][]string{
		{"link", "set", "lo", "up"},
		{"link", "set", "lo", "multicast", "on"},
		// Multicast to a group with no route fails with "network is
		// unreachable" when a sender does not pin the interface; the
		// namespace has only loopback, so send all multicast there.
		{"route", "add", "224.0.0.0/4", "dev", "lo"},
	}
	for _, s := range steps {
		if err := ip(append([]string{"netns", "exec", ns.name, "ip"}, s...)...); err != nil {
			ns.remove(func(string, ...any) {})
			return nil, err
		}
	}
	return ns, nil
}

// remove kills whatever still runs in the namespace (only the harness's own
// processes can be there) and deletes it.
func (ns *netns) remove(logf func(string, ...any)) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "pids", ns.name).Output()
	if err == nil {
		for f := range strings.FieldsSeq(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
				logf("killing leftover process %d in %s", pid, ns.name)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	if err := ip("netns", "del", ns.name); err != nil {
		logf("deleting network namespace %s: %v", ns.name, err)
	}
}

func ip(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// The outrigger-transparent target's app namespace: the client's
// connections are opened there, and the caller sidecar intercepts them.
const (
	transparentPort   = 15001
	calleeVirtualAddr = "127.77.0.2"
)

// appNetns is the app namespace of the outrigger-transparent target: only
// loopback, with the interception rules.
type appNetns struct {
	name  string
	hosts string // the virtual hosts file, for the caller's --virtual-hosts
}

func (n *appNetns) path() string { return "/var/run/netns/" + n.name }

// newAppNetns makes the namespace and installs the rules with the
// outrigger binary's transparent-init.
func newAppNetns(ctx context.Context, outrigger, workdir string) (*appNetns, error) {
	n := &appNetns{name: fmt.Sprintf("outrigger-bench-%d-app", os.Getpid()), hosts: workdir + "/virtual-hosts"}
	_ = ip("netns", "del", n.name)
	if err := ip("netns", "add", n.name); err != nil {
		return nil, fmt.Errorf("making the app namespace: %v", err)
	}
	if err := ip("-n", n.name, "link", "set", "lo", "up"); err != nil {
		n.remove()
		return nil, err
	}
	if err := os.WriteFile(n.hosts, []byte(calleeVirtualAddr+" "+calleeID+"\n"), 0o644); err != nil {
		n.remove()
		return nil, err
	}
	out, err := exec.CommandContext(ctx, outrigger, "transparent-init", "--netns", n.name, "--redirect-loopback",
		"--transparent-port", strconv.Itoa(transparentPort)).CombinedOutput()
	if err != nil {
		n.remove()
		return nil, fmt.Errorf("outrigger transparent-init: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return n, nil
}

func (n *appNetns) remove() { _ = ip("netns", "del", n.name) }

// netnsClient is a short-timeout client whose connections are opened in the
// namespace at path.
func netnsClient(path string) *http.Client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := proxy.InNetns(path, func() error {
			var err error
			c, err = (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	return &http.Client{Timeout: 500 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true, DialContext: dial}}
}
