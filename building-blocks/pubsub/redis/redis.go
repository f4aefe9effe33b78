// Package redis is the pubsub.redis broker: topics are Redis Streams and
// subscribers are consumer groups, in the layout of Dapr's Redis Streams
// pub/sub, so Dapr and Outrigger sidecars can publish to and subscribe from
// the same streams.
//
// A topic is the stream of that name. Publish is an XADD whose field data
// holds the payload (as Dapr writes it) and whose field metadata holds the
// message metadata as a JSON object (as Dapr writes it); the content type
// and the expiry travel in fields of Outrigger's own (outrigger-content-type,
// outrigger-expires), which Dapr ignores.
//
// A subscription joins the consumer group req.Group (or the consumerID
// metadata), creating it at the end of the stream (XGROUP CREATE ... $
// MKSTREAM) if it does not exist, and reads it with XREADGROUP as a
// consumer of its own. A message is acknowledged (XACK) once the handler
// returns nil; one the handler failed stays pending and is retried by the
// same subscription after a backoff. While a subscription holds a message
// it keeps the entry fresh (XCLAIM to itself, JUSTID), so other consumers
// leave it alone; entries idle for processingTimeout, those of consumers
// that went away, are taken over by XAUTOCLAIM every redeliverInterval.
// Delivery is at least once.
package redis

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/outrigger/outrigger/building-blocks/pubsub"
	"github.com/outrigger/outrigger/config/metadata"
)

// Type is the component type this broker implements, version v1.
const Type = "pubsub.redis"

// Stream entry fields. data and metadata are Dapr's; the others are
// Outrigger's own and ignored by Dapr.
const (
	fieldData        = "data"
	fieldMetadata    = "metadata"
	fieldContentType = "outrigger-content-type"
	fieldExpires     = "outrigger-expires" // Unix time in milliseconds, decimal
)

const (
	// readBlock is how long one XREADGROUP waits for new entries; it bounds
	// how long a cancelled subscription takes to notice.
	readBlock = time.Second
	// opTimeout bounds the commands a subscription sends besides its reads.
	opTimeout = 10 * time.Second
	// retryBase is the first backoff before a failed message is retried;
	// it doubles with every failure, up to processingTimeout (or
	// retryMaxDefault when that is 0).
	retryBase       = 250 * time.Millisecond
	retryMaxDefault = time.Minute
	// releaseIdle is the idle time given to the entries a subscription
	// still holds when it ends, so that any consumer's next XAUTOCLAIM
	// takes them over.
	releaseIdle = 365 * 24 * time.Hour
)

