//go:build linux || darwin

package main

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// raiseNoFile raises the soft open-file limit to need (at most the hard
// limit) when it is lower. Go already raises it to the hard limit at start
// on Linux, so this is usually a no-op that only reports.
func raiseNoFile(need uint64) NoFileLimit {
	l := NoFileLimit{Needed: need}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		l.Err = err
		l.Before, l.After = rlimit{Soft: ^uint64(0), Hard: ^uint64(0)}, rlimit{Soft: ^uint64(0), Hard: ^uint64(0)}
		return l
	}
	l.Before = rlimit{Soft: uint64(rl.Cur), Hard: uint64(rl.Max)}
	l.After = l.Before
	if uint64(rl.Cur) >= need {
		return l
	}
	rl.Cur = rl.Max
	if uint64(rl.Max) > need {
		rl.Cur = need
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		l.Err = err
		return l
	}
	l.Raised = true
	l.After = rlimit{Soft: uint64(rl.Cur), Hard: uint64(rl.Max)}
	return l
}

// processCPU is the process's user+system CPU time so far (getrusage).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rss is the process's resident set size from /proc/self/statm; 0 where
// there is no /proc.
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * uint64(os.Getpagesize())
}
