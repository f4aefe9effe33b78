package daprmetrics

import "sync"

// OtherLabel is the label value of the values past a Bounded set's limit.
const OtherLabel = "_other"

// Bounded is a label whose values come from requests (an app-id, a topic,
// a gRPC method): its first Max distinct values label series of their own,
// later ones share OtherLabel, so a flood of made-up values cannot grow the
// metrics without end. The zero value passes nothing but OtherLabel; it is
// safe for concurrent use.
type Bounded struct {
	Max int

	mu   sync.RWMutex
	seen map[string]struct{}
}

// Label is the label value of v.
func (b *Bounded) Label(v string) string {
	b.mu.RLock()
	_, ok := b.seen[v]
	b.mu.RUnlock()
	if ok {
		return v
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.seen[v]; ok {
		return v
	}
	if len(b.seen) >= b.Max {
		return OtherLabel
	}
	if b.seen == nil {
		b.seen = map[string]struct{}{}
	}
	b.seen[v] = struct{}{}
	return v
}
