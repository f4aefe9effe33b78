package main

import (
	"fmt"
	"io"
	"runtime"
	"slices"
	"time"
)

// writeReport prints res as markdown.
func writeReport(w io.Writer, cmd string, res *Result) {
	c := res.Config
	m := float64(c.Clients)
	fmt.Fprintf(w, "## xDS scale: %d incremental ADS sidecars, %d components\n\n", c.Clients, c.Components)
	fmt.Fprintf(w, "`%s`\n\n", cmd)
	fmt.Fprintf(w, "%s %s/%s, %d CPUs, GOMAXPROCS %d; %s.\n\n", runtime.Version(), runtime.GOOS, runtime.GOARCH,
		runtime.NumCPU(), runtime.GOMAXPROCS(0), noFileNote(res.NoFile))

	fmt.Fprintf(w, "| round | component changed | first sidecar ACKed | median sidecar | last sidecar (all %d) | process CPU |\n", c.Clients)
	fmt.Fprintln(w, "| ---: | --- | ---: | ---: | ---: | ---: |")
	lasts := make([]time.Duration, 0, len(res.Rounds))
	var cpu time.Duration
	for i, r := range res.Rounds {
		fmt.Fprintf(w, "| %d | %s | %s | %s | **%s** | %s |\n", i+1, r.Component, ms(r.First), ms(r.Median), ms(r.Last), ms(r.CPU))
		lasts = append(lasts, r.Last)
		cpu += r.CPU
	}
	slices.Sort(lasts)
	verdict := "met"
	if lasts[len(lasts)/2] >= time.Second {
		verdict = "NOT met"
	}
	fmt.Fprintln(w)

	fmt.Fprintln(w, "| measure | value |")
	fmt.Fprintln(w, "| --- | ---: |")
	fmt.Fprintf(w, "| file write → every sidecar ACKed, min / median / max of %d rounds (target < 1 s: %s) | %s / **%s** / %s |\n",
		len(lasts), verdict, ms(lasts[0]), ms(lasts[len(lasts)/2]), ms(lasts[len(lasts)-1]))
	fmt.Fprintln(w, "| of which the resource watcher's debounce (config.watchDebounce) | 100 ms |")
	fmt.Fprintf(w, "| snapshots the server rebuilt per change | %.0f |\n", res.SnapshotsPerRound)
	fmt.Fprintf(w, "| connect all %d sidecars and deliver %d components to each (%d at a time) | %s |\n",
		c.Clients, c.Components, c.ConnectConcurrency, ms(res.Connect))
	fmt.Fprintf(w, "| first delta response to one sidecar | %s |\n", bytesString(float64(res.InitialBytes)))
	fmt.Fprintf(w, "| resources in the response carrying a one-component change (most of any sidecar) | %d |\n", res.ChangeResources)
	if res.ReadyProbes > 1 {
		fmt.Fprintf(w, "| probes before the server served every component (start-up race, README.md) | %d |\n", res.ReadyProbes)
	}
	fmt.Fprintf(w, "| Go heap in use per sidecar (Δ HeapInuse / M, both ends) | %s |\n", bytesString(res.HeapPerClient))
	fmt.Fprintf(w, "| goroutine stacks per sidecar (Δ StackInuse / M, both ends) | %s |\n", bytesString(res.StackPerClient))
	if res.RSSKnown {
		fmt.Fprintf(w, "| RSS per sidecar (Δ RSS / M, both ends) | %s |\n", bytesString(res.RSSPerClient))
	} else {
		fmt.Fprintln(w, "| RSS per sidecar | n/a (no /proc) |")
	}
	if g := res.GoroutinesByRole; g != nil {
		fmt.Fprintf(w, "| goroutines per sidecar: server side / client side | %.1f / %.1f |\n", g["server"], g["client"])
	} else {
		fmt.Fprintf(w, "| goroutines per sidecar (both ends) | %.1f |\n", res.GoroutinesPerClient)
	}
	fmt.Fprintf(w, "| process CPU per change, mean (server and clients) | %s |\n", ms(cpu/time.Duration(len(res.Rounds))))
	if res.CPUShareErr == nil {
		s := res.CPUShare
		perRound := float64(res.RoundsCPU) / float64(len(res.Rounds))
		fmt.Fprintf(w, "| CPU share over the rounds by goroutine (pprof labels): server / clients / runtime and driver | %.0f %% / %.0f %% / %.0f %% |\n",
			100*s["server"], 100*s["client"], 100*s[""])
		fmt.Fprintf(w, "| ≈ server CPU per change (share × process CPU) | %s |\n", ms(time.Duration(s["server"]*perRound)))
		fmt.Fprintf(w, "| ≈ server CPU per change per sidecar | %s |\n", us(time.Duration(s["server"]*perRound/m)))
	} else {
		fmt.Fprintf(w, "| CPU share by goroutine | n/a (%v) |\n", res.CPUShareErr)
	}
	fmt.Fprintf(w, "| process CPU with every sidecar connected and nothing changing | %s per %s |\n", ms(res.IdleCPU), c.IdleWindow)
	fmt.Fprintf(w, "| NACKs | %.0f |\n", res.NACKs)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "The sidecars run in the same process as the server: memory and process CPU include both ends of every connection (see bench/xdsscale/README.md).")
}

func noFileNote(l NoFileLimit) string {
	switch {
	case l.Err != nil && !l.Raised:
		return fmt.Sprintf("open-file limit: %v", l.Err)
	case l.Raised:
		return fmt.Sprintf("open-file limit raised from %d to %d (hard %d; ~%d needed)", l.Before.Soft, l.After.Soft, l.After.Hard, l.Needed)
	default:
		return fmt.Sprintf("open-file limit %d (hard %d; ~%d needed, no change)", l.After.Soft, l.After.Hard, l.Needed)
	}
}

func ms(d time.Duration) string {
	if d < 10*time.Millisecond {
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
}

func us(d time.Duration) string {
	return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
}

func bytesString(b float64) string {
	switch {
	case b >= 1<<20 || b <= -(1<<20):
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	case b >= 1<<10 || b <= -(1<<10):
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	default:
		return fmt.Sprintf("%.0f B", b)
	}
}
