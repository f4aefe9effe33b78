package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/outrigger/outrigger/bench/harness"
)

// selfCPU is the CPU time (user plus system) the harness process has used:
// the NATS server, the subscriber app and the publishers.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// jetStreamMarker is in every daprd binary that registers Dapr's
// pubsub.jetstream (the package path stays in the symbol table of a
// stripped binary too). Dapr registers it only under the allcomponents
// build tag; scripts/tools.sh builds daprd with stablecomponents.
const jetStreamMarker = "github.com/dapr/components-contrib/pubsub/jetstream"

// hasJetStream reports whether the daprd binary at path has Dapr's
// pubsub.jetstream component.
func hasJetStream(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	marker := []byte(jetStreamMarker)
	buf := make([]byte, len(marker)-1+4<<20)
	k := 0 // bytes kept from the chunk before, so a marker across two chunks is found
	for {
		n, err := f.Read(buf[k:])
		end := k + n
		if bytes.Contains(buf[:end], marker) {
			return true, nil
		}
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		k = min(end, len(marker)-1)
		copy(buf, buf[end-k:end])
	}
}

// allComponentsDaprd is where the README's build puts a daprd with every
// component: beside the scripts/tools.sh one, as daprd-1.18.1-allcomponents.
func allComponentsDaprd(toolsDaprd string) string {
	return filepath.Join(filepath.Dir(filepath.Dir(toolsDaprd)), "daprd-"+harness.DaprdVersion+"-allcomponents", "daprd")
}

// chooseDaprd picks the daprd of the run: path, when it exists and has
// pubsub.jetstream. A given path (required) that does not is an error. The
// default path that does not falls back to allComponentsDaprd beside it,
// when that one has it; else the daprd targets are skipped. note says what
// happened, for the report.
func chooseDaprd(path string, required bool) (daprd, note string, err error) {
	if path == "" {
		return "", "daprd targets skipped: no daprd binary given", nil
	}
	if _, err := os.Stat(path); err != nil {
		if required {
			return "", "", fmt.Errorf("--daprd: %v", err)
		}
		return "", fmt.Sprintf("daprd targets skipped: no daprd binary at %s (scripts/tools.sh daprd, then the allcomponents build of bench/pubsubbench/README.md)", path), nil
	}
	ok, err := hasJetStream(path)
	if err != nil {
		return "", "", fmt.Errorf("--daprd: %v", err)
	}
	if ok {
		return path, "", nil
	}
	why := fmt.Sprintf("the daprd at %s has no pubsub.jetstream (Dapr registers it only in builds with -tags allcomponents; scripts/tools.sh builds -tags stablecomponents)", path)
	if required {
		return "", "", fmt.Errorf("--daprd: %s; build one as bench/pubsubbench/README.md says", why)
	}
	alt := allComponentsDaprd(path)
	if ok, err := hasJetStream(alt); err == nil && ok {
		return alt, fmt.Sprintf("%s; used %s instead, the same daprd 1.18.1 built with -tags allcomponents", why, alt), nil
	}
	return "", fmt.Sprintf("daprd targets skipped: %s, and there is no %s (bench/pubsubbench/README.md says how to build it)", why, alt), nil
}
