package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outrigger/outrigger/building-blocks/pubsub"
)

// Subscribe implements pubsub.Broker: it makes sure the group's durable
// consumer exists, then pulls from it in the background until ctx ends.
func (b *Broker) Subscribe(ctx context.Context, req pubsub.SubscribeRequest, handler pubsub.Handler) error {
	if b.ctx.Err() != nil {
		return errClosed
	}
	if handler == nil {
		return errors.New("pubsub/jetstream: Subscribe without a handler")
	}
	group := b.meta.DurableName
	if group == "" {
		group = req.Group
	}
	if group == "" {
		return fmt.Errorf("pubsub/jetstream: subscribing to %q: no group (app id) and no durableName to name the consumer", req.Topic)
	}
	setup, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	stop := context.AfterFunc(b.ctx, cancel)
	defer stop()

	s := &subscription{
		b:       b,
		topic:   req.Topic,
		group:   group,
		handler: handler,
		max:     req.MaxInFlight,
	}
	if s.max <= 0 {
		s.max = defaultMaxInFlight
	}
	s.slots = make(chan struct{}, s.max)
	if b.meta.RateLimit > 0 {
		s.pace = &pacer{bitsPerSec: float64(b.meta.RateLimit)}
	}
	if err := s.setUp(setup); err != nil {
		if b.ctx.Err() != nil {
			return errClosed
		}
		return err
	}
	s.log = b.log.With("topic", req.Topic, "stream", s.ref.name, "consumer", s.cons.CachedInfo().Name)

	b.mu.Lock()
	if b.ctx.Err() != nil {
		b.mu.Unlock()
		return errClosed
	}
	b.subs.Add(1)
	b.mu.Unlock()
	sctx, cancelSub := context.WithCancel(ctx)
	stopSub := context.AfterFunc(b.ctx, cancelSub)
	go func() {
		defer b.subs.Done()
		defer stopSub()
		defer cancelSub()
		s.run(sctx)
	}()
	return nil
}

// subscription is one Subscribe's pulling and handling.
type subscription struct {
	b       *Broker
	topic   string
	group   string
	handler pubsub.Handler
	max     int
	// slots holds a token per message taken and not yet answered.
	slots chan struct{}
	pace  *pacer
	log   *slog.Logger

	ref  *streamRef
	cons jetstream.Consumer

	handlers sync.WaitGroup
}

// setUp finds the topic's stream and the group's consumer, creating them
// if needed; a remembered stream that is gone is looked up again once.
func (s *subscription) setUp(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		ref, err := s.b.streamFor(ctx, s.topic)
		if err != nil {
			return err
		}
		cons, err := s.b.ensureConsumer(ctx, ref, s.group, s.topic)
		if errors.Is(err, jetstream.ErrStreamNotFound) && attempt == 0 {
			s.b.forget(s.topic)
			continue
		}
		if err != nil {
			return fmt.Errorf("pubsub/jetstream: subscribing to %q in stream %q: %w", s.topic, ref.name, err)
		}
		s.ref, s.cons = ref, cons
		return nil
	}
}

// consumerConfig is the configuration of the consumer of group on ref.
func (b *Broker) consumerConfig(ref *streamRef, group, topic string) jetstream.ConsumerConfig {
	m := &b.meta
	desc := fmt.Sprintf("%s: group %s, topic %s", managedMark, group, topic)
	if len(desc) > 1024 {
		desc = desc[:1024]
	}
	return jetstream.ConsumerConfig{
		Durable:       consumerName(group, topic, ref.dedicated),
		Description:   desc,
		DeliverPolicy: m.deliverPolicy,
		OptStartSeq:   m.optStartSeq,
		OptStartTime:  m.optStartTime,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       m.AckWait,
		MaxDeliver:    m.MaxDeliver,
		BackOff:       m.backOff,
		FilterSubject: ref.subject,
		MaxAckPending: m.MaxAckPending,
		Replicas:      m.Replicas,
		MemoryStorage: m.MemoryStorage,
	}
}

