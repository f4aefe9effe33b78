package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outrigger/outrigger/bench/harness"
	"github.com/tidwall/gjson"
)

// Routes of the subscriber app.
const (
	routeBulk   = "/bulk"
	routeSingle = "/single"
)

// Phases of an end-to-end run, by the first letter of a message ID: the
// warm-up ("w0000000") and the measured messages ("m0000000").
const (
	phaseWarm = iota
	phaseMeasured
	nPhases
)

var phaseLetter = [nPhases]byte{'w', 'm'}

// messageID is the ID of message i of phase: its letter and 7 digits.
func messageID(phase, i int) string {
	b := make([]byte, 0, 8)
	b = append(b, phaseLetter[phase])
	s := strconv.Itoa(i)
	for range 7 - len(s) {
		b = append(b, '0')
	}
	return string(append(b, s...))
}

// parseID is the inverse of messageID.
func parseID(id string) (phase, i int, ok bool) {
	if len(id) != 8 {
		return 0, 0, false
	}
	switch id[0] {
	case 'w':
		phase = phaseWarm
	case 'm':
		phase = phaseMeasured
	default:
		return 0, 0, false
	}
	n, err := strconv.Atoi(id[1:])
	if err != nil || n < 0 {
		return 0, 0, false
	}
	return phase, n, true
}

// sink counts the deliveries of one topic by message ID.
type sink struct {
	topic string
	n     [nPhases]int

	mu         sync.Mutex
	seen       [nPhases][]uint32
	distinct   [nPhases]int
	deliveries [nPhases]int64 // every delivery, duplicates included
	dups       [nPhases]int64
	requests   [nPhases]int64 // app requests holding at least one ID of the phase
	lastNew    [nPhases]time.Time
	progress   time.Time // the last first arrival of any ID
	done       [nPhases]chan struct{}
}

func newSink(topic string, warm, measured int) *sink {
	s := &sink{topic: topic, n: [nPhases]int{warm, measured}}
	for p := range nPhases {
		s.seen[p] = make([]uint32, s.n[p])
		s.done[p] = make(chan struct{})
		if s.n[p] == 0 {
			close(s.done[p])
		}
	}
	return s
}

// record counts one app request's messages; false for an ID the sink does
// not expect.
func (s *sink) record(now time.Time, ids []string) (bad string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var inReq [nPhases]bool
	for _, id := range ids {
		p, i, ok := parseID(id)
		if !ok || i >= s.n[p] {
			bad = id
			continue
		}
		inReq[p] = true
		s.deliveries[p]++
		s.seen[p][i]++
		if s.seen[p][i] > 1 {
			s.dups[p]++
			continue
		}
		s.lastNew[p], s.progress = now, now
		s.distinct[p]++
		if s.distinct[p] == s.n[p] {
			close(s.done[p])
		}
	}
	for p := range nPhases {
		if inReq[p] {
			s.requests[p]++
		}
	}
	return bad
}

// counts is a consistent copy of the phase's counters.
type counts struct {
	distinct               int
	deliveries, dups, reqs int64
	lastNew                time.Time
}

func (s *sink) counts(phase int) counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return counts{distinct: s.distinct[phase], deliveries: s.deliveries[phase], dups: s.dups[phase], reqs: s.requests[phase], lastNew: s.lastNew[phase]}
}

// wait waits until every message of phase arrived at least once. A message
// is lost when no new one arrived for idle since the later of the last
// arrival and since: then, or when a process exits or ctx ends, it fails
// with the subscriber's log.
func (s *sink) wait(ctx context.Context, phase int, since time.Time, idle time.Duration, sub *harness.Process, others ...*harness.Process) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-s.done[phase]:
			return nil
		case <-ctx.Done():
			return sub.Failure(s.lost(phase, fmt.Sprintf("the run ended (%v)", context.Cause(ctx))))
		case <-tick.C:
		}
		for _, p := range append([]*harness.Process{sub}, others...) {
			if p.Exited() {
				return p.Failure(s.lost(phase, "a sidecar exited"))
			}
		}
		s.mu.Lock()
		last := s.progress
		s.mu.Unlock()
		if last.Before(since) {
			last = since
		}
		if time.Since(last) > idle {
			return sub.Failure(s.lost(phase, fmt.Sprintf("no new message for %v", idle)))
		}
	}
}

// lost describes the messages of phase that have not arrived.
func (s *sink) lost(phase int, why string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var missing []string
	for i, n := range s.seen[phase] {
		if n == 0 && len(missing) < 5 {
			missing = append(missing, messageID(phase, i))
		}
	}
	return fmt.Errorf("topic %s: %d of %d messages never reached the app (%s); first missing: %s",
		s.topic, s.n[phase]-s.distinct[phase], s.n[phase], why, strings.Join(missing, ", "))
}

