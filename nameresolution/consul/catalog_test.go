package consul_test

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/outrigger/outrigger/nameresolution"
	"github.com/outrigger/outrigger/nameresolution/consul"
)

// TestCatalog: the catalog follower reports the instances sidecars
// registered, of every service and namespace, and follows them as they come
// and go; a service registered without a mesh port is not a sidecar and is
// left out.
func TestCatalog(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	c, err := consul.NewCatalog(metadataFor(t, a.Addr(), nil))
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, r.update) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v", err)
			}
		case <-time.After(waitFor):
			t.Error("Run did not return after its context ended")
		}
	})
	orders := nameresolution.Instance{AppID: "orders", Host: "10.1.0.1", Port: 50002}
	billing := nameresolution.Instance{AppID: "billing", Namespace: "prod", Host: "10.1.0.2", Port: 50002}
	register(t, a.Client(), serviceFor(orders))
	register(t, a.Client(), serviceFor(billing))
	register(t, a.Client(), &api.AgentServiceRegistration{ID: "web-1", Name: "web", Address: "10.1.0.3", Port: 80})
	r.waitSet(t, orders.Address(), billing.Address())
	r.mu.Lock()
	last := r.sets[len(r.sets)-1]
	r.mu.Unlock()
	for _, in := range last {
		if in.AppID == "billing" && in.Namespace != "prod" {
			t.Errorf("billing reported in namespace %q, want prod", in.Namespace)
		}
	}
	deregister(t, a.Client(), consul.ServiceID(orders))
	r.waitSet(t, billing.Address())
}
