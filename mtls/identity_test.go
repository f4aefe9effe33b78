package mtls

import (
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestNewIdentityDefaultsAndChecks(t *testing.T) {
	id, err := NewIdentity("", "", "orders")
	if err != nil {
		t.Fatal(err)
	}
	if got := id.String(); got != "spiffe://public/ns/default/orders" {
		t.Errorf("got %s", got)
	}
	for _, c := range []struct{ td, ns, app, want string }{
		{"", "", "", "app-id is empty"},
		{"", "", "a/b", "app-id"},
		{"", "a b", "x", "namespace"},
		{"", "..", "x", "namespace"},
		{"Upper.Case", "", "x", "trust domain"},
		{"", "", "ünïcode", "app-id"},
	} {
		if _, err := NewIdentity(c.td, c.ns, c.app); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("NewIdentity(%q,%q,%q): %v, want an error naming %s", c.td, c.ns, c.app, err, c.want)
		}
	}
}

func TestParseID(t *testing.T) {
	id, err := ParseIDString("spiffe://example.org/ns/prod/cart")
	if err != nil {
		t.Fatal(err)
	}
	if id.TrustDomain.Name() != "example.org" || id.Namespace != "prod" || id.AppID != "cart" {
		t.Errorf("got %+v", id)
	}
	for _, bad := range []string{
		"", "spiffe://example.org", "spiffe://example.org/cart", "spiffe://example.org/ns/prod",
		"spiffe://example.org/ns/prod/cart/extra", "spiffe://example.org/namespace/prod/cart",
		"https://example.org/ns/a/b", "spiffe://example.org/ns//cart",
	} {
		if _, err := ParseIDString(bad); err == nil {
			t.Errorf("ParseIDString(%q) accepted it", bad)
		}
	}
	if _, err := ParseID(spiffeid.ID{}); err == nil {
		t.Error("the zero ID parsed")
	}
}

// FuzzParseID: any string either fails to parse or round-trips exactly
// through Identity and back, and never panics.
func FuzzParseID(f *testing.F) {
	for _, s := range []string{
		"spiffe://public/ns/default/orders", "spiffe://example.org/ns/prod/cart", "spiffe://a/ns/b/c/d",
		"spiffe://td/ns/%2F/x", "spiffe://TD/ns/a/b", "spiffe://td//ns/a/b", "spiffe://td/ns/a/b?q", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseIDString(s)
		if err != nil {
			return
		}
		if id.String() != s {
			t.Fatalf("%q parsed to %+v which prints as %q", s, id, id.String())
		}
		again, err := NewIdentity(id.TrustDomain.Name(), id.Namespace, id.AppID)
		if err != nil {
			t.Fatalf("%q parsed but its parts do not rebuild: %v", s, err)
		}
		if again != id {
			t.Fatalf("%q: rebuilt %+v, parsed %+v", s, again, id)
		}
	})
}
