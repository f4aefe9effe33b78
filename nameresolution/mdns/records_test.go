package mdns

// Unit tests of the pure parts: nothing here opens a socket, so these run on
// the machine itself.

import (
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	hmdns "github.com/hashicorp/mdns"
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

func TestParseEntry(t *testing.T) {
	r := &Resolver{suffix: "._outrigger._tcp.local."}
	name := "orders-0123456789ab._outrigger._tcp.local."
	tests := []struct {
		name     string
		entry    hmdns.ServiceEntry
		wantKey  key
		wantAddr string // empty: not an Outrigger instance
	}{
		{
			name:     "ipv4",
			entry:    hmdns.ServiceEntry{Name: name, AddrV4: net.IPv4(10, 0, 0, 1), Port: 50002, InfoFields: []string{"txtvers=1", "appid=orders", "namespace=shop"}},
			wantKey:  key{"orders", "shop"},
			wantAddr: "10.0.0.1:50002",
		},
		{
			name:     "ipv4 preferred, default namespace, upper-case name",
			entry:    hmdns.ServiceEntry{Name: strings.ToUpper(name), AddrV4: net.IPv4(10, 0, 0, 1), AddrV6IPAddr: &net.IPAddr{IP: net.ParseIP("fd00::1")}, Port: 1, InfoFields: []string{"appid=orders"}},
			wantKey:  key{"orders", "default"},
			wantAddr: "10.0.0.1:1",
		},
		{
			name:     "link-local ipv6 keeps its zone",
			entry:    hmdns.ServiceEntry{Name: name, AddrV6IPAddr: &net.IPAddr{IP: net.ParseIP("fe80::1"), Zone: "eth0"}, Port: 80, InfoFields: []string{"appid=a=b"}},
			wantKey:  key{"a=b", "default"},
			wantAddr: "[fe80::1%eth0]:80",
		},
		{name: "other service", entry: hmdns.ServiceEntry{Name: "x._http._tcp.local.", AddrV4: net.IPv4(10, 0, 0, 1), Port: 80, InfoFields: []string{"appid=a"}}},
		{name: "no app-id", entry: hmdns.ServiceEntry{Name: name, AddrV4: net.IPv4(10, 0, 0, 1), Port: 80, InfoFields: []string{"namespace=a"}}},
		{name: "empty app-id", entry: hmdns.ServiceEntry{Name: name, AddrV4: net.IPv4(10, 0, 0, 1), Port: 80, InfoFields: []string{"appid="}}},
		{name: "no address", entry: hmdns.ServiceEntry{Name: name, Port: 80, InfoFields: []string{"appid=a"}}},
		{name: "no port", entry: hmdns.ServiceEntry{Name: name, AddrV4: net.IPv4(10, 0, 0, 1), InfoFields: []string{"appid=a"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, addr, ok := r.parseEntry(&tt.entry)
			if ok != (tt.wantAddr != "") || k != tt.wantKey || addr != tt.wantAddr {
				t.Errorf("parseEntry() = %+v, %q, %v; want %+v, %q, %v", k, addr, ok, tt.wantKey, tt.wantAddr, tt.wantAddr != "")
			}
		})
	}
	if _, _, ok := r.parseEntry(nil); ok {
		t.Error("parseEntry(nil) ok; want not")
	}
}

func TestInterfaceAddresses(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skipf("no loopback interface named lo: %v", err)
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
	if c.refresh != DefaultRefreshInterval || c.ttl != DefaultTTLFactor*DefaultRefreshInterval || c.resolveTimeout != DefaultResolveTimeout || c.logger == nil {
		t.Errorf("newConfig(nil) = %+v; want the documented defaults", c)
	}
	c = newConfig([]Option{WithRefreshInterval(time.Second)})
	if c.ttl != DefaultTTLFactor*time.Second {
		t.Errorf("TTL with a 1s refresh = %v; want %v", c.ttl, DefaultTTLFactor*time.Second)
	}
}
