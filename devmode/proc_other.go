//go:build !unix

package devmode

import (
	"errors"
	"os"
	"syscall"
)

var errUnsupported = errors.New("devmode: not supported on this platform")

func detached() *syscall.SysProcAttr { return nil }

func ownGroup() *syscall.SysProcAttr { return nil }

func signalGroup(pid int, sig syscall.Signal) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	if sig == syscall.SIGKILL {
		return p.Kill()
	}
	return errUnsupported
}

func signalProcess(pid int, sig syscall.Signal) error { return signalGroup(pid, sig) }

func processAlive(int) bool { return false }

func tryLock(*os.File) (bool, error) { return true, nil }

func unlock(*os.File) error { return nil }

func exitSignal(*os.ProcessState) (syscall.Signal, bool) { return 0, false }
