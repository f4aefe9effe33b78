// Package mqtt3 is the pubsub.mqtt3 broker: messages travel through an MQTT
// server (Mosquitto 2 and the like) speaking MQTT 3.1.1, with the metadata
// names of Dapr's MQTT3 pub/sub.
//
// A topic is an MQTT topic and a message's Data is the MQTT payload,
// unchanged; MQTT 3.1.1 has no headers, so ContentType, Metadata and
// Expires are not carried (the runtime's CloudEvent carries what matters).
// Publish and BulkPublish wait for the server's acknowledgement at QoS 1 (or
// 2).
//
// Consumer groups are MQTT shared subscriptions: every subscription is
// $share/<group>/<topic>, so the subscribers of one group compete for the
// messages and every group gets each message. Each subscription has a
// connection of its own, with a persistent session (cleanSession false)
// and manual acknowledgement: a message is acknowledged (PUBACK) only once
// its handler returned nil. MQTT has no negative acknowledgement and a
// server resends an unacknowledged message only when the session
// reconnects, so a message whose handler failed is kept and retried in
// this process, with a backoff, and stays unacknowledged meanwhile.
//
// A session left holding unacknowledged messages (its subscriber was
// cancelled or closed with messages in hand, or its connection died) is
// handed to the rest of its group: the server never gives such messages
// to another member of the shared subscription itself. The subscriber
// marks the session in a registry of retained messages under
// outrigger/mqtt3/sessions/ (on purpose when it leaves, through its will
// when its connection dies), and the other members of its group and
// topic, which watch the registry, connect with the session's client id,
// take the messages the server resends, deliver them, and clear the mark.
// README.md tells the details and the limits.
package mqtt3

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/outrigger/outrigger/building-blocks/pubsub"
	"github.com/outrigger/outrigger/config/metadata"
)

// Type is the component type this broker implements, version v1.
const Type = "pubsub.mqtt3"

// registryRoot is the topic under which abandoned sessions are marked:
// registryRoot/<key of group and topic>/<client id>.
const registryRoot = "outrigger/mqtt3/sessions"

var errClosed = errors.New("pubsub/mqtt3: the broker is closed")

// timing holds the broker's waits; tests shorten some.
type timing struct {
	// connect bounds establishing a connection.
	connect time.Duration
	// op bounds a subscribe, unsubscribe or registry publish.
	op time.Duration
	// grace is how long a closing subscription waits for its handlers.
	grace time.Duration
	// settle is how long a closing subscription waits for messages still
	// on the wire after it unsubscribed.
	settle time.Duration
	// quiet is how long a taken-over session must stay silent, with every
	// message acknowledged, to count as drained.
	quiet time.Duration
	// lostDelay is how long a session marked by its will (its connection
	// died) is left to its owner to reconnect before the group takes it.
	lostDelay time.Duration
	// retry is the wait before another attempt at taking a session over.
	retry time.Duration
}

var defaultTiming = timing{
	connect:   10 * time.Second,
	op:        10 * time.Second,
	grace:     5 * time.Second,
	settle:    250 * time.Millisecond,
	quiet:     500 * time.Millisecond,
	lostDelay: 3 * time.Second,
	retry:     3 * time.Second,
}

// defaultMaxInFlight is the handler concurrency of a subscription that
// asks for none.
const defaultMaxInFlight = 10

// Broker is a pub/sub component over one MQTT server. It is safe for
// concurrent use.
type Broker struct {
	meta     Metadata
	tls      *tls.Config
	log      *slog.Logger
	timing   timing
	instance string // random, part of every client id of this broker
	prefix   string // client id prefix of the control connection

	// ctrl publishes and watches the session registry.
	ctrl mqtt.Client

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup // subscriptions until torn down
	seq       atomic.Uint64
	closeOnce sync.Once

	watchMu sync.Mutex // serialises registry (un)subscriptions
	mu      sync.Mutex
	closed  bool
	// watches are the registry filters watched, with the abandoned
	// sessions seen under each.
	watches map[string]*watch
	// live are the client ids of this broker's subscriptions.
	live map[string]bool
	// reclaiming are the client ids this broker is taking over.
	reclaiming map[string]bool
}

var (
	_ pubsub.Broker        = (*Broker)(nil)
	_ pubsub.BulkPublisher = (*Broker)(nil)
)

// New builds a broker from its component metadata and connects to the
// server, failing if it does not answer; unknown lists the keys it does
// not read.
func New(meta map[string]string) (*Broker, []string, error) {
	var m Metadata
	unknown, err := metadata.Decode(meta, &m)
	if err != nil {
		return nil, unknown, err
	}
	if err := m.Validate(); err != nil {
		return nil, unknown, err
	}
	b, err := open(m, defaultTiming)
	return b, unknown, err
}