// Metadata is the broker's component metadata, with the names of Dapr's
// Redis Streams pub/sub.
type Metadata struct {
	// RedisHost is the server's address, host:port. Required.
	RedisHost string `meta:"redisHost" required:"true"`
	// RedisUsername is the ACL user (Redis 6 and later); empty for the
	// default user.
	RedisUsername string `meta:"redisUsername"`
	// RedisPassword is the password; empty for none.
	RedisPassword string `meta:"redisPassword"`
	// RedisDB is the logical database selected after connecting.
	RedisDB int `meta:"redisDB" default:"0"`
	// EnableTLS connects over TLS, verifying the server's certificate.
	EnableTLS bool `meta:"enableTLS" default:"false"`
	// ConsumerID, when set, is the consumer group of every subscription,
	// in place of the subscribing app's id (SubscribeRequest.Group).
	ConsumerID string `meta:"consumerID"`
	// ProcessingTimeout is how long an entry must have been pending
	// without news from its consumer before another consumer takes it
	// over; 0 disables taking over. A bare number is milliseconds, as in
	// Dapr.
	ProcessingTimeout time.Duration `meta:"processingTimeout" default:"60s"`
	// RedeliverInterval is how often a subscription looks for entries to
	// take over; 0 disables taking over. A bare number is milliseconds,
	// as in Dapr.
	RedeliverInterval time.Duration `meta:"redeliverInterval" default:"60s"`
	// QueueDepth is how many messages a subscription reads ahead of its
	// handlers.
	QueueDepth int `meta:"queueDepth" default:"100"`
	// Concurrency is how many handler calls a subscription makes at once
	// when SubscribeRequest.MaxInFlight is zero.
	Concurrency int `meta:"concurrency" default:"10"`
	// MaxLenApprox, when positive, trims every stream published to to
	// about that many entries (XADD MAXLEN ~).
	MaxLenApprox int64 `meta:"maxLenApprox"`
	// StreamTTL, when positive, trims entries older than that from every
	// stream published to (XADD MINID ~).
	StreamTTL time.Duration `meta:"streamTTL"`
	// MaxRetries is how many times a failed command is retried; 0 or a
	// negative number retries none.
	MaxRetries int `meta:"maxRetries" default:"3"`
	// MaxRetryBackoff bounds the backoff between retries; a negative value
	// disables the backoff.
	MaxRetryBackoff time.Duration `meta:"maxRetryBackoff" default:"2s"`
	// DialTimeout bounds establishing a connection.
	DialTimeout time.Duration `meta:"dialTimeout" default:"5s"`
	// ReadTimeout bounds a socket read; negative is no timeout. Blocking
	// reads of subscriptions get their own bound.
	ReadTimeout time.Duration `meta:"readTimeout" default:"3s"`
	// WriteTimeout bounds a socket write; negative is no timeout, unset is
	// ReadTimeout.
	WriteTimeout time.Duration `meta:"writeTimeout"`
	// PoolSize is the most connections the broker keeps for publishing and
	// acknowledging; unset is 10 per CPU. Every subscription reads on a
	// connection of its own besides.
	PoolSize int `meta:"poolSize"`
	// RedisType is node (the only type supported) or cluster (refused).
	RedisType string `meta:"redisType" default:"node"`
	// Failover connects through Redis Sentinel; true is refused.
	Failover bool `meta:"failover" default:"false"`
}

// Validate checks m.
func (m *Metadata) Validate() error {
	var errs []error
	if m.RedisHost == "" {
		errs = append(errs, errors.New("metadata redisHost: required"))
	} else if host, port, err := net.SplitHostPort(m.RedisHost); err != nil || host == "" || !validPort(port) {
		errs = append(errs, fmt.Errorf("metadata redisHost %q: want host:port, such as localhost:6379", m.RedisHost))
	}
	if m.RedisDB < 0 {
		errs = append(errs, fmt.Errorf("metadata redisDB %d: must not be negative", m.RedisDB))
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"processingTimeout", m.ProcessingTimeout},
		{"redeliverInterval", m.RedeliverInterval},
		{"streamTTL", m.StreamTTL},
		{"dialTimeout", m.DialTimeout},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("metadata %s %v: must not be negative", d.key, d.v))
		}
	}
	if m.StreamTTL > 0 && m.StreamTTL < time.Millisecond {
		errs = append(errs, fmt.Errorf("metadata streamTTL %v: must be at least 1ms (stream ids count milliseconds)", m.StreamTTL))
	}
	if m.QueueDepth < 0 {
		errs = append(errs, fmt.Errorf("metadata queueDepth %d: must not be negative", m.QueueDepth))
	}
	if m.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("metadata concurrency %d: must be at least 1", m.Concurrency))
	}
	if m.MaxLenApprox < 0 {
		errs = append(errs, fmt.Errorf("metadata maxLenApprox %d: must not be negative", m.MaxLenApprox))
	}
	if m.PoolSize < 0 {
		errs = append(errs, fmt.Errorf("metadata poolSize %d: must not be negative", m.PoolSize))
	}
	switch strings.ToLower(strings.TrimSpace(m.RedisType)) {
	case "node", "":
	case "cluster":
		errs = append(errs, errors.New(`metadata redisType "cluster": Redis Cluster is not supported yet; use a single node (redisType node)`))
	default:
		errs = append(errs, fmt.Errorf("metadata redisType %q: want node (cluster is not supported yet)", m.RedisType))
	}
	if m.Failover {
		errs = append(errs, errors.New("metadata failover: Redis Sentinel failover is not supported yet; connect to the master directly"))
	}
	return errors.Join(errs...)
}

