package main

import (
	"errors"
	"flag"
	"fmt"

	"github.com/outrigger/outrigger/devmode"
)

// initCommand runs `outrigger init`: it writes the default resources that
// `outrigger run` gives apps naming none (a SQLite state store under
// OUTRIGGER_HOME), as `dapr init` writes ~/.dapr/components. `outrigger
// run` makes them on first use anyway; init makes them now, to edit.
func initCommand(args []string) error {
	fs := flag.NewFlagSet("outrigger init", flag.ContinueOnError)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	home, err := devmode.DefaultHome()
	if err != nil {
		return err
	}
	dir, created, err := devmode.DefaultResources(home)
	if err != nil {
		return err
	}
	if created {
		fmt.Printf("wrote the default resources to %s: state store %q (state.sqlite, %s)\n", dir, devmode.DefaultStoreName, devmode.StatePath(home))
	} else {
		fmt.Printf("%s already exists; left as it is\n", dir)
	}
	return nil
}