// ensureConsumer returns the durable consumer of group on ref's topic:
// created with the metadata's settings if missing; else the existing one,
// whose ack wait, redelivery bounds and pending limit are brought to the
// metadata's (where it starts is kept: the group resumes).
func (b *Broker) ensureConsumer(ctx context.Context, ref *streamRef, group, topic string) (jetstream.Consumer, error) {
	want := b.consumerConfig(ref, group, topic)
	for range 3 {
		c, err := ref.stream.Consumer(ctx, want.Durable)
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			c, err = ref.stream.CreateConsumer(ctx, want)
			if errors.Is(err, jetstream.ErrConsumerExists) || apiCode(err) == jsErrConsumerNameExist {
				continue // created meanwhile by another subscriber of the group
			}
			if err != nil {
				return nil, fmt.Errorf("creating consumer %q: %w", want.Durable, err)
			}
			return c, nil
		}
		if errors.Is(err, jetstream.ErrNotPullConsumer) {
			return nil, fmt.Errorf("consumer %q exists and is a push consumer; this broker pulls (delete the consumer, or set another durableName)", want.Durable)
		}
		if err != nil {
			return nil, err
		}
		return b.adopt(ctx, ref, c, want)
	}
	return nil, fmt.Errorf("consumer %q: could not create or find it", want.Durable)
}

// adopt checks that an existing consumer suits the subscription and
// updates the settings that may change.
func (b *Broker) adopt(ctx context.Context, ref *streamRef, c jetstream.Consumer, want jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	have := c.CachedInfo().Config
	filter := have.FilterSubject
	if filter == "" && len(have.FilterSubjects) == 1 {
		filter = have.FilterSubjects[0]
	}
	if filter != want.FilterSubject {
		return nil, fmt.Errorf("consumer %q exists and takes subject %q, not %q (set another durableName)", want.Durable, filter, want.FilterSubject)
	}
	if have.AckPolicy != jetstream.AckExplicitPolicy {
		return nil, fmt.Errorf("consumer %q exists with ack policy %s; this broker needs explicit acks (delete the consumer, or set another durableName)", want.Durable, have.AckPolicy)
	}
	upd := have
	upd.AckWait = want.AckWait
	if len(want.BackOff) > 0 {
		upd.AckWait = want.BackOff[0] // what the server makes of it
	}
	upd.BackOff = want.BackOff
	upd.MaxDeliver = want.MaxDeliver
	if upd.MaxDeliver == 0 {
		upd.MaxDeliver = -1
	}
	if want.MaxAckPending != 0 {
		upd.MaxAckPending = want.MaxAckPending
	}
	if upd.AckWait == have.AckWait && slices.Equal(upd.BackOff, have.BackOff) &&
		upd.MaxDeliver == have.MaxDeliver && upd.MaxAckPending == have.MaxAckPending {
		return c, nil
	}
	c2, err := ref.stream.UpdateConsumer(ctx, upd)
	if err != nil {
		b.log.Warn("consumer settings not updated; using it as it is", "stream", ref.name, "consumer", want.Durable, "error", err)
		return c, nil
	}
	return c2, nil
}

