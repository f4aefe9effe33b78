// Package redis is the state.redis state store: items live in a Redis
// server (a single node), in Dapr's layout, so a store Dapr's Redis state
// store wrote reads back here and the other way round.
//
// Every key is a Redis hash with two fields: data, the value's bytes as
// given, and version, a decimal counter that every write increments. The
// ETag of an item is its version. ETag checks, first-write creates and the
// time to live of a write run in Lua scripts (EVALSHA), so each check and
// the write it guards are one atomic step on the server; a transaction
// (Multi) is one script that checks every operation before it applies any.
//
// The store is transactional and honours TTLs; it answers no queries
// (queryIndexes is accepted and ignored). Redis Cluster and Sentinel
// failover are refused at New.
package redis

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/outrigger/outrigger/building-blocks/state"
	"github.com/outrigger/outrigger/config/metadata"
)

// Type is the component type this store implements, version v1.
const Type = "state.redis"

// Metadata is the store's component metadata, with the names of Dapr's
// Redis state store.
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
	// MaxRetries is how many times a failed command is retried; 0 or a
	// negative number retries none.
	MaxRetries int `meta:"maxRetries" default:"3"`
	// MaxRetryBackoff bounds the backoff between retries; a negative value
	// disables the backoff.
	MaxRetryBackoff time.Duration `meta:"maxRetryBackoff" default:"2s"`
	// DialTimeout bounds establishing a connection.
	DialTimeout time.Duration `meta:"dialTimeout" default:"5s"`
	// ReadTimeout bounds a socket read; negative is no timeout.
	ReadTimeout time.Duration `meta:"readTimeout" default:"3s"`
	// WriteTimeout bounds a socket write; negative is no timeout, unset is
	// ReadTimeout.
	WriteTimeout time.Duration `meta:"writeTimeout"`
	// PoolSize is the most connections the store keeps; unset is 10 per
	// CPU.
	PoolSize int `meta:"poolSize"`
	// MinIdleConns is how many idle connections the store keeps open.
	MinIdleConns int `meta:"minIdleConns"`
	// IdleTimeout closes connections idle that long; negative never does.
	IdleTimeout time.Duration `meta:"idleTimeout"`
	// TTLInSeconds is the time to live of every write that does not set its
	// own; zero or negative is none.
	TTLInSeconds int `meta:"ttlInSeconds"`
	// QueryIndexes is Dapr's RediSearch index schema. It is accepted and
	// ignored: this store answers no queries.
	QueryIndexes string `meta:"queryIndexes"`
	// RedisType is node (the only type supported) or cluster (refused).
	RedisType string `meta:"redisType" default:"node"`
	// Failover connects through Redis Sentinel; true is refused.
	Failover bool `meta:"failover" default:"false"`
	// SentinelMasterName is Sentinel's master name; accepted and unused,
	// as failover is not supported.
	SentinelMasterName string `meta:"sentinelMasterName"`
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
	if m.DialTimeout < 0 {
		errs = append(errs, fmt.Errorf("metadata dialTimeout %v: must not be negative", m.DialTimeout))
	}
	if m.PoolSize < 0 {
		errs = append(errs, fmt.Errorf("metadata poolSize %d: must not be negative", m.PoolSize))
	}
	if m.MinIdleConns < 0 {
		errs = append(errs, fmt.Errorf("metadata minIdleConns %d: must not be negative", m.MinIdleConns))
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
		MinIdleConns:    m.MinIdleConns,
		ConnMaxIdleTime: m.IdleTimeout,
	}
	// go-redis reads 0 as its default and -1 as "none"; the metadata reads
	// 0 retries as none and any negative duration as none.
	if o.MaxRetries <= 0 {
		o.MaxRetries = -1
	}
	for _, d := range []*time.Duration{&o.MaxRetryBackoff, &o.ReadTimeout, &o.WriteTimeout, &o.ConnMaxIdleTime} {
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

// Store is a state store over one Redis server. It is safe for concurrent
// use.
type Store struct {
	client *goredis.Client
	// prefix is put before every key; empty outside tests.
	prefix     string
	defaultTTL time.Duration
	// waitTimeout bounds WAIT after a strongly consistent write.
	waitTimeout time.Duration

	closeOnce sync.Once
	closeErr  error
}

var (
	_ state.Store         = (*Store)(nil)
	_ state.Transactional = (*Store)(nil)
)

// New builds a store from its component metadata and checks that the
// server answers. unknown lists the keys it does not read.
func New(meta map[string]string) (*Store, []string, error) {
	return open(meta, "")
}

// open is New with every key stored under prefix (for tests sharing one
// server).
func open(meta map[string]string, prefix string) (*Store, []string, error) {
	var m Metadata
	unknown, err := metadata.Decode(meta, &m)
	if err != nil {
		return nil, unknown, err
	}
	if err := m.Validate(); err != nil {
		return nil, unknown, err
	}
	s := &Store{
		client:      goredis.NewClient(m.options()),
		prefix:      prefix,
		waitTimeout: 5 * time.Second,
	}
	if m.TTLInSeconds > 0 {
		s.defaultTTL = time.Duration(m.TTLInSeconds) * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.DialTimeout+5*time.Second)
	defer cancel()
	if err := s.client.Ping(ctx).Err(); err != nil {
		_ = s.client.Close()
		return nil, unknown, fmt.Errorf("state/redis: connecting to %s: %w", m.RedisHost, err)
	}
	return s, unknown, nil
}

// Features implements state.Store.
func (s *Store) Features() state.Features {
	return state.Features{Transactional: true, TTL: true}
}

// Close implements state.Store.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.client.Close() })
	return s.closeErr
}

