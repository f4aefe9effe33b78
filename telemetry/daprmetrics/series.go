package daprmetrics

import "sync"

// Series caches the children of metric vectors by their label values, so
// that recording a request costs one map lookup rather than hashing every
// label once per vector (a prometheus *Vec's WithLabelValues). K holds the
// label values, already bounded (Bounded labels, status codes, route
// templates): the cache keeps every key it is given. New makes the value
// of a key not seen yet; it may run more than once for one key when
// callers race, and only one result is kept. Its zero value with New set
// is ready; it is safe for concurrent use.
type Series[K comparable, V any] struct {
	New func(K) V

	mu sync.RWMutex
	m  map[K]V
}

// Get returns the value of k, made by New the first time.
func (s *Series[K, V]) Get(k K) V {
	s.mu.RLock()
	v, ok := s.m[k]
	s.mu.RUnlock()
	if ok {
		return v
	}
	nv := s.New(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.m[k]; ok {
		return v
	}
	if s.m == nil {
		s.m = map[K]V{}
	}
	s.m[k] = nv
	return nv
}
