// Package rabbitmq is the pubsub.rabbitmq broker: topics and consumer groups
// on a RabbitMQ server over AMQP 0-9-1, in the layout of Dapr's RabbitMQ
// pub/sub, so that apps on Dapr and on Outrigger can share a server.
//
// Every topic is a durable exchange named after it (fanout by default).
// Every consumer group of a topic is a queue named <group>-<topic> (the
// prefix is consumerID when the metadata sets it), declared durable and
// bound to the topic's exchange. The subscribers of a group consume from
// the same queue and so compete for its messages; every group's queue gets
// its own copy of each message published once the queue exists.
//
// Publish waits for the server's publisher confirm (persistent messages, by
// default). Messages are acknowledged after their handler returns nil; a
// handler's error nacks the message back into its queue after a short
// delay, and a subscriber that goes away without an answer (its channel or
// connection closes) leaves its unacknowledged messages to RabbitMQ, which
// requeues them for the other subscribers of the group. A lost connection
// is re-established after reconnectWait; the topology is declared again and
// the subscriptions resume.
package rabbitmq

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/outrigger/outrigger/building-blocks/pubsub"
	"github.com/outrigger/outrigger/config/metadata"
)

// Type is the component type this broker implements, version v1.
const Type = "pubsub.rabbitmq"

const (
	// expiresHeader carries Message.Expires (RFC 3339, UTC) beside the
	// AMQP expiration, so a subscriber drops what expired on its way.
	expiresHeader = "outrigger-expires"
	// routingKeyMetadata is the message or subscription metadata key of
	// the routing key (binding keys, comma-separated, on a subscription),
	// as in Dapr; it matters for exchange kinds other than fanout.
	routingKeyMetadata = "routingKey"
	// defaultMaxInFlight is the handler concurrency of a subscription that
	// sets none.
	defaultMaxInFlight = 10
	// defaultNackDelay is how long a message whose handler failed waits
	// before it is nacked back into its queue (RabbitMQ requeues at the
	// head, so without it a failing message would loop hot).
	defaultNackDelay = 500 * time.Millisecond
	// publishAttempts bounds how often one message is sent before Publish
	// gives up; each attempt first waits for a live connection.
	publishAttempts = 5
	// retryPause separates attempts on a live connection.
	retryPause = 100 * time.Millisecond
	// subscribeTimeout bounds Subscribe's wait for its queue to be in
	// place.
	subscribeTimeout = time.Minute
	// dialTimeout bounds the TCP connect and the AMQP handshake.
	dialTimeout = 30 * time.Second
)

var errClosed = errors.New("pubsub/rabbitmq: the broker is closed")

// Broker is a pubsub.Broker on one RabbitMQ connection. It is safe for
// concurrent use.
type Broker struct {
	meta      Metadata
	uri       string
	tls       *tls.Config
	log       *slog.Logger
	nackDelay time.Duration

	ctx    context.Context // done when Close starts
	cancel context.CancelFunc
	wg     sync.WaitGroup // the supervisor and the subscriptions

	mu      sync.Mutex
	cur     *conn         // nil while reconnecting
	ready   chan struct{} // closed once cur is set
	closing bool

	pubMu   sync.Mutex
	pubConn *conn
	pubCh   *amqp.Channel // the publishing channel, in confirm mode

	closeOnce sync.Once
	closeErr  error

	// declared, when set (by tests, before any use), is told of the
	// exchanges and queues the broker declares.
	declared func(kind, name string)
}

// conn is one AMQP connection and what was declared on it.
type conn struct {
	c      *amqp.Connection
	raw    net.Conn // the socket under it (tests cut it)
	closed chan *amqp.Error

	mu        sync.Mutex
	exchanges map[string]bool
}

var (
	_ pubsub.Broker        = (*Broker)(nil)
	_ pubsub.BulkPublisher = (*Broker)(nil)
)

