package consul_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// agentStartTimeout bounds how long a private agent may take to elect
// itself leader; generous, as tests run side by side on small machines.
const agentStartTimeout = 60 * time.Second

// consulBinary finds the consul binary: $OUTRIGGER_CONSUL, else the path
// scripts/tools.sh gives. A missing binary fails the test.
func consulBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("OUTRIGGER_CONSUL"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("OUTRIGGER_CONSUL=%s: %v (unset it to use the binary scripts/tools.sh consul builds)", p, err)
		}
		return p
	}
	root := moduleRoot(t)
	out, err := exec.Command("bash", filepath.Join(root, "scripts", "tools.sh"), "path", "consul").Output()
	if err != nil {
		t.Fatalf("scripts/tools.sh path consul: %v", err)
	}
	p := strings.TrimSpace(string(out))
	if st, err := os.Stat(p); err != nil || st.IsDir() {
		t.Fatalf("the consul binary is not at %s: run scripts/tools.sh consul (or set OUTRIGGER_CONSUL)", p)
	}
	return p
}

// moduleRoot is the directory of the module's go.mod.
func moduleRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// agent is a private Consul agent in dev mode on loopback ports of its own.
type agent struct {
	t       testing.TB
	bin     string
	dataDir string
	logPath string
	ports   [4]int // http, serf lan, serf wan, server

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// startAgent starts a private agent and waits until it is the leader; it is
// killed when the test ends.
func startAgent(t testing.TB) *agent {
	t.Helper()
	a := &agent{t: t, bin: consulBinary(t), dataDir: t.TempDir()}
	a.logPath = filepath.Join(t.TempDir(), "consul.log")
	t.Cleanup(func() {
		a.stop()
		if t.Failed() {
			if b, err := os.ReadFile(a.logPath); err == nil {
				t.Logf("consul agent log (%s):\n%s", a.logPath, tail(b, 4000))
			}
		}
	})
	var err error
	for attempt := range 3 {
		a.ports = freePorts(t)
		if err = a.start(); err == nil {
			return a
		}
		t.Logf("consul agent start, attempt %d: %v", attempt+1, err)
		a.stop()
	}
	t.Fatalf("cannot start a consul agent: %v", err)
	return nil
}

// Addr is the agent's HTTP address.
func (a *agent) Addr() string { return "127.0.0.1:" + strconv.Itoa(a.ports[0]) }

// Client is a consul client of the agent.
func (a *agent) Client() *api.Client {
	a.t.Helper()
	cfg := api.DefaultNonPooledConfig()
	cfg.Address = a.Addr()
	c, err := api.NewClient(cfg)
	if err != nil {
		a.t.Fatal(err)
	}
	return c
}

// start runs the agent with its ports and data directory, and waits until
// it is the leader.
func (a *agent) start() error {
	logf, err := os.OpenFile(a.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(a.bin, "agent", "-dev",
		"-node", fmt.Sprintf("test-%d", a.ports[0]),
		"-bind", "127.0.0.1", "-client", "127.0.0.1", "-advertise", "127.0.0.1",
		"-http-port", strconv.Itoa(a.ports[0]),
		"-dns-port", "-1", "-grpc-port", "-1", "-grpc-tls-port", "-1",
		"-serf-lan-port", strconv.Itoa(a.ports[1]),
		"-serf-wan-port", strconv.Itoa(a.ports[2]),
		"-server-port", strconv.Itoa(a.ports[3]),
		"-data-dir", a.dataDir,
		"-log-level", "info",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	a.mu.Lock()
	a.cmd, a.done = cmd, done
	a.mu.Unlock()

	deadline := time.Now().Add(agentStartTimeout)
	client := &http.Client{Timeout: 2 * time.Second}
	url := "http://" + a.Addr() + "/v1/status/leader"
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("the agent exited at start (log %s)", a.logPath)
		default:
		}
		if resp, err := client.Get(url); err == nil {
			var leader string
			_ = json.NewDecoder(resp.Body).Decode(&leader)
			resp.Body.Close()
			if leader != "" {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("no leader after %s", agentStartTimeout)
}

// stop kills the agent, as a crash would, and waits for it to exit.
func (a *agent) stop() {
	a.mu.Lock()
	cmd, done := a.cmd, a.done
	a.cmd = nil
	a.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// restart starts the agent again with the same ports and data directory.
func (a *agent) restart() {
	a.t.Helper()
	var err error
	for range 5 { // the ports may take a moment to be free again
		if err = a.start(); err == nil {
			return
		}
		a.stop()
		time.Sleep(500 * time.Millisecond)
	}
	a.t.Fatalf("cannot restart the consul agent: %v", err)
}

// freePorts returns four loopback ports free for both TCP and UDP (Serf
// uses both) at the time of the call.
func freePorts(t testing.TB) [4]int {
	t.Helper()
	var ports [4]int
	var closers []func()
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	for i := 0; i < len(ports); {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		closers = append(closers, func() { ln.Close() })
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue // taken for UDP: try another
		}
		closers = append(closers, func() { pc.Close() })
		ports[i] = port
		i++
	}
	return ports
}

func tail(b []byte, n int) []byte {
	if len(b) <= n {
		return b
	}
	b = b[len(b)-n:]
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[i+1:]
	}
	return b
}

// eventually calls cond until it holds, failing the test when timeout
// passes first.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	note := ""
	for {
		var ok bool
		if ok, note = cond(); ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not done after %s; last: %s", what, timeout, note)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// register registers a service with the agent the way an external
// registration (or a Dapr sidecar) would.
func register(t testing.TB, c *api.Client, reg *api.AgentServiceRegistration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Agent().ServiceRegisterOpts(reg, api.ServiceRegisterOpts{}.WithContext(ctx)); err != nil {
		t.Fatalf("registering %s: %v", reg.ID, err)
	}
}

func deregister(t testing.TB, c *api.Client, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Agent().ServiceDeregisterOpts(id, (&api.QueryOptions{}).WithContext(ctx)); err != nil {
		t.Fatalf("deregistering %s: %v", id, err)
	}
}
