package mqtt3

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// The session registry. MQTT servers keep a message a subscriber received
// and did not acknowledge in that subscriber's session, and send it again
// only when the same client id connects again; Mosquitto 2 does so for
// shared subscriptions too, and never hands such a message to another
// member of the share group. Client ids here are unique to a subscription,
// so a session its subscriber left would keep its messages for ever.
//
// So a session left with messages is marked, with a retained message at
// registryRoot/<key>/<client id> (key: the group and topic): its subscriber
// marks it when it ends with messages in hand (abandoned), and the server
// publishes the subscriber's will when its connection dies (lost). The
// other subscribers of the group and topic watch registryRoot/<key>/+ on
// their broker's control connection; one of them connects with the
// session's client id, unsubscribes it from the shared subscription,
// delivers the messages the server sends it again (and any that queued up
// for it), acknowledges them, and clears the mark. A subscriber that
// reconnects clears its own mark, so a lost session whose owner comes back
// within lostDelay is left alone.

// watch is a registry filter watched by subscriptions of one group and
// topic, with the marked sessions seen under it.
type watch struct {
	subs    map[*subscription]struct{}
	orphans map[string]*orphan // by client id
}

// orphan is a marked session.
type orphan struct {
	why string
	due time.Time // when to take it over
}

// watch adds s to the watchers of its registry filter, subscribing the
// control connection to it first if s is the first.
func (b *Broker) watch(s *subscription) error {
	b.watchMu.Lock()
	defer b.watchMu.Unlock()
	filter := s.registryFilter()
	b.mu.Lock()
	if w := b.watches[filter]; w != nil {
		w.subs[s] = struct{}{}
		b.mu.Unlock()
		s.kickNow()
		return nil
	}
	b.watches[filter] = &watch{subs: map[*subscription]struct{}{s: {}}, orphans: map[string]*orphan{}}
	b.mu.Unlock()
	if err := awaitSubscribe(s.ctx, b.ctrl.Subscribe(filter, 1, b.onRegistry), b.timing.op); err != nil {
		b.mu.Lock()
		delete(b.watches, filter)
		b.mu.Unlock()
		return err
	}
	return nil
}

// unwatch removes s from the watchers of its registry filter, and the
// filter when s was the last.
func (b *Broker) unwatch(s *subscription) {
	b.watchMu.Lock()
	defer b.watchMu.Unlock()
	filter := s.registryFilter()
	b.mu.Lock()
	w := b.watches[filter]
	if w == nil {
		b.mu.Unlock()
		return
	}
	delete(w.subs, s)
	last := len(w.subs) == 0
	if last {
		delete(b.watches, filter)
	}
	b.mu.Unlock()
	if last && b.ctrl.IsConnectionOpen() {
		_ = awaitToken(context.Background(), b.ctrl.Unsubscribe(filter), b.timing.op)
	}
}

// onRegistry records a mark set or cleared, and wakes the watchers.
func (b *Broker) onRegistry(_ mqtt.Client, m mqtt.Message) {
	topic := m.Topic()
	i := strings.LastIndexByte(topic, '/')
	if i < 0 {
		return
	}
	filter, id := topic[:i]+"/+", topic[i+1:]
	b.mu.Lock()
	w := b.watches[filter]
	if w == nil {
		b.mu.Unlock()
		return
	}
	if len(m.Payload()) == 0 {
		delete(w.orphans, id)
	} else {
		var mk marker
		if json.Unmarshal(m.Payload(), &mk) != nil || mk.Why != whyAbandoned {
			mk.Why = whyLost
		}
		delay := rand.N(200 * time.Millisecond) // members of a group do not all rush at once
		if mk.Why == whyLost {
			delay += b.timing.lostDelay // the owner may yet reconnect
		}
		due := time.Now().Add(delay)
		switch o := w.orphans[id]; {
		case o == nil:
			w.orphans[id] = &orphan{why: mk.Why, due: due}
		case o.why != mk.Why:
			o.why = mk.Why
			if due.Before(o.due) {
				o.due = due
			}
		}
	}
	subs := make([]*subscription, 0, len(w.subs))
	for s := range w.subs {
		subs = append(subs, s)
	}
	b.mu.Unlock()
	for _, s := range subs {
		s.kickNow()
	}
}

func (s *subscription) kickNow() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// nextOrphan picks a marked session for s to take over now, or says how
// long until one is due.
func (b *Broker) nextOrphan(s *subscription) (string, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	wait := time.Hour
	w := b.watches[s.registryFilter()]
	if w == nil {
		return "", wait
	}
	now := time.Now()
	for id, o := range w.orphans {
		if id == s.clientID || b.live[id] || b.reclaiming[id] {
			continue // a subscription of this broker, or taken over already
		}
		if !o.due.After(now) {
			b.reclaiming[id] = true
			return id, 0
		}
		wait = min(wait, o.due.Sub(now))
	}
	return "", wait
}