// New builds a broker from its component metadata and connects to the
// server, failing if it cannot; unknown lists the keys it does not read.
func New(meta map[string]string) (*Broker, []string, error) {
	var m Metadata
	unknown, err := metadata.Decode(meta, &m)
	if err != nil {
		return nil, unknown, err
	}
	if given(meta, "reconnectWait") && given(meta, "reconnectWaitSeconds") {
		return nil, unknown, errors.New("metadata reconnectWait, reconnectWaitSeconds: give only one of them")
	}
	if err := m.Validate(); err != nil {
		return nil, unknown, err
	}
	uri, _ := m.uri()
	tlsConfig, _ := m.tlsConfig()
	ctx, cancel := context.WithCancel(context.Background())
	b := &Broker{
		meta:      m,
		uri:       uri,
		tls:       tlsConfig,
		log:       slog.Default().With("component", Type),
		nackDelay: defaultNackDelay,
		ctx:       ctx,
		cancel:    cancel,
		ready:     make(chan struct{}),
	}
	c, err := b.dial()
	if err != nil {
		cancel()
		return nil, unknown, err
	}
	b.cur = c
	close(b.ready)
	b.wg.Go(func() { b.supervise(c) })
	return b, unknown, nil
}

// given reports whether meta has key (in any case) with a value.
func given(meta map[string]string, key string) bool {
	for k, v := range meta {
		if strings.EqualFold(k, key) && v != "" {
			return true
		}
	}
	return false
}

// dial opens a connection.
func (b *Broker) dial() (*conn, error) {
	props := amqp.NewConnectionProperties()
	if b.meta.ClientName != "" {
		props.SetClientConnectionName(b.meta.ClientName)
	}
	var (
		raw  net.Conn
		stop = func() bool { return false }
	)
	cfg := amqp.Config{
		Heartbeat:  b.meta.HeartBeat,
		Properties: props,
		// As amqp.DefaultDial, but Close interrupts it.
		Dial: func(network, addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: dialTimeout}
			nc, err := d.DialContext(b.ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// A deadline for the TLS and AMQP handshakes, which the
			// library clears once the connection is open.
			if err := nc.SetDeadline(time.Now().Add(dialTimeout)); err != nil {
				_ = nc.Close()
				return nil, err
			}
			raw = nc
			stop = context.AfterFunc(b.ctx, func() { _ = nc.Close() })
			return nc, nil
		},
	}
	if b.tls != nil {
		cfg.TLSClientConfig = b.tls.Clone()
	}
	if b.meta.SaslExternal {
		cfg.SASL = []amqp.Authentication{&amqp.ExternalAuth{}}
	}
	c, err := amqp.DialConfig(b.uri, cfg)
	stop()
	if err != nil {
		return nil, fmt.Errorf("pubsub/rabbitmq: connecting to %s: %w", address(b.uri), err)
	}
	return &conn{
		c:         c,
		raw:       raw,
		closed:    c.NotifyClose(make(chan *amqp.Error, 1)),
		exchanges: map[string]bool{},
	}, nil
}

// supervise replaces c, and each connection after it, when it is lost,
// until the broker closes.
func (b *Broker) supervise(c *conn) {
	for {
		select {
		case <-b.ctx.Done():
			return
		case err := <-c.closed:
			if b.ctx.Err() != nil {
				return
			}
			b.log.Warn("RabbitMQ connection lost; reconnecting", "address", address(b.uri), "error", err, "wait", b.meta.reconnectWait())
		}
		b.mu.Lock()
		if b.cur == c {
			b.cur = nil
			b.ready = make(chan struct{})
		}
		b.mu.Unlock()
		_ = c.c.Close()
		for {
			select {
			case <-b.ctx.Done():
				return
			case <-time.After(b.meta.reconnectWait()):
			}
			nc, err := b.dial()
			if err != nil {
				b.log.Warn("RabbitMQ reconnection failed", "error", err, "wait", b.meta.reconnectWait())
				continue
			}
			b.mu.Lock()
			if b.ctx.Err() != nil {
				b.mu.Unlock()
				_ = nc.c.Close()
				return
			}
			b.cur = nc
			close(b.ready)
			b.mu.Unlock()
			b.log.Info("RabbitMQ connection re-established", "address", address(b.uri))
			c = nc
			break
		}
	}
}

// connection returns a live connection, waiting for one while the broker
// reconnects.
func (b *Broker) connection(ctx context.Context) (*conn, error) {
	for {
		if b.ctx.Err() != nil {
			return nil, errClosed
		}
		b.mu.Lock()
		c, ready := b.cur, b.ready
		b.mu.Unlock()
		var wait <-chan time.Time
		if c != nil {
			if !c.c.IsClosed() {
				return c, nil
			}
			// Lost, and the supervisor has not noticed yet.
			wait = time.After(20 * time.Millisecond)
		}
		select {
		case <-ready:
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-b.ctx.Done():
			return nil, errClosed
		}
	}
}

