package components

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestMetricsLoadedAndFailed: every component built counts under daprd's
// names, by type; a failure counts with its reason (creation for a type
// this build lacks, init for one that did not construct) and name; an
// unchanged component is not counted again.
func TestMetricsLoadedAndFailed(t *testing.T) {
	m := NewMetrics("me")
	s := newSet(t)
	s.opts.Metrics = m
	ctx := context.Background()
	if err := s.Apply(ctx, parse(t, base)); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, parse(t, "\n"+base)); err != nil { // unchanged: nothing rebuilt
		t.Fatal(err)
	}
	broken := base + "---\nkind: Component\nmetadata: {name: broken}\nspec: {type: state.kv, version: v1, metadata: [{name: fail, value: yes}]}\n" +
		"---\nkind: Component\nmetadata: {name: alien}\nspec: {type: state.nope, version: v1}\n"
	if err := s.Apply(ctx, parse(t, broken)); err == nil {
		t.Fatal("failing components applied without an error")
	}

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)
	want := `# HELP dapr_runtime_component_init_fail_total The number of component initialization failures.
# TYPE dapr_runtime_component_init_fail_total counter
dapr_runtime_component_init_fail_total{app_id="me",component="state.kv",componentName="broken",reason="init"} 1
dapr_runtime_component_init_fail_total{app_id="me",component="state.nope",componentName="alien",reason="creation"} 1
# HELP dapr_runtime_component_init_total The number of initialized components.
# TYPE dapr_runtime_component_init_total counter
dapr_runtime_component_init_total{app_id="me",component="secretstores.kv"} 1
dapr_runtime_component_init_total{app_id="me",component="state.kv"} 1
# HELP dapr_runtime_component_loaded The number of successfully loaded components.
# TYPE dapr_runtime_component_loaded counter
dapr_runtime_component_loaded{app_id="me"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}