func validPort(p string) bool {
	n, err := strconv.ParseUint(p, 10, 16)
	return err == nil && n > 0
}

// options are the go-redis client options m describes.
func (m *Metadata) options() *goredis.Options {
	o := &goredis.Options{
		Addr:            m.RedisHost,
		Username:        m.RedisUsername,
		Password:        m.RedisPassword,
		DB:              m.RedisDB,
		MaxRetries:      m.MaxRetries,
		MaxRetryBackoff: m.MaxRetryBackoff,
		DialTimeout:     m.DialTimeout,
		ReadTimeout:     m.ReadTimeout,
		WriteTimeout:    m.WriteTimeout,
		PoolSize:        m.PoolSize,
	}
	// go-redis reads 0 as its default and -1 as "none"; the metadata reads
	// 0 retries as none and any negative duration as none.
	if o.MaxRetries <= 0 {
		o.MaxRetries = -1
	}
	for _, d := range []*time.Duration{&o.MaxRetryBackoff, &o.ReadTimeout, &o.WriteTimeout} {
		if *d < 0 {
			*d = -1
		}
	}
	if m.EnableTLS {
		host, _, _ := net.SplitHostPort(m.RedisHost)
		o.TLSConfig = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	}
	return o
}

// millisKeys are the duration keys Dapr reads as milliseconds when they are
// a bare number.
var millisKeys = []string{"processingTimeout", "redeliverInterval"}

// daprMillis returns meta with the bare numbers of millisKeys given the
// unit ms, as Dapr reads them (elsewhere a bare number is seconds).
func daprMillis(meta map[string]string) map[string]string {
	var out map[string]string
	for k, v := range meta {
		for _, mk := range millisKeys {
			if !strings.EqualFold(k, mk) {
				continue
			}
			s := strings.TrimSpace(v)
			if _, err := strconv.ParseUint(s, 10, 63); err != nil {
				continue
			}
			if out == nil {
				out = maps.Clone(meta)
			}
			out[k] = s + "ms"
		}
	}
	if out == nil {
		return meta
	}
	return out
}

// Broker is a message broker over one Redis server. It is safe for
// concurrent use.
type Broker struct {
	md     Metadata
	client *goredis.Client
	// prefix is put before every stream name; empty outside tests.
	prefix string
	log    *slog.Logger

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc

	mu     sync.Mutex // guards closed and the Add of wg against Close
	closed bool
	wg     sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

var (
	_ pubsub.Broker        = (*Broker)(nil)
	_ pubsub.BulkPublisher = (*Broker)(nil)
)

// New builds a broker from its component metadata and checks that the
// server answers. unknown lists the keys it does not read.
func New(meta map[string]string) (*Broker, []string, error) {
	return open(meta, "")
}

// open is New with every stream name put after prefix (for tests sharing
// one server).
func open(meta map[string]string, prefix string) (*Broker, []string, error) {
	var m Metadata
	unknown, err := metadata.Decode(daprMillis(meta), &m)
	if err != nil {
		return nil, unknown, err
	}
	if err := m.Validate(); err != nil {
		return nil, unknown, err
	}
	b := &Broker{
		md:     m,
		client: goredis.NewClient(m.options()),
		prefix: prefix,
		log:    slog.Default().With("component", Type),
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.DialTimeout+5*time.Second)
	defer cancel()
	if err := b.client.Ping(ctx).Err(); err != nil {
		_ = b.client.Close()
		return nil, unknown, fmt.Errorf("pubsub/redis: connecting to %s: %w", m.RedisHost, err)
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	return b, unknown, nil
}

// Features implements pubsub.Broker: expired messages are dropped on
// delivery, and a subscription with MaxInFlight 1 hands messages over in
// stream order.
func (b *Broker) Features() pubsub.Features {
	return pubsub.Features{MessageTTL: true, Ordered: true}
}

// Close implements pubsub.Broker: it ends every subscription, waiting for
// the handler calls in flight to return, and closes the connections.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		b.mu.Unlock()
		b.cancel()
		b.wg.Wait()
		b.closeErr = b.client.Close()
	})
	return b.closeErr
}

