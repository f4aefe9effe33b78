package translate

import (
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

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

// TestRingHashHeaderOnRoutes: ring hash's header rides on every app's
// invocation route as Envoy's hash_policy (the sidecar's API routes and the
// proxyless client's listener), and the sidecar's route table reads it
// back; other policies put no hash_policy anywhere.
func TestRingHashHeaderOnRoutes(t *testing.T) {
	insts := []nameresolution.Instance{{AppID: "orders", Host: "10.0.0.1", Port: 50002}, {AppID: "orders", Host: "10.0.0.2", Port: 50002}}
	for _, c := range []struct {
		lb   balance.AppOptions
		want string
	}{
		{balance.AppOptions{Policy: balance.RingHash, HashHeader: "X-User"}, "x-user"},
		{balance.AppOptions{Policy: balance.RoundRobin, HashHeader: "X-User"}, ""},
		{balance.AppOptions{Policy: balance.RingHash}, ""},
	} {
		snap, err := Snapshot(Input{Endpoints: insts, Balance: c.lb}, Node{AppID: "checkout"}, "1")
		if err != nil {
			t.Fatal(err)
		}
		rc := snap.GetResources(resourcev3.RouteType)[SidecarAPIName].(*routev3.RouteConfiguration)
		rt, err := NewRoutes(rc)
		if err != nil {
			t.Fatal(err)
		}
		var table RouteTable
		table.Set(rt)
		for _, id := range [][2]string{{"orders", ""}, {"orders", "default"}} {
			if got := table.InvokeHashHeader(id[0], id[1]); got != c.want {
				t.Errorf("%+v: route table's header for %v is %q, want %q", c.lb, id, got, c.want)
			}
		}
		if got := table.InvokeHashHeader("payments", ""); got != "" {
			t.Errorf("%+v: an app without a route has header %q", c.lb, got)
		}
		l := snap.GetResources(resourcev3.ListenerType)["orders"].(*listenerv3.Listener)
		var hcm hcmv3.HttpConnectionManager
		if err := l.GetApiListener().GetApiListener().UnmarshalTo(&hcm); err != nil {
			t.Fatal(err)
		}
		action := hcm.GetRouteConfig().GetVirtualHosts()[0].GetRoutes()[0].GetRoute()
		got := ""
		if hp := action.GetHashPolicy(); len(hp) == 1 {
			got = strings.ToLower(hp[0].GetHeader().GetHeaderName())
		} else if len(hp) > 1 {
			t.Errorf("%+v: %d hash policies on the listener's route", c.lb, len(hp))
		}
		if got != c.want {
			t.Errorf("%+v: the proxyless listener's hash header is %q, want %q", c.lb, got, c.want)
		}
	}
}
