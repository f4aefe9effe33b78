package secrets

import "testing"

func TestMatchPath(t *testing.T) {
	tests := []struct {
		in         string
		store, key string
		ok         bool
	}{
		{"/v1.0/secrets/s/k", "s", "k", true},
		{"/v1.0/secrets/s/bulk", "s", "bulk", true},
		{"/v1.0/secrets/s/%62ulk", "s", "%62ulk", true},
		{"/v1.0/secrets/s/a%2Fb", "s", "a%2Fb", true},
		{"//v1.0//secrets/s//k/", "s", "k", true},
		{"/v1.0/secrets/s/x/../k", "s", "k", true},
		{"/v1.0/secrets/s", "", "", false},
		{"/v1.0/secrets/s/", "", "", false},
		{"/v1.0/secrets/", "", "", false},
		{"/v1.0/secrets", "", "", false},
		{"/v1.0/secrets/s/a/b", "", "", false},
		{"/v1.0/secret/s/k", "", "", false},
		{"", "", "", false},
	}
	for _, tt := range tests {
		store, key, ok := matchPath(tt.in)
		if store != tt.store || key != tt.key || ok != tt.ok {
			t.Errorf("matchPath(%q) = %q, %q, %v; want %q, %q, %v", tt.in, store, key, ok, tt.store, tt.key, tt.ok)
		}
	}
}

func TestUnescapeParam(t *testing.T) {
	if got, err := unescapeParam("key", "a+b%2Fc"); err != nil || got != "a b/c" {
		t.Errorf("unescapeParam = %q, %v", got, err)
	}
	// daprd's words for a parameter it cannot unescape.
	_, err := unescapeParam("key", "%zz")
	if want := `failed to unescape request parameter "key". Error: invalid URL escape "%zz"`; err == nil || err.Error() != want {
		t.Errorf("unescapeParam(%%zz) = %v, want %s", err, want)
	}
}
