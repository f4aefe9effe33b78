package mdns

// Unit tests of the pure parts: nothing here opens a socket, so these run on
// the machine itself.

import (
	"net"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestInstanceName(t *testing.T) {
	label := regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
	tests := []struct {
		appID, wantPrefix string
	}{
		{"orders", "orders-"},
		{"Orders.v2_api", "Orders-v2-api-"},
		{"--x--", "x-"},
		{"...", "app-"},
		{"ünïcode", "n-code-"},
		{strings.Repeat("a", 100), strings.Repeat("a", 40) + "-"},
	}
	for _, tt := range tests {
		got, err := instanceName(tt.appID)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(got, tt.wantPrefix) || len(got) != len(tt.wantPrefix)+12 || !label.MatchString(got) {
			t.Errorf("instanceName(%q) = %q; want a DNS label %q + 12 hex digits", tt.appID, got, tt.wantPrefix)
		}
		again, _ := instanceName(tt.appID)
		if again == got {
			t.Errorf("instanceName(%q) returned %q twice; want a name per instance", tt.appID, got)
		}
	}
}

func TestValidInstance(t *testing.T) {
	tests := []struct {
		name, appID, ns string
		port            int
		wantErr         string
	}{
		{"ok", "orders", "default", 50002, ""},
		{"longest app-id", strings.Repeat("a", 249), "default", 1, ""},
		{"empty app-id", "", "default", 1, "empty app-id"},
		{"app-id too long", strings.Repeat("a", 250), "default", 1, "app-id longer than 249"},
		{"namespace too long", "a", strings.Repeat("n", 246), 1, "namespace longer than 245"},
		{"port zero", "a", "default", 0, "port 0"},
		{"port too big", "a", "default", 65536, "port 65536"},
		{"unicode app-id", "ünïcode", "défaut", 1, ""},
		{"control character", "a\x00b", "default", 1, "control character"},
		{"backslash in namespace", "a", `n\s`, 1, "backslash"},
		{"not UTF-8", "a\xffb", "default", 1, "not UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := validInstance(tt.appID, tt.ns, tt.port)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("validInstance() = %v; want %q", err, tt.wantErr)
			}
		})
	}
}

func TestInterfaceAddresses(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatalf("no loopback interface named lo: %v", err)
	}
	got, err := interfaceAddresses([]net.Interface{*lo})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 || !got[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("interfaceAddresses(lo) = %v; want 127.0.0.1 first", got)
	}
	if len(got) > 2 {
		t.Errorf("interfaceAddresses(lo) = %v; want at most one address per family", got)
	}
}

func TestValidateResolver(t *testing.T) {
	tests := []struct {
		name    string
		opts    []Option
		wantErr string
	}{
		{"defaults", nil, ""},
		{"shortest ttl", []Option{WithRefreshInterval(time.Second), WithTTL(2 * time.Second)}, ""},
		{"zero refresh", []Option{WithRefreshInterval(0)}, "refresh interval 0s is not positive"},
		{"negative timeout", []Option{WithResolveTimeout(-time.Second)}, "resolve timeout -1s is not positive"},
		{"short ttl", []Option{WithRefreshInterval(time.Second), WithTTL(1500 * time.Millisecond)}, "TTL 1.5s is shorter than two refresh intervals (2s)"},
		{"limits", []Option{WithLimits(1, 1)}, ""},
		{"zero per app", []Option{WithLimits(0, 10)}, "limit of 0 instances per app"},
		{"total below per app", []Option{WithLimits(10, 5)}, "limit of 5 instances in all is below the limit per app (10)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := newConfig(tt.opts).validateResolver()
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("validateResolver() = %v; want %q", err, tt.wantErr)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	c := newConfig(nil)
	if c.refresh != DefaultRefreshInterval || c.ttl != DefaultTTLFactor*DefaultRefreshInterval || c.resolveTimeout != DefaultResolveTimeout || c.logger == nil ||
		c.maxPerApp != DefaultMaxInstancesPerApp || c.maxTotal != DefaultMaxInstances || c.preferIPv6 {
		t.Errorf("newConfig(nil) = %+v; want the documented defaults", c)
	}
	c = newConfig([]Option{WithRefreshInterval(time.Second)})
	if c.ttl != DefaultTTLFactor*time.Second {
		t.Errorf("TTL with a 1s refresh = %v; want %v", c.ttl, DefaultTTLFactor*time.Second)
	}
}