// subscriptionJSON is one entry of the app's answer to GET /dapr/subscribe.
type subscriptionJSON struct {
	PubsubName    string             `json:"pubsubname"`
	Topic         string             `json:"topic"`
	Route         string             `json:"route"`
	BulkSubscribe *bulkSubscribeJSON `json:"bulkSubscribe,omitempty"`
}

type bulkSubscribeJSON struct {
	Enabled            bool `json:"enabled"`
	MaxMessagesCount   int  `json:"maxMessagesCount"`
	MaxAwaitDurationMs int  `json:"maxAwaitDurationMs"`
}

// app is the subscriber sidecar's app, an HTTP server in the harness: it
// answers GET /dapr/subscribe with the current subscriptions, takes single
// deliveries on /single and bulk ones on /bulk, and counts every message by
// topic and ID.
type app struct {
	srv  *http.Server
	port int

	mu    sync.RWMutex
	subs  []byte
	sinks map[string]*sink

	unexpected      atomic.Int64
	unexpectedMu    sync.Mutex
	unexpectedFirst string
}

func startApp() (*app, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("the subscriber app: %v", err)
	}
	a := &app{port: l.Addr().(*net.TCPAddr).Port, subs: []byte("[]"), sinks: map[string]*sink{}}
	a.srv = &http.Server{Handler: a, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = a.srv.Serve(l) }()
	return a, nil
}

func (a *app) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = a.srv.Shutdown(ctx)
}

// serve sets what GET /dapr/subscribe answers and the sinks that count the
// deliveries, replacing the ones before.
func (a *app) serve(subs []subscriptionJSON, sinks ...*sink) {
	b, _ := json.Marshal(subs)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.subs = b
	a.sinks = map[string]*sink{}
	for _, s := range sinks {
		a.sinks[s.topic] = s
	}
}

// takeUnexpected returns, and resets, the count of deliveries the app did
// not expect, with the first of them.
func (a *app) takeUnexpected() (int64, string) {
	a.unexpectedMu.Lock()
	defer a.unexpectedMu.Unlock()
	first := a.unexpectedFirst
	a.unexpectedFirst = ""
	return a.unexpected.Swap(0), first
}

func (a *app) unexpectedDelivery(what string) {
	a.unexpected.Add(1)
	a.unexpectedMu.Lock()
	if a.unexpectedFirst == "" {
		a.unexpectedFirst = what
	}
	a.unexpectedMu.Unlock()
}

func (a *app) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/dapr/subscribe":
		a.mu.RLock()
		b := a.subs
		a.mu.RUnlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	case r.Method == http.MethodPost && r.URL.Path == routeBulk:
		a.bulk(w, r)
	case r.Method == http.MethodPost && r.URL.Path == routeSingle:
		a.single(w, r)
	default:
		http.NotFound(w, r)
	}
}

// record counts the IDs of one delivery to topic.
func (a *app) record(topic string, ids []string) {
	now := time.Now()
	a.mu.RLock()
	s := a.sinks[topic]
	a.mu.RUnlock()
	if s == nil {
		a.unexpectedDelivery(fmt.Sprintf("%d message(s) of topic %q, which no sink counts", len(ids), topic))
		return
	}
	if bad := s.record(now, ids); bad != "" {
		a.unexpectedDelivery(fmt.Sprintf("message ID %q on topic %q", bad, topic))
	}
}

