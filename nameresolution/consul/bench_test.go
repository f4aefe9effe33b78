package consul_test

import (
	"context"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/outrigger/outrigger/nameresolution"
	"github.com/outrigger/outrigger/nameresolution/consul"
)

// BenchmarkChangePropagation measures, against a real agent, the time from
// a service's registration (and deregistration) through the agent's API to
// the watcher's update that shows it: the latency a new or withdrawn
// instance reaches a sidecar's balancer with. It reports the median and the
// slowest of each, in milliseconds.
func BenchmarkChangePropagation(b *testing.B) {
	a := startAgent(b)
	client := a.Client()
	w := newWatcher(b, metadataFor(b, a.Addr(), nil))

	var mu sync.Mutex
	cond := sync.NewCond(&mu)
	var latest []nameresolution.Instance
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = w.Watch(ctx, "bench", "", func(set []nameresolution.Instance) {
			mu.Lock()
			latest = set
			mu.Unlock()
			cond.Broadcast()
		})
	}()
	defer func() { cancel(); <-done }()
	// waitUntil waits for a set for which ok holds, at most waitFor.
	waitUntil := func(ok func([]nameresolution.Instance) bool) {
		timer := time.AfterFunc(waitFor, cond.Broadcast)
		defer timer.Stop()
		deadline := time.Now().Add(waitFor)
		mu.Lock()
		defer mu.Unlock()
		for !ok(latest) {
			if time.Now().After(deadline) {
				b.Fatalf("no update within %s; latest %v", waitFor, latest)
			}
			cond.Wait()
		}
	}
	waitUntil(func(s []nameresolution.Instance) bool { return s != nil })

	var adds, removes []time.Duration
	b.ResetTimer()
	for i := range b.N {
		inst := nameresolution.Instance{AppID: "bench", Host: "127.0.0.1", Port: 46000 + i%10000}
		has := func(s []nameresolution.Instance) bool {
			return slices.ContainsFunc(s, func(in nameresolution.Instance) bool { return in.Address() == inst.Address() })
		}
		start := time.Now()
		register(b, client, serviceFor(inst))
		waitUntil(has)
		adds = append(adds, time.Since(start))

		start = time.Now()
		deregister(b, client, consul.ServiceID(inst))
		waitUntil(func(s []nameresolution.Instance) bool { return !has(s) })
		removes = append(removes, time.Since(start))
	}
	b.StopTimer()
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	for _, m := range []struct {
		name string
		ds   []time.Duration
	}{{"add", adds}, {"remove", removes}} {
		sort.Slice(m.ds, func(i, j int) bool { return m.ds[i] < m.ds[j] })
		b.ReportMetric(ms(m.ds[len(m.ds)/2]), m.name+"-p50-ms")
		b.ReportMetric(ms(m.ds[len(m.ds)-1]), m.name+"-max-ms")
	}
}
