package proxy

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

func TestVirtualHosts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hosts")
	text := "127.0.0.1 localhost\n127.77.0.2 Orders orders.default # the orders app\n# 127.77.0.3 commented\n10.0.0.1 elsewhere\n127.77.1.4 cart\nnot-an-address x\n"
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	v := &virtualHosts{path: path}
	for addr, want := range map[string]string{"127.77.0.2": "orders", "127.77.1.4": "cart", "127.77.0.3": "", "10.0.0.1": "", "127.0.0.1": ""} {
		if got := v.lookup(netip.MustParseAddr(addr)); got != want {
			t.Errorf("%s: %q, want %q", addr, got, want)
		}
	}
	if a, err := VirtualAddress(0); err != nil || a != netip.MustParseAddr("127.77.0.2") {
		t.Errorf("VirtualAddress(0) = %v %v", a, err)
	}
	if a, err := VirtualAddress(300); err != nil || a != netip.MustParseAddr("127.77.1.46") {
		t.Errorf("VirtualAddress(300) = %v %v", a, err)
	}
	if _, err := VirtualAddress(0xffff); err == nil {
		t.Error("VirtualAddress past the range: no error")
	}
	var none *virtualHosts
	if none.lookup(netip.MustParseAddr("127.77.0.2")) != "" {
		t.Error("a nil table names an app")
	}
}

// FuzzVirtualHosts: any hosts file reads without a panic, and names only
// addresses of the virtual range.
func FuzzVirtualHosts(f *testing.F) {
	f.Add([]byte("127.77.0.2 orders\n"))
	f.Add([]byte("127.77.0.2\n::1 x\n127.77.255.255 a b c # d\n\x00\xff"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "hosts")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		m, err := readVirtualHosts(path)
		if err != nil {
			return // a line longer than the scanner takes
		}
		for a, name := range m {
			if !VirtualPrefix.Contains(a) || name == "" {
				t.Fatalf("%v -> %q", a, name)
			}
		}
	})
}
