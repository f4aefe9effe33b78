// Package pubsub is the publish and subscribe building block: the
// component interface every message broker implements (Broker, with the
// optional BulkPublisher), the message type the runtime hands it, and the
// Dapr pub/sub API over brokers.
//
// Backends live in sub-packages, each passing the conformance suite in
// pubsubtest against a real broker. Nothing here registers anything: cmd/
// wires backends by their component type, and the sidecar mounts the API.
package pubsub

import (
	"context"
	"fmt"
	"time"
)

// Broker is a message broker component, as the runtime uses it. Methods
// are safe for concurrent use.
//
// Delivery is at least once: a message a handler did not acknowledge (it
// returned an error, or the subscriber went away before it returned) is
// delivered again, to the same or another subscriber of its group.
type Broker interface {
	// Publish sends msg to topic and returns once the broker has taken it
	// (durably, where the broker persists messages). An error means the
	// message may not have been taken.
	Publish(ctx context.Context, topic string, msg Message) error
	// Subscribe starts delivering the messages of req.Topic to handler,
	// in the background, until ctx is done; it returns once the
	// subscription is in place, so a message published after it returns
	// is delivered. Subscribers that share req.Group compete: each message
	// reaches one of them. Subscribers of different groups each get every
	// message published after they subscribed. When ctx ends, deliveries
	// in flight are left to finish or are redelivered later.
	Subscribe(ctx context.Context, req SubscribeRequest, handler Handler) error
	// Features says what the broker does beyond the above.
	Features() Features
	// Close stops every subscription and releases what the broker holds.
	Close() error
}

// Handler processes one delivered message. Returning nil acknowledges it;
// an error asks the broker to deliver it again later. A handler may be
// called from several goroutines at once (up to SubscribeRequest.MaxInFlight).
type Handler func(ctx context.Context, msg *Message) error

// BulkPublisher is a broker that publishes several messages in one call.
type BulkPublisher interface {
	// BulkPublish publishes msgs to topic; the error lists, per message
	// index, those that failed (nil when all were taken).
	BulkPublish(ctx context.Context, topic string, msgs []Message) error
}

// Features are what a broker does beyond publish and subscribe.
type Features struct {
	// MessageTTL: the broker drops messages past Message.Expires itself
	// (the runtime drops them on delivery either way).
	MessageTTL bool
	// Ordered: one subscriber receives the messages of a topic in publish
	// order, when none is redelivered.
	Ordered bool
}

// SubscribeRequest says what to subscribe to.
type SubscribeRequest struct {
	Topic string
	// Group is the consumer group: the subscribing app's id.
	Group string
	// MaxInFlight bounds concurrent handler calls (zero: the broker's
	// default, at least one).
	MaxInFlight int
	Metadata    map[string]string
}

// Message is one message as a broker carries it.
type Message struct {
	// Topic is set on delivery.
	Topic string
	// Data is the payload: a CloudEvent in JSON, or the raw payload of a
	// rawPayload publish.
	Data []byte
	// ContentType of Data.
	ContentType string
	// Metadata travels with the message where the broker can carry it
	// (headers, properties); a broker that cannot drops it.
	Metadata map[string]string
	// Expires, when not zero, is when the message stops being deliverable.
	Expires time.Time
	// ID is the broker's identifier of a delivered message, for logs; empty
	// when it has none.
	ID string
}

// BulkError is the error of a bulk publish in which some messages failed:
// by their index in the request.
type BulkError struct {
	Failed map[int]error
}

func (e *BulkError) Error() string {
	for i, err := range e.Failed {
		return fmt.Sprintf("%d of the messages were not published; message %d: %v", len(e.Failed), i, err)
	}
	return "no message failed"
}
