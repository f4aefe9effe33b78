package daprmetrics

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestSeriesGivesOneChildPerKey records through a Series from several
// goroutines and checks every increment reached the vector's child of its
// own labels, each key's value made at least once and kept once.
func TestSeriesGivesOneChildPerKey(t *testing.T) {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "c"}, []string{"app", "status"})
	type key struct{ app, status string }
	var made atomic.Int32
	s := Series[key, prometheus.Counter]{New: func(k key) prometheus.Counter {
		made.Add(1)
		return vec.WithLabelValues(k.app, k.status)
	}}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 1000 {
				k := key{"a", "200"}
				if (g+i)%4 == 0 {
					k = key{"b", "500"}
				}
				s.Get(k).Inc()
			}
		})
	}
	wg.Wait()
	if got := testutil.ToFloat64(vec.WithLabelValues("a", "200")); got != 3000 {
		t.Errorf("a/200 counted %v, want 3000", got)
	}
	if got := testutil.ToFloat64(vec.WithLabelValues("b", "500")); got != 1000 {
		t.Errorf("b/500 counted %v, want 1000", got)
	}
	if n := made.Load(); n < 2 {
		t.Errorf("New ran %d times for two keys", n)
	}
	if len(s.m) != 2 {
		t.Errorf("the cache holds %d keys, want 2", len(s.m))
	}
}
