package proxy

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
)

// errSuperseded is what an attempt's body reads once a later attempt of
// the same call has started: the failed attempt's stream is dead.
var errSuperseded = errors.New("request body: a later attempt of the call is sending it")

// replay lets a call whose attempt failed without an answer send its body
// again without buffering it first: the body streams to the peer as it
// arrives and is recorded on the way, up to maxReplayBody. Each attempt
// reads through its own replayReader, which gives the recorded bytes first
// and then reads on from the caller. Once more than maxReplayBody has been
// read, or an answer has come, recording stops and the call cannot be sent
// again.
type replay struct {
	src *limitedBody
	gen atomic.Uint32 // the current attempt's number

	mu        sync.Mutex
	rec       []byte
	recording bool
	err       error // the source's last error (io.EOF at its end), given to every attempt
}

func newReplay(src *limitedBody) *replay {
	return &replay{src: src, recording: true}
}

// next is the body of the next attempt, which supersedes every earlier one.
func (r *replay) next() *replayReader {
	return &replayReader{r: r, gen: r.gen.Add(1)}
}

// replayable reports whether everything read so far was recorded, so that
// another attempt can send the body whole.
func (r *replay) replayable() bool {
	if r == nil {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.recording
}

// stop ends the recording: the call has its answer, so no attempt follows.
func (r *replay) stop() {
	if r == nil {
		return
	}
	r.mu.Lock()
	r.recording = false
	r.mu.Unlock()
}

// replayReader is one attempt's body.
type replayReader struct {
	r   *replay
	gen uint32
	pos int // bytes this attempt has given
}

func (rr *replayReader) Read(p []byte) (int, error) {
	r := rr.r
	if r.gen.Load() != rr.gen {
		return 0, errSuperseded
	}
	r.mu.Lock()
	if rr.pos < len(r.rec) {
		n := copy(p, r.rec[rr.pos:])
		rr.pos += n
		if !r.recording && rr.pos == len(r.rec) {
			r.rec = nil // no other attempt will want it
		}
		r.mu.Unlock()
		return n, nil
	}
	if r.err != nil {
		err := r.err
		r.mu.Unlock()
		return 0, err
	}
	// A read from the caller may block; it holds the lock so that
	// attempts never read the source at once, and a new attempt's
	// first read waits for it.
	n, err := r.src.Read(p)
	if r.recording {
		if len(r.rec)+n <= maxReplayBody {
			r.rec = append(r.rec, p[:n]...)
		} else {
			r.recording = false
			r.rec = nil
		}
	}
	if err != nil {
		r.err = err
	}
	rr.pos += n
	r.mu.Unlock()
	if r.gen.Load() != rr.gen {
		// Superseded while reading: what was read is recorded for
		// the attempt that replaced this one.
		return 0, errSuperseded
	}
	return n, err
}

func (rr *replayReader) Close() error { return rr.r.src.Close() }

var _ io.ReadCloser = (*replayReader)(nil)