// single takes one delivery: a CloudEvent; 200 {"status":"SUCCESS"}.
func (a *app) single(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	topic, id, err := eventRef(body)
	if err != nil {
		a.unexpectedDelivery(fmt.Sprintf("a delivery to %s: %v: %.200s", routeSingle, err, body))
	} else {
		a.record(topic, []string{id})
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"status":"SUCCESS"}`))
}

// readBody reads a request's body into a buffer of its Content-Length,
// where io.ReadAll would grow one step by step (a fifth of the bulk
// handler's CPU in a profile).
func readBody(r *http.Request) ([]byte, error) {
	if r.ContentLength <= 0 || r.ContentLength > 64<<20 {
		return io.ReadAll(r.Body)
	}
	b := make([]byte, r.ContentLength)
	if _, err := io.ReadFull(r.Body, b); err != nil {
		return nil, err
	}
	return b, nil
}

// bulk takes a bulk delivery, {"entries":[{"entryId":..,"event":..},..],
// "topic":..,...}, and answers SUCCESS for every entry:
// {"statuses":[{"entryId":..,"status":"SUCCESS"},..]}.
func (a *app) bulk(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	topic, entryIDs, ids, err := bulkRefs(body)
	if err != nil {
		a.unexpectedDelivery(fmt.Sprintf("a delivery to %s: %v: %.200s", routeBulk, err, body))
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	a.record(topic, ids)
	out := make([]byte, 0, 16+len(entryIDs)*64)
	out = append(out, `{"statuses":[`...)
	for i, e := range entryIDs {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, `{"entryId":`...)
		out = strconv.AppendQuote(out, e)
		out = append(out, `,"status":"SUCCESS"}`...)
	}
	out = append(out, "]}"...)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

// The parts of a delivered event the app reads when the fast path (gjson,
// for the shape both sidecars send: the CloudEvent as a JSON object, its
// data the published JSON object) does not apply.
type (
	eventSlow struct {
		Topic      string          `json:"topic"`
		Data       json.RawMessage `json:"data"`
		DataBase64 string          `json:"data_base64"`
	}
	bulkSlow struct {
		Topic   string `json:"topic"`
		Entries []struct {
			EntryID string          `json:"entryId"`
			Event   json.RawMessage `json:"event"`
		} `json:"entries"`
	}
)

// bulkFast reads a valid bulk delivery in the shape both sidecars send
// without decoding the events' data: gjson skips over what it does not
// need, where encoding/json decoding into a struct scans every byte twice
// (in a profile of the harness under bulk load that decoding was a quarter
// of the harness's CPU, more than the NATS server's file store). ok is
// false for any other shape.
func bulkFast(body []byte) (topic string, entryIDs, ids []string, ok bool) {
	if !gjson.ValidBytes(body) {
		return "", nil, nil, false
	}
	root := gjson.ParseBytes(body)
	entries := root.Get("entries")
	if !entries.IsArray() {
		return "", nil, nil, false
	}
	topic = strings.Clone(root.Get("topic").String())
	ok = true
	entries.ForEach(func(_, e gjson.Result) bool {
		// One pass over the entry's keys and one over its event's, where a
		// Get per field would scan the entry again for each.
		var eid, id, evTopic gjson.Result
		e.ForEach(func(k, v gjson.Result) bool {
			switch k.Str {
			case "entryId":
				eid = v
			case "event":
				v.ForEach(func(k, v gjson.Result) bool {
					switch k.Str {
					case "topic":
						evTopic = v
					case "data":
						id = v.Get("id")
					}
					return true
				})
			}
			return true
		})
		if eid.Type != gjson.String || eid.Str == "" || id.Type != gjson.String || id.Str == "" {
			ok = false
			return false
		}
		if topic == "" {
			topic = strings.Clone(evTopic.String())
		}
		// Copies: the sink keeps the IDs, and a substring would keep the
		// whole body.
		entryIDs = append(entryIDs, strings.Clone(eid.Str))
		ids = append(ids, strings.Clone(id.Str))
		return true
	})
	return topic, entryIDs, ids, ok && len(ids) > 0
}

// bulkRefs reads a bulk delivery: its topic, entry IDs and message IDs.
func bulkRefs(body []byte) (topic string, entryIDs, ids []string, err error) {
	if topic, entryIDs, ids, ok := bulkFast(body); ok {
		return topic, entryIDs, ids, nil
	}
	var s bulkSlow
	if err := json.Unmarshal(body, &s); err != nil {
		return "", nil, nil, fmt.Errorf("not a bulk delivery: %v", err)
	}
	if len(s.Entries) == 0 {
		return "", nil, nil, errors.New("a bulk delivery without entries")
	}
	topic = s.Topic
	for i, e := range s.Entries {
		t, id, err := eventRef(e.Event)
		if err != nil {
			return "", nil, nil, fmt.Errorf("entry %d: %v", i, err)
		}
		if e.EntryID == "" {
			return "", nil, nil, fmt.Errorf("entry %d has no entryId", i)
		}
		if topic == "" {
			topic = t
		}
		entryIDs = append(entryIDs, e.EntryID)
		ids = append(ids, id)
	}
	return topic, entryIDs, ids, nil
}

// eventRef reads a delivered CloudEvent: its topic and the ID in its data.
// The event may come as a JSON object or a JSON string holding one, and its
// data as a JSON object, a string holding one, or data_base64.
func eventRef(raw []byte) (topic, id string, err error) {
	if gjson.ValidBytes(raw) {
		if ev := gjson.ParseBytes(raw); ev.IsObject() {
			if id := ev.Get("data.id"); id.Type == gjson.String && id.Str != "" {
				return strings.Clone(ev.Get("topic").String()), strings.Clone(id.Str), nil
			}
		}
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", "", fmt.Errorf("event: %v", err)
		}
		raw = []byte(s)
	}
	var ev eventSlow
	if err := json.Unmarshal(raw, &ev); err != nil {
		return "", "", fmt.Errorf("not a CloudEvent: %v", err)
	}
	data := bytes.TrimSpace(ev.Data)
	if ev.DataBase64 != "" {
		if data, err = base64.StdEncoding.DecodeString(ev.DataBase64); err != nil {
			return "", "", fmt.Errorf("data_base64: %v", err)
		}
	}
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return "", "", fmt.Errorf("data: %v", err)
		}
		data = []byte(s)
	}
	var p struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(data, &p); err != nil || p.ID == "" {
		return "", "", fmt.Errorf("the event's data is not the published message (%.80q)", data)
	}
	return ev.Topic, p.ID, nil
}
