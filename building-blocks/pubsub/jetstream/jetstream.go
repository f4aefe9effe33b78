// Package jetstream is the pubsub.jetstream broker: messages are kept in
// NATS JetStream streams, with the component metadata of Dapr's JetStream
// pub/sub.
//
// A topic is the NATS subject of the same name. Its messages go to the
// stream named by streamName; without one, to the stream whose subjects
// take the topic, and when there is none the broker creates a stream for
// the topic, named after it. Each consumer group (the subscribing app's id,
// or durableName) has one durable pull consumer per topic, filtered on the
// topic's subject: the group's subscribers share it and so compete for its
// messages, while every group has its own and gets every message. A new
// consumer starts with the messages published after it was created
// (deliverPolicy new, unless the metadata says otherwise); an existing one
// resumes where the group left it.
//
// Delivery is at least once. A handler's nil acknowledges the message, an
// error asks for it again after a short delay (NAK with delay), and a
// message whose subscriber vanished without answering is delivered again
// once ackWait has passed. Messages past their expiry are terminated on
// delivery without reaching the handler, and, on servers that support it
// (2.11 and later), also carry a per-message TTL.
//
// The content type, expiry and metadata of a message travel in NATS
// headers (Content-Type, Outrigger-Expires, Outrigger-Metadata), its data
// as the payload. A message larger than the server's max_payload is stored
// in parts under a subject of its stream reserved for them
// (_OUTRIGGER.chunks.<stream>), with a message on the topic's subject that
// lists the parts' sequences (Outrigger-Chunks); the subscriber reads them
// back and hands the handler the whole message.
package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/outrigger/outrigger/building-blocks/pubsub"
	"github.com/outrigger/outrigger/config/metadata"
	"github.com/outrigger/outrigger/proxy/rawio"
)

// Type is the component type this broker implements, version v1.
const Type = "pubsub.jetstream"

// The NATS headers of a message the broker publishes.
const (
	// HeaderContentType holds Message.ContentType (absent when empty).
	HeaderContentType = "Content-Type"
	// HeaderExpires holds Message.Expires in RFC 3339 with nanoseconds,
	// UTC (absent when zero).
	HeaderExpires = "Outrigger-Expires"
	// HeaderMetadata holds Message.Metadata as a JSON object of strings
	// (absent when empty).
	HeaderMetadata = "Outrigger-Metadata"
	// HeaderChunks is set on a message stored in parts: the stream
	// sequences of the parts, in order, separated by commas. Such a
	// message has no data of its own.
	HeaderChunks = "Outrigger-Chunks"
	// HeaderSize is the size in bytes of a message stored in parts.
	HeaderSize = "Outrigger-Size"
)

const (
	// defaultMaxInFlight is a subscription's concurrency when the request
	// sets none.
	defaultMaxInFlight = 16
	// defaultNakDelay is how long a message a handler failed waits before
	// it is delivered again, when backOff does not say (at most ackWait).
	defaultNakDelay = time.Second
	// defaultPullWait is how long a pull request waits for messages.
	defaultPullWait = 5 * time.Second
	// publishAttempt bounds one attempt at a publish; a publish whose ack
	// did not come is sent again, under the same message ID, which the
	// stream's duplicate window recognises.
	publishAttempt = 5 * time.Second
	// publishTimeout bounds a publish whose context has no deadline.
	publishTimeout = 30 * time.Second
	// setupTimeout bounds the stream and consumer set-up of a Subscribe.
	setupTimeout = 30 * time.Second
	// closeWait bounds how long Close waits for running handlers, then
	// for the connection to drain.
	closeWait = 10 * time.Second
)

var (
	errClosed = errors.New("pubsub/jetstream: the broker is closed")
	// errStreamGone: the stream a topic was found in no longer exists.
	errStreamGone = errors.New("the stream is gone")
)

