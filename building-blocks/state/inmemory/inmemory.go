// Package inmemory is the state.in-memory state store: items live in the
// sidecar's memory and die with it. It is transactional and honours TTLs,
// as Dapr's in-memory store is; it answers no queries.
package inmemory

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/outrigger/outrigger/building-blocks/state"
	"github.com/outrigger/outrigger/config/metadata"
)

// Type is the component type this store implements, version v1.
const Type = "state.in-memory"

// Metadata is the store's component metadata: it has none of its own.
type Metadata struct{}

// Store keeps items in a map. It is safe for concurrent use.
type Store struct {
	mu      sync.Mutex
	items   map[string]entry
	version uint64
	now     func() time.Time
	closed  bool
}

type entry struct {
	value   []byte
	etag    string
	expires time.Time
}

var (
	_ state.Store         = (*Store)(nil)
	_ state.Transactional = (*Store)(nil)
)

// New builds a store from its component metadata. unknown lists the keys
// it does not read (every key but the state API's own).
func New(meta map[string]string) (*Store, []string, error) {
	var m Metadata
	unknown, err := metadata.Decode(meta, &m)
	if err != nil {
		return nil, unknown, err
	}
	return &Store{items: map[string]entry{}, now: time.Now}, unknown, nil
}

// Features implements state.Store.
func (s *Store) Features() state.Features { return state.Features{Transactional: true, TTL: true} }

// Get implements state.Store.
func (s *Store) Get(_ context.Context, req state.GetRequest) (state.Item, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return state.Item{}, false, errClosed
	}
	e, ok := s.live(req.Key)
	if !ok {
		return state.Item{}, false, nil
	}
	return state.Item{Value: append([]byte(nil), e.value...), ETag: e.etag, Expires: e.expires}, true, nil
}

// Set implements state.Store.
func (s *Store) Set(_ context.Context, req state.SetRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	if err := s.check(req.Key, req.ETag, req.FirstWrite, true); err != nil {
		return err
	}
	s.set(req)
	return nil
}

// Delete implements state.Store.
func (s *Store) Delete(_ context.Context, req state.DeleteRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	if err := s.check(req.Key, req.ETag, false, false); err != nil {
		return err
	}
	delete(s.items, req.Key)
	return nil
}

// Multi implements state.Transactional: every check is made against the
// state as the earlier operations of the transaction leave it, and nothing
// is applied unless all pass.
func (s *Store) Multi(_ context.Context, ops []state.Operation) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	saved := make(map[string]*entry, len(ops))
	rollback := func() {
		for k, e := range saved {
			if e == nil {
				delete(s.items, k)
			} else {
				s.items[k] = *e
			}
		}
	}
	for i, op := range ops {
		key := opKey(op)
		if _, done := saved[key]; !done {
			if e, ok := s.items[key]; ok {
				saved[key] = &e
			} else {
				saved[key] = nil
			}
		}
		var err error
		switch {
		case op.Set != nil && op.Delete == nil:
			if err = s.check(key, op.Set.ETag, op.Set.FirstWrite, true); err == nil {
				s.set(*op.Set)
			}
		case op.Delete != nil && op.Set == nil:
			if err = s.check(key, op.Delete.ETag, false, false); err == nil {
				delete(s.items, key)
			}
		default:
			err = errors.New("an operation needs exactly one of set and delete")
		}
		if err != nil {
			rollback()
			return errors.Join(errors.New("operation "+strconv.Itoa(i)+" failed; the transaction was rolled back"), err)
		}
	}
	return nil
}

// Close implements state.Store.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.items = nil
	return nil
}

var errClosed = errors.New("state/inmemory: the store is closed")

// live is the entry at key unless it expired (an expired one is dropped).
func (s *Store) live(key string) (entry, bool) {
	e, ok := s.items[key]
	if ok && !e.expires.IsZero() && !s.now().Before(e.expires) {
		delete(s.items, key)
		return entry{}, false
	}
	return e, ok
}

// check applies the ETag rules of state.Store to a write of key.
func (s *Store) check(key string, etag *string, firstWrite, isSet bool) error {
	e, ok := s.live(key)
	switch {
	case etag != nil:
		if !ok || e.etag != *etag {
			return state.ETagMismatch(key)
		}
	case firstWrite && isSet && ok:
		return state.ETagMismatch(key)
	}
	return nil
}

func (s *Store) set(req state.SetRequest) {
	s.version++
	if s.version%1024 == 0 {
		// Expired items nobody reads are dropped now and then.
		for k := range s.items {
			s.live(k)
		}
	}
	e := entry{value: append([]byte(nil), req.Value...), etag: strconv.FormatUint(s.version, 10)}
	if req.TTL > 0 {
		e.expires = s.now().Add(req.TTL)
	}
	s.items[req.Key] = e
}

func opKey(op state.Operation) string {
	if op.Set != nil {
		return op.Set.Key
	}
	if op.Delete != nil {
		return op.Delete.Key
	}
	return ""
}
