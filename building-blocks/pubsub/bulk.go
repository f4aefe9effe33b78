package pubsub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
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
	type entryJSON struct {
		EntryID     string            `json:"entryId"`
		Event       json.RawMessage   `json:"event"`
		ContentType string            `json:"contentType"`
		Metadata    map[string]string `json:"metadata,omitempty"`
	}
	body := struct {
		Entries    []entryJSON       `json:"entries"`
		ID         string            `json:"id"`
		Metadata   map[string]string `json:"metadata,omitempty"`
		PubsubName string            `json:"pubsubname"`
		Topic      string            `json:"topic"`
		Type       string            `json:"type"`
	}{ID: newID(), Metadata: s.Metadata, PubsubName: s.PubsubName, Topic: s.Topic, Type: defaultEventType}
	for _, e := range entries {
		body.Entries = append(body.Entries, entryJSON{EntryID: e.id, Event: e.event.raw, ContentType: CloudEventContentType})
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
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