var errClosed = errors.New("pubsub/redis: the broker is closed")

func (b *Broker) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// fields is the stream entry of msg, as XADD field/value pairs.
func fields(msg pubsub.Message) []any {
	f := make([]any, 0, 8)
	data := msg.Data
	if data == nil {
		data = []byte{}
	}
	f = append(f, fieldData, data)
	if len(msg.Metadata) > 0 {
		js, _ := json.Marshal(msg.Metadata) // a map of strings always encodes
		f = append(f, fieldMetadata, js)
	}
	if msg.ContentType != "" {
		f = append(f, fieldContentType, msg.ContentType)
	}
	if !msg.Expires.IsZero() {
		f = append(f, fieldExpires, strconv.FormatInt(msg.Expires.UnixMilli(), 10))
	}
	return f
}

// minID is the MINID below which streamTTL trims at now.
func (b *Broker) minID(now time.Time) string {
	return strconv.FormatInt(now.Add(-b.md.StreamTTL).UnixMilli(), 10) + "-0"
}

// xadd queues on c the XADD of msg to stream, trimming by length or, when
// no length is set, by age.
func (b *Broker) xadd(ctx context.Context, c goredis.Cmdable, stream string, msg pubsub.Message, now time.Time) *goredis.StringCmd {
	a := &goredis.XAddArgs{Stream: stream, Values: fields(msg)}
	switch {
	case b.md.MaxLenApprox > 0:
		a.MaxLen, a.Approx = b.md.MaxLenApprox, true
	case b.md.StreamTTL > 0:
		a.MinID, a.Approx = b.minID(now), true
	}
	return c.XAdd(ctx, a)
}

// trimBoth reports whether XADD cannot trim alone: it takes one of MAXLEN
// and MINID, so with both set an XTRIM MINID follows.
func (b *Broker) trimBoth() bool { return b.md.MaxLenApprox > 0 && b.md.StreamTTL > 0 }

// Publish implements pubsub.Broker: one XADD.
func (b *Broker) Publish(ctx context.Context, topic string, msg pubsub.Message) error {
	if b.isClosed() {
		return errClosed
	}
	if topic == "" {
		return errors.New("pubsub/redis: publish: empty topic")
	}
	stream, now := b.prefix+topic, time.Now()
	if !b.trimBoth() {
		if err := b.xadd(ctx, b.client, stream, msg, now).Err(); err != nil {
			return fmt.Errorf("pubsub/redis: publish to %q: %w", topic, err)
		}
		return nil
	}
	var add *goredis.StringCmd
	_, _ = b.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		add = b.xadd(ctx, p, stream, msg, now)
		p.XTrimMinIDApprox(ctx, stream, b.minID(now), 0)
		return nil
	})
	if err := add.Err(); err != nil {
		return fmt.Errorf("pubsub/redis: publish to %q: %w", topic, err)
	}
	return nil
}

