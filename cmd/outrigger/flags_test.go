package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseQuantity(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"4Mi", 4 << 20, false},
		{"128Mi", 128 << 20, false},
		{"1.5Gi", 3 << 29, false},
		{"512Ki", 512 << 10, false},
		{"2k", 2000, false},
		{"1M", 1000000, false},
		{"1024", 1024, false},
		{"0", 0, false},
		{" 8Mi ", 8 << 20, false},
		{"", 0, true},
		{"Mi", 0, true},
		{"-1Mi", 0, true},
		{"4 Mi", 0, true},
		{"4MiB", 0, true},
		{"0x10", 0, true},
		{"1e3", 0, true},
		{"NaN", 0, true},
		{"99999999Ti", 0, true},
	}
	for _, tt := range tests {
		got, err := parseQuantity(tt.in)
		if (err != nil) != tt.wantErr || (!tt.wantErr && got != tt.want) {
			t.Errorf("parseQuantity(%q) = %d, %v; want %d, err=%v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func FuzzParseQuantity(f *testing.F) {
	for _, s := range []string{"4Mi", "1.5Gi", "12", "-3", "1e9", "Ki"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseQuantity(s)
		if err == nil && n < 0 {
			t.Fatalf("parseQuantity(%q) = %d, negative without error", s, n)
		}
	})
}

func TestSidecarFlags(t *testing.T) {
	f, _, err := parseSidecarFlags("t", []string{
		"--app-id", "orders", "--app-port", "8080", "--app-protocol", "grpc", "--dapr-http-port", "3600",
		"--max-body-size", "16Mi", "--app-max-concurrency", "4", "--enable-app-health-check",
		"--app-health-probe-interval", "2", "--app-health-probe-timeout", "300", "--app-health-threshold", "5",
		"--resources-path", "a", "--resources-path", "b", "--log-level", "debug",
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg, _, err := f.config()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.AppID != "orders" || cfg.AppPort != 8080 || cfg.AppProtocol != "grpc" || cfg.HTTPPort != 3600 ||
		cfg.MaxBodySize != 16<<20 || cfg.AppMaxConcurrency != 4 || !cfg.AppHealth.Enabled ||
		cfg.AppHealth.Interval != 2*time.Second || cfg.AppHealth.Timeout != 300*time.Millisecond ||
		cfg.AppHealth.Threshold != 5 || strings.Join(cfg.ResourcesPaths, ",") != "a,b" {
		t.Errorf("config = %+v", cfg)
	}

	// The older spelling of the body limit, in MB.
	f, _, _ = parseSidecarFlags("t", []string{"--app-id", "a", "--dapr-http-max-request-size", "8"})
	if cfg, _, err := f.config(); err != nil || cfg.MaxBodySize != 8<<20 {
		t.Errorf("--dapr-http-max-request-size 8: %d %v", cfg.MaxBodySize, err)
	}
	f, _, _ = parseSidecarFlags("t", []string{"--app-id", "a"})
	if cfg, _, err := f.config(); err != nil || cfg.MaxBodySize != 4<<20 {
		t.Errorf("default body size: %d %v", cfg.MaxBodySize, err)
	}
}

// TestConcurrency: --concurrency wins, then the GOMAXPROCS environment
// variable (left to the runtime), then one thread.
func TestConcurrency(t *testing.T) {
	tests := []struct {
		args []string
		env  string
		want int
	}{
		{nil, "", 1},
		{nil, "4", 0},
		{[]string{"--concurrency", "3"}, "", 3},
		{[]string{"--concurrency", "3"}, "4", 3},
		{[]string{"--concurrency", "0"}, "", 0},
	}
	for _, tt := range tests {
		f, _, err := parseSidecarFlags("t", append([]string{"--app-id", "a"}, tt.args...))
		if err != nil {
			t.Fatal(err)
		}
		if got := f.concurrency.procs(tt.env); got != tt.want {
			t.Errorf("%v with GOMAXPROCS=%q: procs %d, want %d", tt.args, tt.env, got, tt.want)
		}
	}
}

func TestSidecarFlagErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--app-id", "a", "--app-protocol", "foo"}, "--app-protocol"},
		{[]string{"--app-id", "a", "--dapr-http-port", "x"}, "dapr-http-port"},
		{[]string{"--app-id", "a", "--bogus"}, "bogus"},
		{[]string{"--app-id", "a", "--max-body-size", "lots"}, "max-body-size"},
		{[]string{"--app-id", "a", "--app-port", "70000"}, "--app-port"},
		{[]string{"--app-id", "a", "--log-level", "loud"}, "--log-level"},
		{[]string{"--app-id", "a", "--app-max-concurrency", "0"}, "--app-max-concurrency"},
		{[]string{"--app-id", "a", "--app-health-probe-interval", "0"}, "--app-health-probe-interval"},
		{[]string{"--app-id", "a", "--name-resolution", "dns"}, "--name-resolution"},
		{[]string{"--app-id", "a", "--name-resolution", "static"}, "--static-resolution-file"},
		{[]string{"--app-port", "80"}, "--app-id"},
		{[]string{"--app-id", "a", "--concurrency", "-1"}, "concurrency"},
		{[]string{"--app-id", "a", "--concurrency", "two"}, "concurrency"},
	}
	for _, tt := range tests {
		f, _, err := parseSidecarFlags("t", tt.args)
		if err == nil {
			_, _, err = f.config()
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: err = %v, want one naming %q", tt.args, err, tt.want)
		}
	}
}
