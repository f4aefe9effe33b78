// Package state is the state management building block: the component
// interface every state store implements (Store, with the optional
// Transactional and Querier), the request and item types the API hands
// them, and the Dapr state API over them (see api.go).
//
// Backends live in sub-packages, each passing the conformance suite in
// statetest against a real server. Nothing here registers anything: cmd/
// wires backends by their component type, and the sidecar mounts the API.
package state

import (
	"context"
	"errors"
	"strconv"
	"time"
)

// Store is a state store component, as the state API uses it. Keys arrive
// already prefixed (see KeyPrefix); values are opaque bytes. Methods are
// safe for concurrent use.
type Store interface {
	// Get returns the item at req.Key; found is false for a key the store
	// does not hold, or whose time to live has passed.
	Get(ctx context.Context, req GetRequest) (item Item, found bool, err error)
	// Set writes req.Value at req.Key. With req.ETag set, it writes only if
	// the stored item has that ETag; otherwise it fails with an error
	// matching ErrETagMismatch (ErrETagInvalid for an ETag the store could
	// never have issued; a missing key is a mismatch). With req.FirstWrite
	// and no ETag, it writes only if the key is absent, else
	// ErrETagMismatch. Each successful write gives the item a new ETag.
	Set(ctx context.Context, req SetRequest) error
	// Delete removes req.Key, with the same ETag rules as Set. Deleting a
	// key the store does not hold, without an ETag, succeeds.
	Delete(ctx context.Context, req DeleteRequest) error
	// Features says what the store does beyond the above.
	Features() Features
	// Close releases what the store holds.
	Close() error
}

// Transactional is a store that applies several writes atomically
// (Features.Transactional).
type Transactional interface {
	// Multi applies ops in order, all or none: when one fails (an ETag
	// check included), none is applied and the error says which.
	Multi(ctx context.Context, ops []Operation) error
}

// Querier is a store that answers the state query API (Features.Query).
type Querier interface {
	Query(ctx context.Context, q Query) (QueryResult, error)
}

// Features are what a store supports beyond Get, Set and Delete with ETags.
type Features struct {
	// Transactional: the store implements Transactional.
	Transactional bool
	// TTL: the store honours SetRequest.TTL and reports Item.Expires.
	TTL bool
	// Query: the store implements Querier.
	Query bool
}

// Item is a stored value.
type Item struct {
	Value []byte
	// ETag identifies this version of the item; never empty.
	ETag string
	// Expires is when the item's time to live ends; zero for none.
	Expires time.Time
}

// GetRequest reads one key.
type GetRequest struct {
	Key string
	// Strong asks for strong consistency (the default is eventual).
	Strong   bool
	Metadata map[string]string
}

// SetRequest writes one key.
type SetRequest struct {
	Key   string
	Value []byte
	// ETag, when not nil, is the version the write expects to replace.
	ETag *string
	// FirstWrite is Dapr's first-write concurrency: without an ETag, the
	// write only creates.
	FirstWrite bool
	Strong     bool
	// TTL is the item's time to live: positive expires it that long after
	// the write, negative never expires it (overriding a store's default),
	// zero leaves the store's default (usually none).
	TTL      time.Duration
	Metadata map[string]string
}

// DeleteRequest removes one key.
type DeleteRequest struct {
	Key        string
	ETag       *string
	FirstWrite bool
	Strong     bool
	Metadata   map[string]string
}

// Operation is one write of a transaction: exactly one of Set and Delete.
type Operation struct {
	Set    *SetRequest
	Delete *DeleteRequest
}

// Query is a state query (Dapr's query API): a filter over the JSON values,
// a sort, and a page.
type Query struct {
	// KeyPrefix, when set, limits the query to keys that start with it (an
	// app's own keys).
	KeyPrefix string
	Filter    *Filter
	Sort      []Sort
	// Limit bounds the page; zero is no bound.
	Limit int
	// Token continues from the page that returned it.
	Token string
}

// Filter is a node of a query's filter. Op is one of EQ, NEQ, GT, GTE, LT,
// LTE and IN (with Key, a dotted path into the JSON value, and Value or
// Values), or AND and OR (with Filters).
type Filter struct {
	Op      string
	Key     string
	Value   any
	Values  []any
	Filters []*Filter
}

// Sort orders a query's results by the value at Key.
type Sort struct {
	Key        string
	Descending bool
}

// QueryResult is one page of a query's results.
type QueryResult struct {
	Items []QueryItem
	// Token fetches the next page; empty on the last.
	Token string
}

// QueryItem is one result of a query.
type QueryItem struct {
	Key   string
	Value []byte
	ETag  string
	Error string
}

// ErrETagMismatch is matched (errors.Is) by the error of a write whose ETag
// (or first-write condition) does not hold.
var ErrETagMismatch = errors.New("possible etag mismatch. error from state store")

// ErrETagInvalid is matched by the error of a write whose ETag the store
// could never have issued.
var ErrETagInvalid = errors.New("invalid etag value")

// ETagMismatch is the error of a failed ETag check on key.
func ETagMismatch(key string) error { return &etagError{key: key, kind: ErrETagMismatch} }

// ETagInvalid is the error of an ETag the store cannot have issued.
func ETagInvalid(key, etag string) error {
	return &etagError{key: key, kind: ErrETagInvalid, detail: etag}
}

type etagError struct {
	key    string
	kind   error
	detail string
}

func (e *etagError) Error() string {
	if e.detail != "" {
		return e.kind.Error() + ": " + e.detail
	}
	return e.kind.Error() + ": key " + strconv.Quote(e.key)
}

func (e *etagError) Is(target error) bool { return target == e.kind }
