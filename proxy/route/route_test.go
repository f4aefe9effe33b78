package route

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
)

func TestInvokePath(t *testing.T) {
	tests := []struct {
		path   string
		want   Target
		wantOK bool
	}{
		{"/v1.0/invoke/orders/method/new", Target{"orders", "new"}, true},
		{"/v1.0/invoke/orders/method/api/v1/items", Target{"orders", "api/v1/items"}, true},
		{"/v1.0/invoke/orders.prod/method/x", Target{"orders.prod", "x"}, true},
		{"/v1.0/invoke/orders/method/a/../../b", Target{"orders", "b"}, true},
		{"/v1.0/invoke/orders/method/items/", Target{"orders", "items/"}, true},
		{"/v1.0/invoke/orders/method/", Target{"orders", ""}, true},
		{"/v1.0/invoke/orders/method/%2Fapi%2Fv1", Target{"orders", "%2Fapi%2Fv1"}, true},
		{"/v1.0/invoke/ord%65rs/method/x", Target{"orders", "x"}, true},
		{"/v1.0/invoke//method/x", Target{}, false},
		{"/v1.0/invoke/orders", Target{}, false},
		{"/v1.0/invoke/orders/method", Target{}, false},
		{"/v1.0/invoke/a/b/method/x", Target{}, false},
		{"/v1.0/invoke/%zz/method/x", Target{}, false},
		{"/v1.0/state/x", Target{}, false},
		{"", Target{}, false},
	}
	for _, tt := range tests {
		got, ok := InvokePath(tt.path)
		if ok != tt.wantOK || got != tt.want {
			t.Errorf("InvokePath(%q) = %+v, %v; want %+v, %v", tt.path, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestFromHeaders(t *testing.T) {
	basic := func(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }
	tests := []struct {
		name   string
		path   string
		hdr    map[string]string
		want   Target
		wantOK bool
	}{
		{"header", "/api/items", map[string]string{"dapr-app-id": "orders"}, Target{"orders", "api/items"}, true},
		{"header root", "/", map[string]string{"dapr-app-id": "orders"}, Target{"orders", ""}, true},
		{"basic", "/x", map[string]string{"Authorization": basic("dapr-app-id:orders")}, Target{"orders", "x"}, true},
		{"basic case", "/x", map[string]string{"Authorization": basic("DAPR-APP-ID:orders")}, Target{"orders", "x"}, true},
		{"basic other user", "/x", map[string]string{"Authorization": basic("alice:secret")}, Target{}, false},
		{"basic empty id", "/x", map[string]string{"Authorization": basic("dapr-app-id:")}, Target{}, false},
		{"basic garbage", "/x", map[string]string{"Authorization": "Basic !!!"}, Target{}, false},
		{"none", "/x", nil, Target{}, false},
	}
	for _, tt := range tests {
		h := http.Header{}
		for k, v := range tt.hdr {
			h.Set(k, v)
		}
		got, ok := FromHeaders(tt.path, h)
		if ok != tt.wantOK || got != tt.want {
			t.Errorf("%s: FromHeaders = %+v, %v; want %+v, %v", tt.name, got, ok, tt.want, tt.wantOK)
		}
		if h.Get(AppIDHeader) != "" {
			t.Errorf("%s: dapr-app-id header not removed", tt.name)
		}
	}
}

func TestSplitAppID(t *testing.T) {
	tests := []struct {
		id, name, ns string
		wantErr      bool
	}{
		{"orders", "orders", "default", false},
		{"orders.prod", "orders", "prod", false},
		{"orders.", "", "", true},
		{".prod", "", "", true},
		{"a.b.c", "", "", true},
		{"", "", "", true},
	}
	for _, tt := range tests {
		name, ns, err := SplitAppID(tt.id, "default")
		if (err != nil) != tt.wantErr || name != tt.name || ns != tt.ns {
			t.Errorf("SplitAppID(%q) = %q, %q, %v; want %q, %q, err=%v", tt.id, name, ns, err, tt.name, tt.ns, tt.wantErr)
		}
	}
}

func FuzzInvokePath(f *testing.F) {
	for _, s := range []string{"/v1.0/invoke/a/method/b", "/v1.0/invoke/a.b/method/../c/", "/v1.0/invoke/%2F/method/x", "/v1.0/invoke//method/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		tg, ok := InvokePath(p)
		if !ok {
			return
		}
		if tg.AppID == "" || strings.Contains(tg.AppID, "/") {
			t.Fatalf("InvokePath(%q) gave app id %q", p, tg.AppID)
		}
		if strings.HasPrefix(tg.Method, "/") || strings.Contains("/"+tg.Method+"/", "/../") {
			t.Fatalf("InvokePath(%q) gave uncleaned method %q", p, tg.Method)
		}
		_, _, _ = SplitAppID(tg.AppID, "default")
	})
}

func FuzzFromHeaders(f *testing.F) {
	f.Add("/x", "orders", "Basic ZGFwci1hcHAtaWQ6b3JkZXJz")
	f.Add("/../..", "", "basic ")
	f.Fuzz(func(t *testing.T, p, id, auth string) {
		h := http.Header{}
		if id != "" {
			h.Set(AppIDHeader, id)
		}
		h.Set("Authorization", auth)
		tg, ok := FromHeaders(p, h)
		if ok && (strings.HasPrefix(tg.Method, "/") || strings.Contains("/"+tg.Method+"/", "/../")) {
			t.Fatalf("FromHeaders(%q) gave uncleaned method %q", p, tg.Method)
		}
	})
}
