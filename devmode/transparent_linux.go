package devmode

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	"github.com/outrigger/outrigger/proxy/iptables"
)

// leftoverNetns matches the namespaces of runs; the number is the run's pid.
var leftoverNetns = regexp.MustCompile(`^` + netnsPrefix + `(\d+)-`)

// appNetns is one app's namespace, made by makeAppNetns.
type appNetns struct {
	name string
}

// Path is where the namespace is mounted, for the sidecar's --app-netns.
func (n *appNetns) Path() string { return "/var/run/netns/" + n.name }

// HostsPath is the namespace's /etc/hosts, for --virtual-hosts.
func (n *appNetns) HostsPath() string { return "/etc/netns/" + n.name + "/hosts" }

// Command is argv run inside the namespace (with its hosts file).
func (n *appNetns) Command(argv []string) []string {
	return append([]string{"ip", "netns", "exec", n.name}, argv...)
}

// Remove deletes the namespace (its rules go with it) and its hosts file.
func (n *appNetns) Remove() { deleteNetns(n.name) }

// makeAppNetns makes app id's namespace for this run: loopback up, hosts
// as its /etc/hosts, and the interception rules sending its outbound TCP
// to transparentPort, but for its own appPorts.
func makeAppNetns(ctx context.Context, id, hosts string, transparentPort int, appPorts []int) (*appNetns, error) {
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("--transparent needs iproute2's ip: %w", err)
	}
	n := &appNetns{name: netnsName(os.Getpid(), id)}
	deleteNetns(n.name)
	if err := ipCmd(ctx, "netns", "add", n.name); err != nil {
		return nil, fmt.Errorf("--transparent: making the app's network namespace: %w (it needs root, or CAP_NET_ADMIN and CAP_SYS_ADMIN; without them, run without --transparent: apps then reach one another through their sidecars' explicit proxy, HTTP_PROXY)", err)
	}
	fail := func(err error) (*appNetns, error) {
		n.Remove()
		return nil, err
	}
	if err := ipCmd(ctx, "-n", n.name, "link", "set", "lo", "up"); err != nil {
		return fail(err)
	}
	if err := os.MkdirAll("/etc/netns/"+n.name, 0o755); err != nil {
		return fail(err)
	}
	if err := os.WriteFile(n.HostsPath(), []byte(hosts), 0o644); err != nil {
		return fail(err)
	}
	o := iptables.Options{TransparentPort: transparentPort, AppPorts: appPorts, ProxyUID: -1, ProxyGID: -1, RedirectLoopback: true}
	if err := iptables.Apply(ctx, n.name, o); err != nil {
		return fail(err)
	}
	return n, nil
}

// removeLeftoverNetns deletes the namespaces of runs that are gone (a
// crashed run's), killing what still runs in them; it returns their names.
func removeLeftoverNetns() []string {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return nil
	}
	var removed []string
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		m := leftoverNetns.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue // this run's, or a run still going
		}
		deleteNetns(name)
		removed = append(removed, name)
	}
	return removed
}

// deleteNetns kills the processes in a namespace, deletes it and its
// hosts file.
func deleteNetns(name string) {
	if out, err := exec.Command("ip", "netns", "pids", name).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	_ = exec.Command("ip", "netns", "del", name).Run()
	_ = os.RemoveAll("/etc/netns/" + name)
}

func ipCmd(ctx context.Context, args ...string) error {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}
