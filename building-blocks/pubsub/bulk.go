package pubsub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
)

// BulkSubscribe is a subscription's bulkSubscribe: events are delivered to
// the app in batches of up to MaxMessages, or what arrived within
// MaxAwait.
type BulkSubscribe struct {
	Enabled     bool
	MaxMessages int
	MaxAwait    time.Duration
}

// Defaults of bulkSubscribe, as Dapr's.
const (
	defaultBulkMessages = 100
	defaultBulkAwait    = time.Second
)

// batchEntry is one event waiting in a batch, with where its status goes.
type batchEntry struct {
	id     string
	event  *cloudEvent
	status chan string
}

// batcher gathers the events of one bulk subscription into batches.
type batcher struct {
	sub  *Subscriber
	s    *Subscription
	path func(*cloudEvent) string

	mu      sync.Mutex
	pending []*batchEntry
	timer   *time.Timer
}

// add puts event in the current batch and waits for its status.
func (b *batcher) add(ctx context.Context, event *cloudEvent) (string, error) {
	e := &batchEntry{id: newID(), event: event, status: make(chan string, 1)}
	b.mu.Lock()
	b.pending = append(b.pending, e)
	if len(b.pending) >= b.s.Bulk.MaxMessages {
		batch := b.take()
		b.mu.Unlock()
		go b.flush(ctx, batch)
	} else {
		if b.timer == nil {
			b.timer = time.AfterFunc(b.s.Bulk.MaxAwait, func() {
				b.mu.Lock()
				batch := b.take()
				b.mu.Unlock()
				b.flush(context.WithoutCancel(ctx), batch)
			})
		}
		b.mu.Unlock()
	}
	select {
	case st := <-e.status:
		return st, nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// take empties the current batch; b.mu is held.
func (b *batcher) take() []*batchEntry {
	batch := b.pending
	b.pending = nil
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	return batch
}

// flush delivers a batch (grouped by route) and hands each entry its
// status; an entry the app did not answer for is retried.
func (b *batcher) flush(ctx context.Context, batch []*batchEntry) {
	if len(batch) == 0 {
		return
	}
	start := time.Now()
	tally := map[string]int{} // the entries by status, for the metrics
	byPath := map[string][]*batchEntry{}
	for _, e := range batch {
		p := b.path(e.event)
		if p == "" {
			e.status <- statusDrop
			tally[statusDrop]++
			continue
		}
		byPath[p] = append(byPath[p], e)
	}
	// The component's inbound timeout bounds each batch's delivery.
	pol := b.sub.inboundPolicy(b.s.PubsubName)
	timeout := pol.Timeout
	for path, entries := range byPath {
		dctx, cancel := ctx, context.CancelFunc(func() {})
		if timeout > 0 {
			dctx, cancel = context.WithTimeout(ctx, timeout)
		}
		if pol.Observer != nil {
			pol.Observer.Applied()
		}
		var spans []trace.Span
		if b.sub.Tracer != nil {
			spans = make([]trace.Span, len(entries))
			for i, e := range entries {
				spans[i] = deliverySpan(ctx, b.sub.Tracer, b.s.Topic, e.event, len(entries))
			}
		}
		statuses, err := b.sub.deliverBulk(dctx, b.s, path, entries)
		if pol.Observer != nil && timeout > 0 && dctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
			pol.Observer.TimedOut()
		}
		cancel()
		for i, e := range entries {
			st := statuses[e.id]
			if err != nil || st == "" {
				st = statusRetry
			}
			if spans != nil {
				endDeliverySpan(spans[i], st, err)
			}
			e.status <- st
			tally[st]++
		}
	}
	if b.sub.Ingress != nil {
		b.sub.Ingress.BulkDelivered(b.s.PubsubName, b.s.Topic, tally[statusSuccess], tally[statusRetry], tally[statusDrop], time.Since(start))
	}
}

// deliverBulk sends one batch to the app: the bulk HTTP body, or
// AppCallback/OnBulkTopicEvent for gRPC apps. It returns the statuses by entry
// id.
func (sub *Subscriber) deliverBulk(ctx context.Context, s *Subscription, path string, entries []*batchEntry) (map[string]string, error) {
	out := make(map[string]string, len(entries))
	if sub.App.Protocol() == "grpc" {
		req := &runtimev1pb.TopicEventBulkRequest{Id: newID(), Topic: s.Topic, PubsubName: s.PubsubName, Type: defaultEventType, Path: path, Metadata: s.Metadata}
		for _, e := range entries {
			ce, err := topicEventRequest(s, path, e.event)
			if err != nil {
				out[e.id] = statusDrop
				continue
			}
			req.Entries = append(req.Entries, &runtimev1pb.TopicEventBulkRequestEntry{
				EntryId: e.id, ContentType: CloudEventContentType,
				Event: &runtimev1pb.TopicEventBulkRequestEntry_CloudEvent{CloudEvent: &runtimev1pb.TopicEventCERequest{
					Id: ce.GetId(), Source: ce.GetSource(), Type: ce.GetType(), SpecVersion: ce.GetSpecVersion(),
					DataContentType: ce.GetDataContentType(), Data: ce.GetData(), Extensions: ce.GetExtensions(),
				}},
			})
		}
		cctx, release, err := sub.App.WithToken(ctx)
		if err != nil {
			return nil, err
		}
		defer release()
		resp, err := sub.App.Callback().OnBulkTopicEvent(cctx, req)
		if err != nil {
			return nil, err
		}
		for _, st := range resp.GetStatuses() {
			switch st.GetStatus() {
			case runtimev1pb.TopicEventResponse_SUCCESS:
				out[st.GetEntryId()] = statusSuccess
			case runtimev1pb.TopicEventResponse_DROP:
				out[st.GetEntryId()] = statusDrop
			default:
				out[st.GetEntryId()] = statusRetry
			}
		}
		return out, nil
	}
	b := bulkBody(s, entries)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://app/"+strings.TrimPrefix(path, "/"), bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := sub.App.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	switch {
	case resp.StatusCode == http.StatusNotFound:
		for _, e := range entries {
			out[e.id] = statusDrop
		}
		return out, nil
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return nil, fmt.Errorf("the app answered %d", resp.StatusCode)
	}
	var st struct {
		Statuses []struct {
			EntryID string `json:"entryId"`
			Status  string `json:"status"`
		} `json:"statuses"`
	}
	if err := json.Unmarshal(answer, &st); err != nil {
		return nil, errors.New("the app's answer to a bulk delivery is not {\"statuses\": [...]}")
	}
	for _, x := range st.Statuses {
		switch strings.ToUpper(x.Status) {
		case statusSuccess, statusDrop, statusRetry:
			out[x.EntryID] = strings.ToUpper(x.Status)
		default:
			out[x.EntryID] = statusRetry
		}
	}
	return out, nil
}