// Get implements state.Store: the hash's data and version, and its time to
// live, read in one MULTI.
func (s *Store) Get(ctx context.Context, req state.GetRequest) (state.Item, bool, error) {
	key := s.prefix + req.Key
	var fields *goredis.SliceCmd
	var ttl *goredis.DurationCmd
	_, err := s.client.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		fields = p.HMGet(ctx, key, "data", "version")
		ttl = p.PTTL(ctx, key)
		return nil
	})
	if err != nil {
		if strings.HasPrefix(err.Error(), "WRONGTYPE") {
			return state.Item{}, false, fmt.Errorf("state/redis: key %q holds a value that is not a state hash (fields data and version)", req.Key)
		}
		return state.Item{}, false, fmt.Errorf("state/redis: get %q: %w", req.Key, err)
	}
	left := ttl.Val()
	if left == -2 { // no such key
		return state.Item{}, false, nil
	}
	vals := fields.Val()
	it := state.Item{Value: []byte{}, ETag: "0"}
	if len(vals) == 2 {
		if d, ok := vals[0].(string); ok {
			it.Value = []byte(d)
		}
		if v, ok := vals[1].(string); ok && v != "" {
			it.ETag = v
		}
	}
	if left >= 0 {
		it.Expires = time.Now().Add(left)
	}
	return it, true, nil
}

// Set implements state.Store.
func (s *Store) Set(ctx context.Context, req state.SetRequest) error {
	key := s.prefix + req.Key
	ttl := s.ttlMillis(req.TTL)
	var script *goredis.Script
	var args []any
	switch {
	case req.ETag != nil:
		if err := checkETag(req.Key, *req.ETag); err != nil {
			return err
		}
		script, args = setETagScript, []any{*req.ETag, req.Value, ttl}
	case req.FirstWrite:
		script, args = setCreateScript, []any{req.Value, ttl}
	default:
		script, args = setScript, []any{req.Value, ttl}
	}
	return s.write(ctx, req.Strong, func(c goredis.Cmdable) error {
		ok, err := script.Run(ctx, c, []string{key}, args...).Int()
		if err != nil {
			return fmt.Errorf("state/redis: set %q: %w", req.Key, err)
		}
		if ok != 1 {
			return state.ETagMismatch(req.Key)
		}
		return nil
	})
}

// Delete implements state.Store.
func (s *Store) Delete(ctx context.Context, req state.DeleteRequest) error {
	key := s.prefix + req.Key
	if req.ETag == nil {
		return s.write(ctx, req.Strong, func(c goredis.Cmdable) error {
			if err := c.Del(ctx, key).Err(); err != nil {
				return fmt.Errorf("state/redis: delete %q: %w", req.Key, err)
			}
			return nil
		})
	}
	if err := checkETag(req.Key, *req.ETag); err != nil {
		return err
	}
	return s.write(ctx, req.Strong, func(c goredis.Cmdable) error {
		ok, err := deleteETagScript.Run(ctx, c, []string{key}, *req.ETag).Int()
		if err != nil {
			return fmt.Errorf("state/redis: delete %q: %w", req.Key, err)
		}
		if ok != 1 {
			return state.ETagMismatch(req.Key)
		}
		return nil
	})
}

