package telemetry

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

const (
	defaultQueueSize = 2048
	maxBatch         = 512
	batchDelay       = time.Second
)

// queueStats count what became of sampled spans.
type queueStats struct {
	exported  prometheus.Counter
	dropped   *prometheus.CounterVec
	queueFull prometheus.Counter
	failed    prometheus.Counter
}

func newQueueStats(appID string) *queueStats {
	s := &queueStats{
		exported: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "outrigger", Subsystem: "tracing", Name: "spans_exported_total",
			Help:        "Sampled spans an exporter accepted.",
			ConstLabels: prometheus.Labels{"app_id": appID},
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "outrigger", Subsystem: "tracing", Name: "spans_dropped_total",
			Help:        "Sampled spans lost: the export queue was full (queue_full) or the collector refused or did not answer (export_failed).",
			ConstLabels: prometheus.Labels{"app_id": appID},
		}, []string{"reason"}),
	}
	s.queueFull = s.dropped.WithLabelValues("queue_full")
	s.failed = s.dropped.WithLabelValues("export_failed")
	return s
}

// spanQueue hands ended, sampled spans to an exporter in batches from a
// goroutine of its own. It never blocks the span's request: a full queue
// drops the span and counts it. The SDK's batch processor drops the same
// way but does not say how many, and a sidecar's operator must know.
type spanQueue struct {
	exp   sdktrace.SpanExporter
	ch    chan sdktrace.ReadOnlySpan
	flush chan chan struct{}
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
	stats *queueStats
	log   *slog.Logger
}

func newSpanQueue(exp sdktrace.SpanExporter, size int, stats *queueStats, log *slog.Logger) *spanQueue {
	if size <= 0 {
		size = defaultQueueSize
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	q := &spanQueue{
		exp:   exp,
		ch:    make(chan sdktrace.ReadOnlySpan, size),
		flush: make(chan chan struct{}),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
		stats: stats,
		log:   log,
	}
	go q.run()
	return q
}

func (q *spanQueue) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

func (q *spanQueue) OnEnd(s sdktrace.ReadOnlySpan) {
	if !s.SpanContext().IsSampled() {
		return
	}
	select {
	case <-q.stop:
		q.stats.queueFull.Inc()
	default:
		select {
		case q.ch <- s:
		default:
			q.stats.queueFull.Inc()
		}
	}
}

func (q *spanQueue) run() {
	defer close(q.done)
	batch := make([]sdktrace.ReadOnlySpan, 0, maxBatch)
	timer := time.NewTimer(batchDelay)
	defer timer.Stop()
	// drain takes what is queued now into batch, exporting full batches.
	drain := func() {
		for {
			select {
			case s := <-q.ch:
				batch = append(batch, s)
				if len(batch) == maxBatch {
					q.export(batch)
					batch = batch[:0]
				}
			default:
				return
			}
		}
	}
	for {
		select {
		case s := <-q.ch:
			batch = append(batch, s)
			if len(batch) == maxBatch {
				q.export(batch)
				batch = batch[:0]
			}
		case <-timer.C:
			q.export(batch)
			batch = batch[:0]
			timer.Reset(batchDelay)
		case ack := <-q.flush:
			drain()
			q.export(batch)
			batch = batch[:0]
			close(ack)
		case <-q.stop:
			drain()
			q.export(batch)
			return
		}
	}
}

func (q *spanQueue) export(batch []sdktrace.ReadOnlySpan) {
	if len(batch) == 0 {
		return
	}
	// The exporter's own timeout bounds the call.
	if err := q.exp.ExportSpans(context.Background(), batch); err != nil {
		q.stats.failed.Add(float64(len(batch)))
		q.log.Debug("exporting spans failed; they are dropped", "spans", len(batch), "err", err)
		return
	}
	q.stats.exported.Add(float64(len(batch)))
}

func (q *spanQueue) ForceFlush(ctx context.Context) error {
	ack := make(chan struct{})
	select {
	case q.flush <- ack:
	case <-q.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ack:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (q *spanQueue) Shutdown(ctx context.Context) error {
	q.once.Do(func() { close(q.stop) })
	select {
	case <-q.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return q.exp.Shutdown(ctx)
}
