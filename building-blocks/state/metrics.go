package state

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/outrigger/outrigger/telemetry/daprmetrics"
)

// Operations as daprd labels them (operation of dapr_component_state_*).
const (
	opGet         = "get"
	opSet         = "set"
	opDelete      = "delete"
	opBulkGet     = "bulk_get"
	opBulkDelete  = "bulk_delete"
	opTransaction = "transaction"
	opQuery       = "query"
)

// Metrics are the state stores' metrics under daprd's names:
// dapr_component_state_count and dapr_component_state_latencies (in
// milliseconds), by app_id, component (the store's name), namespace,
// operation and success. Make one per sidecar with NewMetrics, register it
// (it is a prometheus.Collector) and measure each store with WithMetrics.
type Metrics struct{ *daprmetrics.Operations }

// NewMetrics makes the metrics of the stores of appID in namespace.
func NewMetrics(appID, namespace string) *Metrics {
	return &Metrics{daprmetrics.NewOperations("state", "state", appID, namespace)}
}

// WithMetrics is c with every call to its store counted and timed in m
// under the component name name. A call is one operation, whatever its
// outcome; it succeeds when the store returns no error (an ETag conflict
// is a failure, a key not found a success), as daprd counts. The state
// API's bulk calls (a save of several items, a bulk get or delete) are one
// operation each, as daprd counts them. Wrap outside WithResiliency, so a
// call with its retries is measured once.
func WithMetrics(c *Component, name string, m *Metrics) *Component {
	cc := *c
	cc.Store = &measuredStore{inner: c.Store, name: name, m: m}
	return &cc
}

// measuredStore is a Store whose calls are recorded in m.
type measuredStore struct {
	inner Store
	name  string
	m     *Metrics
}

// batchKey marks the context of the calls of one bulk operation.
type batchKey struct{}

// batch is what the calls of one bulk operation share.
type batch struct{ failed atomic.Bool }

// observe records one call of op that began at start, unless it is part of
// a bulk operation, which is recorded once (failed if any call failed).
func (s *measuredStore) observe(ctx context.Context, op string, start time.Time, err error) {
	if b, ok := ctx.Value(batchKey{}).(*batch); ok {
		if err != nil {
			b.failed.Store(true)
		}
		return
	}
	s.m.Record(s.name, op, err == nil, time.Since(start))
}

func (s *measuredStore) Get(ctx context.Context, req GetRequest) (Item, bool, error) {
	start := time.Now()
	it, found, err := s.inner.Get(ctx, req)
	s.observe(ctx, opGet, start, err)
	return it, found, err
}

func (s *measuredStore) Set(ctx context.Context, req SetRequest) error {
	start := time.Now()
	err := s.inner.Set(ctx, req)
	s.observe(ctx, opSet, start, err)
	return err
}

func (s *measuredStore) Delete(ctx context.Context, req DeleteRequest) error {
	start := time.Now()
	err := s.inner.Delete(ctx, req)
	s.observe(ctx, opDelete, start, err)
	return err
}

func (s *measuredStore) Features() Features { return s.inner.Features() }

func (s *measuredStore) Close() error { return nil } // the component's own store is closed by its owner

// Multi is the inner store's, when it has one (Features().Transactional
// says so).
func (s *measuredStore) Multi(ctx context.Context, ops []Operation) error {
	tx, ok := s.inner.(Transactional)
	if !ok {
		return errors.New("the state store does not support transactions")
	}
	start := time.Now()
	err := tx.Multi(ctx, ops)
	s.observe(ctx, opTransaction, start, err)
	return err
}

// Query is the inner store's, when it has one (Features().Query).
func (s *measuredStore) Query(ctx context.Context, q Query) (QueryResult, error) {
	qr, ok := s.inner.(Querier)
	if !ok {
		return QueryResult{}, errors.New("the state store does not support queries")
	}
	start := time.Now()
	res, err := qr.Query(ctx, q)
	s.observe(ctx, opQuery, start, err)
	return res, err
}

// beginBulk starts bulk operation op of the store's metrics: the calls
// made with the returned context are recorded once, as op, when end is
// called with the operation's outcome (it fails if err is not nil or any
// of the calls failed). Without metrics it returns ctx as it is.
func (c *Component) beginBulk(ctx context.Context, op string) (_ context.Context, end func(err error)) {
	s, ok := c.Store.(*measuredStore)
	if !ok {
		return ctx, func(error) {}
	}
	b := &batch{}
	start := time.Now()
	return context.WithValue(ctx, batchKey{}, b), func(err error) {
		s.m.Record(s.name, op, err == nil && !b.failed.Load(), time.Since(start))
	}
}

// setAll writes reqs in order and stops at the first failure: one set, as
// daprd counts a save of several items.
func (c *Component) setAll(ctx context.Context, reqs []SetRequest) (err error) {
	ctx, end := c.beginBulk(ctx, opSet)
	defer func() { end(err) }()
	for _, req := range reqs {
		if err := c.Store.Set(ctx, req); err != nil {
			return err
		}
	}
	return nil
}

// deleteAll removes reqs in order and stops at the first failure: one
// bulk_delete.
func (c *Component) deleteAll(ctx context.Context, reqs []DeleteRequest) (err error) {
	ctx, end := c.beginBulk(ctx, opBulkDelete)
	defer func() { end(err) }()
	for _, req := range reqs {
		if err := c.Store.Delete(ctx, req); err != nil {
			return err
		}
	}
	return nil
}

var (
	_ Store         = (*measuredStore)(nil)
	_ Transactional = (*measuredStore)(nil)
	_ Querier       = (*measuredStore)(nil)
)