// BulkPublish implements pubsub.BulkPublisher: the XADDs of msgs in one
// pipeline.
func (b *Broker) BulkPublish(ctx context.Context, topic string, msgs []pubsub.Message) error {
	failAll := func(err error) error {
		failed := make(map[int]error, len(msgs))
		for i := range msgs {
			failed[i] = err
		}
		return &pubsub.BulkError{Failed: failed}
	}
	if len(msgs) == 0 {
		return nil
	}
	if b.isClosed() {
		return failAll(errClosed)
	}
	if topic == "" {
		return failAll(errors.New("pubsub/redis: publish: empty topic"))
	}
	stream, now := b.prefix+topic, time.Now()
	adds := make([]*goredis.StringCmd, len(msgs))
	_, _ = b.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, m := range msgs {
			adds[i] = b.xadd(ctx, p, stream, m, now)
		}
		if b.trimBoth() {
			p.XTrimMinIDApprox(ctx, stream, b.minID(now), 0)
		}
		return nil
	})
	failed := map[int]error{}
	for i, c := range adds {
		if err := c.Err(); err != nil {
			failed[i] = fmt.Errorf("pubsub/redis: publish to %q: %w", topic, err)
		}
	}
	if len(failed) > 0 {
		return &pubsub.BulkError{Failed: failed}
	}
	return nil
}

// Subscribe implements pubsub.Broker.
func (b *Broker) Subscribe(ctx context.Context, req pubsub.SubscribeRequest, handler pubsub.Handler) error {
	if b.isClosed() {
		return errClosed
	}
	if req.Topic == "" {
		return errors.New("pubsub/redis: subscribe: empty topic")
	}
	if handler == nil {
		return errors.New("pubsub/redis: subscribe: nil handler")
	}
	group := b.md.ConsumerID
	if group == "" {
		group = req.Group
	}
	if group == "" {
		return fmt.Errorf("pubsub/redis: subscribe to %q: no consumer group (neither the request's group nor consumerID)", req.Topic)
	}
	s := &subscription{
		b:        b,
		topic:    req.Topic,
		stream:   b.prefix + req.Topic,
		group:    group,
		consumer: consumerName(),
		handler:  handler,
		workers:  req.MaxInFlight,
		held:     map[string]*delivery{},
	}
	if s.workers <= 0 {
		s.workers = b.md.Concurrency
	}
	capacity := s.workers + b.md.QueueDepth
	s.queue = make(chan *delivery, capacity)
	s.slots = make(chan struct{}, capacity)
	for range capacity {
		s.slots <- struct{}{}
	}
	// A new group starts at the end of the stream: it gets the messages
	// published from now on.
	if err := s.createGroup(ctx, "$"); err != nil {
		return err
	}
	o := b.md.options()
	o.PoolSize, o.MaxIdleConns = 1, 1
	s.reader = goredis.NewClient(o)

	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		_ = s.reader.Close()
		return errClosed
	}
	b.wg.Add(1)
	b.mu.Unlock()
	sctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(b.ctx, cancel)
	go func() {
		defer b.wg.Done()
		defer stop()
		defer cancel()
		s.run(sctx)
	}()
	return nil
}

// consumerName is a fresh consumer name: every subscription is a consumer
// of its own.
func consumerName() string {
	r := make([]byte, 8)
	_, _ = rand.Read(r)
	return "outrigger-" + hex.EncodeToString(r)
}

// subscription is one Subscribe: a consumer of a group of a stream.
type subscription struct {
	b                              *Broker
	topic, stream, group, consumer string
	handler                        pubsub.Handler
	workers                        int
	reader                         *goredis.Client // its blocking reads, on a connection of their own

	// slots holds one token per message the subscription may still take
	// on: a message read or claimed takes one, and gives it back once
	// acknowledged. len(held) never exceeds the capacity, so queue, which
	// only holds held messages, never blocks a send.
	slots chan struct{}
	queue chan *delivery

	mu   sync.Mutex
	held map[string]*delivery // entry id → message taken and not yet acknowledged
}

// delivery is one entry the subscription holds.
type delivery struct {
	id       string
	msg      pubsub.Message
	attempts int         // handler calls so far, by this subscription
	timer    *time.Timer // the pending retry after a failure; guarded by subscription.mu
}

func (s *subscription) createGroup(ctx context.Context, start string) error {
	err := s.b.client.XGroupCreateMkStream(ctx, s.stream, s.group, start).Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("pubsub/redis: creating consumer group %q of %q: %w", s.group, s.topic, err)
	}
	return nil
}

