package mqtt3

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/outrigger/outrigger/building-blocks/pubsub"
)

// subscription is one Subscribe: a connection with a session of its own,
// subscribed to $share/<group>/<topic>, and the handler workers.
type subscription struct {
	b        *Broker
	topic    string // the topic filter subscribed to
	group    string
	filter   string // $share/<group>/<topic>
	clientID string
	key      string // registry level of group and topic
	handler  pubsub.Handler
	workers  int
	clean    bool

	ctx    context.Context
	cancel context.CancelFunc

	client mqtt.Client
	own    *source
	// started is set once the first connection is subscribed; reconnects
	// after it subscribe again.
	started atomic.Bool
	closing atomic.Bool

	qmu    sync.Mutex
	queue  []*item
	qready chan struct{} // a signal that the queue grew

	running    sync.WaitGroup // handler workers
	reclaimers sync.WaitGroup // the registry watcher
	kick       chan struct{}  // a signal that the registry changed
}

// item is a message received and not yet acknowledged.
type item struct {
	m        mqtt.Message
	src      *source
	gen      uint64 // src's connection when it arrived
	attempts int    // failed handler calls
}

// source counts the unacknowledged messages of one connection: the
// subscription's own, or one taking over an abandoned session.
type source struct {
	mu      sync.Mutex
	gen     uint64 // bumped when the connection is lost
	held    int    // messages of this connection not yet acknowledged
	total   int
	last    time.Time // last arrival or acknowledgement
	lost    bool      // the connection is gone for good
	changed chan struct{}
}

func newSource() *source {
	return &source{last: time.Now(), changed: make(chan struct{}, 1)}
}

func (c *source) signal() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// arrive counts a message in and returns the connection it came on.
func (c *source) arrive() uint64 {
	c.mu.Lock()
	c.held++
	c.total++
	c.last = time.Now()
	g := c.gen
	c.mu.Unlock()
	c.signal()
	return g
}

// settle counts an acknowledged message out.
func (c *source) settle(gen uint64) {
	c.mu.Lock()
	if gen == c.gen && c.held > 0 {
		c.held--
		c.last = time.Now()
	}
	c.mu.Unlock()
	c.signal()
}

// current reports whether a message that arrived on connection gen can
// still be acknowledged: an acknowledgement after the connection was lost
// is dropped, and the server sends the message again.
func (c *source) current(gen uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return gen == c.gen
}

// reset forgets the messages of a lost connection; permanently when gone.
func (c *source) reset(gone bool) {
	c.mu.Lock()
	c.gen++
	c.held = 0
	c.last = time.Now()
	if gone {
		c.lost = true
	}
	c.mu.Unlock()
	c.signal()
}

func (c *source) state() (gen uint64, held int, idle time.Duration, lost bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen, c.held, time.Since(c.last), c.lost
}

func newSubscription(b *Broker, req pubsub.SubscribeRequest, group string, handler pubsub.Handler) *subscription {
	workers := req.MaxInFlight
	if workers <= 0 {
		workers = defaultMaxInFlight
	}
	return &subscription{
		b:        b,
		topic:    req.Topic,
		group:    group,
		filter:   "$share/" + group + "/" + req.Topic,
		clientID: b.newClientID(group),
		key:      registryKey(group, req.Topic),
		handler:  handler,
		workers:  workers,
		clean:    b.meta.CleanSession,
		own:      newSource(),
		qready:   make(chan struct{}, 1),
		kick:     make(chan struct{}, 1),
	}
}

// registryFilter is the registry filter of the subscription's group and
// topic.
func (s *subscription) registryFilter() string {
	return registryRoot + "/" + s.key + "/+"
}

// marker is the registry mark of client id's session.
type marker struct {
	// Why is whyAbandoned (its subscriber left it) or whyLost (its
	// connection died: the will).
	Why      string `json:"why"`
	Group    string `json:"group"`
	Topic    string `json:"topic"`
	ClientID string `json:"clientID"`
}

const (
	whyAbandoned = "abandoned"
	whyLost      = "lost"
)

func (s *subscription) marker(why string) []byte {
	b, _ := json.Marshal(marker{Why: why, Group: s.group, Topic: s.topic, ClientID: s.clientID})
	return b
}