// open connects a broker for validated metadata m.
func open(m Metadata, t timing) (*Broker, error) {
	tlsCfg, err := m.tlsConfig()
	if err != nil {
		return nil, err
	}
	inst := make([]byte, 6)
	_, _ = rand.Read(inst)
	ctx, cancel := context.WithCancel(context.Background())
	b := &Broker{
		meta:       m,
		tls:        tlsCfg,
		log:        slog.Default().With("component", Type),
		timing:     t,
		instance:   hex.EncodeToString(inst),
		prefix:     clientPrefix(m.ConsumerID),
		ctx:        ctx,
		cancel:     cancel,
		watches:    map[string]*watch{},
		live:       map[string]bool{},
		reclaiming: map[string]bool{},
	}
	opts := b.clientOptions(b.prefix+"-"+b.instance+"-ctl", true)
	opts.SetOrderMatters(true) // registry updates in order
	opts.SetDefaultPublishHandler(func(mqtt.Client, mqtt.Message) {})
	opts.SetOnConnectHandler(b.onCtrlConnect)
	b.ctrl = mqtt.NewClient(opts)
	if err := awaitToken(context.Background(), b.ctrl.Connect(), t.connect+5*time.Second); err != nil {
		cancel()
		b.ctrl.Disconnect(0)
		return nil, fmt.Errorf("pubsub/mqtt3: connecting to %s: %w", b.redactedURL(), err)
	}
	return b, nil
}

// clientOptions are the options of a connection with client id id.
func (b *Broker) clientOptions(id string, clean bool) *mqtt.ClientOptions {
	o := mqtt.NewClientOptions().
		AddBroker(b.meta.URL).
		SetClientID(id).
		SetCleanSession(clean).
		SetProtocolVersion(4). // MQTT 3.1.1
		SetConnectTimeout(b.timing.connect).
		SetKeepAlive(30 * time.Second).
		SetWriteTimeout(30 * time.Second).
		SetAutoReconnect(true).
		SetMaxReconnectInterval(10 * time.Second).
		SetOrderMatters(false)
	if b.tls != nil {
		o.SetTLSConfig(b.tls.Clone())
	}
	return o
}

func (b *Broker) redactedURL() string {
	if u, err := url.Parse(b.meta.URL); err == nil {
		return u.Redacted()
	}
	return "the server"
}

// onCtrlConnect subscribes the control connection to the watched registry
// filters again (its session is clean); the server then sends the marks
// retained under them.
func (b *Broker) onCtrlConnect(c mqtt.Client) {
	b.mu.Lock()
	filters := make([]string, 0, len(b.watches))
	for f := range b.watches {
		filters = append(filters, f)
	}
	b.mu.Unlock()
	for _, f := range filters {
		if err := awaitSubscribe(b.ctx, c.Subscribe(f, 1, b.onRegistry), b.timing.op); err != nil {
			b.log.Warn("could not watch the session registry again after reconnecting", "filter", f, "err", err)
		}
	}
}

// Features implements pubsub.Broker: MQTT 3.1.1 carries no expiry, and
// handlers run concurrently, with retries, so order is not kept.
func (b *Broker) Features() pubsub.Features {
	return pubsub.Features{MessageTTL: false, Ordered: false}
}

// Publish implements pubsub.Broker: msg.Data is published to topic, and
// Publish returns once the server acknowledged it (PUBACK, or PUBCOMP at
// QoS 2). ContentType, Metadata and Expires are not carried; a "retain"
// metadata value sets the message's retain flag.
func (b *Broker) Publish(ctx context.Context, topic string, msg pubsub.Message) error {
	if err := checkTopicName(topic); err != nil {
		return err
	}
	if b.ctx.Err() != nil {
		return errClosed
	}
	retain, err := b.retain(msg)
	if err != nil {
		return err
	}
	return b.awaitPublish(ctx, b.ctrl.Publish(topic, byte(b.meta.QoS), retain, publishPayload(msg.Data)))
}

// retain is the retain flag of msg: its "retain" metadata, as in Dapr's
// publish requests, else the component's.
func (b *Broker) retain(msg pubsub.Message) (bool, error) {
	v, ok := msg.Metadata["retain"]
	if !ok || v == "" {
		return b.meta.Retain, nil
	}
	r, err := metadata.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("pubsub/mqtt3: metadata retain %q: %w", v, err)
	}
	return r, nil
}