// run pulls messages while ctx lasts, never holding more than s.max
// unanswered, and waits for the handlers it started.
func (s *subscription) run(ctx context.Context) {
	defer s.handlers.Wait()
	backoff := time.Duration(0)
	pause := func(err error, what string) bool {
		backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
		s.log.Warn(what+"; retrying", "error", err, "wait", backoff)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
			return true
		}
	}
	recheck := false
	for ctx.Err() == nil {
		if recheck {
			// After a failed pull the consumer, or its stream, may have
			// been deleted: make sure it exists (again) before pulling.
			sctx, cancel := context.WithTimeout(ctx, setupTimeout)
			c, err := s.b.ensureConsumer(sctx, s.ref, s.group, s.topic)
			cancel()
			if err != nil {
				if ctx.Err() == nil && !pause(err, "the subscription's consumer is not available") {
					return
				}
				continue
			}
			s.cons, recheck = c, false
		}
		// One free slot, then every other free one: a pull asks for as
		// many messages as can be handled now, so that no message waits
		// in this process, its ack wait running, behind busy handlers.
		select {
		case s.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		n := 1
	more:
		for n < s.max {
			select {
			case s.slots <- struct{}{}:
				n++
			default:
				break more
			}
		}
		got, err := s.fetch(ctx, n)
		for range n - got {
			<-s.slots
		}
		if err == nil || ctx.Err() != nil {
			backoff = 0
			continue
		}
		if !pause(err, "pulling messages failed") {
			return
		}
		recheck = true
	}
}

// fetch makes one pull request for up to n messages and starts a handler
// for each; it returns how many came.
func (s *subscription) fetch(ctx context.Context, n int) (int, error) {
	fctx, cancel := context.WithTimeout(ctx, s.b.pullWait)
	defer cancel()
	opts := []jetstream.FetchOpt{jetstream.FetchContext(fctx)}
	if hb := s.b.meta.heartbeat; hb > 0 {
		opts = append(opts, jetstream.FetchHeartbeat(hb))
	}
	batch, err := s.cons.Fetch(n, opts...)
	if err != nil {
		return 0, err
	}
	got := 0
	for m := range batch.Messages() {
		got++
		if ctx.Err() != nil {
			// Taken as the subscription ended: back to the group at once.
			_ = m.Nak()
			<-s.slots
			continue
		}
		s.handlers.Add(1)
		go func() {
			defer s.handlers.Done()
			defer func() { <-s.slots }()
			s.handle(ctx, m)
		}()
	}
	err = batch.Error()
	switch {
	case ctx.Err() != nil:
		err = nil // the subscription's end
	case errors.Is(err, context.DeadlineExceeded):
		// The server ends a pull request before this deadline; here it
		// did not: it is unreachable, or the consumer or its stream is
		// gone.
		err = errors.New("the server did not answer a pull request")
	}
	return got, err
}

// handle delivers one message to the handler and answers the server.
func (s *subscription) handle(ctx context.Context, m jetstream.Msg) {
	meta, err := m.Metadata()
	if err != nil {
		s.log.Error("not a JetStream message; left to its ack wait", "subject", m.Subject(), "error", err)
		return
	}
	h := m.Headers()
	msg := &pubsub.Message{
		Topic:       s.topic,
		ContentType: h.Get(HeaderContentType),
		ID:          meta.Stream + "/" + strconv.FormatUint(meta.Sequence.Stream, 10),
	}
	if v := h.Get(HeaderExpires); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			s.log.Warn("bad "+HeaderExpires+" header ignored", "id", msg.ID, "value", v)
		} else {
			msg.Expires = t
		}
	}
	if !msg.Expires.IsZero() && !time.Now().Before(msg.Expires) {
		_ = m.Term() // expired: never delivered again
		return
	}
	if v := h.Get(HeaderMetadata); v != "" {
		if err := json.Unmarshal([]byte(v), &msg.Metadata); err != nil {
			s.log.Warn("bad "+HeaderMetadata+" header ignored", "id", msg.ID, "error", err)
		}
	}
	msg.Data = m.Data()
	if v := h.Get(HeaderChunks); v != "" {
		data, permanent, err := s.assemble(ctx, v, h.Get(HeaderSize))
		switch {
		case err != nil && permanent:
			s.log.Error("a message stored in parts cannot be read back; dropped", "id", msg.ID, "error", err)
			_ = m.Term()
			return
		case err != nil:
			s.log.Warn("reading the parts of a message failed; it will come again", "id", msg.ID, "error", err)
			s.nak(ctx, m, meta)
			return
		}
		msg.Data = data
	}
	if s.pace != nil && !s.waitTurn(ctx, m, len(msg.Data)) {
		s.nak(ctx, m, meta)
		return
	}

	if err := s.handler(ctx, msg); err != nil {
		s.nak(ctx, m, meta)
	} else if err := m.Ack(); err != nil {
		s.log.Debug("ack not sent; the message will come again", "id", msg.ID, "error", err)
	}
}