// start connects, subscribes and starts the workers; it returns once the
// subscription is in place.
func (s *subscription) start(parent context.Context) error {
	b := s.b
	s.ctx, s.cancel = context.WithCancel(parent)
	stop := context.AfterFunc(b.ctx, s.cancel)
	fail := func(err error) error {
		stop()
		s.cancel()
		return err
	}

	opts := b.clientOptions(s.clientID, s.clean)
	opts.SetAutoAckDisabled(true)
	opts.SetDefaultPublishHandler(s.onMessage(s.own))
	opts.SetConnectionLostHandler(func(mqtt.Client, error) { s.own.reset(false) })
	opts.SetOnConnectHandler(s.onReconnect)
	if !s.clean {
		// Should the connection die, the server marks the session for the
		// group.
		opts.SetBinaryWill(markerTopic(s.key, s.clientID), s.marker(whyLost), 1, true)
	}
	s.client = mqtt.NewClient(opts)
	if err := awaitToken(s.ctx, s.client.Connect(), b.timing.connect+5*time.Second); err != nil {
		s.client.Disconnect(0)
		return fail(fmt.Errorf("pubsub/mqtt3: connecting to %s: %w", b.redactedURL(), err))
	}
	if err := s.subscribe(s.ctx); err != nil {
		s.client.Disconnect(100)
		if !s.clean {
			b.deleteSession(s.clientID)
		}
		return fail(err)
	}
	if !s.clean {
		if err := b.watch(s); err != nil {
			_ = awaitToken(context.Background(), s.client.Unsubscribe(s.filter), b.timing.op)
			s.client.Disconnect(100)
			b.deleteSession(s.clientID)
			return fail(fmt.Errorf("pubsub/mqtt3: watching the session registry: %w", err))
		}
	}
	b.mu.Lock()
	b.live[s.clientID] = true
	b.mu.Unlock()
	s.started.Store(true)

	for range s.workers {
		s.running.Go(s.work)
	}
	if !s.clean {
		s.reclaimers.Go(s.reclaimLoop)
	}
	go s.teardown(stop)
	return nil
}

// subscribe subscribes the connection to the shared subscription.
func (s *subscription) subscribe(ctx context.Context) error {
	if err := awaitSubscribe(ctx, s.client.Subscribe(s.filter, byte(s.b.meta.QoS), nil), s.b.timing.op); err != nil {
		return fmt.Errorf("pubsub/mqtt3: subscribing to %s: %w", s.filter, err)
	}
	return nil
}

// awaitSubscribe waits for a subscription's acknowledgement, an error when
// the server refused it (return code 0x80, as for a topic the ACL denies).
func awaitSubscribe(ctx context.Context, tok mqtt.Token, d time.Duration) error {
	if err := awaitToken(ctx, tok, d); err != nil {
		return err
	}
	if st, ok := tok.(*mqtt.SubscribeToken); ok {
		for _, code := range st.Result() {
			if code >= 0x80 {
				return errors.New("the server refused the subscription (is it denied by an ACL?)")
			}
		}
	}
	return nil
}

// onReconnect subscribes again after a reconnect (the session may be new)
// and clears the mark the will may have left.
func (s *subscription) onReconnect(c mqtt.Client) {
	if !s.started.Load() || s.closing.Load() {
		return
	}
	if err := s.subscribe(s.ctx); err != nil {
		s.b.log.Warn("could not subscribe again after reconnecting", "topic", s.topic, "err", err)
	}
	if !s.clean {
		if err := awaitToken(s.ctx, c.Publish(markerTopic(s.key, s.clientID), 1, true, []byte{}), s.b.timing.op); err != nil {
			s.b.log.Warn("could not clear the session's mark after reconnecting", "clientID", s.clientID, "err", err)
		}
	}
}

// onMessage queues the messages of a connection counted by src.
func (s *subscription) onMessage(src *source) mqtt.MessageHandler {
	return func(_ mqtt.Client, m mqtt.Message) {
		gen := src.arrive()
		s.push(&item{m: m, src: src, gen: gen})
	}
}

func (s *subscription) push(it *item) {
	s.qmu.Lock()
	s.queue = append(s.queue, it)
	s.qmu.Unlock()
	select {
	case s.qready <- struct{}{}:
	default:
	}
}

// pop takes the next message, waiting for one until the subscription
// ends.
func (s *subscription) pop() (*item, bool) {
	for {
		s.qmu.Lock()
		if n := len(s.queue); n > 0 {
			it := s.queue[0]
			s.queue[0] = nil
			s.queue = s.queue[1:]
			s.qmu.Unlock()
			if n > 1 {
				select {
				case s.qready <- struct{}{}:
				default:
				}
			}
			return it, true
		}
		s.qmu.Unlock()
		select {
		case <-s.qready:
		case <-s.ctx.Done():
			return nil, false
		}
	}
}

