// Package statetest is the conformance suite of the state building block:
// Run checks that a state.Store behaves as the state API relies on. Every
// backend runs it from its own tests, against a real server.
package statetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outrigger/outrigger/building-blocks/state"
)

// Factory returns a new, empty store that sees no other call's keys (its
// own table, database or key prefix). Run closes it; the factory registers
// any other cleanup with t.
type Factory func(t *testing.T) state.Store

// Run runs the conformance suite against stores made by newStore. The
// optional parts run exactly when the store's Features claim them, and a
// store's interfaces must match its claims.
func Run(t *testing.T, newStore Factory) {
	t.Helper()
	open := func(t *testing.T) state.Store {
		t.Helper()
		st := newStore(t)
		if st == nil {
			t.Fatal("factory returned a nil store")
		}
		t.Cleanup(func() {
			if err := st.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return st
	}
	ctx := func(t *testing.T) context.Context {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		t.Cleanup(cancel)
		return ctx
	}

	t.Run("Features", func(t *testing.T) {
		st := open(t)
		f := st.Features()
		_, tx := st.(state.Transactional)
		if f.Transactional != tx {
			t.Errorf("Features().Transactional = %v, but implementing state.Transactional is %v", f.Transactional, tx)
		}
		_, q := st.(state.Querier)
		if f.Query != q {
			t.Errorf("Features().Query = %v, but implementing state.Querier is %v", f.Query, q)
		}
	})

	t.Run("CRUD", func(t *testing.T) {
		st := open(t)
		c := ctx(t)
		if _, found, err := st.Get(c, state.GetRequest{Key: "missing"}); err != nil || found {
			t.Fatalf("Get of a missing key: found %v, err %v", found, err)
		}
		mustSet(t, st, "k", []byte(`{"a":1}`))
		it := mustGet(t, st, "k")
		if string(it.Value) != `{"a":1}` || it.ETag == "" {
			t.Fatalf("after Set: %q etag %q", it.Value, it.ETag)
		}
		mustSet(t, st, "k", []byte("second"))
		it2 := mustGet(t, st, "k")
		if string(it2.Value) != "second" {
			t.Errorf("after overwrite: %q", it2.Value)
		}
		if it2.ETag == it.ETag {
			t.Errorf("a write must change the ETag (still %q)", it.ETag)
		}
		if err := st.Delete(c, state.DeleteRequest{Key: "k"}); err != nil {
			t.Fatal(err)
		}
		if _, found, err := st.Get(c, state.GetRequest{Key: "k"}); err != nil || found {
			t.Errorf("after Delete: found %v, err %v", found, err)
		}
		if err := st.Delete(c, state.DeleteRequest{Key: "k"}); err != nil {
			t.Errorf("Delete of a missing key without an ETag: %v", err)
		}
		// An empty value is a value.
		mustSet(t, st, "empty", []byte{})
		if it := mustGet(t, st, "empty"); len(it.Value) != 0 {
			t.Errorf("empty value read back as %q", it.Value)
		}
		// Strong consistency is accepted.
		if err := st.Set(c, state.SetRequest{Key: "strong", Value: []byte("s"), Strong: true}); err != nil {
			t.Errorf("Set with strong consistency: %v", err)
		}
		if it, found, err := st.Get(c, state.GetRequest{Key: "strong", Strong: true}); err != nil || !found || string(it.Value) != "s" {
			t.Errorf("Get with strong consistency: %q %v %v", it.Value, found, err)
		}
	})

	t.Run("Values and keys", func(t *testing.T) {
		st := open(t)
		binary := make([]byte, 256)
		for i := range binary {
			binary[i] = byte(i)
		}
		big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
		values := map[string][]byte{
			"app||key":                     []byte("dapr's prefix separator"),
			"ключ-鍵-🙂":                     []byte("unicode key"),
			"with space and/slash?q=1#f%2": []byte("odd characters"),
			strings.Repeat("long", 64):     []byte("a 256-byte key"),
			"binary":                       binary,
			"big":                          big,
			"unicode value":                []byte("línea 1\nline 2 ☃ \x00 nul"),
			"json":                         []byte(`{"nested":{"list":[1,"two",null,true]},"n":1.5}`),
		}
		for k, v := range values {
			mustSet(t, st, k, v)
		}
		for k, v := range values {
			if it := mustGet(t, st, k); !bytes.Equal(it.Value, v) {
				t.Errorf("%q: read back %d bytes, want %d (first differing at %d)", k, len(it.Value), len(v), firstDiff(it.Value, v))
			}
		}
		// Keys differing only in case are different keys.
		mustSet(t, st, "Case", []byte("upper"))
		mustSet(t, st, "case", []byte("lower"))
		if it := mustGet(t, st, "Case"); string(it.Value) != "upper" {
			t.Errorf("keys must be case-sensitive: Case = %q", it.Value)
		}
	})

	t.Run("ETags", func(t *testing.T) {
		st := open(t)
		c := ctx(t)
		mustSet(t, st, "k", []byte("v1"))
		it := mustGet(t, st, "k")
		if err := st.Set(c, state.SetRequest{Key: "k", Value: []byte("v2"), ETag: &it.ETag}); err != nil {
			t.Fatalf("Set with the current ETag: %v", err)
		}
		if err := st.Set(c, state.SetRequest{Key: "k", Value: []byte("v3"), ETag: &it.ETag}); !isETagError(err) {
			t.Fatalf("Set with a stale ETag: %v, want ErrETagMismatch", err)
		}
		if it := mustGet(t, st, "k"); string(it.Value) != "v2" {
			t.Errorf("a refused write changed the value to %q", it.Value)
		}
		for _, bad := range []string{"not-an-etag", "", "99999999"} {
			if err := st.Set(c, state.SetRequest{Key: "k", Value: []byte("x"), ETag: &bad}); !isETagError(err) {
				t.Errorf("Set with ETag %q: %v, want ErrETagMismatch or ErrETagInvalid", bad, err)
			}
		}
		stale := it.ETag
		if err := st.Delete(c, state.DeleteRequest{Key: "k", ETag: &stale}); !isETagError(err) {
			t.Errorf("Delete with a stale ETag: %v", err)
		}
		cur := mustGet(t, st, "k")
		if err := st.Delete(c, state.DeleteRequest{Key: "k", ETag: &cur.ETag}); err != nil {
			t.Errorf("Delete with the current ETag: %v", err)
		}
		if err := st.Set(c, state.SetRequest{Key: "gone", Value: []byte("x"), ETag: &cur.ETag}); !isETagError(err) {
			t.Errorf("Set of a missing key with an ETag: %v, want a mismatch", err)
		}
		if _, found, _ := st.Get(c, state.GetRequest{Key: "gone"}); found {
			t.Error("a refused write with an ETag created the key")
		}
	})

	t.Run("First write", func(t *testing.T) {
		st := open(t)
		c := ctx(t)
		if err := st.Set(c, state.SetRequest{Key: "fw", Value: []byte("first"), FirstWrite: true}); err != nil {
			t.Fatalf("first-write create: %v", err)
		}
		if err := st.Set(c, state.SetRequest{Key: "fw", Value: []byte("second"), FirstWrite: true}); !errors.Is(err, state.ErrETagMismatch) {
			t.Errorf("first-write over an existing key without an ETag: %v, want ErrETagMismatch", err)
		}
		it := mustGet(t, st, "fw")
		if string(it.Value) != "first" {
			t.Errorf("value %q", it.Value)
		}
		if err := st.Set(c, state.SetRequest{Key: "fw", Value: []byte("third"), FirstWrite: true, ETag: &it.ETag}); err != nil {
			t.Errorf("first-write with the current ETag: %v", err)
		}
		// Last-write (the default) without an ETag always writes.
		if err := st.Set(c, state.SetRequest{Key: "fw", Value: []byte("fourth")}); err != nil {
			t.Errorf("last-write: %v", err)
		}
	})

	t.Run("Races", func(t *testing.T) {
		st := open(t)
		const n = 16
		// Many creators, first-write: exactly one wins.
		if wins := race(t, n, func(i int) error {
			return st.Set(ctx(t), state.SetRequest{Key: "created", Value: fmt.Appendf(nil, "by %d", i), FirstWrite: true})
		}); wins != 1 {
			t.Errorf("%d of %d first-write creators won, want exactly 1", wins, n)
		}
		// Many updaters holding the same ETag: exactly one wins.
		mustSet(t, st, "updated", []byte("0"))
		etag := mustGet(t, st, "updated").ETag
		if wins := race(t, n, func(i int) error {
			e := etag
			return st.Set(ctx(t), state.SetRequest{Key: "updated", Value: fmt.Appendf(nil, "%d", i), ETag: &e})
		}); wins != 1 {
			t.Errorf("%d of %d updaters with the same ETag won, want exactly 1", wins, n)
		}
		// Many deleters holding the same ETag: exactly one wins.
		etag = mustGet(t, st, "updated").ETag
		if wins := race(t, n, func(int) error {
			e := etag
			return st.Delete(ctx(t), state.DeleteRequest{Key: "updated", ETag: &e})
		}); wins != 1 {
			t.Errorf("%d of %d deleters with the same ETag won, want exactly 1", wins, n)
		}
		// Unconditional writers from many goroutines all land.
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				for j := range 20 {
					if err := st.Set(ctx(t), state.SetRequest{Key: fmt.Sprintf("w%d-%d", i, j), Value: []byte("x")}); err != nil {
						t.Errorf("concurrent Set: %v", err)
						return
					}
				}
			})
		}
		wg.Wait()
		for i := range n {
			for j := range 20 {
				if _, found, err := st.Get(ctx(t), state.GetRequest{Key: fmt.Sprintf("w%d-%d", i, j)}); err != nil || !found {
					t.Fatalf("w%d-%d: found %v err %v", i, j, found, err)
				}
			}
		}
	})

	t.Run("TTL", func(t *testing.T) {
		st := open(t)
		if !st.Features().TTL {
			t.Skip("the store does not claim TTL")
		}
		c := ctx(t)
		before := time.Now()
		if err := st.Set(c, state.SetRequest{Key: "short", Value: []byte("x"), TTL: time.Second}); err != nil {
			t.Fatal(err)
		}
		if err := st.Set(c, state.SetRequest{Key: "forever", Value: []byte("x"), TTL: -1}); err != nil {
			t.Fatal(err)
		}
		it, found, err := st.Get(c, state.GetRequest{Key: "short"})
		if err != nil {
			t.Fatal(err)
		}
		if found && (it.Expires.IsZero() || it.Expires.Before(before) || it.Expires.After(before.Add(time.Minute))) {
			t.Errorf("Expires %v for a 1s TTL set at %v", it.Expires, before)
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			_, found, err := st.Get(c, state.GetRequest{Key: "short"})
			if err != nil {
				t.Fatal(err)
			}
			if !found {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("an item with a 1s TTL is still there after 20s")
			}
			time.Sleep(100 * time.Millisecond)
		}
		if it := mustGet(t, st, "forever"); !it.Expires.IsZero() {
			t.Errorf("an item without expiry reports Expires %v", it.Expires)
		}
		// A later write without a TTL clears it.
		if err := st.Set(c, state.SetRequest{Key: "cleared", Value: []byte("x"), TTL: time.Second}); err != nil {
			t.Fatal(err)
		}
		if err := st.Set(c, state.SetRequest{Key: "cleared", Value: []byte("y"), TTL: -1}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond)
		if it := mustGet(t, st, "cleared"); string(it.Value) != "y" {
			t.Errorf("value %q", it.Value)
		}
	})

	t.Run("Transactions", func(t *testing.T) {
		st := open(t)
		tx, ok := st.(state.Transactional)
		if !ok {
			t.Skip("the store is not transactional")
		}
		c := ctx(t)
		mustSet(t, st, "a", []byte("a0"))
		mustSet(t, st, "gone", []byte("x"))
		if err := tx.Multi(c, []state.Operation{
			{Set: &state.SetRequest{Key: "a", Value: []byte("a1")}},
			{Set: &state.SetRequest{Key: "b", Value: []byte("b1")}},
			{Delete: &state.DeleteRequest{Key: "gone"}},
			{Set: &state.SetRequest{Key: "a", Value: []byte("a2")}},
		}); err != nil {
			t.Fatalf("Multi: %v", err)
		}
		if it := mustGet(t, st, "a"); string(it.Value) != "a2" {
			t.Errorf("a = %q, want the later write a2", it.Value)
		}
		if it := mustGet(t, st, "b"); string(it.Value) != "b1" {
			t.Errorf("b = %q", it.Value)
		}
		if _, found, _ := st.Get(c, state.GetRequest{Key: "gone"}); found {
			t.Error("a delete in a transaction did not apply")
		}
		// One failing ETag fails all, and nothing applies.
		stale := "stale-etag"
		a := mustGet(t, st, "a")
		err := tx.Multi(c, []state.Operation{
			{Set: &state.SetRequest{Key: "a", Value: []byte("a3"), ETag: &a.ETag}},
			{Set: &state.SetRequest{Key: "c", Value: []byte("c1")}},
			{Delete: &state.DeleteRequest{Key: "b"}},
			{Set: &state.SetRequest{Key: "b", Value: []byte("b2"), ETag: &stale}},
		})
		if !isETagError(err) {
			t.Fatalf("Multi with a stale ETag: %v, want an ETag error", err)
		}
		if it := mustGet(t, st, "a"); string(it.Value) != "a2" || it.ETag != a.ETag {
			t.Errorf("a rolled-back transaction changed a to %q", it.Value)
		}
		if _, found, _ := st.Get(c, state.GetRequest{Key: "c"}); found {
			t.Error("a rolled-back transaction created c")
		}
		if it := mustGet(t, st, "b"); string(it.Value) != "b1" {
			t.Errorf("a rolled-back transaction changed b to %q", it.Value)
		}
		// A first-write create of an existing key fails the transaction.
		if err := tx.Multi(c, []state.Operation{
			{Set: &state.SetRequest{Key: "d", Value: []byte("d1")}},
			{Set: &state.SetRequest{Key: "a", Value: []byte("again"), FirstWrite: true}},
		}); !isETagError(err) {
			t.Errorf("Multi with a first-write over an existing key: %v", err)
		}
		if _, found, _ := st.Get(c, state.GetRequest{Key: "d"}); found {
			t.Error("a failed transaction created d")
		}
		if err := tx.Multi(c, nil); err != nil {
			t.Errorf("an empty transaction: %v", err)
		}
	})

	t.Run("Query", func(t *testing.T) {
		st := open(t)
		q, ok := st.(state.Querier)
		if !ok {
			t.Skip("the store does not answer queries")
		}
		c := ctx(t)
		people := []struct {
			Key   string
			Name  string
			Org   string
			Score float64
		}{
			{"p1", "ann", "dev", 3}, {"p2", "bob", "ops", 5}, {"p3", "cid", "dev", 1},
			{"p4", "dee", "dev", 4}, {"p5", "eve", "sales", 2},
		}
		for _, p := range people {
			b, _ := json.Marshal(map[string]any{"person": map[string]any{"name": p.Name, "org": p.Org}, "score": p.Score})
			mustSet(t, st, p.Key, b)
		}
		res, err := q.Query(c, state.Query{
			Filter: &state.Filter{Op: "EQ", Key: "person.org", Value: "dev"},
			Sort:   []state.Sort{{Key: "score", Descending: true}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := keysOf(res.Items); got != "p4,p1,p3" {
			t.Errorf("org = dev by score descending: %s", got)
		}
		res, err = q.Query(c, state.Query{
			Filter: &state.Filter{Op: "OR", Filters: []*state.Filter{
				{Op: "EQ", Key: "person.org", Value: "sales"},
				{Op: "IN", Key: "person.name", Values: []any{"bob", "cid"}},
			}},
			Sort: []state.Sort{{Key: "person.name"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := keysOf(res.Items); got != "p2,p3,p5" {
			t.Errorf("OR of EQ and IN by name: %s", got)
		}
		// Paging: two at a time through everything, sorted.
		var all []string
		token := ""
		for page := 0; page < 10; page++ {
			res, err := q.Query(c, state.Query{Sort: []state.Sort{{Key: "person.name"}}, Limit: 2, Token: token})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Items) > 2 {
				t.Fatalf("a page of %d items with limit 2", len(res.Items))
			}
			for _, it := range res.Items {
				all = append(all, it.Key)
				if it.ETag == "" || len(it.Value) == 0 {
					t.Errorf("item %s without value or ETag", it.Key)
				}
			}
			if res.Token == "" || len(res.Items) == 0 {
				break
			}
			token = res.Token
		}
		if got := strings.Join(all, ","); got != "p1,p2,p3,p4,p5" {
			t.Errorf("all pages: %s", got)
		}
		// KeyPrefix limits a query to one app's keys.
		mustSet(t, st, "app||x", []byte(`{"person":{"name":"zed","org":"dev"},"score":9}`))
		mustSet(t, st, "app||y", []byte(`{"person":{"name":"yan","org":"ops"},"score":8}`))
		res, err = q.Query(c, state.Query{KeyPrefix: "app||", Filter: &state.Filter{Op: "EQ", Key: "person.org", Value: "dev"}})
		if err != nil {
			t.Fatal(err)
		}
		if got := keysOf(res.Items); got != "app||x" {
			t.Errorf("org = dev among keys app||*: %s", got)
		}
	})
}

func keysOf(items []state.QueryItem) string {
	keys := make([]string, len(items))
	for i, it := range items {
		keys[i] = it.Key
	}
	return strings.Join(keys, ",")
}

func isETagError(err error) bool {
	return errors.Is(err, state.ErrETagMismatch) || errors.Is(err, state.ErrETagInvalid)
}

// race runs f in n goroutines released together and counts the successes;
// every failure must be an ETag error.
func race(t *testing.T, n int, f func(i int) error) int {
	t.Helper()
	var wins atomic.Int32
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			err := f(i)
			switch {
			case err == nil:
				wins.Add(1)
			case !isETagError(err):
				t.Errorf("a losing writer must get an ETag error, got %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	return int(wins.Load())
}

func mustSet(t *testing.T, st state.Store, key string, value []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := st.Set(ctx, state.SetRequest{Key: key, Value: value}); err != nil {
		t.Fatalf("Set(%q): %v", key, err)
	}
}

func mustGet(t *testing.T, st state.Store, key string) state.Item {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	it, found, err := st.Get(ctx, state.GetRequest{Key: key})
	if err != nil || !found {
		t.Fatalf("Get(%q): found %v, err %v", key, found, err)
	}
	return it
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
