package proxy

import "testing"

func TestAPIRouteIsATemplate(t *testing.T) {
	for p, want := range map[string]string{
		"/v1.0/invoke/cart/method/items/42":   "/v1.0/invoke/{id}/method/*",
		"/v1.0/state/store":                   "/v1.0/state/{storeName}",
		"/v1.0/state/store/key-1":             "/v1.0/state/{storeName}/*",
		"/v1.0-alpha1/state/store/query":      "/v1.0-alpha1/state/{storeName}/*",
		"/v1.0/publish/ps/orders":             "/v1.0/publish/{pubsubname}/{topic}",
		"/v1.0/publish/bulk/ps/orders":        "/v1.0/publish/bulk/{pubsubname}/{topic}",
		"/v1.0-alpha1/publish/bulk/ps/orders": "/v1.0-alpha1/publish/bulk/{pubsubname}/{topic}",
		"/v1.0/secrets/vault/db":              "/v1.0/secrets/{secretStoreName}/*",
		"/v1.0/metadata":                      "/v1.0/metadata",
		"/v1.0/metadata/k":                    "/v1.0/metadata/{key}",
		"/v1.0/healthz":                       "/v1.0/healthz",
		"/anything/else/9":                    "_other",
	} {
		if got := apiRoute(p); got != want {
			t.Errorf("apiRoute(%q) = %q, want %q", p, got, want)
		}
	}
	for m, want := range map[string]string{"GET": "GET", "PATCH": "PATCH", "BREW": "_OTHER", "get": "_OTHER"} {
		if got := metricMethod(m); got != want {
			t.Errorf("metricMethod(%q) = %q", m, got)
		}
	}
	if got := pathSegment("/v1.0/publish/ps/orders", 3); got != "orders" {
		t.Errorf("pathSegment = %q", got)
	}
	if got := pathSegment("/a", 3); got != "" {
		t.Errorf("pathSegment past the end = %q", got)
	}
}

func TestBoundedLabels(t *testing.T) {
	l := newBoundedLabels()
	for i := range maxAppLabels {
		if got := l.Label(string(rune('a'+i%26)) + string(rune('0'+i/26))); got == otherAppLabel {
			t.Fatalf("label %d shared before the bound", i)
		}
	}
	if got := l.Label("one-too-many"); got != otherAppLabel {
		t.Fatalf("past the bound: %q", got)
	}
	if got := l.Label("a0"); got != "a0" {
		t.Fatalf("a label seen before the bound lost its series: %q", got)
	}
}
