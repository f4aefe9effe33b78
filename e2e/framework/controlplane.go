package framework

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ControlPlaneOptions describes one `outrigger control-plane` process.
type ControlPlaneOptions struct {
	// TrustDomain is --trust-domain; "" leaves the default (public).
	TrustDomain string
	// Config is the text of a Configuration file given as --config.
	Config string
	// Dev starts it with --dev (token-less signing for loopback callers).
	Dev bool
	// ResourcesPaths are served to sidecars over xDS (--resources-path).
	ResourcesPaths []string
}

// ControlPlane is a running control plane with its own data directory.
type ControlPlane struct {
	Addr    string
	DataDir string
	Home    string

	logs *logBuffer
	args []string
	mu   sync.Mutex
	proc *exec.Cmd
	done chan struct{}
}

// StartControlPlane starts a control plane on a fresh loopback port and
// waits until it answers and has written its trust anchors.
func StartControlPlane(t testing.TB, o ControlPlaneOptions) *ControlPlane {
	t.Helper()
	home := ShortTempDir(t)
	cp := &ControlPlane{
		Addr:    "127.0.0.1:" + strconv.Itoa(FreePort(t)),
		DataDir: filepath.Join(home, "control-plane"),
		Home:    home,
		logs:    &logBuffer{},
	}
	args := []string{"control-plane", "--listen", cp.Addr, "--data-dir", cp.DataDir, "--log-level", "debug"}
	if o.TrustDomain != "" {
		args = append(args, "--trust-domain", o.TrustDomain)
	}
	if o.Config != "" {
		path := filepath.Join(home, "config.yaml")
		if err := os.WriteFile(path, []byte(o.Config), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--config", path)
	}
	if o.Dev {
		args = append(args, "--dev")
	}
	for _, p := range o.ResourcesPaths {
		args = append(args, "--resources-path", p)
	}
	cp.args = args
	cp.start(t)
	t.Cleanup(func() {
		cp.kill(t, syscall.SIGTERM)
		logs := cp.logs.String()
		for _, bad := range []string{"panic:", "WARNING: DATA RACE", "fatal error:"} {
			if strings.Contains(logs, bad) {
				t.Errorf("e2e: the control plane logged %q", bad)
			}
		}
		if t.Failed() {
			t.Logf("---- log of the control plane ----\n%s---- end of log of the control plane ----", logs)
		}
	})
	return cp
}

// start runs the process and waits until it listens and has written its
// trust anchors.
func (cp *ControlPlane) start(t testing.TB) {
	t.Helper()
	cmd := command(Binary(t), cp.Home, cp.args)
	cmd.Stdout, cmd.Stderr = cp.logs, cp.logs
	fmt.Fprintf(cp.logs, "$ outrigger %s\n", strings.Join(cp.args, " "))
	if err := cmd.Start(); err != nil {
		t.Fatalf("e2e: starting the control plane: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	cp.mu.Lock()
	cp.proc, cp.done = cmd, done
	cp.mu.Unlock()
	WaitFor(t, "the control plane to listen and write its trust anchors", func() error {
		select {
		case <-done:
			return fmt.Errorf("it exited: %s", cp.logs.String())
		default:
		}
		if _, err := os.Stat(cp.TrustAnchors()); err != nil {
			return err
		}
		return DialListener(cp.Addr)
	})
}

// kill stops the process with sig (SIGKILL after WaitTimeout).
func (cp *ControlPlane) kill(t testing.TB, sig syscall.Signal) {
	cp.mu.Lock()
	cmd, done := cp.proc, cp.done
	cp.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(WaitTimeout):
		_ = cmd.Process.Kill()
		<-done
		if sig != syscall.SIGKILL {
			t.Errorf("e2e: the control plane did not stop within %v of %v", WaitTimeout, sig)
		}
	}
}

// Kill kills the control plane (SIGKILL); Start starts it again with the
// same address and data directory.
func (cp *ControlPlane) Kill(t testing.TB) { cp.kill(t, syscall.SIGKILL) }

// Restart starts a killed control plane again.
func (cp *ControlPlane) Restart(t testing.TB) {
	t.Helper()
	cp.start(t)
}

// TrustAnchors is the control plane's trust anchors file.
func (cp *ControlPlane) TrustAnchors() string { return filepath.Join(cp.DataDir, "trust-anchors.pem") }

// Logs is what the control plane has logged so far.
func (cp *ControlPlane) Logs() string { return cp.logs.String() }

// Token mints a join token for appID in namespace with `outrigger
// control-plane token`.
func (cp *ControlPlane) Token(t testing.TB, appID, namespace string) string {
	t.Helper()
	if namespace == "" {
		namespace = "default"
	}
	res := RunBinary(t, "control-plane", "token", "--data-dir", cp.DataDir, "--app-id", appID, "--namespace", namespace)
	if res.ExitCode != 0 {
		t.Fatalf("e2e: minting a token for %s: exit %d: %s", appID, res.ExitCode, res.Output)
	}
	return strings.TrimSpace(res.Output)
}

// ShortTempDir is a temporary directory with a short path (Unix socket
// paths under it must stay within 107 bytes), removed when the test ends.
func ShortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ort")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}
