package translate

import (
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"

	"github.com/outrigger/outrigger/nameresolution"
	"github.com/outrigger/outrigger/nameresolution/balance"
)

// TestClusterBalancing: the Configuration's load balancing and outlier
// detection ride on every app's cluster, and a sidecar reads back what was
// written.
func TestClusterBalancing(t *testing.T) {
	insts := []nameresolution.Instance{{AppID: "a", Host: "10.0.0.1", Port: 50002}, {AppID: "a", Host: "10.0.0.2", Port: 50002}}
	for _, c := range []struct {
		in     balance.AppOptions
		policy clusterv3.Cluster_LbPolicy
		want   balance.AppOptions
	}{
		{balance.AppOptions{}, clusterv3.Cluster_ROUND_ROBIN, balance.AppOptions{Policy: balance.RoundRobin, Outlier: balance.Outlier{ConsecutiveFailures: 5, BaseEjection: 30 * time.Second, MaxEjection: 300 * time.Second, MaxEjectionPercent: 10}}},
		{balance.AppOptions{Policy: balance.LeastRequest, Outlier: balance.Outlier{ConsecutiveFailures: 3, BaseEjection: 2 * time.Second, MaxEjectionPercent: 50}}, clusterv3.Cluster_LEAST_REQUEST,
			balance.AppOptions{Policy: balance.LeastRequest, Outlier: balance.Outlier{ConsecutiveFailures: 3, BaseEjection: 2 * time.Second, MaxEjection: 300 * time.Second, MaxEjectionPercent: 50}}},
		{balance.AppOptions{Policy: balance.RingHash, Outlier: balance.Outlier{ConsecutiveFailures: -1}}, clusterv3.Cluster_RING_HASH, balance.AppOptions{Policy: balance.RingHash, Outlier: balance.Outlier{ConsecutiveFailures: -1}}},
	} {
		clusters, _, err := clustersOf(insts, c.in)
		if err != nil {
			t.Fatal(err)
		}
		cl := clusters[0].(*clusterv3.Cluster)
		if cl.GetLbPolicy() != c.policy {
			t.Errorf("%+v: lb_policy %v, want %v", c.in, cl.GetLbPolicy(), c.policy)
		}
		if got := ClusterBalancing(cl); got != c.want {
			t.Errorf("%+v: read back %+v, want %+v", c.in, got, c.want)
		}
	}
}