// bulkBody is the JSON body of a bulk delivery over HTTP, as daprd sends
// it. It is written directly, the events copied in as they are: encoding
// it with encoding/json would scan every event again.
func bulkBody(s *Subscription, entries []*batchEntry) []byte {
	size := 256
	for _, e := range entries {
		size += len(e.event.raw) + len(e.id) + 80
	}
	var o jsonObject
	o.buf = make([]byte, 0, size)
	o.key("entries")
	o.buf = append(o.buf, '[')
	for i, e := range entries {
		if i > 0 {
			o.buf = append(o.buf, ',')
		}
		entry := jsonObject{buf: o.buf}
		entry.str("entryId", e.id)
		entry.raw("event", e.event.raw)
		entry.str("contentType", CloudEventContentType)
		o.buf = entry.bytes()
	}
	o.buf = append(o.buf, ']')
	o.str("id", newID())
	if len(s.Metadata) > 0 {
		keys := make([]string, 0, len(s.Metadata))
		for k := range s.Metadata {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		o.key("metadata")
		meta := jsonObject{buf: o.buf}
		for _, k := range keys {
			meta.str(k, s.Metadata[k])
		}
		o.buf = meta.bytes()
	}
	o.str("pubsubname", s.PubsubName)
	o.str("topic", s.Topic)
	o.str("type", defaultEventType)
	return o.bytes()
}