// Multi implements state.Transactional with one script: it checks every
// operation against the state the earlier operations leave, then applies
// all of them, or none and names the first that failed.
func (s *Store) Multi(ctx context.Context, ops []state.Operation) error {
	if len(ops) == 0 {
		return nil
	}
	keys := make([]string, len(ops))
	args := make([]any, 0, 5*len(ops))
	strong := false
	for i, op := range ops {
		switch {
		case op.Set != nil && op.Delete == nil:
			r := op.Set
			cond := condNone
			if r.ETag != nil {
				if err := checkETag(r.Key, *r.ETag); err != nil {
					return fmt.Errorf("state/redis: operation %d: %w; nothing was applied", i, err)
				}
				cond = condETag
			} else if r.FirstWrite {
				cond = condCreate
			}
			keys[i] = s.prefix + r.Key
			args = append(args, opSet, cond, etagArg(r.ETag), r.Value, s.ttlMillis(r.TTL))
			strong = strong || r.Strong
		case op.Delete != nil && op.Set == nil:
			r := op.Delete
			cond := condNone
			if r.ETag != nil {
				if err := checkETag(r.Key, *r.ETag); err != nil {
					return fmt.Errorf("state/redis: operation %d: %w; nothing was applied", i, err)
				}
				cond = condETag
			}
			keys[i] = s.prefix + r.Key
			args = append(args, opDelete, cond, etagArg(r.ETag), "", 0)
			strong = strong || r.Strong
		default:
			return fmt.Errorf("state/redis: operation %d: needs exactly one of set and delete; nothing was applied", i)
		}
	}
	return s.write(ctx, strong, func(c goredis.Cmdable) error {
		failed, err := multiScript.Run(ctx, c, keys, args...).Int()
		if err != nil {
			return fmt.Errorf("state/redis: transaction: %w", err)
		}
		if failed == 0 {
			return nil
		}
		i := failed - 1
		if i < 0 || i >= len(ops) {
			return fmt.Errorf("state/redis: transaction: the script named operation %d of %d", failed, len(ops))
		}
		return fmt.Errorf("state/redis: operation %d failed; the transaction was rolled back: %w", i, state.ETagMismatch(opKey(ops[i])))
	})
}

// Operation kinds and conditions of the transaction script's arguments.
const (
	opSet      = "s"
	opDelete   = "d"
	condNone   = ""
	condETag   = "e" // the stored version must equal the ETag
	condCreate = "c" // the key must not exist
)

func etagArg(etag *string) string {
	if etag == nil {
		return ""
	}
	return *etag
}

func opKey(op state.Operation) string {
	if op.Set != nil {
		return op.Set.Key
	}
	return op.Delete.Key
}

// checkETag refuses an ETag the store cannot have issued: every ETag is a
// decimal version.
func checkETag(key, etag string) error {
	if _, err := strconv.ParseInt(etag, 10, 64); err != nil {
		return state.ETagInvalid(key, etag)
	}
	return nil
}

// ttlMillis is the time to live of a write with the request's TTL, in
// whole milliseconds (rounded up): positive expires the key, zero removes
// any expiry.
func (s *Store) ttlMillis(ttl time.Duration) int64 {
	switch {
	case ttl < 0:
		return 0
	case ttl == 0:
		ttl = s.defaultTTL
	}
	return int64((ttl + time.Millisecond - 1) / time.Millisecond)
}

// write runs fn against the server. A strongly consistent write to a
// server with replicas runs on one connection and is followed by WAIT
// there, so it returns once every replica has the write.
func (s *Store) write(ctx context.Context, strong bool, fn func(goredis.Cmdable) error) error {
	if !strong {
		return fn(s.client)
	}
	replicas, err := s.replicas(ctx)
	if err != nil {
		return err
	}
	if replicas == 0 {
		return fn(s.client)
	}
	conn := s.client.Conn()
	defer func() { _ = conn.Close() }()
	if err := fn(conn); err != nil {
		return err
	}
	acked, err := conn.Wait(ctx, replicas, s.waitTimeout).Result()
	if err != nil {
		return fmt.Errorf("state/redis: the write was applied, but waiting for %d replicas failed: %w", replicas, err)
	}
	if acked < int64(replicas) {
		return fmt.Errorf("state/redis: the write was applied, but only %d of %d replicas acknowledged it within %v", acked, replicas, s.waitTimeout)
	}
	return nil
}

// replicas is the number of replicas connected to the server
// (connected_slaves of INFO replication).
func (s *Store) replicas(ctx context.Context) (int, error) {
	info, err := s.client.Info(ctx, "replication").Result()
	if err != nil {
		return 0, fmt.Errorf("state/redis: INFO replication: %w", err)
	}
	return connectedReplicas(info), nil
}

func connectedReplicas(info string) int {
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "connected_slaves:"); ok {
			n, err := strconv.Atoi(v)
			if err == nil && n > 0 {
				return n
			}
			return 0
		}
	}
	return 0
}