// pause waits d, or until ctx or the broker is done.
func (b *Broker) pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-b.ctx.Done():
		return errClosed
	}
}

// retryable reports whether an operation that failed with err on c may
// succeed when tried again.
func retryable(c *conn, err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errClosed) {
		return false
	}
	if c == nil || c.c.IsClosed() {
		return true
	}
	var ae *amqp.Error
	if errors.As(err, &ae) {
		switch ae.Code {
		case amqp.AccessRefused, amqp.PreconditionFailed, amqp.NotAllowed, amqp.NotImplemented:
			return false
		}
	}
	return true
}

func (b *Broker) noteDeclared(kind, name string) {
	if b.declared != nil {
		b.declared(kind, name)
	}
}

// ensureExchange declares the exchange of topic on c, once per connection.
func (b *Broker) ensureExchange(c *conn, topic string) error {
	c.mu.Lock()
	done := c.exchanges[topic]
	c.mu.Unlock()
	if done {
		return nil
	}
	ch, err := c.c.Channel()
	if err != nil {
		return err
	}
	err = ch.ExchangeDeclare(topic, b.meta.ExchangeKind, true, false, false, false, nil)
	_ = ch.Close()
	if err != nil {
		return fmt.Errorf("declaring exchange %q: %w", topic, err)
	}
	b.noteDeclared("exchange", topic)
	c.mu.Lock()
	c.exchanges[topic] = true
	c.mu.Unlock()
	return nil
}

// publishChannel returns the publishing channel on c, opening it (in
// confirm mode) if need be.
func (b *Broker) publishChannel(c *conn) (*amqp.Channel, error) {
	b.pubMu.Lock()
	defer b.pubMu.Unlock()
	if b.pubConn == c && b.pubCh != nil {
		if !b.pubCh.IsClosed() {
			return b.pubCh, nil
		}
		// The server closed the channel on a live connection, such as
		// for a publish to an exchange deleted behind our back: declare
		// them again.
		c.mu.Lock()
		clear(c.exchanges)
		c.mu.Unlock()
	}
	if b.pubCh != nil {
		_ = b.pubCh.Close()
		b.pubCh, b.pubConn = nil, nil
	}
	ch, err := c.c.Channel()
	if err != nil {
		return nil, err
	}
	if b.meta.PublisherConfirm {
		if err := ch.Confirm(false); err != nil {
			_ = ch.Close()
			return nil, err
		}
	}
	b.pubCh, b.pubConn = ch, c
	return ch, nil
}

// Features implements pubsub.Broker: RabbitMQ expires messages itself (the
// per-message expiration), and a queue delivers to a subscriber handling
// one message at a time in publish order.
func (b *Broker) Features() pubsub.Features {
	return pubsub.Features{MessageTTL: true, Ordered: true}
}

// publishing is the AMQP message for msg, and its routing key.
func (b *Broker) publishing(msg pubsub.Message, now time.Time) (amqp.Publishing, string) {
	p := amqp.Publishing{
		ContentType:  msg.ContentType,
		Body:         msg.Data,
		DeliveryMode: uint8(b.meta.DeliveryMode),
		Timestamp:    now,
		MessageId:    newID(),
	}
	if len(msg.Metadata) > 0 {
		p.Headers = make(amqp.Table, len(msg.Metadata)+1)
		for k, v := range msg.Metadata {
			p.Headers[k] = v
		}
	}
	expires := msg.Expires
	if expires.IsZero() && b.meta.TTLInSeconds > 0 {
		expires = now.Add(time.Duration(b.meta.TTLInSeconds) * time.Second)
	}
	if !expires.IsZero() {
		ms := max((expires.Sub(now)+time.Millisecond-1)/time.Millisecond, 1)
		p.Expiration = strconv.FormatInt(int64(ms), 10)
		if p.Headers == nil {
			p.Headers = amqp.Table{}
		}
		p.Headers[expiresHeader] = expires.UTC().Format(time.RFC3339Nano)
	}
	return p, msg.Metadata[routingKeyMetadata]
}

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Publish implements pubsub.Broker. It returns once the server confirmed
// the message (with publisherConfirm, the default), retrying over a lost
// connection until ctx is done.
func (b *Broker) Publish(ctx context.Context, topic string, msg pubsub.Message) error {
	if topic == "" {
		return errors.New("pubsub/rabbitmq: publish: no topic")
	}
	p, key := b.publishing(msg, time.Now())
	return b.publish(ctx, topic, key, p)
}

