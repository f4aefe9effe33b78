package devmode

import (
	"strings"
	"testing"
)

func TestVirtualHostsFile(t *testing.T) {
	got, err := virtualHostsFile([]string{"orders", "cart"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"127.0.0.1 localhost\n",
		"127.77.0.2 orders orders.default orders.default.svc.cluster.local\n",
		"127.77.0.3 cart cart.default cart.default.svc.cluster.local\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("hosts file lacks %q:\n%s", want, got)
		}
	}
	if n := netnsName(42, "orders"); n != "outrigger-42-orders" || !leftoverNetns.MatchString(n) {
		t.Errorf("namespace name %q", n)
	}
}
