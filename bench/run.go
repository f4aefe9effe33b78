package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/outrigger/outrigger/bench/harness"
)

// Exit statuses.
const (
	exitOK     = 0
	exitFailed = 1 // a target did not come up, or the run saw non-2xx answers
	exitUsage  = 2
)

// run is main without os.Exit, so the smoke test can run it in a child
// process of its test binary.
func run(args []string) int {
	harness.QuietFortio()
	switch role := os.Getenv(roleEnv); role {
	case minimalRoleCaller, minimalRoleCallee, relayRoleCaller, relayRoleCallee:
		return runMinimal(role)
	}
	if os.Getenv(roleEnv) == "app" {
		if err := harness.ServeEchoApp(os.Getenv(appAddrEnv)); err != nil {
			fmt.Fprintf(os.Stderr, "bench app: %v\n", err)
			return exitFailed
		}
		return exitOK
	}
	cfg, err := parseFlags(args, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return exitUsage
	}
	if s := os.Getenv(handoffEnv); s != "" {
		h, err := decodeHandoff(s)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			return exitFailed
		}
		return inside(cfg, h)
	}
	return outside(cfg, args)
}

// outside prepares the binaries (the network namespace has no route to the
// module proxy), makes the namespace, runs a copy of the harness inside it,
// and removes the namespace whatever happens.
func outside(cfg *config, args []string) int {
	logf := func(format string, a ...any) { fmt.Fprintf(os.Stderr, "bench: "+format+"\n", a...) }
	workdir, err := os.MkdirTemp("", "outrigger-bench-")
	if err != nil {
		logf("%v", err)
		return exitFailed
	}
	status := exitFailed
	defer func() {
		if cfg.keep || status != exitOK {
			logf("working folder kept: %s", workdir)
			return
		}
		os.RemoveAll(workdir)
	}()

	h := &handoff{Workdir: workdir, Command: commandLine(args)}
	for _, t := range cfg.targets {
		switch {
		case t == targetDaprd:
			if _, err := os.Stat(cfg.daprd); err != nil {
				if cfg.daprdSet {
					logf("daprd target: %v", err)
					return exitFailed
				}
				logf("daprd target skipped: no binary at %s (build it with scripts/tools.sh daprd)", cfg.daprd)
				h.Skipped = append(h.Skipped, t)
				continue
			}
		case t == targetOutriggerB:
			if _, err := os.Stat(cfg.outriggerB); err != nil {
				logf("%s target: %v", t, err)
				return exitFailed
			}
			h.OutriggerB = cfg.outriggerB
		case isOutrigger(t):
			if cfg.outrigger == "" {
				bin, err := buildOutrigger(workdir)
				if err != nil {
					logf("%v", err)
					return exitFailed
				}
				cfg.outrigger = bin
			}
			if _, err := os.Stat(cfg.outrigger); err != nil {
				logf("%s target: %v", t, err)
				return exitFailed
			}
			h.Outrigger = cfg.outrigger
		}
		h.Targets = append(h.Targets, t)
	}
	if len(h.Targets) == 0 {
		logf("no target left to measure")
		return exitFailed
	}

	self, err := os.Executable()
	if err != nil {
		logf("%v", err)
		return exitFailed
	}
	var cmd *exec.Cmd
	if cfg.netns {
		ns, err := newNetns()
		if err != nil {
			logf("%v", err)
			return exitFailed
		}
		defer ns.remove(logf)
		h.Netns = ns.name
		cmd = exec.Command("ip", append([]string{"netns", "exec", ns.name, self}, args...)...)
	} else {
		cmd = exec.Command(self, args...)
	}
	h.Deadline = time.Now().Add(cfg.budget())
	cmd.Env = append(os.Environ(), handoffEnv+"="+h.encode())
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stdout, os.Stderr
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		logf("%v", err)
		return exitFailed
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	hard := time.NewTimer(time.Until(h.Deadline) + time.Minute)
	defer hard.Stop()
	for {
		select {
		case err := <-done:
			status = exitStatus(err)
			return status
		case s := <-sigs:
			// The inner harness stops its processes and reports; forward
			// the signal in case it came from kill rather than a terminal.
			_ = cmd.Process.Signal(s)
		case <-hard.C:
			logf("the run outlived its time bound; killing it")
			_ = cmd.Process.Kill()
		}
	}
}

func exitStatus(err error) int {
	if err == nil {
		return exitOK
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() > 0 {
		return ee.ExitCode()
	}
	return exitFailed
}

// commandLine is how the user ran the harness, for the report.
func commandLine(args []string) []string {
	argv0 := os.Args[0]
	if strings.Contains(argv0, "go-build") {
		argv0 = "go run ./bench"
	} else {
		argv0 = filepath.Base(argv0)
	}
	return append([]string{argv0}, args...)
}

// buildOutrigger builds ./cmd/outrigger of the module the harness runs in.
func buildOutrigger(dir string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "outrigger")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/outrigger")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./cmd/outrigger: %v\n%s", err, out)
	}
	return bin, nil
}

// moduleRoot finds the folder of Outrigger's go.mod from the working folder up.
func moduleRoot() (string, error) {
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

// inside runs the measurements (inside the namespace) and prints the report.
func inside(cfg *config, h *handoff) int {
	ctx, cancel := context.WithDeadline(context.Background(), h.Deadline)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if h.Outrigger != "" {
		cfg.outrigger = h.Outrigger
	}
	if h.OutriggerB != "" {
		cfg.outriggerB = h.OutriggerB
	}
	cfg.targets = h.Targets
	for _, bin := range []string{cfg.outrigger, cfg.outriggerB} {
		if bin == "" {
			continue
		}
		if err := dropPageCache(bin); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			return exitFailed
		}
	}

	b := &bench{cfg: cfg, workdir: h.Workdir, verbose: cfg.verbose}
	res, err := b.measure(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: FAILED: %v\n", err)
		switch {
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			fmt.Fprintf(os.Stderr, "bench: the run hit its time bound (--timeout %v)\n", cfg.budget())
		case ctx.Err() != nil:
			fmt.Fprintf(os.Stderr, "bench: interrupted\n")
		}
		return exitFailed
	}
	env := describeEnvironment(cfg, h)
	report := renderReport(cfg, env, res, h.Skipped)
	fmt.Print(report)
	if cfg.out != "" {
		if err := os.WriteFile(cfg.out, []byte(report), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			return exitFailed
		}
	}
	if cfg.jsonOut != "" {
		if err := writeJSON(cfg.jsonOut, env, res); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			return exitFailed
		}
	}
	if bad := slices.ContainsFunc(res, func(r roundResult) bool { return r.errors() > 0 }); bad {
		fmt.Fprintf(os.Stderr, "bench: FAILED: some requests got no 2xx answer (see the report); the numbers are not valid\n")
		return exitFailed
	}
	return exitOK
}

// dropPageCache writes back and drops what the page cache holds of file,
// so that every binary of a run is read from disk the same way before its
// first sidecar starts. A file written moments before (by the linker, or a
// copy) can sit in large folios that the kernel maps whole on a fault,
// which moved the idle RSS of one and the same binary between 12 and 23 MB
// (docs/benchmarks.md); read back from disk it measures like any other.
// Pages a running process maps stay.
func dropPageCache(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("writing back %s: %w", file, err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("dropping the page cache of %s: %w", file, err)
	}
	return nil
}
