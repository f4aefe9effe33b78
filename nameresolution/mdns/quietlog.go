package mdns

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// How much the Resolver logs, per kind of line: a flood of answers, bogus
// or not, must not flood the log.
const (
	// dropLogEvery and dropLogBurst: one line per reason an answer is
	// dropped, every half minute.
	dropLogEvery = 30 * time.Second
	dropLogBurst = 1
	// eventLogEvery and eventLogBurst: instances found and gone, 20
	// lines of each every 10 seconds.
	eventLogEvery = 10 * time.Second
	eventLogBurst = 20
)

// quietLog logs at most burst lines of each kind in every window of every;
// the lines held back are counted, and their number is logged, with the
// last one's attributes, when the window ends (at the next line of the kind,
// or at a flush).
type quietLog struct {
	log   *slog.Logger
	every time.Duration
	burst int

	mu    sync.Mutex
	kinds map[string]*quietState // a fixed, small set of kinds
}

type quietState struct {
	start time.Time // of the window
	lines int       // logged in the window
	held  int64     // held back in the window
	level slog.Level
	msg   string
	attrs []any // of the last line held back
}

func newQuietLog(log *slog.Logger, every time.Duration, burst int) *quietLog {
	return &quietLog{log: log, every: every, burst: burst, kinds: map[string]*quietState{}}
}

// summary is a line that says how many lines of a kind were held back.
type summary struct {
	level slog.Level
	msg   string
	held  int64
	attrs []any
}

// note logs a line of kind, or holds it back.
func (q *quietLog) note(now time.Time, kind string, level slog.Level, msg string, attrs ...any) {
	q.mu.Lock()
	s := q.kinds[kind]
	if s == nil {
		s = &quietState{start: now}
		q.kinds[kind] = s
	}
	var sum *summary
	if !now.Before(s.start.Add(q.every)) {
		sum = s.endWindow(now)
	}
	logIt := s.lines < q.burst
	if logIt {
		s.lines++
	} else {
		s.held++
		s.level, s.msg, s.attrs = level, msg, attrs
	}
	q.mu.Unlock()
	if sum != nil {
		q.write(*sum)
	}
	if logIt {
		q.log.Log(context.Background(), level, msg, attrs...)
	}
}

// flush logs the summaries of the windows that have ended.
func (q *quietLog) flush(now time.Time) {
	var sums []summary
	q.mu.Lock()
	for _, s := range q.kinds {
		if !now.Before(s.start.Add(q.every)) {
			if sum := s.endWindow(now); sum != nil {
				sums = append(sums, *sum)
			}
		}
	}
	q.mu.Unlock()
	for _, sum := range sums {
		q.write(sum)
	}
}

// endWindow starts a new window and returns the summary of the last one,
// if it held lines back. The caller holds q.mu.
func (s *quietState) endWindow(now time.Time) *summary {
	var sum *summary
	if s.held > 0 {
		sum = &summary{s.level, s.msg, s.held, s.attrs}
	}
	s.start, s.lines, s.held, s.attrs = now, 0, 0, nil
	return sum
}

func (q *quietLog) write(s summary) {
	// The attributes are the last held-back line's.
	attrs := append([]any{"count", s.held, "window", q.every}, s.attrs...)
	q.log.Log(context.Background(), s.level, s.msg+" (more, held back)", attrs...)
}
