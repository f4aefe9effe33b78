package devmode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/outrigger/outrigger/nameresolution/registry"
)

// Defaults of ControlPlaneOptions.
const (
	DefaultStartTimeout = 20 * time.Second
	DefaultStopTimeout  = 10 * time.Second
	// pingTimeout bounds the check that a recorded control process answers.
	pingTimeout = 2 * time.Second
	pollEvery   = 25 * time.Millisecond
)

// ControlPlaneOptions say how to find or start the development control process.
type ControlPlaneOptions struct {
	// Home is OUTRIGGER_HOME (required).
	Home string
	// Executable is the outrigger binary to start (default: os.Executable()).
	Executable string
	// Args are its arguments (default: control-plane --dev, plus --listen
	// Listen when given).
	Args []string
	// Listen is the address a started control process listens on (default:
	// the control plane's own default, 127.0.0.1:50010, or a free port when
	// that one is taken).
	Listen string
	// StartTimeout bounds the wait for a started control process to answer
	// (default DefaultStartTimeout).
	StartTimeout time.Duration
}

// ControlPlaneAnswers reports whether home's recorded development control
// process answers, and its record.
func ControlPlaneAnswers(ctx context.Context, home string) (ControlPlaneRecord, bool) {
	rec, err := ReadControlPlaneRecord(home)
	if err != nil {
		return rec, false
	}
	return rec, ping(ctx, rec.Address) == nil
}

func ping(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	_, err := registry.Ping(ctx, addr)
	return err
}

// EnsureControlPlane returns the record of the development control process
// under o.Home, starting one in the background when none answers. started
// reports whether it started it. A started process runs in a session of its
// own (Ctrl-C on the caller does not reach it), logs to
// $OUTRIGGER_HOME/logs/control-plane.log and runs until `outrigger stop`.
// A lock file keeps two callers from starting two processes at once.
func EnsureControlPlane(ctx context.Context, o ControlPlaneOptions) (rec ControlPlaneRecord, started bool, err error) {
	if o.Home == "" {
		return rec, false, errors.New("devmode: OUTRIGGER_HOME is not set")
	}
	if rec, ok := ControlPlaneAnswers(ctx, o.Home); ok {
		return rec, false, nil
	}
	if err := os.MkdirAll(filepath.Join(o.Home, LogsDir), 0o755); err != nil {
		return rec, false, fmt.Errorf("devmode: %w", err)
	}
	timeout := o.StartTimeout
	if timeout <= 0 {
		timeout = DefaultStartTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	release, err := lockHome(ctx, o.Home)
	if err != nil {
		return rec, false, err
	}
	defer release()
	// Another caller may have started one while this one waited for the lock.
	if rec, ok := ControlPlaneAnswers(ctx, o.Home); ok {
		return rec, false, nil
	}
	rec, err = startControlPlane(ctx, o)
	return rec, err == nil, err
}

// lockHome takes the lock that serialises starting the control process,
// polling until ctx is done.
func lockHome(ctx context.Context, home string) (release func(), err error) {
	path := filepath.Join(home, controlPlaneLock)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("devmode: %w", err)
	}
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		ok, err := tryLock(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("devmode: locking %s: %w", path, err)
		}
		if ok {
			return func() { _ = unlock(f); f.Close() }, nil
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("devmode: waiting for another outrigger run to start the development control process (lock %s): %w", path, ctx.Err())
		case <-tick.C:
		}
	}
}