// run delivers until ctx is done, then waits for its goroutines, hands what
// it still holds over to the group and leaves.
func (s *subscription) run(ctx context.Context) {
	var wg sync.WaitGroup
	for range s.workers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case d := <-s.queue:
					s.process(ctx, d)
				}
			}
		})
	}
	if pt := s.b.md.ProcessingTimeout; pt > 0 {
		wg.Go(func() { s.keepAlive(ctx, max(pt/3, 10*time.Millisecond)) })
	}
	s.readLoop(ctx)
	wg.Wait()
	s.leave()
}

// readLoop reads new entries of the group while ctx lasts, and every
// redeliverInterval (when both it and processingTimeout are set) takes over
// the group's entries idle for processingTimeout: those of consumers that
// went away, and of this one if it failed to keep them fresh. Reading and
// taking over alternate, so that neither holds the slots the other waits
// for; a read blocks no longer than until the next takeover is due.
func (s *subscription) readLoop(ctx context.Context) {
	backoff := pause{lo: 100 * time.Millisecond, hi: 5 * time.Second}
	reclaims := s.b.md.ProcessingTimeout > 0 && s.b.md.RedeliverInterval > 0
	nextReclaim := time.Now()
	for {
		n := s.acquire(ctx)
		if n == 0 {
			return
		}
		block := readBlock
		if reclaims {
			if !time.Now().Before(nextReclaim) {
				s.release(n)
				s.reclaim(ctx)
				nextReclaim = time.Now().Add(s.b.md.RedeliverInterval)
				continue
			}
			block = max(min(block, time.Until(nextReclaim)), time.Millisecond)
		}
		res, err := s.reader.XReadGroup(ctx, &goredis.XReadGroupArgs{
			Group:    s.group,
			Consumer: s.consumer,
			Streams:  []string{s.stream, ">"},
			Count:    int64(n),
			Block:    block,
		}).Result()
		if err != nil {
			s.release(n)
			if errors.Is(err, goredis.Nil) {
				continue
			}
			if ctx.Err() != nil {
				return
			}
			if strings.HasPrefix(err.Error(), "NOGROUP") {
				// The stream or the group went away (deleted, or lost by a
				// server restart). Recreate the group from the start of
				// whatever the stream holds now, so that nothing
				// published since is missed.
				s.b.log.Warn("consumer group missing; recreating it", "topic", s.topic, "group", s.group)
				cctx, cancel := context.WithTimeout(ctx, opTimeout)
				err = s.createGroup(cctx, "0")
				cancel()
				if err == nil {
					continue
				}
			}
			s.b.log.Warn("reading a stream failed", "topic", s.topic, "group", s.group, "error", err)
			if !backoff.wait(ctx) {
				return
			}
			continue
		}
		backoff.reset()
		taken := 0
		for _, st := range res {
			for _, xm := range st.Messages {
				if s.admit(ctx, xm) {
					taken++
				}
			}
		}
		s.release(n - taken)
	}
}

// reclaim takes over, as far as the subscription has room, the group's
// entries idle for processingTimeout.
func (s *subscription) reclaim(ctx context.Context) {
	start := "0-0"
	for ctx.Err() == nil {
		n := s.tryAcquire(cap(s.slots))
		if n == 0 {
			return // busy: the entries wait for the next round
		}
		msgs, next, err := s.b.client.XAutoClaim(ctx, &goredis.XAutoClaimArgs{
			Stream:   s.stream,
			Group:    s.group,
			Consumer: s.consumer,
			MinIdle:  s.b.md.ProcessingTimeout,
			Start:    start,
			Count:    int64(n),
		}).Result()
		if err != nil {
			s.release(n)
			if ctx.Err() == nil && !strings.HasPrefix(err.Error(), "NOGROUP") {
				s.b.log.Warn("reclaiming pending entries failed", "topic", s.topic, "group", s.group, "error", err)
			}
			return
		}
		taken := 0
		for _, xm := range msgs {
			if s.admit(ctx, xm) {
				taken++
			}
		}
		s.release(n - taken)
		if next == "" || next == "0-0" {
			return
		}
		start = next
	}
}