// work runs the handler on queued messages until the subscription ends.
func (s *subscription) work() {
	for {
		it, ok := s.pop()
		if !ok || s.ctx.Err() != nil {
			return // what is left stays unacknowledged, for the group
		}
		if !it.src.current(it.gen) {
			continue // its connection was lost: the server sends it again
		}
		err := s.handler(s.ctx, &pubsub.Message{Topic: it.m.Topic(), Data: clone(it.m.Payload())})
		switch {
		case err == nil:
			it.m.Ack()
			it.src.settle(it.gen)
		case s.ctx.Err() != nil:
			// Left unacknowledged: the session goes to the group.
		default:
			it.attempts++
			if limit := s.b.meta.BackOffMaxRetries; limit >= 0 && it.attempts > limit {
				s.b.log.Error("dropping a message whose handler kept failing (backOffMaxRetries)",
					"topic", it.m.Topic(), "attempts", it.attempts, "err", err)
				it.m.Ack()
				it.src.settle(it.gen)
				continue
			}
			time.AfterFunc(s.backoff(it.attempts), func() { s.push(it) })
		}
	}
}

// backoff is the wait before retry n (from 1).
func (s *subscription) backoff(n int) time.Duration {
	d, limit := s.b.meta.BackOffInitialInterval, s.b.meta.BackOffMaxInterval
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// teardown ends the subscription once its context is done: it stops
// taking sessions over, unsubscribes, lets the handlers finish, and leaves
// its session to the group if messages remain unacknowledged in it;
// otherwise it removes the session.
func (s *subscription) teardown(stop func() bool) {
	b := s.b
	defer b.wg.Done()
	<-s.ctx.Done()
	stop()
	s.closing.Store(true)
	s.reclaimers.Wait()

	startGen, _, _, _ := s.own.state()
	unsubscribed := s.client.IsConnectionOpen() &&
		awaitToken(context.Background(), s.client.Unsubscribe(s.filter), b.timing.op) == nil

	if !s.awaitHandlers() {
		b.log.Warn("handlers still running after the subscription ended; their messages are left unacknowledged", "topic", s.topic)
	}

	// Wait for what was on the wire when the server took the unsubscribe.
	deadline := time.Now().Add(4 * b.timing.settle)
	for {
		_, _, idle, _ := s.own.state()
		if idle >= b.timing.settle || time.Now().After(deadline) {
			break
		}
		select {
		case <-s.own.changed:
		case <-time.After(b.timing.settle - idle):
		}
	}
	gen, held, _, _ := s.own.state()
	// Whether the session holds anything is known only if the connection
	// stayed up throughout.
	known := unsubscribed && gen == startGen && s.client.IsConnectionOpen()

	if s.clean {
		s.client.Disconnect(250)
		if held > 0 || !known {
			b.log.Warn("subscription ended with messages unacknowledged; with cleanSession the server drops them", "topic", s.topic, "messages", held)
		}
	} else if held == 0 && known {
		s.client.Disconnect(250)
		b.deleteSession(s.clientID)
	} else {
		if err := s.abandon(); err != nil {
			b.log.Error("a session left with unacknowledged messages could not be marked for the group; unless its will marked it, it keeps them until its client id reconnects",
				"clientID", s.clientID, "topic", s.topic, "err", err)
		} else {
			b.log.Info("subscription ended with messages unacknowledged; its session is left to the group", "clientID", s.clientID, "topic", s.topic, "messages", held)
		}
		s.client.Disconnect(250)
	}

	// Other subscriptions of this broker skip the sessions of live ones:
	// wake them, as this one may have left its session marked.
	b.mu.Lock()
	delete(b.live, s.clientID)
	var others []*subscription
	if w := b.watches[s.registryFilter()]; w != nil {
		for o := range w.subs {
			if o != s {
				others = append(others, o)
			}
		}
	}
	b.mu.Unlock()
	for _, o := range others {
		o.kickNow()
	}
	if !s.clean {
		b.unwatch(s)
	}
}

// awaitHandlers waits, once the subscription ended, for the handler calls
// in flight to return, at most the grace period; it reports whether they
// did.
func (s *subscription) awaitHandlers() bool {
	finished := make(chan struct{})
	go func() {
		s.running.Wait()
		close(finished)
	}()
	t := time.NewTimer(s.b.timing.grace)
	defer t.Stop()
	select {
	case <-finished:
		return true
	case <-t.C:
		return false
	}
}

// abandon marks the subscription's session for the group, on its own
// connection when it is up, else on the control connection.
func (s *subscription) abandon() error {
	topic, body := markerTopic(s.key, s.clientID), s.marker(whyAbandoned)
	var errs []error
	if s.client.IsConnectionOpen() {
		err := awaitToken(context.Background(), s.client.Publish(topic, 1, true, body), s.b.timing.op)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	if err := awaitToken(context.Background(), s.b.ctrl.Publish(topic, 1, true, body), s.b.timing.op); err != nil {
		errs = append(errs, err)
		return errors.Join(errs...)
	}
	return nil
}
