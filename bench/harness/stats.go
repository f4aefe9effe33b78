package harness

import (
	"math"
	"slices"
	"time"
)

// OpStats summarises one operation of one target in one round: the
// latencies of its recorded operations, each timed on its own.
type OpStats struct {
	N    int           `json:"n"`
	Min  time.Duration `json:"min_ns"`
	P50  time.Duration `json:"p50_ns"`
	P90  time.Duration `json:"p90_ns"`
	P99  time.Duration `json:"p99_ns"`
	Max  time.Duration `json:"max_ns"`
	Mean time.Duration `json:"mean_ns"`
	// Samples are the latencies in the order the operations ran.
	Samples []time.Duration `json:"samples_ns"`
}

// Summarize computes the statistics of samples (which it does not modify).
func Summarize(samples []time.Duration) OpStats {
	s := OpStats{N: len(samples), Samples: samples}
	if len(samples) == 0 {
		return s
	}
	sorted := slices.Clone(samples)
	slices.Sort(sorted)
	var sum time.Duration
	for _, d := range sorted {
		sum += d
	}
	s.Min, s.Max = sorted[0], sorted[len(sorted)-1]
	s.P50 = Percentile(sorted, 50)
	s.P90 = Percentile(sorted, 90)
	s.P99 = Percentile(sorted, 99)
	s.Mean = sum / time.Duration(len(sorted))
	return s
}

// Percentile is the exact nearest-rank Percentile p (0 < p <= 100) of
// sorted: the smallest sample with at least p % of the samples at or below
// it.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	// ceil(n*p/100) without floating-point surprises for whole percents.
	n := len(sorted)
	rank := int((int64(n)*int64(math.Round(p*100)) + 9999) / 10000)
	rank = max(1, min(rank, n))
	return sorted[rank-1]
}

// Spread is the median of per-round values with the lowest and highest.
type Spread struct {
	Med, Lo, Hi float64
}

// SpreadOf is the median (the mean of the middle two for an even count),
// lowest and highest of v; false when v is empty.
func SpreadOf(v []float64) (Spread, bool) {
	if len(v) == 0 {
		return Spread{}, false
	}
	s := slices.Clone(v)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Spread{Med: m, Lo: s[0], Hi: s[len(s)-1]}, true
}

// MsOf is d in milliseconds.
func MsOf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