// publishPayload is data as paho takes it: a nil slice would be an unknown
// payload type.
func publishPayload(data []byte) []byte {
	if data == nil {
		return []byte{}
	}
	return data
}

func (b *Broker) awaitPublish(ctx context.Context, tok mqtt.Token) error {
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return fmt.Errorf("pubsub/mqtt3: publish: %w", err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-b.ctx.Done():
		return errClosed
	}
}

// BulkPublish implements pubsub.BulkPublisher: every message is sent, then
// every acknowledgement awaited.
func (b *Broker) BulkPublish(ctx context.Context, topic string, msgs []pubsub.Message) error {
	if err := checkTopicName(topic); err != nil {
		return err
	}
	if b.ctx.Err() != nil {
		return errClosed
	}
	failed := map[int]error{}
	toks := make([]mqtt.Token, len(msgs))
	for i, m := range msgs {
		retain, err := b.retain(m)
		if err != nil {
			failed[i] = err
			continue
		}
		toks[i] = b.ctrl.Publish(topic, byte(b.meta.QoS), retain, publishPayload(m.Data))
	}
	for i, tok := range toks {
		if tok == nil {
			continue
		}
		if err := b.awaitPublish(ctx, tok); err != nil {
			failed[i] = err
		}
	}
	if len(failed) > 0 {
		return &pubsub.BulkError{Failed: failed}
	}
	return nil
}

// Subscribe implements pubsub.Broker: it connects a session of its own,
// subscribes it to $share/<group>/<topic> and, with persistent sessions,
// watches the registry for sessions of the group left with messages.
func (b *Broker) Subscribe(ctx context.Context, req pubsub.SubscribeRequest, handler pubsub.Handler) error {
	if handler == nil {
		return errors.New("pubsub/mqtt3: no handler")
	}
	if err := checkTopicFilter(req.Topic); err != nil {
		return err
	}
	group := b.meta.ConsumerID
	if group == "" {
		group = req.Group
	}
	if err := checkGroup(group); err != nil {
		return fmt.Errorf("pubsub/mqtt3: group %q: %w", group, err)
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return errClosed
	}
	b.wg.Add(1)
	b.mu.Unlock()
	s := newSubscription(b, req, group, handler)
	if err := s.start(ctx); err != nil {
		b.wg.Done()
		return err
	}
	return nil
}

// Close implements pubsub.Broker: it ends every subscription (each
// unsubscribes and leaves any unacknowledged messages to its group) and
// disconnects.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		b.mu.Unlock()
		b.cancel()
		b.wg.Wait()
		b.ctrl.Disconnect(250)
	})
	return nil
}

// newClientID is a fresh client id for a subscription of group.
func (b *Broker) newClientID(group string) string {
	return fmt.Sprintf("%s-%s-%d", clientPrefix(group), b.instance, b.seq.Add(1))
}

// clientPrefix makes s fit in a client id and a topic level.
func clientPrefix(s string) string {
	var sb strings.Builder
	for _, r := range s {
		if sb.Len() >= 32 {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			sb.WriteRune(r)
		default:
			sb.WriteByte('_')
		}
	}
	if sb.Len() == 0 {
		return "outrigger"
	}
	return sb.String()
}

// registryKey is the registry level of a group's subscriptions to a topic.
func registryKey(group, topic string) string {
	h := sha256.Sum256([]byte(group + "\x00" + topic))
	return hex.EncodeToString(h[:16])
}

// markerTopic is where the session of client id in the registry level key
// is marked.
func markerTopic(key, id string) string {
	return registryRoot + "/" + key + "/" + id
}

// deleteSession removes the server's session of client id by connecting
// with a clean session.
func (b *Broker) deleteSession(id string) {
	o := b.clientOptions(id, true)
	o.SetAutoReconnect(false)
	c := mqtt.NewClient(o)
	if err := awaitToken(context.Background(), c.Connect(), b.timing.connect+time.Second); err != nil {
		b.log.Debug("could not remove a session", "clientID", id, "err", err)
		c.Disconnect(0)
		return
	}
	c.Disconnect(100)
}

// errTimeout is the error of a token not completed in time.
var errTimeout = errors.New("no answer from the server in time")

// awaitToken waits for tok, at most d (none when zero), until ctx is done.
func awaitToken(ctx context.Context, tok mqtt.Token, d time.Duration) error {
	var timeout <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-timeout:
		return errTimeout
	}
}

// clone copies a payload, so a handler that changes it does not change
// what a retry delivers.
func clone(b []byte) []byte { return bytes.Clone(b) }
