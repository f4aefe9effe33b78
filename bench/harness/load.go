package harness

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"fortio.org/fortio/fhttp"
	"fortio.org/fortio/periodic"
	"fortio.org/log"

	"github.com/outrigger/outrigger/proxy"
)

// QuietFortio lowers fortio's logging, which is global to the process: it
// logs every run's start at info, and at warning each connection that fell
// behind the asked rate; a harness's report says what matters (the achieved
// rate, checked against the asked one).
func QuietFortio() {
	log.SetLogLevelQuiet(log.Error)
}

// LoadSpec is one load scenario: HTTP POSTs of Body (GETs when Body is
// empty) to URL.
type LoadSpec struct {
	URL  string
	Body []byte
	// QPS is the request rate over all connections; <= 0 sends as fast
	// as possible.
	QPS         float64
	Duration    time.Duration
	Connections int
	// ReqTimeout bounds one request; a request that times out counts as
	// an error.
	ReqTimeout time.Duration
	// Uniform staggers the requests of the connections uniformly (fortio's
	// -uniform).
	Uniform bool
	// Netns, when set, is a network namespace (a path) the connections are
	// opened in: an app's own, whose outbound TCP its sidecar intercepts.
	// A connection that has to be opened again during the run is opened
	// outside it, and fails.
	Netns string
}

// LoadResult is what one scenario measured. Latencies include failed
// requests (as fortio's do); failures are counted separately.
type LoadResult struct {
	Requests int64         `json:"requests"`
	Errors   int64         `json:"errors"` // answers other than 2xx, and socket errors
	Codes    map[int]int64 `json:"codes"`  // HTTP status -> count; -1 is fortio's socket error
	QPS      float64       `json:"qps"`    // achieved
	Duration time.Duration `json:"duration_ns"`
	P50      time.Duration `json:"p50_ns"`
	P90      time.Duration `json:"p90_ns"`
	P99      time.Duration `json:"p99_ns"`
	Max      time.Duration `json:"max_ns"`
	// SidecarCPU is the CPU time the sidecars used during the scenario
	// (user plus system, 10 ms resolution), for a harness that counts it;
	// RunLoad leaves it zero.
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

// RunLoad drives one scenario with fortio's periodic runner (pacing, one
// goroutine per connection) and fast HTTP/1.1 client (keep-alive, one
// connection each). Each connection sends one request before the clock
// starts, to open it; that request is not recorded. Percentiles are exact
// (nearest rank over every recorded request), not histogram buckets.
func RunLoad(ctx context.Context, s LoadSpec) (*LoadResult, error) {
	qps := s.QPS
	if qps <= 0 {
		qps = -1 // fortio's "max"
	}
	stop := periodic.NewAborter()
	ro := periodic.RunnerOptions{
		RunType:     "HTTP",
		QPS:         qps,
		Duration:    s.Duration,
		NumThreads:  s.Connections,
		Percentiles: []float64{50, 90, 99},
		Out:         io.Discard,
		Stop:        stop,
		Uniform:     s.Uniform,
	}
	ho := fhttp.HTTPOptions{
		URL:            s.URL,
		Payload:        s.Body,
		HTTPReqTimeOut: s.ReqTimeout,
	}
	ho.Init(s.URL)
	// NewPeriodicRunner clears the runners it is given (it moves the
	// options), so they are filled in afterwards, as fhttp does.
	r := periodic.NewPeriodicRunner(&ro)
	runners := r.Options().Runners
	expect := 1024
	if qps > 0 {
		expect = int(qps*s.Duration.Seconds())/s.Connections + 16
	}
	fetchers := make([]*fetcher, s.Connections)
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
			return nil, fmt.Errorf("fortio client for %s: %v", s.URL, err)
		}
		fetchers[i] = &fetcher{client: c, latency: make([]time.Duration, 0, expect), codes: map[int]int64{}}
		runners[i] = fetchers[i]
		// Open the connection before the clock starts, as fortio does.
		if s.Netns == "" {
			_, _, _ = c.StreamFetch(ctx)
			continue
		}
		if err := proxy.InNetns(s.Netns, func() error { _, _, _ = c.StreamFetch(ctx); return nil }); err != nil {
			stop.Abort(false)
			return nil, fmt.Errorf("opening a connection in %s: %w", s.Netns, err)
		}
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
	res := &LoadResult{Codes: map[int]int64{}, QPS: rr.ActualQPS, Duration: rr.ActualDuration}
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
		return nil, fmt.Errorf("no request completed against %s in %v", s.URL, s.Duration)
	}
	res.P50 = Percentile(res.latency, 50)
	res.P90 = Percentile(res.latency, 90)
	res.P99 = Percentile(res.latency, 99)
	res.Max = res.latency[len(res.latency)-1]
	return res, nil
}