func startControlPlane(ctx context.Context, o ControlPlaneOptions) (ControlPlaneRecord, error) {
	var rec ControlPlaneRecord
	exe := o.Executable
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return rec, fmt.Errorf("devmode: finding the outrigger binary: %w", err)
		}
	}
	args := o.Args
	if args == nil {
		args = []string{"control-plane", "--dev"}
		if o.Listen != "" {
			args = append(args, "--listen", o.Listen)
		}
	}
	logPath := filepath.Join(o.Home, LogsDir, ControlPlaneLog)
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return rec, fmt.Errorf("devmode: %w", err)
	}
	defer logf.Close()
	start := time.Now()
	fmt.Fprintf(logf, "--- %s: starting %s %s\n", start.Format(time.RFC3339), exe, strings.Join(args, " "))
	logStart, _ := logf.Seek(0, 2)

	// Not exec.CommandContext: the process must outlive ctx.
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), HomeEnv+"="+o.Home)
	cmd.Dir = o.Home
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = detached()
	if err := cmd.Start(); err != nil {
		return rec, fmt.Errorf("devmode: starting the development control process: %w", err)
	}
	pid := cmd.Process.Pid
	exited := make(chan error, 1)
	// Reap it if it dies while this process lives; after that it belongs to init.
	go func() { exited <- cmd.Wait() }()

	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		if r, err := ReadControlPlaneRecord(o.Home); err == nil && r.PID == pid && ping(ctx, r.Address) == nil {
			return r, nil
		}
		select {
		case err := <-exited:
			return rec, fmt.Errorf("devmode: the development control process exited at start (%v)%s", err, logTail(logPath, logStart))
		case <-ctx.Done():
			_ = signalGroup(pid, syscall.SIGKILL) // it leads its own session and group

			return rec, fmt.Errorf("devmode: the development control process did not answer within %v: %w%s", time.Since(start).Round(time.Millisecond), ctx.Err(), logTail(logPath, logStart))
		case <-tick.C:
		}
	}
}

// logTail returns the log written since offset, for an error message.
func logTail(path string, offset int64) string {
	data, err := os.ReadFile(path)
	if err != nil || int64(len(data)) <= offset {
		return "; see " + path
	}
	data = bytes.TrimSpace(data[offset:])
	const most = 2000
	if len(data) > most {
		data = data[len(data)-most:]
	}
	return fmt.Sprintf("; its log (%s):\n%s", path, data)
}

// StopControlPlane stops home's development control process: SIGTERM, up to
// timeout (default DefaultStopTimeout) for it to exit, then SIGKILL; it
// removes the record and returns it. With no process running it returns an
// error wrapping ErrNoControlPlane (and removes a stale record).
func StopControlPlane(ctx context.Context, home string, timeout time.Duration) (ControlPlaneRecord, error) {
	rec, err := ReadControlPlaneRecord(home)
	if err != nil {
		if errors.Is(err, ErrNoControlPlane) && recordExists(home) {
			_ = RemoveControlPlaneRecord(home, 0)
		}
		return rec, err
	}
	if timeout <= 0 {
		timeout = DefaultStopTimeout
	}
	stale := func(why string) (ControlPlaneRecord, error) {
		_ = RemoveControlPlaneRecord(home, rec.PID)
		return rec, fmt.Errorf("devmode: removed the stale record of pid %d (%s): %w", rec.PID, why, ErrNoControlPlane)
	}
	if !processAlive(rec.PID) {
		return stale("the process is gone")
	}
	// The pid may have been reused by an unrelated process: only signal it
	// when the control plane answers at the recorded address or the process
	// looks like a control process.
	if ping(ctx, rec.Address) != nil && !looksLikeControlPlane(rec.PID) {
		return stale("the process does not answer as a control plane")
	}
	if err := signalProcess(rec.PID, syscall.SIGTERM); err != nil {
		if !processAlive(rec.PID) {
			return stale("the process is gone")
		}
		return rec, fmt.Errorf("devmode: stopping the development control process (pid %d): %w", rec.PID, err)
	}
	if !waitGone(ctx, rec.PID, timeout) {
		_ = signalProcess(rec.PID, syscall.SIGKILL)
		if !waitGone(ctx, rec.PID, 5*time.Second) {
			return rec, fmt.Errorf("devmode: the development control process (pid %d) did not exit after SIGKILL", rec.PID)
		}
	}
	_ = RemoveControlPlaneRecord(home, rec.PID)
	return rec, nil
}

func waitGone(ctx context.Context, pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for processAlive(pid) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(pollEvery)
	}
	return true
}

// looksLikeControlPlane reports whether pid's command line names the
// control-plane command (Linux; elsewhere it trusts the record).
func looksLikeControlPlane(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return !dirExists("/proc/self")
	}
	return bytes.Contains(data, []byte("control-plane"))
}

func dirExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}