// Broker is a pub/sub broker over one NATS connection. It is safe for
// concurrent use.
type Broker struct {
	meta     Metadata
	nc       *nats.Conn
	js       jetstream.JetStream
	log      *slog.Logger
	pullWait time.Duration

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	closed chan struct{} // closed once the connection is

	mu      sync.Mutex
	streams map[string]*streamRef // by topic
	created []string              // names of the streams this broker created
	// resolving serializes stream look-ups, so that one broker does not
	// race itself creating a stream.
	resolving sync.Mutex

	subs      sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

var (
	_ pubsub.Broker        = (*Broker)(nil)
	_ pubsub.BulkPublisher = (*Broker)(nil)
)

// streamRef is the stream a topic's messages go to.
type streamRef struct {
	subject string
	name    string
	stream  jetstream.Stream
	// dedicated: the stream is the topic's own (named after it), so
	// consumers are named after the group alone.
	dedicated bool
	// chunks: the stream takes chunkSubject(name), for large messages.
	chunks bool
	// ttl: the stream allows per-message TTLs.
	ttl bool
}

// New builds a broker from its component metadata and connects it; unknown
// lists the keys it does not read.
func New(meta map[string]string) (*Broker, []string, error) {
	var m Metadata
	unknown, err := metadata.Decode(meta, &m)
	if err != nil {
		return nil, unknown, err
	}
	if err := m.Validate(); err != nil {
		return nil, unknown, err
	}
	b, err := open(m)
	if err != nil {
		return nil, unknown, err
	}
	return b, unknown, nil
}

// open connects a broker for validated metadata.
func open(m Metadata) (*Broker, error) {
	auth, err := m.options()
	if err != nil {
		return nil, err
	}
	b := &Broker{
		meta:     m,
		log:      slog.Default().With("component", Type),
		pullWait: max(defaultPullWait, 3*m.heartbeat),
		closed:   make(chan struct{}),
		streams:  map[string]*streamRef{},
	}
	var closedOnce sync.Once
	opts := append([]nats.Option{
		nats.Name(m.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.Timeout(5 * time.Second),
		// Raw reads and writes (proxy/rawio): a sidecar's publish is a
		// write to a loopback socket more often than not.
		nats.SetCustomDialer(&rawio.Dialer{Dialer: net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}}),
		nats.ClosedHandler(func(*nats.Conn) { closedOnce.Do(func() { close(b.closed) }) }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				b.log.Warn("NATS connection lost; reconnecting", "error", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			b.log.Info("NATS connection re-established", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			b.log.Warn("NATS asynchronous error", "error", err)
		}),
	}, auth...)
	nc, err := nats.Connect(m.NatsURL, opts...)
	if err != nil {
		return nil, fmt.Errorf("pubsub/jetstream: connecting to %s: %w", redact(m.NatsURL), err)
	}
	jsOpts := []jetstream.JetStreamOpt{jetstream.WithPublishAsyncTimeout(2 * publishAttempt)}
	var js jetstream.JetStream
	switch {
	case m.Domain != "":
		js, err = jetstream.NewWithDomain(nc, m.Domain, jsOpts...)
	case m.APIPrefix != "":
		js, err = jetstream.NewWithAPIPrefix(nc, m.APIPrefix, jsOpts...)
	default:
		js, err = jetstream.New(nc, jsOpts...)
	}
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = js.AccountInfo(ctx)
		cancel()
	}
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("pubsub/jetstream: JetStream on %s: %w", redact(m.NatsURL), err)
	}
	b.nc, b.js = nc, js
	b.ctx, b.cancel = context.WithCancel(context.Background())
	return b, nil
}

// redact hides the passwords of URLs in a server list.
func redact(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			parts[i] = u.Redacted()
		}
	}
	return strings.Join(parts, ",")
}

// Features implements pubsub.Broker: expired messages are dropped on
// delivery (and by the server where it supports per-message TTLs), and a
// subscriber with MaxInFlight 1 pulls one message at a time, so it gets a
// topic's messages in stream order.
func (b *Broker) Features() pubsub.Features {
	return pubsub.Features{MessageTTL: true, Ordered: true}
}

