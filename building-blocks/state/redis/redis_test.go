package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/outrigger/outrigger/building-blocks/state"
	"github.com/outrigger/outrigger/building-blocks/state/statetest"
	"github.com/outrigger/outrigger/config/metadata/metadatatest"
)

// redisAddr is the Redis server the tests use. It is shared with other
// tests, so every store here keeps its keys under a prefix of its own and
// deletes them when its test ends. The tests fail, not skip, when it does
// not answer.
const redisAddr = "127.0.0.1:6379"

// testPrefix is a fresh key prefix whose keys are deleted when t ends.
func testPrefix(t *testing.T) string {
	t.Helper()
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	prefix := "outrigger-test:state-redis:" + hex.EncodeToString(b) + ":"
	t.Cleanup(func() {
		c := goredis.NewClient(&goredis.Options{Addr: redisAddr})
		defer func() { _ = c.Close() }()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		iter := c.Scan(ctx, 0, escapeGlob(prefix)+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			t.Errorf("cleanup: scanning %s*: %v", prefix, err)
			return
		}
		for chunk := range slices.Chunk(keys, 500) {
			if err := c.Del(ctx, chunk...).Err(); err != nil {
				t.Errorf("cleanup: deleting keys: %v", err)
			}
		}
	})
	return prefix
}

func escapeGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// newStore opens a store on redisAddr under a fresh prefix, with meta
// added to the metadata. The caller closes it.
func newStore(t *testing.T, meta map[string]string) (*Store, string) {
	t.Helper()
	m := map[string]string{"redisHost": redisAddr}
	maps.Copy(m, meta)
	prefix := testPrefix(t)
	s, unknown, err := open(m, prefix)
	if err != nil {
		t.Fatalf("opening a store on %s (a Redis server must run there): %v", redisAddr, err)
	}
	if len(unknown) != 0 {
		t.Fatalf("unknown metadata %q", unknown)
	}
	return s, prefix
}

// openStore is newStore, closed when t ends.
func openStore(t *testing.T, meta map[string]string) (*Store, string) {
	t.Helper()
	s, prefix := newStore(t, meta)
	t.Cleanup(func() { _ = s.Close() })
	return s, prefix
}

