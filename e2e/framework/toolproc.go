package framework

import (
	"fmt"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// toolProcess is a third-party program a test started (Consul, CoreDNS,
// Jaeger): its output is kept, it dies with the test binary, and the
// test's cleanup stops it (SIGTERM, then SIGKILL after WaitTimeout) and
// prints its output if the test failed.
type toolProcess struct {
	name string
	logs *logBuffer
	done chan struct{}
}

// startToolProcess starts cmd as name.
func startToolProcess(t testing.TB, name string, cmd *exec.Cmd) *toolProcess {
	t.Helper()
	p := &toolProcess{name: name, logs: &logBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("e2e: starting %s: %v", name, err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(WaitTimeout):
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("---- %s log ----\n%s---- end of %s log ----", name, p.logs.String(), name)
		}
	})
	return p
}

// exited is an error with the program's output once it has exited, nil
// while it runs: a readiness poll calls it first.
func (p *toolProcess) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited:\n%s", p.name, p.logs.String())
	default:
		return nil
	}
}
