package state_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	commonv1pb "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outrigger/outrigger/building-blocks/state"
	"github.com/outrigger/outrigger/building-blocks/state/inmemory"
	"github.com/outrigger/outrigger/telemetry/daprmetrics/daprmetricstest"
)

// failingStore is the in-memory store, failing every read of key "bad".
type failingStore struct{ *inmemory.Store }

func (s failingStore) Get(ctx context.Context, req state.GetRequest) (state.Item, bool, error) {
	if strings.HasSuffix(req.Key, "bad") {
		return state.Item{}, false, errors.New("disk on fire")
	}
	return s.Store.Get(ctx, req)
}

func stateSeries(name, op, success string) string {
	return name + "{app_id=app,component=store,namespace=ns,operation=" + op + ",success=" + success + "}"
}

// TestMetricsDaprOperations: every call of the state API is one operation
// under daprd's name and labels; a save of several items, a bulk get and a
// bulk delete are one each; an ETag conflict and a failed read fail.
func TestMetricsDaprOperations(t *testing.T) {
	mem, _, err := inmemory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := state.NewComponent(map[string]string{}, nil, func(map[string]string) (failingStore, []string, error) {
		return failingStore{mem}, nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	m := state.NewMetrics("app", "ns")
	measured := state.WithMetrics(c, "store", m)
	api := &state.API{
		Lookup:     func(name string) (*state.Component, bool) { return measured, name == "store" },
		Configured: func() bool { return true },
		AppID:      "app", Namespace: "ns",
	}
	ctx := t.Context()

	if _, err := api.SaveState(ctx, &runtimev1pb.SaveStateRequest{StoreName: "store", States: []*commonv1pb.StateItem{{Key: "a", Value: []byte("1")}}}); err != nil {
		t.Fatal(err)
	}
	if w := do(api, http.MethodPost, "/v1.0/state/store", `[{"key":"b","value":2},{"key":"c","value":3},{"key":"d","value":4}]`, nil); w.Code != http.StatusNoContent {
		t.Fatalf("save: %d %s", w.Code, w.Body)
	}
	// An ETag conflict.
	if w := do(api, http.MethodPost, "/v1.0/state/store", `[{"key":"a","value":5,"etag":"999"}]`, nil); w.Code != http.StatusConflict {
		t.Fatalf("save with a stale ETag: %d %s", w.Code, w.Body)
	}
	for _, k := range []string{"a", "missing"} {
		if _, err := api.GetState(ctx, &runtimev1pb.GetStateRequest{StoreName: "store", Key: k}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := api.GetState(ctx, &runtimev1pb.GetStateRequest{StoreName: "store", Key: "bad"}); err == nil {
		t.Fatal("a failed read answered")
	}
	if _, err := api.GetBulkState(ctx, &runtimev1pb.GetBulkStateRequest{StoreName: "store", Keys: []string{"a", "b", "c"}}); err != nil {
		t.Fatal(err)
	}
	if w := do(api, http.MethodPost, "/v1.0/state/store/bulk", `{"keys":["a","bad"]}`, nil); w.Code != http.StatusOK {
		t.Fatalf("bulk get: %d %s", w.Code, w.Body)
	}
	if _, err := api.DeleteBulkState(ctx, &runtimev1pb.DeleteBulkStateRequest{StoreName: "store", States: []*commonv1pb.StateItem{{Key: "b"}, {Key: "c"}}}); err != nil {
		t.Fatal(err)
	}
	if w := do(api, http.MethodDelete, "/v1.0/state/store/d", "", nil); w.Code != http.StatusNoContent {
		t.Fatalf("delete: %d %s", w.Code, w.Body)
	}
	if _, err := api.ExecuteStateTransaction(ctx, &runtimev1pb.ExecuteStateTransactionRequest{StoreName: "store", Operations: []*runtimev1pb.TransactionalStateOperation{
		{OperationType: "upsert", Request: &commonv1pb.StateItem{Key: "e", Value: []byte("5")}},
		{OperationType: "delete", Request: &commonv1pb.StateItem{Key: "a"}},
	}}); err != nil {
		t.Fatal(err)
	}

	want := map[string]float64{}
	for _, s := range []struct {
		op, success string
		n           float64
	}{
		{"set", "true", 2}, {"set", "false", 1},
		{"get", "true", 2}, {"get", "false", 1},
		{"bulk_get", "true", 1}, {"bulk_get", "false", 1},
		{"bulk_delete", "true", 1}, {"delete", "true", 1}, {"transaction", "true", 1},
	} {
		want[stateSeries("dapr_component_state_count", s.op, s.success)] = s.n
		want[stateSeries("dapr_component_state_latencies", s.op, s.success)] = s.n
	}
	got := daprmetricstest.Gather(t, m)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected series %s = %v", k, got[k])
		}
	}
}

// TestMetricsBuckets: latencies use daprd's buckets, in milliseconds.
func TestMetricsBuckets(t *testing.T) {
	c, _, err := state.NewComponent(map[string]string{}, nil, inmemory.New)
	if err != nil {
		t.Fatal(err)
	}
	m := state.NewMetrics("app", "ns")
	s := state.WithMetrics(c, "store", m).Store
	if err := s.Set(t.Context(), state.SetRequest{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "dapr_component_state_latencies" {
			continue
		}
		b := f.GetMetric()[0].GetHistogram().GetBucket()
		if len(b) != 34 || b[0].GetUpperBound() != 1 || b[33].GetUpperBound() != 100_000 {
			t.Fatalf("buckets %v, want daprd's 34 from 1 to 100000 ms", b)
		}
		return
	}
	t.Fatal("no dapr_component_state_latencies")
}