// rawClient is a plain client of redisAddr, closed when t ends.
func rawClient(t *testing.T) *goredis.Client {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: redisAddr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestConformance(t *testing.T) {
	statetest.Run(t, func(t *testing.T) state.Store {
		s, _ := newStore(t, nil)
		return s
	})
}

func TestMetadataYAML(t *testing.T) {
	metadatatest.CheckYAML(t, "metadata.yaml", Type, Metadata{})
}

func TestMetadataErrors(t *testing.T) {
	tests := []struct {
		name string
		meta map[string]string
		want string
	}{
		{"no host", map[string]string{}, "metadata redisHost: required"},
		{"empty host", map[string]string{"redisHost": ""}, "metadata redisHost: required"},
		{"no port", map[string]string{"redisHost": "localhost"}, `metadata redisHost "localhost": want host:port`},
		{"bad port", map[string]string{"redisHost": "localhost:http"}, "want host:port"},
		{"port zero", map[string]string{"redisHost": "localhost:0"}, "want host:port"},
		{"no host name", map[string]string{"redisHost": ":6379"}, "want host:port"},
		{"cluster", map[string]string{"redisHost": redisAddr, "redisType": "cluster"}, "Redis Cluster is not supported"},
		{"cluster in capitals", map[string]string{"redisHost": redisAddr, "redisType": "Cluster"}, "Redis Cluster is not supported"},
		{"unknown type", map[string]string{"redisHost": redisAddr, "redisType": "sentinel"}, `metadata redisType "sentinel": want node`},
		{"failover", map[string]string{"redisHost": redisAddr, "failover": "true", "sentinelMasterName": "mymaster"}, "metadata failover: Redis Sentinel failover is not supported"},
		{"negative db", map[string]string{"redisHost": redisAddr, "redisDB": "-1"}, "metadata redisDB -1: must not be negative"},
		{"db not a number", map[string]string{"redisHost": redisAddr, "redisDB": "one"}, "metadata redisDB"},
		{"negative pool", map[string]string{"redisHost": redisAddr, "poolSize": "-2"}, "metadata poolSize -2"},
		{"negative idle conns", map[string]string{"redisHost": redisAddr, "minIdleConns": "-1"}, "metadata minIdleConns -1"},
		{"negative dial timeout", map[string]string{"redisHost": redisAddr, "dialTimeout": "-1s"}, "metadata dialTimeout"},
		{"bad bool", map[string]string{"redisHost": redisAddr, "enableTLS": "maybe"}, `metadata enableTLS "maybe"`},
		{"bad duration", map[string]string{"redisHost": redisAddr, "maxRetryBackoff": "soon"}, `metadata maxRetryBackoff "soon"`},
		{"bad ttl", map[string]string{"redisHost": redisAddr, "ttlInSeconds": "1.5"}, `metadata ttlInSeconds "1.5"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _, err := New(tt.meta)
			if err == nil {
				_ = s.Close()
				t.Fatalf("New(%v) succeeded, want an error containing %q", tt.meta, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New(%v) = %v, want an error containing %q", tt.meta, err, tt.want)
			}
		})
	}
}

func TestMetadataAccepted(t *testing.T) {
	meta := map[string]string{
		"redisHost":          redisAddr,
		"redisUsername":      "",
		"redisPassword":      "",
		"redisDB":            "0",
		"enableTLS":          "false",
		"maxRetries":         "5",
		"maxRetryBackoff":    "-1",
		"dialTimeout":        "2s",
		"readTimeout":        "-1",
		"writeTimeout":       "4s",
		"poolSize":           "4",
		"minIdleConns":       "1",
		"idleTimeout":        "5m",
		"ttlInSeconds":       "600",
		"queryIndexes":       `[{"name":"idx","indexes":[{"key":"a","type":"TEXT"}]}]`,
		"redisType":          "node",
		"failover":           "false",
		"sentinelMasterName": "mymaster",
		"someOtherKey":       "x",
	}
	s, unknown, err := open(meta, testPrefix(t))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	if !slices.Equal(unknown, []string{"someOtherKey"}) {
		t.Errorf("unknown = %q, want [someOtherKey]", unknown)
	}
	if s.defaultTTL != 600*time.Second {
		t.Errorf("default TTL %v", s.defaultTTL)
	}
	if f := s.Features(); f != (state.Features{Transactional: true, TTL: true}) {
		t.Errorf("Features() = %+v", f)
	}
}

func TestOptions(t *testing.T) {
	m := Metadata{
		RedisHost: "redis.example:6380", RedisUsername: "u", RedisPassword: "p", RedisDB: 3,
		EnableTLS: true, MaxRetries: 0, MaxRetryBackoff: -time.Second, DialTimeout: time.Second,
		ReadTimeout: -time.Second, WriteTimeout: 0, PoolSize: 7, MinIdleConns: 2, IdleTimeout: -time.Second,
	}
	o := m.options()
	if o.Addr != "redis.example:6380" || o.Username != "u" || o.Password != "p" || o.DB != 3 || o.PoolSize != 7 || o.MinIdleConns != 2 {
		t.Errorf("options %+v", o)
	}
	if o.MaxRetries != -1 || o.MaxRetryBackoff != -1 || o.ReadTimeout != -1 || o.ConnMaxIdleTime != -1 || o.WriteTimeout != 0 {
		t.Errorf("0 retries and negative durations must be go-redis's -1 (none): retries %d backoff %v read %v idle %v write %v",
			o.MaxRetries, o.MaxRetryBackoff, o.ReadTimeout, o.ConnMaxIdleTime, o.WriteTimeout)
	}
	if o.TLSConfig == nil || o.TLSConfig.ServerName != "redis.example" || o.TLSConfig.InsecureSkipVerify {
		t.Errorf("TLS config %+v", o.TLSConfig)
	}
	m.MaxRetries, m.EnableTLS = 4, false
	if o := m.options(); o.MaxRetries != 4 || o.TLSConfig != nil {
		t.Errorf("retries %d, TLS %v", o.MaxRetries, o.TLSConfig)
	}
}

func TestUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	s, _, err := New(map[string]string{"redisHost": addr, "maxRetries": "0", "dialTimeout": "1s"})
	if err == nil {
		_ = s.Close()
		t.Fatalf("New on %s, where nothing listens, succeeded", addr)
	}
	if !strings.Contains(err.Error(), "connecting to "+addr) {
		t.Errorf("error %v, want one naming the address", err)
	}
}

func TestConnectedReplicas(t *testing.T) {
	for _, tt := range []struct {
		info string
		want int
	}{
		{"# Replication\r\nrole:master\r\nconnected_slaves:2\r\nslave0:ip=a\r\n", 2},
		{"# Replication\r\nrole:master\r\nconnected_slaves:0\r\n", 0},
		{"# Replication\nrole:slave\nmaster_host:x\n", 0},
		{"", 0},
	} {
		if got := connectedReplicas(tt.info); got != tt.want {
			t.Errorf("connectedReplicas(%q) = %d, want %d", tt.info, got, tt.want)
		}
	}
}

// TestDaprLayout checks that items are Dapr's hashes: data holds the value
// as given, version the decimal ETag, incremented by every write; and that
// a hash written the way Dapr writes it reads back and updates.
func TestDaprLayout(t *testing.T) {
	s, prefix := openStore(t, nil)
	raw := rawClient(t)
	ctx := ctxFor(t)
	value := []byte("{\"a\":1}\x00\xff")
	if err := s.Set(ctx, state.SetRequest{Key: "app||k", Value: value}); err != nil {
		t.Fatal(err)
	}
	h, err := raw.HGetAll(ctx, prefix+"app||k").Result()
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"data": string(value), "version": "1"}; !maps.Equal(h, want) {
		t.Errorf("hash %q, want %q", h, want)
	}
	if err := s.Set(ctx, state.SetRequest{Key: "app||k", Value: []byte("v2")}); err != nil {
		t.Fatal(err)
	}
	if v, _ := raw.HGet(ctx, prefix+"app||k", "version").Result(); v != "2" {
		t.Errorf("version after a second write %q, want 2", v)
	}
	it, found, err := s.Get(ctx, state.GetRequest{Key: "app||k"})
	if err != nil || !found || it.ETag != "2" || string(it.Value) != "v2" {
		t.Errorf("Get = %q etag %q found %v err %v", it.Value, it.ETag, found, err)
	}

	// A hash as Dapr leaves it (HSET data, HINCRBY version, a first-write
	// marker).
	key := prefix + "dapr||k"
	if err := raw.HSet(ctx, key, "data", `"from dapr"`, "first-write", "0").Err(); err != nil {
		t.Fatal(err)
	}
	for range 7 {
		raw.HIncrBy(ctx, key, "version", 1)
	}
	it, found, err = s.Get(ctx, state.GetRequest{Key: "dapr||k"})
	if err != nil || !found || it.ETag != "7" || string(it.Value) != `"from dapr"` || !it.Expires.IsZero() {
		t.Fatalf("Get of Dapr's hash = %q etag %q expires %v found %v err %v", it.Value, it.ETag, it.Expires, found, err)
	}
	stale := "6"
	if err := s.Set(ctx, state.SetRequest{Key: "dapr||k", Value: []byte("x"), ETag: &stale}); !errors.Is(err, state.ErrETagMismatch) {
		t.Errorf("Set with a stale ETag: %v", err)
	}
	if err := s.Set(ctx, state.SetRequest{Key: "dapr||k", Value: []byte("updated"), ETag: &it.ETag}); err != nil {
		t.Fatalf("Set with Dapr's version as the ETag: %v", err)
	}
	h, _ = raw.HGetAll(ctx, key).Result()
	if h["data"] != "updated" || h["version"] != "8" {
		t.Errorf("hash after the update %q", h)
	}

	// Deleting removes the key.
	if err := s.Delete(ctx, state.DeleteRequest{Key: "dapr||k"}); err != nil {
		t.Fatal(err)
	}
	if n, _ := raw.Exists(ctx, key).Result(); n != 0 {
		t.Error("Delete left the key")
	}
}

// TestOtherTypes: a key that holds no hash is not read as an item, refuses
// conditional writes, and is replaced by an unconditional one.
func TestOtherTypes(t *testing.T) {
	s, prefix := openStore(t, nil)
	raw := rawClient(t)
	ctx := ctxFor(t)
	if err := raw.Set(ctx, prefix+"str", "plain", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get(ctx, state.GetRequest{Key: "str"}); err == nil || !strings.Contains(err.Error(), "not a state hash") {
		t.Errorf("Get of a string key: %v", err)
	}
	zero := "0"
	if err := s.Set(ctx, state.SetRequest{Key: "str", Value: []byte("x"), ETag: &zero}); !errors.Is(err, state.ErrETagMismatch) {
		t.Errorf("Set with an ETag over a string key: %v", err)
	}
	if err := s.Set(ctx, state.SetRequest{Key: "str", Value: []byte("x"), FirstWrite: true}); !errors.Is(err, state.ErrETagMismatch) {
		t.Errorf("first-write over a string key: %v", err)
	}
	if err := s.Set(ctx, state.SetRequest{Key: "str", Value: []byte("x")}); err != nil {
		t.Fatalf("unconditional Set over a string key: %v", err)
	}
	if it, found, err := s.Get(ctx, state.GetRequest{Key: "str"}); err != nil || !found || string(it.Value) != "x" || it.ETag != "1" {
		t.Errorf("after replacing: %q etag %q found %v err %v", it.Value, it.ETag, found, err)
	}
}

func TestInvalidETags(t *testing.T) {
	s, _ := openStore(t, nil)
	ctx := ctxFor(t)
	if err := s.Set(ctx, state.SetRequest{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "abc", "1.5", "0x1", " 1", "99999999999999999999"} {
		if err := s.Set(ctx, state.SetRequest{Key: "k", Value: []byte("x"), ETag: &bad}); !errors.Is(err, state.ErrETagInvalid) {
			t.Errorf("Set with ETag %q: %v, want ErrETagInvalid", bad, err)
		}
		if err := s.Delete(ctx, state.DeleteRequest{Key: "k", ETag: &bad}); !errors.Is(err, state.ErrETagInvalid) {
			t.Errorf("Delete with ETag %q: %v, want ErrETagInvalid", bad, err)
		}
	}
	for _, miss := range []string{"2", "-1", "01"} {
		if err := s.Set(ctx, state.SetRequest{Key: "k", Value: []byte("x"), ETag: &miss}); !errors.Is(err, state.ErrETagMismatch) {
			t.Errorf("Set with ETag %q: %v, want ErrETagMismatch", miss, err)
		}
	}
	if it, _, _ := s.Get(ctx, state.GetRequest{Key: "k"}); string(it.Value) != "v" || it.ETag != "1" {
		t.Errorf("refused writes changed the item: %q etag %q", it.Value, it.ETag)
	}
}

// pttl is the key's remaining time to live as Redis reports it.
func pttl(t *testing.T, raw *goredis.Client, key string) time.Duration {
	t.Helper()
	d, err := raw.PTTL(t.Context(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDefaultTTL(t *testing.T) {
	s, prefix := openStore(t, map[string]string{"ttlInSeconds": "100"})
	raw := rawClient(t)
	ctx := ctxFor(t)

	before := time.Now()
	if err := s.Set(ctx, state.SetRequest{Key: "default", Value: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if d := pttl(t, raw, prefix+"default"); d <= 90*time.Second || d > 100*time.Second {
		t.Errorf("a write without a TTL under ttlInSeconds 100 has PTTL %v", d)
	}
	it, _, err := s.Get(ctx, state.GetRequest{Key: "default"})
	if err != nil {
		t.Fatal(err)
	}
	if it.Expires.Before(before.Add(90*time.Second)) || it.Expires.After(time.Now().Add(100*time.Second)) {
		t.Errorf("Expires %v, want about 100s after %v", it.Expires, before)
	}

	// A request TTL overrides the default.
	if err := s.Set(ctx, state.SetRequest{Key: "default", Value: []byte("x"), TTL: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if d := pttl(t, raw, prefix+"default"); d <= 0 || d > 5*time.Second {
		t.Errorf("a 5s TTL under ttlInSeconds 100 has PTTL %v", d)
	}
	// A negative request TTL never expires.
	if err := s.Set(ctx, state.SetRequest{Key: "default", Value: []byte("x"), TTL: -1}); err != nil {
		t.Fatal(err)
	}
	if d := pttl(t, raw, prefix+"default"); d != -1 {
		t.Errorf("a negative TTL left PTTL %v, want none (-1)", d)
	}
	if it, _, _ := s.Get(ctx, state.GetRequest{Key: "default"}); !it.Expires.IsZero() {
		t.Errorf("an item without expiry reports Expires %v", it.Expires)
	}
	// Transactions apply the default too.
	if err := s.Multi(ctx, []state.Operation{
		{Set: &state.SetRequest{Key: "tx-default", Value: []byte("x")}},
		{Set: &state.SetRequest{Key: "tx-forever", Value: []byte("x"), TTL: -1}},
		{Set: &state.SetRequest{Key: "tx-short", Value: []byte("x"), TTL: 1500 * time.Millisecond}},
	}); err != nil {
		t.Fatal(err)
	}
	if d := pttl(t, raw, prefix+"tx-default"); d <= 90*time.Second || d > 100*time.Second {
		t.Errorf("tx-default PTTL %v", d)
	}
	if d := pttl(t, raw, prefix+"tx-forever"); d != -1 {
		t.Errorf("tx-forever PTTL %v", d)
	}
	if d := pttl(t, raw, prefix+"tx-short"); d <= 0 || d > 1500*time.Millisecond {
		t.Errorf("tx-short PTTL %v", d)
	}
}

// TestNoDefaultTTL: without ttlInSeconds, a write without a TTL removes an
// earlier expiry, as the state.Store contract says.
func TestNoDefaultTTL(t *testing.T) {
	s, prefix := openStore(t, nil)
	raw := rawClient(t)
	ctx := ctxFor(t)
	if err := s.Set(ctx, state.SetRequest{Key: "k", Value: []byte("x"), TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if d := pttl(t, raw, prefix+"k"); d <= 0 {
		t.Fatalf("PTTL %v after a 1h TTL", d)
	}
	// A sub-millisecond TTL still expires (rounded up, not down to none).
	if err := s.Set(ctx, state.SetRequest{Key: "tiny", Value: []byte("x"), TTL: time.Microsecond}); err != nil {
		t.Fatal(err)
	}
	if d := pttl(t, raw, prefix+"tiny"); d == -1 {
		t.Error("a 1µs TTL made the key never expire")
	}
	if err := s.Set(ctx, state.SetRequest{Key: "k", Value: []byte("y")}); err != nil {
		t.Fatal(err)
	}
	if d := pttl(t, raw, prefix+"k"); d != -1 {
		t.Errorf("a write without a TTL left PTTL %v", d)
	}
}

func mustETag(t *testing.T, s *Store, key string) string {
	t.Helper()
	it, found, err := s.Get(ctxFor(t), state.GetRequest{Key: key})
	if err != nil || !found {
		t.Fatalf("Get(%q): found %v err %v", key, found, err)
	}
	return it.ETag
}

func value(t *testing.T, s *Store, key string) (string, bool) {
	t.Helper()
	it, found, err := s.Get(ctxFor(t), state.GetRequest{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	return string(it.Value), found
}

// TestMultiSameKey: every check sees what the earlier operations of the
// same transaction do to the key.
func TestMultiSameKey(t *testing.T) {
	s, _ := openStore(t, nil)
	ctx := ctxFor(t)
	set := func(key, v string) state.Operation {
		return state.Operation{Set: &state.SetRequest{Key: key, Value: []byte(v)}}
	}
	if err := s.Set(ctx, state.SetRequest{Key: "k", Value: []byte("k0")}); err != nil {
		t.Fatal(err)
	}

	// Deleted, then created with first-write: the create sees no key.
	if err := s.Multi(ctx, []state.Operation{
		{Delete: &state.DeleteRequest{Key: "k"}},
		{Set: &state.SetRequest{Key: "k", Value: []byte("k1"), FirstWrite: true}},
	}); err != nil {
		t.Fatalf("delete then first-write create: %v", err)
	}
	if v, _ := value(t, s, "k"); v != "k1" {
		t.Errorf("k = %q", v)
	}

	// Created by an earlier operation: a first-write create fails, and the
	// earlier write is not applied either.
	err := s.Multi(ctx, []state.Operation{
		set("n", "n1"),
		{Set: &state.SetRequest{Key: "n", Value: []byte("n2"), FirstWrite: true}},
	})
	if !errors.Is(err, state.ErrETagMismatch) || !strings.Contains(err.Error(), "operation 1 failed") {
		t.Errorf("write then first-write create: %v, want a mismatch of operation 1", err)
	}
	if _, found := value(t, s, "n"); found {
		t.Error("a failed transaction created n")
	}

	// Two writes with the same ETag: the first changes the version, so the
	// second fails.
	etag := mustETag(t, s, "k")
	err = s.Multi(ctx, []state.Operation{
		{Set: &state.SetRequest{Key: "k", Value: []byte("k2"), ETag: &etag}},
		{Set: &state.SetRequest{Key: "k", Value: []byte("k3"), ETag: &etag}},
	})
	if !errors.Is(err, state.ErrETagMismatch) || !strings.Contains(err.Error(), "operation 1 failed") {
		t.Errorf("two writes with one ETag: %v", err)
	}
	if got := mustETag(t, s, "k"); got != etag {
		t.Errorf("a failed transaction changed k's ETag from %s to %s", etag, got)
	}

	// The second operation names the version the first one makes.
	n, _ := strconv.ParseInt(etag, 10, 64)
	next := strconv.FormatInt(n+1, 10)
	if err := s.Multi(ctx, []state.Operation{
		{Set: &state.SetRequest{Key: "k", Value: []byte("k2"), ETag: &etag}},
		{Set: &state.SetRequest{Key: "k", Value: []byte("k3"), ETag: &next}},
	}); err != nil {
		t.Fatalf("chained ETags: %v", err)
	}
	if v, _ := value(t, s, "k"); v != "k3" {
		t.Errorf("k = %q, want k3", v)
	}

	// A deleted key fails a later ETag check.
	etag = mustETag(t, s, "k")
	if err := s.Multi(ctx, []state.Operation{
		{Delete: &state.DeleteRequest{Key: "k", ETag: &etag}},
		{Delete: &state.DeleteRequest{Key: "k", ETag: &etag}},
	}); !errors.Is(err, state.ErrETagMismatch) {
		t.Errorf("two deletes with one ETag: %v", err)
	}
	if _, found := value(t, s, "k"); !found {
		t.Error("a failed transaction deleted k")
	}

	// An invalid ETag fails before anything runs.
	bad := "not-a-version"
	err = s.Multi(ctx, []state.Operation{
		set("m", "m1"),
		{Delete: &state.DeleteRequest{Key: "k", ETag: &bad}},
	})
	if !errors.Is(err, state.ErrETagInvalid) || !strings.Contains(err.Error(), "operation 1") {
		t.Errorf("an invalid ETag: %v", err)
	}
	if _, found := value(t, s, "m"); found {
		t.Error("a transaction with an invalid ETag created m")
	}

	// An operation that is neither or both is refused.
	if err := s.Multi(ctx, []state.Operation{set("m", "m1"), {}}); err == nil {
		t.Error("an empty operation was accepted")
	}
	if _, found := value(t, s, "m"); found {
		t.Error("a refused transaction created m")
	}
}

// TestMultiRace races pairs of transactions over the same two keys, both
// holding the same ETags: in every round exactly one commits, the other
// fails with ErrETagMismatch, and both keys hold the winner's values.
func TestMultiRace(t *testing.T) {
	s, _ := openStore(t, nil)
	ctx := ctxFor(t)
	for round := range 50 {
		for _, k := range []string{"x", "y"} {
			if err := s.Set(ctx, state.SetRequest{Key: k, Value: []byte("init")}); err != nil {
				t.Fatal(err)
			}
		}
		ex, ey := mustETag(t, s, "x"), mustETag(t, s, "y")
		tx := func(name string, reversed bool) []state.Operation {
			ops := []state.Operation{
				{Set: &state.SetRequest{Key: "x", Value: []byte(name), ETag: &ex}},
				{Set: &state.SetRequest{Key: "y", Value: []byte(name), ETag: &ey}},
			}
			if reversed {
				ops[0], ops[1] = ops[1], ops[0]
			}
			return ops
		}
		start := make(chan struct{})
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for i, name := range []string{"A", "B"} {
			wg.Go(func() {
				<-start
				errs[i] = s.Multi(ctx, tx(name, i == 1 && round%2 == 1))
			})
		}
		close(start)
		wg.Wait()
		winner := ""
		for i, err := range errs {
			switch {
			case err == nil:
				if winner != "" {
					t.Fatalf("round %d: both transactions committed", round)
				}
				winner = []string{"A", "B"}[i]
			case !errors.Is(err, state.ErrETagMismatch):
				t.Fatalf("round %d: the losing transaction failed with %v, want ErrETagMismatch", round, err)
			}
		}
		if winner == "" {
			t.Fatalf("round %d: neither transaction committed: %v", round, errs)
		}
		x, _ := value(t, s, "x")
		y, _ := value(t, s, "y")
		if x != winner || y != winner {
			t.Fatalf("round %d: %s won but x = %q, y = %q", round, winner, x, y)
		}
	}
}

// TestStrongWithReplica runs strongly consistent writes against a private
// master with one replica (started here, as redis-server is installed): a
// write returns once the replica holds it, and a replica that does not
// acknowledge in time makes the write report it.
func TestStrongWithReplica(t *testing.T) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not installed; the WAIT path is not exercised")
	}
	master, _ := startRedis(t, bin)
	replica, replicaCmd := startRedis(t, bin)
	ctx := ctxFor(t)
	rc := goredis.NewClient(&goredis.Options{Addr: replica})
	t.Cleanup(func() { _ = rc.Close() })
	host, port, _ := net.SplitHostPort(master)
	if err := rc.ReplicaOf(ctx, host, port).Err(); err != nil {
		t.Fatal(err)
	}
	mc := goredis.NewClient(&goredis.Options{Addr: master})
	t.Cleanup(func() { _ = mc.Close() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		mi, _ := mc.Info(ctx, "replication").Result()
		ri, _ := rc.Info(ctx, "replication").Result()
		if connectedReplicas(mi) == 1 && strings.Contains(ri, "master_link_status:up") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replica did not connect within 30s:\n%s\n%s", mi, ri)
		}
		time.Sleep(50 * time.Millisecond)
	}

	s, _, err := New(map[string]string{"redisHost": master})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	for i := range 20 {
		v := fmt.Sprintf("v%d", i)
		if err := s.Set(ctx, state.SetRequest{Key: "k", Value: []byte(v), Strong: true}); err != nil {
			t.Fatalf("strong Set: %v", err)
		}
		if got, _ := rc.HGet(ctx, "k", "data").Result(); got != v {
			t.Fatalf("after a strong Set of %q returned, the replica holds %q", v, got)
		}
	}
	if err := s.Multi(ctx, []state.Operation{
		{Set: &state.SetRequest{Key: "t", Value: []byte("tx"), Strong: true}},
		{Delete: &state.DeleteRequest{Key: "k"}},
	}); err != nil {
		t.Fatalf("strong Multi: %v", err)
	}
	if got, _ := rc.HGet(ctx, "t", "data").Result(); got != "tx" {
		t.Errorf("after a strong Multi returned, the replica holds %q", got)
	}
	if err := s.Delete(ctx, state.DeleteRequest{Key: "t", Strong: true}); err != nil {
		t.Fatal(err)
	}
	if n, _ := rc.Exists(ctx, "t").Result(); n != 0 {
		t.Error("after a strong Delete returned, the replica still holds the key")
	}

	// A stopped replica cannot acknowledge: the strong write is applied
	// but reports the shortfall; an eventual one does not wait.
	if err := replicaCmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = replicaCmd.Process.Signal(syscall.SIGCONT) })
	waitStopped(t, replicaCmd.Process.Pid)
	s.waitTimeout = 300 * time.Millisecond
	err = s.Set(ctx, state.SetRequest{Key: "lagging", Value: []byte("x"), Strong: true})
	if err == nil || !strings.Contains(err.Error(), "only 0 of 1 replicas acknowledged") {
		t.Errorf("strong Set with a stopped replica: %v, want the shortfall reported", err)
	}
	if v, _ := mc.HGet(ctx, "lagging", "data").Result(); v != "x" {
		t.Errorf("the master holds %q", v)
	}
	if err := s.Set(ctx, state.SetRequest{Key: "eventual", Value: []byte("x")}); err != nil {
		t.Errorf("eventual Set with a stopped replica: %v", err)
	}
}

// waitStopped waits until the process pid is stopped (state T in
// /proc/pid/stat).
func waitStopped(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			t.Skipf("cannot see the replica's process state: %v", err)
		}
		// The state follows the parenthesised command name.
		if i := strings.LastIndexByte(string(b), ')'); i >= 0 && strings.HasPrefix(string(b[i+1:]), " T") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d did not stop within 30s: %s", pid, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startRedis runs a private, unpersisted redis-server on a free port,
// stopped when t ends, and returns its address once it answers.
func startRedis(t *testing.T, bin string) (string, *exec.Cmd) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	_ = l.Close()
	cmd := exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--repl-diskless-sync-delay", "0", "--dir", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	c := goredis.NewClient(&goredis.Options{Addr: addr, MaxRetries: -1})
	defer func() { _ = c.Close() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return addr, cmd
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %s did not answer within 30s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