// waitTurn waits until the rate limit lets a message of n bytes through,
// telling the server the message is in progress meanwhile so that its ack
// wait does not run out; false if ctx ended first.
func (s *subscription) waitTurn(ctx context.Context, m jetstream.Msg, n int) bool {
	until := time.Now().Add(s.pace.reserve(n))
	tick := max(s.b.meta.AckWait/2, 10*time.Millisecond)
	for {
		left := time.Until(until)
		if left <= 0 {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(min(left, tick)):
			if time.Until(until) > 0 {
				_ = m.InProgress()
			}
		}
	}
}

// nak asks for m again: at once when the subscription is ending (another
// subscriber of the group may take it), else after the backOff delay of
// its delivery or the default delay.
func (s *subscription) nak(ctx context.Context, m jetstream.Msg, meta *jetstream.MsgMetadata) {
	var err error
	if ctx.Err() != nil {
		err = m.Nak()
	} else {
		err = m.NakWithDelay(s.nakDelay(meta.NumDelivered))
	}
	if err != nil {
		s.log.Debug("nak not sent; the message will come again after its ack wait", "error", err)
	}
}

// nakDelay is how long a message delivered the delivered-th time waits
// before it comes again after a failure.
func (s *subscription) nakDelay(delivered uint64) time.Duration {
	if bo := s.b.meta.backOff; len(bo) > 0 {
		i := min(max(int(delivered)-1, 0), len(bo)-1)
		return bo[i]
	}
	return min(defaultNakDelay, s.b.meta.AckWait)
}

// assemble reads back the parts of a message stored in parts; permanent
// says whether trying again cannot help.
func (s *subscription) assemble(ctx context.Context, seqs, size string) (data []byte, permanent bool, err error) {
	total, err := strconv.Atoi(size)
	if err != nil || total < 0 {
		return nil, true, fmt.Errorf("bad %s header %q", HeaderSize, size)
	}
	data = make([]byte, 0, total)
	for i, p := range strings.Split(seqs, ",") {
		seq, err := strconv.ParseUint(strings.TrimSpace(p), 10, 64)
		if err != nil {
			return nil, true, fmt.Errorf("bad %s header %q", HeaderChunks, seqs)
		}
		gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		raw, err := s.ref.stream.GetMsg(gctx, seq)
		cancel()
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil, true, fmt.Errorf("part %d (sequence %d) is no longer in stream %q", i, seq, s.ref.name)
		}
		if err != nil {
			return nil, false, fmt.Errorf("part %d (sequence %d): %w", i, seq, err)
		}
		if raw.Subject != chunkSubject(s.ref.name) {
			return nil, true, fmt.Errorf("sequence %d of stream %q is on subject %q, not a part of a message", seq, s.ref.name, raw.Subject)
		}
		data = append(data, raw.Data...)
	}
	if len(data) != total {
		return nil, true, fmt.Errorf("the parts hold %d bytes, the message %d", len(data), total)
	}
	return data, false, nil
}

// pacer spreads a subscription's deliveries to a rate, in bits of payload
// per second (Dapr's rateLimit, applied by the subscriber since pull
// consumers have no server-side rate).
type pacer struct {
	mu         sync.Mutex
	next       time.Time
	bitsPerSec float64
}

// reserve books the delivery of n bytes and returns how long to wait
// before it.
func (p *pacer) reserve(n int) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if p.next.Before(now) {
		p.next = now
	}
	start := p.next
	p.next = p.next.Add(time.Duration(float64(n) * 8 / p.bitsPerSec * float64(time.Second)))
	return start.Sub(now)
}
