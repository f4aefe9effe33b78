package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"fortio.org/fortio/fhttp"
	"fortio.org/fortio/periodic"
	"fortio.org/log"
)

// quietFortio lowers fortio's logging: it logs every run's start at info,
// and at warning each connection that fell behind the asked rate; the report
// says what matters (the achieved rate, checked against the asked one).
func quietFortio() {
	log.SetLogLevelQuiet(log.Error)
}

// loadSpec is one load scenario.
type loadSpec struct {
	url         string
	body        []byte
	qps         float64 // <= 0: as fast as possible
	duration    time.Duration
	connections int
	reqTimeout  time.Duration
	uniform     bool
}

// loadResult is what one scenario measured. Latencies include failed
// requests (as fortio's do); failures are counted separately.
type loadResult struct {
	Requests int64         `json:"requests"`
	Errors   int64         `json:"errors"` // answers other than 2xx, and socket errors
	Codes    map[int]int64 `json:"codes"`  // HTTP status -> count; -1 is fortio's socket error
	QPS      float64       `json:"qps"`    // achieved
	Duration time.Duration `json:"duration_ns"`
	P50      time.Duration `json:"p50_ns"`
	P90      time.Duration `json:"p90_ns"`
	P99      time.Duration `json:"p99_ns"`
	Max      time.Duration `json:"max_ns"`
	// SidecarCPU is the CPU time both sidecars used during the scenario
	// (user plus system, 10 ms resolution); zero for the direct target.
	SidecarCPU time.Duration   `json:"sidecar_cpu_ns,omitempty"`
	latency    []time.Duration // sorted
}

// fetcher is one connection's runner: fortio's HTTP client, timed per request.
type fetcher struct {
	client  fhttp.Fetcher
	latency []time.Duration
	codes   map[int]int64
}

func (f *fetcher) Run(ctx context.Context, _ periodic.ThreadID) (bool, string) {
	start := time.Now()
	code, _, _ := f.client.StreamFetch(ctx)
	f.latency = append(f.latency, time.Since(start))
	f.codes[code]++
	return code >= 200 && code < 300, ""
}

// runLoad drives one scenario with fortio's periodic runner (pacing, one
// goroutine per connection) and fast HTTP/1.1 client (keep-alive, one
// connection each).
func runLoad(ctx context.Context, s loadSpec) (*loadResult, error) {
	qps := s.qps
	if qps <= 0 {
		qps = -1 // fortio's "max"
	}
	stop := periodic.NewAborter()
	ro := periodic.RunnerOptions{
		RunType:     "HTTP",
		QPS:         qps,
		Duration:    s.duration,
		NumThreads:  s.connections,
		Percentiles: []float64{50, 90, 99},
		Out:         io.Discard,
		Stop:        stop,
		Uniform:     s.uniform,
	}
	ho := fhttp.HTTPOptions{
		URL:            s.url,
		Payload:        s.body,
		HTTPReqTimeOut: s.reqTimeout,
	}
	ho.Init(s.url)
	// NewPeriodicRunner clears the runners it is given (it moves the
	// options), so they are filled in afterwards, as fhttp does.
	r := periodic.NewPeriodicRunner(&ro)
	runners := r.Options().Runners
	expect := 1024
	if qps > 0 {
		expect = int(qps*s.duration.Seconds())/s.connections + 16
	}
	fetchers := make([]*fetcher, s.connections)
	defer func() {
		for _, f := range fetchers {
			if f != nil {
				f.client.Close()
			}
		}
	}()
	for i := range fetchers {
		o := ho // each client keeps its own state
		o.ID = i
		c, err := fhttp.NewClient(&o)
		if err != nil {
			stop.Abort(false)
			return nil, fmt.Errorf("fortio client for %s: %v", s.url, err)
		}
		fetchers[i] = &fetcher{client: c, latency: make([]time.Duration, 0, expect), codes: map[int]int64{}}
		runners[i] = fetchers[i]
		// Open the connection before the clock starts, as fortio does.
		_, _, _ = c.StreamFetch(ctx)
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			stop.Abort(false)
		case <-done:
		}
	}()
	rr := r.Run()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res := &loadResult{Codes: map[int]int64{}, QPS: rr.ActualQPS, Duration: rr.ActualDuration}
	for _, f := range fetchers {
		res.latency = append(res.latency, f.latency...)
		for code, n := range f.codes {
			res.Codes[code] += n
			res.Requests += n
			if code < 200 || code > 299 {
				res.Errors += n
			}
		}
	}
	slices.Sort(res.latency)
	if len(res.latency) == 0 {
		return nil, fmt.Errorf("no request completed against %s in %v", s.url, s.duration)
	}
	res.P50 = percentile(res.latency, 50)
	res.P90 = percentile(res.latency, 90)
	res.P99 = percentile(res.latency, 99)
	res.Max = res.latency[len(res.latency)-1]
	return res, nil
}

// percentile is the nearest-rank percentile of sorted values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(float64(len(sorted))*p/100+0.999999999) - 1
	rank = max(0, min(rank, len(sorted)-1))
	return sorted[rank]
}
