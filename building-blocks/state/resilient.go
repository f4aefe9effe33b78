package state

import (
	"context"
	"errors"

	"github.com/outrigger/outrigger/resiliency"
)

// WithResiliency is c with every call to its store run under the runner
// that runner returns at the time of the call (the component's outbound
// Resiliency policy, which may change while the sidecar runs; nil runs a
// call once, as it is). ETag conflicts and bad input are not retried.
func WithResiliency(c *Component, runner func() *resiliency.Runner) *Component {
	cc := *c
	cc.Store = &resilientStore{inner: c.Store, runner: runner}
	return &cc
}

// resilientStore is a Store whose calls run under a runner.
type resilientStore struct {
	inner  Store
	runner func() *resiliency.Runner
}

// permanent reports the errors a retry cannot change.
func permanent(err error) bool {
	return errors.Is(err, ErrETagMismatch) || errors.Is(err, ErrETagInvalid) || errors.Is(err, context.Canceled)
}

func (s *resilientStore) Get(ctx context.Context, req GetRequest) (Item, bool, error) {
	var (
		it    Item
		found bool
	)
	err := s.runner().Do(ctx, func(ctx context.Context) error {
		var err error
		it, found, err = s.inner.Get(ctx, req)
		return err
	}, permanent)
	return it, found, err
}

func (s *resilientStore) Set(ctx context.Context, req SetRequest) error {
	return s.runner().Do(ctx, func(ctx context.Context) error { return s.inner.Set(ctx, req) }, permanent)
}

func (s *resilientStore) Delete(ctx context.Context, req DeleteRequest) error {
	return s.runner().Do(ctx, func(ctx context.Context) error { return s.inner.Delete(ctx, req) }, permanent)
}

func (s *resilientStore) Features() Features { return s.inner.Features() }

func (s *resilientStore) Close() error { return nil } // the component's own store is closed by its owner

// Multi is the inner store's, when it has one (Features().Transactional
// says so).
func (s *resilientStore) Multi(ctx context.Context, ops []Operation) error {
	tx, ok := s.inner.(Transactional)
	if !ok {
		return errors.New("the state store does not support transactions")
	}
	return s.runner().Do(ctx, func(ctx context.Context) error { return tx.Multi(ctx, ops) }, permanent)
}

// Query is the inner store's, when it has one (Features().Query).
func (s *resilientStore) Query(ctx context.Context, q Query) (QueryResult, error) {
	qr, ok := s.inner.(Querier)
	if !ok {
		return QueryResult{}, errors.New("the state store does not support queries")
	}
	var res QueryResult
	err := s.runner().Do(ctx, func(ctx context.Context) error {
		var err error
		res, err = qr.Query(ctx, q)
		return err
	}, permanent)
	return res, err
}
