package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/outrigger/outrigger/devmode"
)

// stopCommand runs `outrigger stop`: it stops the development control
// process that `outrigger run` started.
func stopCommand(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("outrigger stop", flag.ContinueOnError)
	timeout := fs.Duration("timeout", devmode.DefaultStopTimeout, "how long to wait for it to exit before killing it")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	if *timeout <= 0 {
		return usageError{fmt.Errorf("--timeout %v: must be positive", *timeout)}
	}
	home, err := devmode.DefaultHome()
	if err != nil {
		return err
	}
	rec, err := devmode.StopControlPlane(ctx, home, *timeout)
	if errors.Is(err, devmode.ErrNoControlPlane) {
		if rec.PID != 0 {
			fmt.Printf("no development control process is running (removed the stale record of pid %d from %s)\n", rec.PID, home)
		} else {
			fmt.Printf("no development control process is running (%s=%s)\n", devmode.HomeEnv, home)
		}
		return nil
	}
	if err != nil {
		return err
	}
	fmt.Printf("stopped the development control process (pid %d, %s)\n", rec.PID, rec.Address)
	return nil
}