func (b *Broker) publish(ctx context.Context, topic, key string, p amqp.Publishing) error {
	var last error
	for attempt := range publishAttempts {
		if attempt > 0 {
			if err := b.pause(ctx, retryPause); err != nil {
				return fmt.Errorf("pubsub/rabbitmq: publishing to %q: %w (after %v)", topic, err, last)
			}
		}
		dc, c, err := b.send(ctx, topic, key, p)
		if err != nil {
			if !retryable(c, err) {
				return fmt.Errorf("pubsub/rabbitmq: publishing to %q: %w", topic, err)
			}
			last = err
			continue
		}
		if dc == nil { // no publisher confirms
			return nil
		}
		ok, err := dc.WaitContext(ctx)
		if err != nil {
			return fmt.Errorf("pubsub/rabbitmq: publishing to %q: waiting for the confirm: %w", topic, err)
		}
		if ok {
			return nil
		}
		last = errors.New("the server did not confirm the message")
	}
	return fmt.Errorf("pubsub/rabbitmq: publishing to %q: %w", topic, last)
}

// send publishes p once, on a live connection.
func (b *Broker) send(ctx context.Context, topic, key string, p amqp.Publishing) (*amqp.DeferredConfirmation, *conn, error) {
	c, err := b.connection(ctx)
	if err != nil {
		return nil, nil, err
	}
	if err := b.ensureExchange(c, topic); err != nil {
		return nil, c, err
	}
	ch, err := b.publishChannel(c)
	if err != nil {
		return nil, c, err
	}
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, topic, key, false, false, p)
	return dc, c, err
}

// BulkPublish implements pubsub.BulkPublisher: it sends every message,
// then waits for all their confirms; the messages that were not confirmed
// are published again one by one, and those that still fail are listed in
// a *pubsub.BulkError.
func (b *Broker) BulkPublish(ctx context.Context, topic string, msgs []pubsub.Message) error {
	if topic == "" {
		return errors.New("pubsub/rabbitmq: publish: no topic")
	}
	now := time.Now()
	type sent struct {
		p   amqp.Publishing
		key string
		dc  *amqp.DeferredConfirmation
		err error
	}
	all := make([]sent, len(msgs))
	for i, m := range msgs {
		all[i].p, all[i].key = b.publishing(m, now)
		all[i].dc, _, all[i].err = b.send(ctx, topic, all[i].key, all[i].p)
	}
	failed := map[int]error{}
	for i := range all {
		s := &all[i]
		if s.err == nil && s.dc != nil {
			ok, err := s.dc.WaitContext(ctx)
			switch {
			case err != nil:
				failed[i] = fmt.Errorf("pubsub/rabbitmq: publishing to %q: waiting for the confirm: %w", topic, err)
				continue
			case !ok:
				s.err = errors.New("not confirmed")
			}
		}
		if s.err != nil {
			if err := b.publish(ctx, topic, s.key, s.p); err != nil {
				failed[i] = err
			}
		}
	}
	if len(failed) > 0 {
		return &pubsub.BulkError{Failed: failed}
	}
	return nil
}

// subscription is one Subscribe call.
type subscription struct {
	b        *Broker
	ctx      context.Context
	topic    string
	queue    string
	keys     []string
	workers  int
	prefetch int
	handler  pubsub.Handler
}

// Subscribe implements pubsub.Broker: it declares the topic's exchange and
// the group's queue, bound to it, and starts consuming from the queue.
func (b *Broker) Subscribe(ctx context.Context, req pubsub.SubscribeRequest, handler pubsub.Handler) error {
	if req.Topic == "" {
		return errors.New("pubsub/rabbitmq: subscribe: no topic")
	}
	prefix := b.meta.ConsumerID
	if prefix == "" {
		prefix = req.Group
	}
	if prefix == "" {
		return errors.New("pubsub/rabbitmq: subscribe: no group (and no consumerID in the metadata)")
	}
	workers := req.MaxInFlight
	if workers <= 0 {
		workers = defaultMaxInFlight
	}
	if strings.EqualFold(b.meta.ConcurrencyMode, concurrencySingle) {
		workers = 1
	}
	prefetch := b.meta.PrefetchCount
	if prefetch == 0 {
		prefetch = min(workers, 65535)
	}
	keys := metadata.SplitList(req.Metadata[routingKeyMetadata])
	if len(keys) == 0 {
		keys = []string{""}
	}

	sctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(b.ctx, cancel)
	s := &subscription{
		b:        b,
		ctx:      sctx,
		topic:    req.Topic,
		queue:    queueName(prefix, req.Topic),
		keys:     keys,
		workers:  workers,
		prefetch: prefetch,
		handler:  handler,
	}
	octx, ocancel := context.WithTimeout(sctx, subscribeTimeout)
	c, ch, deliveries, err := s.open(octx, retryPause)
	ocancel()
	if err == nil {
		b.mu.Lock()
		if b.closing {
			err = errClosed
		} else {
			b.wg.Add(1)
		}
		b.mu.Unlock()
		if err != nil {
			_ = ch.Close()
		}
	}
	if err != nil {
		stop()
		cancel()
		return err
	}
	go func() {
		defer b.wg.Done()
		defer cancel()
		defer stop()
		s.run(c, ch, deliveries)
	}()
	return nil
}

