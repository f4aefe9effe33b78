package framework

import (
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ConsulOptions configures a Consul agent for a test.
type ConsulOptions struct {
	// Netns runs the agent in that network namespace, bound to Bind;
	// "" runs it on loopback.
	Netns string
	Bind  string
}

// Consul is a real Consul agent (-dev: a single server, state in memory)
// the test started; the test's cleanup stops it and prints its log if the
// test failed.
type Consul struct {
	// Addr is the agent's HTTP address, host:port.
	Addr   string
	client *http.Client
}

// StartConsul starts an agent built by scripts/tools.sh consul on free
// ports (or the standard ones inside a namespace of its own) and waits
// until it has elected itself.
func StartConsul(t testing.TB, o ConsulOptions) *Consul {
	t.Helper()
	bin := Tool(t, "consul")
	bind := "127.0.0.1"
	ports := []int{8500, 8301, 8302, 8300}
	if o.Netns != "" {
		bind = o.Bind
	} else {
		for i := range ports {
			ports[i] = FreePort(t)
		}
	}
	args := []string{"agent", "-dev", "-node", "e2e", "-bind", bind, "-advertise", bind, "-client", bind,
		"-http-port", strconv.Itoa(ports[0]), "-dns-port", "-1", "-grpc-port", "-1", "-grpc-tls-port", "-1",
		"-serf-lan-port", strconv.Itoa(ports[1]), "-serf-wan-port", strconv.Itoa(ports[2]), "-server-port", strconv.Itoa(ports[3])}
	cmd := exec.Command(bin, args...)
	c := &Consul{Addr: bind + ":" + strconv.Itoa(ports[0]), client: &http.Client{Timeout: 5 * time.Second}}
	if o.Netns != "" {
		cmd = exec.Command("ip", append([]string{"netns", "exec", o.Netns, bin}, args...)...)
		c.client = HTTPClient(o.Netns, 5*time.Second)
	}
	proc := startToolProcess(t, "consul agent", cmd)
	WaitFor(t, "the Consul agent to elect itself", func() error {
		if err := proc.exited(); err != nil {
			return err
		}
		b, err := c.get("/v1/status/leader")
		if err != nil {
			return err
		}
		if s := strings.Trim(strings.TrimSpace(string(b)), `"`); s == "" {
			return fmt.Errorf("no leader yet")
		}
		return nil
	})
	return c
}

// get reads a path of the agent's HTTP API.
func (c *Consul) get(path string) ([]byte, error) {
	resp, err := c.client.Get("http://" + c.Addr + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	return b, nil
}

// Get reads a path of the agent's HTTP API, failing on a non-200 answer.
func (c *Consul) Get(path string) ([]byte, error) { return c.get(path) }