// serverAtLeast reports whether the connected server's version is at least
// major.minor.
func (b *Broker) serverAtLeast(major, minor int) bool {
	v := strings.SplitN(strings.TrimPrefix(b.nc.ConnectedServerVersion(), "v"), ".", 3)
	if len(v) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(v[0])
	mi, err2 := strconv.Atoi(v[1])
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

// streamFor returns the stream of topic, found or created once and
// remembered.
func (b *Broker) streamFor(ctx context.Context, topic string) (*streamRef, error) {
	b.mu.Lock()
	ref := b.streams[topic]
	b.mu.Unlock()
	if ref != nil {
		return ref, nil
	}
	subject, err := subjectFor(topic)
	if err != nil {
		return nil, err
	}
	b.resolving.Lock()
	defer b.resolving.Unlock()
	b.mu.Lock()
	ref = b.streams[topic]
	b.mu.Unlock()
	if ref != nil {
		return ref, nil
	}
	ref, err = b.resolve(ctx, topic, subject)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.streams[topic] = ref
	b.mu.Unlock()
	return ref, nil
}

// forget drops what streamFor remembers of topic, for a stream that went
// away.
func (b *Broker) forget(topic string) {
	b.mu.Lock()
	delete(b.streams, topic)
	b.mu.Unlock()
}

// resolve finds or creates the stream of topic.
func (b *Broker) resolve(ctx context.Context, topic, subject string) (*streamRef, error) {
	name := b.meta.StreamName
	var s jetstream.Stream
	var err error
	if name != "" {
		s, err = b.ensureStream(ctx, name, subject)
	} else {
		for attempt := 0; ; attempt++ {
			var found string
			found, err = b.js.StreamNameBySubject(ctx, subject)
			if err == nil {
				name = found
				s, err = b.js.Stream(ctx, name)
				break
			}
			if !errors.Is(err, jetstream.ErrStreamNotFound) {
				break
			}
			name = streamNameFor(topic)
			s, err = b.ensureStream(ctx, name, subject)
			// Another client may have made a stream that takes the
			// subject meanwhile: look again.
			if apiCode(err) == jsErrSubjectOverlap && attempt == 0 {
				continue
			}
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("pubsub/jetstream: the stream of topic %q: %w", topic, err)
	}
	cfg := s.CachedInfo().Config
	return &streamRef{
		subject:   subject,
		name:      name,
		stream:    s,
		dedicated: b.meta.StreamName == "" && name == streamNameFor(topic),
		chunks:    covers(cfg.Subjects, chunkSubject(name)),
		ttl:       cfg.AllowMsgTTL,
	}, nil
}

// JetStream API error codes the broker tells apart.
const (
	jsErrSubjectOverlap    = 10065
	jsErrConsumerNameExist = 10013
)

func apiCode(err error) jetstream.ErrorCode {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode
	}
	return 0
}

// ensureStream returns stream name, created if missing, with subject
// added if the broker created it and it lacks the subject.
func (b *Broker) ensureStream(ctx context.Context, name, subject string) (jetstream.Stream, error) {
	for range 5 {
		s, err := b.js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			s, err = b.js.CreateStream(ctx, b.streamConfig(name, subject))
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				continue // made meanwhile by another client
			}
			if err != nil {
				return nil, fmt.Errorf("creating stream %q: %w", name, err)
			}
			b.mu.Lock()
			b.created = append(b.created, name)
			b.mu.Unlock()
			b.log.Info("stream created", "stream", name, "subject", subject)
			return s, nil
		}
		if err != nil {
			return nil, err
		}
		cfg := s.CachedInfo().Config
		if covers(cfg.Subjects, subject) {
			return s, nil
		}
		if !strings.HasPrefix(cfg.Description, managedMark) {
			return nil, fmt.Errorf("stream %q does not take subject %q; add the subject to the stream (this broker did not create it, and leaves its configuration alone)", name, subject)
		}
		cfg.Subjects = append(cfg.Subjects, subject)
		if !covers(cfg.Subjects, chunkSubject(name)) {
			cfg.Subjects = append(cfg.Subjects, chunkSubject(name))
		}
		if _, err := b.js.UpdateStream(ctx, cfg); err != nil {
			return nil, fmt.Errorf("adding subject %q to stream %q: %w", subject, name, err)
		}
		// Read the stream again: a concurrent update may have dropped the
		// subject.
	}
	return nil, fmt.Errorf("stream %q: could not create it or add subject %q, under concurrent changes", name, subject)
}

// streamConfig is the configuration of a stream the broker creates.
func (b *Broker) streamConfig(name, subject string) jetstream.StreamConfig {
	storage := jetstream.FileStorage
	if b.meta.MemoryStorage {
		storage = jetstream.MemoryStorage
	}
	desc := managedMark + ": created for topic " + subject
	if len(desc) > 1024 {
		desc = desc[:1024]
	}
	return jetstream.StreamConfig{
		Name:        name,
		Description: desc,
		Subjects:    []string{subject, chunkSubject(name)},
		Retention:   jetstream.LimitsPolicy,
		Storage:     storage,
		Replicas:    max(b.meta.Replicas, 1),
		AllowMsgTTL: b.serverAtLeast(2, 11),
	}
}