// keepAlive resets, every interval, the idle time of the entries the
// subscription holds, so that no consumer takes them over while their
// handler runs or their retry waits.
func (s *subscription) keepAlive(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ids := s.heldIDs()
		if len(ids) == 0 {
			continue
		}
		tctx, cancel := context.WithTimeout(ctx, opTimeout)
		err := s.touch(tctx, ids, 0)
		cancel()
		if err != nil && ctx.Err() == nil {
			s.b.log.Warn("refreshing held entries failed", "topic", s.topic, "group", s.group, "error", err)
		}
	}
}

// touchScript claims again, for the consumer ARGV[2] of the group ARGV[1],
// those of the ids ARGV[4:] it still owns, setting their idle time to
// ARGV[3] ms without counting a delivery. Entries another consumer took
// over are left alone.
var touchScript = goredis.NewScript(`
local n = 0
for i = 4, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #p > 0 then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'IDLE', ARGV[3], 'JUSTID')
    n = n + 1
  end
end
return n
`)

// touch runs touchScript over ids, in chunks.
func (s *subscription) touch(ctx context.Context, ids []string, idle time.Duration) error {
	for chunk := range slices.Chunk(ids, 500) {
		args := make([]any, 0, 3+len(chunk))
		args = append(args, s.group, s.consumer, idle.Milliseconds())
		for _, id := range chunk {
			args = append(args, id)
		}
		if err := touchScript.Run(ctx, s.b.client, []string{s.stream}, args...).Err(); err != nil {
			return err
		}
	}
	return nil
}

// leaveScript deletes the consumer ARGV[2] of the group ARGV[1] if it owns
// no pending entry.
var leaveScript = goredis.NewScript(`
local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #p == 0 then
  return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
end
return -1
`)

// leave ends the subscription once its goroutines are done: the entries it
// still holds become idle enough for any consumer's next XAUTOCLAIM, and
// the consumer is deleted if it owns no entry.
func (s *subscription) leave() {
	defer func() { _ = s.reader.Close() }()
	s.mu.Lock()
	ids := make([]string, 0, len(s.held))
	for id, d := range s.held {
		if d.timer != nil {
			d.timer.Stop()
		}
		ids = append(ids, id)
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if len(ids) > 0 {
		if err := s.touch(ctx, ids, releaseIdle); err != nil {
			s.b.log.Warn("releasing held entries failed; they are taken over after processingTimeout",
				"topic", s.topic, "group", s.group, "error", err)
		}
	}
	_ = leaveScript.Run(ctx, s.b.client, []string{s.stream}, s.group, s.consumer).Err()
}

// acquire takes between 1 and cap(slots) slots, waiting for the first;
// 0 when ctx ends first.
func (s *subscription) acquire(ctx context.Context) int {
	if ctx.Err() != nil {
		return 0
	}
	select {
	case <-s.slots:
	case <-ctx.Done():
		return 0
	}
	return 1 + s.tryAcquire(cap(s.slots)-1)
}

// tryAcquire takes up to limit free slots without waiting.
func (s *subscription) tryAcquire(limit int) int {
	n := 0
	for n < limit {
		select {
		case <-s.slots:
			n++
		default:
			return n
		}
	}
	return n
}

func (s *subscription) release(n int) {
	for range n {
		s.slots <- struct{}{}
	}
}

// admit takes on an entry read or claimed, with a slot the caller acquired,
// and queues it for the workers. It reports false, the slot unused, for an
// entry already held or deleted from the stream.
func (s *subscription) admit(ctx context.Context, xm goredis.XMessage) bool {
	if len(xm.Values) == 0 {
		// Trimmed from the stream while pending (Redis 6 claims return
		// it without fields): nothing to deliver.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
		_ = s.b.client.XAck(actx, s.stream, s.group, xm.ID).Err()
		cancel()
		return false
	}
	d := &delivery{id: xm.ID, msg: decode(s.topic, xm)}
	s.mu.Lock()
	if _, dup := s.held[d.id]; dup {
		s.mu.Unlock()
		return false
	}
	s.held[d.id] = d
	s.mu.Unlock()
	s.queue <- d // never blocks: see slots
	return true
}

// heldIDs lists the entries the subscription holds.
func (s *subscription) heldIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.held))
	for id := range s.held {
		ids = append(ids, id)
	}
	return ids
}

