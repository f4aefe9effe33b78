// Package harness holds what the benchmark harnesses under bench/ share:
// child processes with their logs in files, readiness polls, building
// ./cmd/outrigger, finding daprd, a fixed-rate or maximum-rate HTTP load
// generator (fortio's), and exact percentiles with their spread across
// rounds.
package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Process is one sidecar the harness started, with its log in a file.
type Process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	started time.Time // just before fork/exec
	done    chan struct{}
	waitErr error
}

// StartProcess starts bin with args, its output going to logPath. The child
// gets its own process group (a terminal's Ctrl-C reaches the harness, which
// stops it) and is killed by the kernel if the harness dies (Pdeathsig).
func StartProcess(name, logPath string, env []string, bin string, args ...string) (*Process, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &Process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
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

func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM to the process's group and SIGKILL after grace.
func (p *Process) Stop(grace time.Duration) {
	if p == nil || p.Exited() {
		return
	}
	pid := p.cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-p.done
	}
}

// LogTail is the end of the process's log, for failure reports.
func (p *Process) LogTail(lines int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = append([]string{fmt.Sprintf("... (%d earlier lines)", len(all)-lines)}, all[len(all)-lines:]...)
	}
	return strings.Join(all, "\n")
}

// Failure describes a process that did not do what was expected, with the
// tail of its log.
func (p *Process) Failure(what error) error {
	state := "still running"
	if p.Exited() {
		state = "exited with status 0"
		if p.waitErr != nil {
			state = "exited: " + p.waitErr.Error()
		}
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s: %v (process %s; command: %s)\n", p.name, what, state, strings.Join(p.cmd.Args, " "))
	fmt.Fprintf(&b, "----- log of %s (%s) -----\n%s\n----- end of log of %s -----", p.name, p.logPath, p.LogTail(40), p.name)
	return errors.New(b.String())
}

// CPUTime is the user plus system CPU time the process has used, from
// /proc/PID/stat (in clock ticks of 10 ms, Linux's USER_HZ).
func (p *Process) CPUTime() (time.Duration, error) {
	pid := p.cmd.Process.Pid
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, in brackets, may hold spaces: count fields after it.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseInt(f[14-3], 10, 64)
	stime, err2 := strconv.ParseInt(f[15-3], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// RSSKiB is the process's resident set size, VmRSS from /proc/PID/status,
// in KiB.
func (p *Process) RSSKiB() (int64, error) {
	pid := p.cmd.Process.Pid
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v) // "12345 kB"
			if len(f) == 2 && f[1] == "kB" {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// pollClient is for readiness polls: short timeouts, no proxy, a fresh
// connection each time.
var pollClient = &http.Client{
	Timeout:   500 * time.Millisecond,
	Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
}

// WaitStatus polls url every interval until it answers want and returns the
// time since the process started. It fails, with the process's log, when the
// Process exits, timeout passes or ctx ends first.
func (p *Process) WaitStatus(ctx context.Context, url string, want int, interval, timeout time.Duration) (time.Duration, error) {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
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
		if p.Exited() {
			return 0, p.Failure(fmt.Errorf("exited before GET %s answered %d", url, want))
		}
		if now.After(deadline) {
			return 0, p.Failure(fmt.Errorf("GET %s did not answer %d within %v (last: %s)", url, want, timeout, last))
		}
		select {
		case <-ctx.Done():
			return 0, p.Failure(fmt.Errorf("waiting for GET %s: %w", url, context.Cause(ctx)))
		case <-tick.C:
		}
	}
}

// FreePorts returns n distinct loopback TCP ports that were free a moment
// ago (all held open together, then released). Another program may take one
// before the sidecar binds it; the sidecar then fails to start, loudly.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %v", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// BuildOutrigger builds ./cmd/outrigger of the module the harness runs in
// into dir.
func BuildOutrigger(ctx context.Context, dir string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("building ./cmd/outrigger: %v (pass --outrigger)", err)
	}
	bin := filepath.Join(dir, "outrigger")
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", bin, "./cmd/outrigger")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./cmd/outrigger: %v\n%s", err, out)
	}
	return bin, nil
}

// ModuleRoot finds the folder of Outrigger's go.mod from the working folder
// up.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/outrigger/outrigger\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cannot find the outrigger module above the working folder; run from the clone or pass --outrigger")
		}
		dir = parent
	}
}

// DefaultDaprd is where scripts/tools.sh puts daprd:
// ${OUTRIGGER_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/outrigger-tools}/daprd-1.18.1/daprd.
func DefaultDaprd() string {
	cache := os.Getenv("OUTRIGGER_TOOLS")
	if cache == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return ""
			}
			base = filepath.Join(home, ".cache")
		}
		cache = filepath.Join(base, "outrigger-tools")
	}
	return filepath.Join(cache, "daprd-"+DaprdVersion, "daprd")
}

// DaprdVersion is the daprd scripts/tools.sh builds.
const DaprdVersion = "1.18.1"

// CommandOutput is the first line of what bin args prints, for the report.
func CommandOutput(bin string, args ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).Output()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}