// publishContext bounds a publish: by the caller's deadline or
// publishTimeout, and by Close.
func (b *Broker) publishContext(ctx context.Context) (context.Context, context.CancelFunc) {
	var cancel context.CancelFunc
	if _, ok := ctx.Deadline(); ok {
		ctx, cancel = context.WithCancel(ctx)
	} else {
		ctx, cancel = context.WithTimeout(ctx, publishTimeout)
	}
	stop := context.AfterFunc(b.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

// Publish implements pubsub.Broker: it returns once the stream acknowledged
// the message.
func (b *Broker) Publish(ctx context.Context, topic string, msg pubsub.Message) error {
	if b.ctx.Err() != nil {
		return errClosed
	}
	ctx, cancel := b.publishContext(ctx)
	defer cancel()
	for attempt := 0; ; attempt++ {
		ref, err := b.streamFor(ctx, topic)
		if err != nil {
			return err
		}
		err = b.publish(ctx, ref, b.natsMsg(ref, msg))
		if errors.Is(err, errStreamGone) {
			// Deleted since it was looked up: look again (and create
			// it, where the broker creates streams) once.
			b.forget(topic)
			if attempt == 0 {
				continue
			}
		}
		if err != nil {
			return fmt.Errorf("pubsub/jetstream: publishing to %q: %w", topic, err)
		}
		return nil
	}
}

// BulkPublish implements pubsub.BulkPublisher: the messages are sent
// without waiting, then their acks awaited; one whose ack did not come is
// sent again on its own.
func (b *Broker) BulkPublish(ctx context.Context, topic string, msgs []pubsub.Message) error {
	if b.ctx.Err() != nil {
		return errClosed
	}
	if len(msgs) == 0 {
		return nil
	}
	ctx, cancel := b.publishContext(ctx)
	defer cancel()
	failed := map[int]error{}
	ref, err := b.streamFor(ctx, topic)
	if err != nil {
		for i := range msgs {
			failed[i] = err
		}
		return &pubsub.BulkError{Failed: failed}
	}
	type pending struct {
		i   int
		m   *nats.Msg
		ack jetstream.PubAckFuture
	}
	var sent []pending
	for i, msg := range msgs {
		m := b.natsMsg(ref, msg)
		if b.tooLarge(m) {
			if err := b.publish(ctx, ref, m); err != nil {
				failed[i] = err
			}
			continue
		}
		ack, err := b.js.PublishMsgAsync(m)
		if err != nil {
			// Too many acks outstanding, or no connection: this one
			// synchronously.
			if err := b.publish(ctx, ref, m); err != nil {
				failed[i] = err
			}
			continue
		}
		sent = append(sent, pending{i, m, ack})
	}
	for _, p := range sent {
		select {
		case <-p.ack.Ok():
		case <-p.ack.Err():
			if err := b.publish(ctx, ref, p.m); err != nil {
				failed[p.i] = err
			}
		case <-ctx.Done():
			failed[p.i] = ctx.Err()
		}
	}
	for _, err := range failed {
		if errors.Is(err, errStreamGone) {
			b.forget(topic) // the next call looks again
			break
		}
	}
	if len(failed) > 0 {
		return &pubsub.BulkError{Failed: failed}
	}
	return nil
}

// natsMsg is msg as the broker stores it on ref's subject.
func (b *Broker) natsMsg(ref *streamRef, msg pubsub.Message) *nats.Msg {
	m := nats.NewMsg(ref.subject)
	m.Data = msg.Data
	m.Header.Set(jetstream.MsgIDHeader, nuid.Next())
	if msg.ContentType != "" {
		m.Header.Set(HeaderContentType, msg.ContentType)
	}
	if !msg.Expires.IsZero() {
		m.Header.Set(HeaderExpires, msg.Expires.UTC().Format(time.RFC3339Nano))
		if ref.ttl {
			m.Header.Set(jetstream.MsgTTLHeader, ttlHeader(time.Until(msg.Expires)))
		}
	}
	if len(msg.Metadata) > 0 {
		if j, err := json.Marshal(msg.Metadata); err == nil {
			m.Header.Set(HeaderMetadata, string(j))
		}
	}
	return m
}

// ttlHeader is a Nats-TTL value for a message that expires in d: whole
// seconds, rounded up, at least one (the server's minimum).
func ttlHeader(d time.Duration) string {
	secs := int64(math.Ceil(d.Seconds()))
	return strconv.FormatInt(max(secs, 1), 10) + "s"
}

// tooLarge reports whether m exceeds the server's max_payload.
func (b *Broker) tooLarge(m *nats.Msg) bool {
	return int64(m.Size()-len(m.Subject)-len(m.Reply)) > b.nc.MaxPayload()
}

// publish stores m in ref's stream, in parts if it is too large for one
// NATS message.
func (b *Broker) publish(ctx context.Context, ref *streamRef, m *nats.Msg) error {
	if !b.tooLarge(m) {
		_, err := b.publishOne(ctx, ref, m)
		return err
	}
	if !ref.chunks {
		return fmt.Errorf("a message of %d bytes with its headers exceeds the server's max_payload of %d bytes, and stream %q does not take subject %q, where larger messages are stored in parts",
			m.Size()-len(m.Subject), b.nc.MaxPayload(), ref.name, chunkSubject(ref.name))
	}
	// Leave room for the stream's message-get reply, which carries a
	// part in base64 inside JSON.
	part := (int(b.nc.MaxPayload()) - 8192) * 3 / 4
	if part < 1024 {
		return fmt.Errorf("the server's max_payload of %d bytes is too small to store a message of %d bytes in parts", b.nc.MaxPayload(), len(m.Data))
	}
	id := m.Header.Get(jetstream.MsgIDHeader)
	ttl := m.Header.Get(jetstream.MsgTTLHeader)
	seqs := make([]string, 0, len(m.Data)/part+1)
	for i, off := 0, 0; off < len(m.Data); i, off = i+1, off+part {
		c := nats.NewMsg(chunkSubject(ref.name))
		c.Data = m.Data[off:min(off+part, len(m.Data))]
		c.Header.Set(jetstream.MsgIDHeader, id+"."+strconv.Itoa(i))
		if ttl != "" {
			c.Header.Set(jetstream.MsgTTLHeader, ttl)
		}
		ack, err := b.publishOne(ctx, ref, c)
		if err != nil {
			return fmt.Errorf("part %d of a message of %d bytes: %w", i, len(m.Data), err)
		}
		if ack.Stream != ref.name {
			return fmt.Errorf("part %d of a large message went to stream %q, not %q", i, ack.Stream, ref.name)
		}
		seqs = append(seqs, strconv.FormatUint(ack.Sequence, 10))
	}
	head := nats.NewMsg(m.Subject)
	for k, v := range m.Header {
		head.Header[k] = v
	}
	head.Header.Set(HeaderChunks, strings.Join(seqs, ","))
	head.Header.Set(HeaderSize, strconv.Itoa(len(m.Data)))
	if b.tooLarge(head) {
		return fmt.Errorf("the headers of a message (%d bytes) exceed the server's max_payload of %d bytes", head.Size()-len(head.Subject), b.nc.MaxPayload())
	}
	_, err := b.publishOne(ctx, ref, head)
	return err
}

// publishOne sends m and waits for the stream's ack, sending it again
// (under the same message ID, so the stream keeps one copy) while the ack
// does not come and ctx allows. When no stream answers and ref's stream
// does not exist, it fails with errStreamGone.
func (b *Broker) publishOne(ctx context.Context, ref *streamRef, m *nats.Msg) (*jetstream.PubAck, error) {
	wait := 100 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, publishAttempt)
		ack, err := b.js.PublishMsg(actx, m)
		cancel()
		if err == nil {
			return ack, nil
		}
		if ctx.Err() != nil {
			if b.ctx.Err() != nil {
				return nil, errClosed
			}
			return nil, fmt.Errorf("%w (last attempt: %v)", ctx.Err(), err)
		}
		if !retryable(err) {
			return nil, err
		}
		if errors.Is(err, jetstream.ErrNoStreamResponse) {
			ictx, cancel := context.WithTimeout(ctx, publishAttempt)
			_, ierr := b.js.Stream(ictx, ref.name)
			cancel()
			if errors.Is(ierr, jetstream.ErrStreamNotFound) {
				return nil, fmt.Errorf("stream %q: %w", ref.name, errStreamGone)
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (last attempt: %v)", ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// retryable reports whether a publish that failed with err may succeed if
// sent again: its ack did not come, or JetStream did not answer.
func retryable(err error) bool {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, nats.ErrTimeout),
		errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, nats.ErrDisconnected),
		errors.Is(err, nats.ErrConnectionReconnecting):
		return true
	case errors.As(err, &apiErr):
		return apiErr.Code == 503
	}
	return false
}

// Close implements pubsub.Broker: it ends the subscriptions, waits (a
// while) for running handlers so their answers reach the server, then
// drains and closes the connection.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		b.mu.Lock() // no Subscribe starts after this
		b.cancel()
		b.mu.Unlock()
		done := make(chan struct{})
		go func() { b.subs.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(closeWait):
			b.log.Warn("handlers still running after the subscriptions ended; closing the connection under them", "waited", closeWait)
		}
		if err := b.nc.Drain(); err != nil {
			b.nc.Close()
			if !errors.Is(err, nats.ErrConnectionClosed) {
				b.closeErr = fmt.Errorf("pubsub/jetstream: draining the connection: %w", err)
			}
		}
		select {
		case <-b.closed:
		case <-time.After(closeWait):
			b.nc.Close()
		}
	})
	return b.closeErr
}

// createdStreams lists the streams this broker created.
func (b *Broker) createdStreams() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.created...)
}