// process hands d to the handler: acknowledged on nil, retried after a
// backoff on an error. Once ctx is done, d is left held, for leave to
// release.
func (s *subscription) process(ctx context.Context, d *delivery) {
	if ctx.Err() != nil {
		return
	}
	if !d.msg.Expires.IsZero() && !time.Now().Before(d.msg.Expires) {
		s.ack(ctx, d) // past its TTL: dropped
		return
	}
	d.attempts++
	m := d.msg
	m.Data = slices.Clone(d.msg.Data)
	m.Metadata = maps.Clone(d.msg.Metadata)
	if err := s.handler(ctx, &m); err == nil {
		s.ack(ctx, d)
		return
	}
	if ctx.Err() != nil {
		return
	}
	wait := s.retryDelay(d.attempts)
	s.mu.Lock()
	d.timer = time.AfterFunc(wait, func() {
		if ctx.Err() == nil {
			s.queue <- d // never blocks: see slots
		}
	})
	s.mu.Unlock()
}

// retryDelay is the backoff after the n-th failed attempt.
func (s *subscription) retryDelay(n int) time.Duration {
	limit := s.b.md.ProcessingTimeout
	if limit <= 0 {
		limit = retryMaxDefault
	}
	d := retryBase
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	return max(min(d, limit), time.Millisecond)
}

// ack acknowledges d and lets it go.
func (s *subscription) ack(ctx context.Context, d *delivery) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	err := s.b.client.XAck(actx, s.stream, s.group, d.id).Err()
	cancel()
	if err != nil {
		// It stays pending, and comes back after processingTimeout.
		s.b.log.Warn("acknowledging a message failed", "topic", s.topic, "group", s.group, "id", d.id, "error", err)
	}
	s.mu.Lock()
	delete(s.held, d.id)
	s.mu.Unlock()
	s.release(1)
}

// decode reads a stream entry back into a message. Fields it does not know
// are ignored; a malformed metadata or expiry field is dropped.
func decode(topic string, xm goredis.XMessage) pubsub.Message {
	m := pubsub.Message{Topic: topic, ID: xm.ID}
	str := func(k string) (string, bool) {
		switch v := xm.Values[k].(type) {
		case string:
			return v, true
		case []byte:
			return string(v), true
		}
		return "", false
	}
	if v, ok := str(fieldData); ok {
		m.Data = []byte(v)
	}
	if v, ok := str(fieldMetadata); ok && v != "" {
		var md map[string]string
		if json.Unmarshal([]byte(v), &md) == nil && len(md) > 0 {
			m.Metadata = md
		}
	}
	if v, ok := str(fieldContentType); ok {
		m.ContentType = v
	}
	if v, ok := str(fieldExpires); ok {
		if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
			m.Expires = time.UnixMilli(ms)
		}
	}
	return m
}

// pause is an exponential backoff between failed reads.
type pause struct {
	lo, hi, cur time.Duration
}

func (p *pause) reset() { p.cur = 0 }

// wait sleeps the next backoff; false when ctx ends first.
func (p *pause) wait(ctx context.Context) bool {
	p.cur = min(max(p.cur*2, p.lo), p.hi)
	t := time.NewTimer(p.cur)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
