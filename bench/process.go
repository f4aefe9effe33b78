package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// process is one child process (app or sidecar) with its log in a file.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	started time.Time // just before fork/exec
	done    chan struct{}
	waitErr error
}

// startProcess starts bin with args, its output going to logPath. The child
// gets its own process group (a terminal's Ctrl-C reaches the harness, which
// stops it) and is killed if the harness dies.
func startProcess(name, logPath string, env []string, bin string, args ...string) (*process, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %v", name, err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop asks the process to end (SIGTERM) and kills it after grace.
func (p *process) stop(grace time.Duration) {
	if p == nil || p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// rssKiB reads VmRSS from /proc/PID/status.
func (p *process) rssKiB() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			fields := strings.Fields(v) // "12345 kB"
			if len(fields) == 2 && fields[1] == "kB" {
				return strconv.ParseInt(fields[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("%s: no VmRSS in /proc/%d/status", p.name, p.cmd.Process.Pid)
}

// cpuTime reads the process's user plus system CPU time (all threads) from
// /proc/PID/stat, in clock ticks of 10 ms (Linux's USER_HZ).
func (p *process) cpuTime() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	// The command name, field 2, is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("%s: malformed /proc/%d/stat", p.name, p.cmd.Process.Pid)
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("%s: short /proc/%d/stat", p.name, p.cmd.Process.Pid)
	}
	utime, err1 := strconv.ParseInt(f[14-3], 10, 64)
	stime, err2 := strconv.ParseInt(f[15-3], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// logTail is the end of the process's log, for failure reports.
func (p *process) logTail(lines int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = append([]string{fmt.Sprintf("... (%d earlier lines in %s)", len(all)-lines, p.logPath)}, all[len(all)-lines:]...)
	}
	return strings.Join(all, "\n")
}

// failure describes a process that did not do what was expected, with the
// tail of its log.
func (p *process) failure(what error) error {
	state := "still running"
	if p.exited() {
		state = "exited"
		if p.waitErr != nil {
			state = "exited: " + p.waitErr.Error()
		} else {
			state = "exited with status 0"
		}
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s: %v (process %s; command: %s)\n", p.name, what, state, strings.Join(p.cmd.Args, " "))
	fmt.Fprintf(&b, "----- log of %s -----\n%s\n----- end of log of %s -----", p.name, p.logTail(60), p.name)
	return errors.New(b.String())
}

// pollClient is used for readiness polls: short timeouts, fresh enough
// connections that a restarted process is seen at once.
var pollClient = &http.Client{
	Timeout:   500 * time.Millisecond,
	Transport: &http.Transport{DisableKeepAlives: true},
}

// waitUntil calls check every interval until it returns nil. It fails, with
// the process's log, when the process exits or timeout passes first.
func (p *process) waitUntil(ctx context.Context, what string, interval, timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return nil
		}
		if p.exited() {
			return p.failure(fmt.Errorf("exited while waiting for %s", what))
		}
		if time.Now().After(deadline) {
			return p.failure(fmt.Errorf("waited %v for %s (last: %v)", timeout, what, err))
		}
		select {
		case <-ctx.Done():
			return p.failure(fmt.Errorf("waiting for %s: %v", what, ctx.Err()))
		case <-tick.C:
		}
	}
}

// waitStatus polls url every interval until it answers want, and returns the
// time since the process started. It fails when the process exits or timeout
// passes.
func (p *process) waitStatus(ctx context.Context, method, url string, want int, interval, timeout time.Duration) (time.Duration, error) {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, method, url, nil)
		if err != nil {
			return 0, err
		}
		resp, err := pollClient.Do(req)
		now := time.Now()
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return now.Sub(p.started), nil
			}
			last = fmt.Sprintf("status %d", resp.StatusCode)
		} else {
			last = err.Error()
		}
		if p.exited() {
			return 0, p.failure(fmt.Errorf("exited before %s %s answered %d", method, url, want))
		}
		if now.After(deadline) {
			return 0, p.failure(fmt.Errorf("%s %s did not answer %d within %v (last: %s)", method, url, want, timeout, last))
		}
		select {
		case <-ctx.Done():
			return 0, p.failure(fmt.Errorf("waiting for %s %s: %v", method, url, ctx.Err()))
		case <-tick.C:
		}
	}
}