// queueName is the queue of a consumer group (or consumerID) on a topic,
// as Dapr names it.
func queueName(group, topic string) string { return group + "-" + topic }

// open declares the subscription's topology and starts a consumer on a
// live connection, trying again after wait while that may succeed.
func (s *subscription) open(ctx context.Context, wait time.Duration) (*conn, *amqp.Channel, <-chan amqp.Delivery, error) {
	for {
		c, err := s.b.connection(ctx)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("pubsub/rabbitmq: subscribing to %q: %w", s.topic, err)
		}
		ch, deliveries, err := s.setup(c)
		if err == nil {
			return c, ch, deliveries, nil
		}
		err = fmt.Errorf("pubsub/rabbitmq: subscribing to %q (queue %s): %w", s.topic, s.queue, err)
		if !retryable(c, err) {
			return nil, nil, nil, err
		}
		s.b.log.Warn("RabbitMQ subscription setup failed; retrying", "queue", s.queue, "error", err, "wait", wait)
		if perr := s.b.pause(ctx, wait); perr != nil {
			return nil, nil, nil, fmt.Errorf("%w (then: %v)", err, perr)
		}
	}
}

// setup declares the exchange, the queue (and dead-letter exchange and
// queue) and the bindings on a new channel of c, and consumes from the
// queue.
func (s *subscription) setup(c *conn) (*amqp.Channel, <-chan amqp.Delivery, error) {
	m := &s.b.meta
	ch, err := c.c.Channel()
	if err != nil {
		return nil, nil, err
	}
	fail := func(what string, err error) (*amqp.Channel, <-chan amqp.Delivery, error) {
		_ = ch.Close()
		return nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := ch.ExchangeDeclare(s.topic, m.ExchangeKind, true, false, false, false, nil); err != nil {
		return fail("declaring exchange "+s.topic, err)
	}
	s.b.noteDeclared("exchange", s.topic)
	c.mu.Lock()
	c.exchanges[s.topic] = true
	c.mu.Unlock()

	args := m.queueArgs()
	if m.EnableDeadLetter {
		dlx, dlq := "dlx-"+s.queue, "dlq-"+s.queue
		if err := ch.ExchangeDeclare(dlx, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
			return fail("declaring dead-letter exchange "+dlx, err)
		}
		s.b.noteDeclared("exchange", dlx)
		dlqArgs := m.queueArgs()
		dlqArgs["x-queue-mode"] = "lazy"
		if _, err := ch.QueueDeclare(dlq, true, m.DeletedWhenUnused, false, false, dlqArgs); err != nil {
			return fail("declaring dead-letter queue "+dlq, err)
		}
		s.b.noteDeclared("queue", dlq)
		if err := ch.QueueBind(dlq, "", dlx, false, nil); err != nil {
			return fail("binding dead-letter queue "+dlq, err)
		}
		args["x-dead-letter-exchange"] = dlx
	}
	if _, err := ch.QueueDeclare(s.queue, m.Durable, m.DeletedWhenUnused, false, false, args); err != nil {
		return fail("declaring queue "+s.queue, err)
	}
	s.b.noteDeclared("queue", s.queue)
	for _, key := range s.keys {
		if err := ch.QueueBind(s.queue, key, s.topic, false, nil); err != nil {
			return fail("binding queue "+s.queue, err)
		}
	}
	if err := ch.Qos(s.prefetch, 0, false); err != nil {
		return fail("setting the prefetch count", err)
	}
	deliveries, err := ch.Consume(s.queue, "", m.AutoAck, false, false, false, nil)
	if err != nil {
		return fail("consuming", err)
	}
	return ch, deliveries, nil
}

// run consumes until the subscription ends, setting the consumer up again
// whenever its channel or connection is lost.
func (s *subscription) run(c *conn, ch *amqp.Channel, deliveries <-chan amqp.Delivery) {
	wait := s.b.meta.reconnectWait()
	for {
		s.consume(ch, deliveries)
		// Unacknowledged deliveries go back to the queue with the channel.
		_ = ch.Close()
		if s.ctx.Err() != nil {
			return
		}
		s.b.log.Warn("RabbitMQ consumer interrupted; subscribing again", "queue", s.queue)
		if !c.c.IsClosed() {
			// The server ended the consumer (its queue was deleted, say)
			// on a live connection; the supervisor does not pause for us.
			if s.b.pause(s.ctx, wait) != nil {
				return
			}
		}
		var err error
		c, ch, deliveries, err = s.open(s.ctx, wait)
		if err != nil {
			return // the subscription or the broker ended
		}
	}
}

// consume hands deliveries to the handler, from s.workers goroutines,
// until the deliveries end (the channel closed) or the subscription does.
func (s *subscription) consume(ch *amqp.Channel, deliveries <-chan amqp.Delivery) {
	var wg sync.WaitGroup
	for range s.workers {
		wg.Go(func() {
			for {
				select {
				case <-s.ctx.Done():
					return
				case d, ok := <-deliveries:
					if !ok || s.ctx.Err() != nil {
						return
					}
					s.handle(ch, &d)
				}
			}
		})
	}
	wg.Wait()
}

// handle delivers d to the handler and answers RabbitMQ.
func (s *subscription) handle(ch *amqp.Channel, d *amqp.Delivery) {
	m := &s.b.meta
	msg := toMessage(s.topic, d)
	if !msg.Expires.IsZero() && !time.Now().Before(msg.Expires) {
		if !m.AutoAck {
			_ = d.Ack(false)
		}
		return
	}
	if !m.AutoAck && ch.IsClosed() {
		return // requeued by the server already
	}
	err := s.handler(s.ctx, msg)
	switch {
	case m.AutoAck:
	case err == nil:
		_ = d.Ack(false)
	case s.ctx.Err() != nil:
		// Unsubscribed: closing the channel requeues it.
	case !m.RequeueInFailure:
		_ = d.Nack(false, false)
	default:
		t := time.NewTimer(s.b.nackDelay)
		select {
		case <-t.C:
			_ = d.Nack(false, true)
		case <-s.ctx.Done():
			t.Stop()
		}
	}
}

// toMessage is the pubsub message of d.
func toMessage(topic string, d *amqp.Delivery) *pubsub.Message {
	msg := &pubsub.Message{
		Topic:       topic,
		Data:        d.Body,
		ContentType: d.ContentType,
		ID:          d.MessageId,
	}
	for k, v := range d.Headers {
		if k == expiresHeader {
			if s, ok := v.(string); ok {
				if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
					msg.Expires = t
				}
			}
			continue
		}
		s, ok := headerString(v)
		if !ok {
			continue
		}
		if msg.Metadata == nil {
			msg.Metadata = map[string]string{}
		}
		msg.Metadata[k] = s
	}
	return msg
}

// headerString is the text of a header value of a scalar type.
func headerString(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case []byte:
		return string(v), true
	case bool, int, int8, int16, int32, int64, uint8, uint16, uint32, uint64, float32, float64:
		return fmt.Sprint(v), true
	case time.Time:
		return v.UTC().Format(time.RFC3339), true
	}
	return "", false
}

// Close implements pubsub.Broker: it stops the subscriptions (waiting for
// their handlers to return), then closes the channels and the connection.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closing = true
		b.mu.Unlock()
		b.cancel()
		b.wg.Wait()
		b.pubMu.Lock()
		if b.pubCh != nil {
			_ = b.pubCh.Close()
			b.pubCh, b.pubConn = nil, nil
		}
		b.pubMu.Unlock()
		b.mu.Lock()
		c := b.cur
		b.cur = nil
		b.mu.Unlock()
		if c != nil && !c.c.IsClosed() {
			if err := c.c.Close(); err != nil && !errors.Is(err, amqp.ErrClosed) {
				b.closeErr = fmt.Errorf("pubsub/rabbitmq: closing the connection: %w", err)
			}
		}
	})
	return b.closeErr
}