// reclaimDone records the end of a takeover of session id.
func (b *Broker) reclaimDone(s *subscription, id string, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.reclaiming, id)
	w := b.watches[s.registryFilter()]
	if w == nil || w.orphans[id] == nil {
		return
	}
	if ok {
		delete(w.orphans, id)
		return
	}
	w.orphans[id].due = time.Now().Add(b.timing.retry + rand.N(b.timing.retry))
}

// reclaimLoop takes over the marked sessions of s's group and topic until
// s ends.
func (s *subscription) reclaimLoop() {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for s.ctx.Err() == nil {
		id, wait := s.b.nextOrphan(s)
		if id != "" {
			s.b.reclaimDone(s, id, s.reclaim(id))
			continue
		}
		t.Reset(wait)
		select {
		case <-s.kick:
		case <-t.C:
		case <-s.ctx.Done():
		}
	}
}

// reclaim takes over the session of client id: it connects with that id
// (the server then sends the session's unacknowledged and queued messages
// again), unsubscribes the session from the shared subscription, delivers
// every message to s's handler until none is left unacknowledged, and
// clears the session's mark. It reports whether the session was drained.
func (s *subscription) reclaim(id string) bool {
	b := s.b
	src := newSource()
	opts := b.clientOptions(id, false)
	opts.SetAutoReconnect(false)
	opts.SetAutoAckDisabled(true)
	opts.SetDefaultPublishHandler(s.onMessage(src))
	opts.SetConnectionLostHandler(func(mqtt.Client, error) { src.reset(true) })
	c := mqtt.NewClient(opts)
	tok := c.Connect()
	if err := awaitToken(s.ctx, tok, b.timing.connect+time.Second); err != nil {
		c.Disconnect(100)
		b.log.Debug("could not take over an abandoned session", "clientID", id, "err", err)
		return false
	}
	present := true
	if ct, ok := tok.(*mqtt.ConnectToken); ok {
		present = ct.SessionPresent()
	}
	if !present {
		// Gone already (drained by another subscriber, or the server lost
		// it); the connection just made an empty one.
		c.Disconnect(100)
		b.deleteSession(id)
		return b.clearMark(s, id)
	}
	if err := awaitToken(context.Background(), c.Unsubscribe(s.filter), b.timing.op); err != nil {
		c.Disconnect(100)
		return false
	}
	// Drained once every message is acknowledged and the server has sent
	// nothing more for a while. When s ends meanwhile, its handlers stop:
	// the takeover still completes if nothing is left unacknowledged and
	// nothing more comes, and is given up otherwise.
	ending := false
	for {
		_, held, idle, lost := src.state()
		if lost {
			// Taken over by its owner or another subscriber: what was not
			// acknowledged stays in the session.
			return false
		}
		if held == 0 && idle >= b.timing.quiet {
			break
		}
		if ending && held > 0 {
			c.Disconnect(100)
			return false
		}
		wait := b.timing.quiet - idle
		if held > 0 || wait <= 0 {
			wait = b.timing.quiet
		}
		var done <-chan struct{}
		if !ending {
			done = s.ctx.Done()
		}
		select {
		case <-src.changed:
		case <-time.After(wait):
		case <-done:
			ending = true
			s.awaitHandlers() // those in flight may yet acknowledge
		}
	}
	src.mu.Lock()
	n := src.total
	src.mu.Unlock()
	c.Disconnect(250)
	b.log.Info("took over a session left with messages", "clientID", id, "topic", s.topic, "messages", n)
	// An abandoned session's owner is gone: remove the (now empty) session.
	// A lost one's owner may come back at any moment, and removing its
	// session then would drop what the server just sent it; it is left,
	// empty and unsubscribed.
	b.mu.Lock()
	abandoned := false
	if w := b.watches[s.registryFilter()]; w != nil && w.orphans[id] != nil {
		abandoned = w.orphans[id].why == whyAbandoned
	}
	b.mu.Unlock()
	if abandoned {
		b.deleteSession(id)
	}
	return b.clearMark(s, id)
}

// clearMark removes the registry mark of session id.
func (b *Broker) clearMark(s *subscription, id string) bool {
	if err := awaitToken(context.Background(), b.ctrl.Publish(markerTopic(s.key, id), 1, true, []byte{}), b.timing.op); err != nil {
		b.log.Warn("could not clear the mark of a session taken over", "clientID", id, "err", err)
		return false
	}
	return true
}
