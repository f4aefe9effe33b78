//go:build !linux && !darwin

package main

import (
	"errors"
	"time"
)

// raiseNoFile reports no limit where there is no RLIMIT_NOFILE.
func raiseNoFile(need uint64) NoFileLimit {
	unlimited := rlimit{Soft: ^uint64(0), Hard: ^uint64(0)}
	return NoFileLimit{Needed: need, Before: unlimited, After: unlimited, Err: errors.New("no RLIMIT_NOFILE on this system")}
}

// processCPU is unknown here: CPU figures read 0.
func processCPU() time.Duration { return 0 }

// rss is unknown here.
func rss() uint64 { return 0 }
