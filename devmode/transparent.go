package devmode

import (
	"fmt"
	"strings"

	"github.com/outrigger/outrigger/proxy"
)

// Transparent interception under `outrigger run --transparent`: each app
// runs in a network namespace of its own (outrigger-<run pid>-<app-id>),
// with only loopback, a hosts file that gives every app of the run a
// virtual address, and iptables rules that send the app's outbound TCP to
// its sidecar's transparent listener, made inside the namespace. The
// sidecar stays in the machine's namespace (docs/interception.md).

// netnsPrefix starts the names of the namespaces runs make.
const netnsPrefix = "outrigger-"

// virtualHostsFile is the hosts file that gives each app of a run its
// virtual address (127.77.0.2 on, in the run's order).
func virtualHostsFile(ids []string) (string, error) {
	var b strings.Builder
	b.WriteString("127.0.0.1 localhost\n::1 localhost\n")
	for i, id := range ids {
		a, err := proxy.VirtualAddress(i)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%s %s %s.%s %s.%s.svc.cluster.local\n", a, id, id, proxy.DefaultNamespace, id, proxy.DefaultNamespace)
	}
	return b.String(), nil
}

// netnsName is the namespace of app id in the run of process pid; Linux
// allows names up to 255 bytes, and ip netns makes them files.
func netnsName(pid int, id string) string {
	return fmt.Sprintf("%s%d-%s", netnsPrefix, pid, id)
}
