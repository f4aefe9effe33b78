package static

import (
	"net"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/outrigger/outrigger/nameresolution"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    File
		wantErr string // substring of the error; empty means no error
	}{
		{
			name: "full",
			in: `apps:
  - appID: orders
    namespace: shop
    addresses: ["127.0.0.1:50002", "127.0.0.1:50012"]
  - appID: orders
    addresses:
      - "[::1]:50002"
      - orders.internal:443
`,
			want: File{Apps: []App{
				{AppID: "orders", Namespace: "shop", Addresses: []string{"127.0.0.1:50002", "127.0.0.1:50012"}},
				{AppID: "orders", Namespace: "default", Addresses: []string{"[::1]:50002", "orders.internal:443"}},
			}},
		},
		{name: "empty list", in: "apps: []\n", want: File{Apps: []App{}}},
		{name: "comments and document marker", in: "# apps\n---\napps: [] # none yet\n", want: File{Apps: []App{}}},
		{
			name: "addresses normalised",
			in:   `apps: [{appID: a, addresses: ["[10.0.0.1]:0080", "[0:0::1]:1", "Host.Example.:65535"]}]`,
			want: File{Apps: []App{{AppID: "a", Namespace: "default", Addresses: []string{"10.0.0.1:80", "[::1]:1", "Host.Example.:65535"}}}},
		},
		{
			name: "ipv6 zone",
			in:   `apps: [{appID: a, addresses: ["[fe80::1%eth0]:80"]}]`,
			want: File{Apps: []App{{AppID: "a", Namespace: "default", Addresses: []string{"[fe80::1%eth0]:80"}}}},
		},
		{name: "empty file", in: "", wantErr: "file is empty"},
		{name: "blank file", in: " \n\t\n", wantErr: "file is empty"},
		{name: "only comments", in: "# nothing\n", wantErr: "no YAML document"},
		{name: "missing apps", in: "{}\n", wantErr: `missing "apps"`},
		{name: "null apps", in: "apps:\n", wantErr: `missing "apps"`},
		{name: "two documents", in: "apps: []\n---\napps: []\n", wantErr: "more than one YAML document"},
		{name: "unknown top-level field", in: "apps: []\nextra: 1\n", wantErr: "field extra not found"},
		{
			name:    "unknown app field",
			in:      "apps:\n  - appID: a\n    adresses: [\"1.2.3.4:5\"]\n",
			wantErr: "line 3: field adresses not found",
		},
		{name: "not a mapping", in: "- a\n- b\n", wantErr: "cannot unmarshal"},
		{name: "addresses not a list", in: `apps: [{appID: a, addresses: "1.2.3.4:5"}]`, wantErr: "cannot unmarshal"},
		{name: "bad yaml", in: "apps: [\n", wantErr: "yaml:"},
		{name: "missing appID", in: `apps: [{addresses: ["1.2.3.4:5"]}]`, wantErr: "apps[0]: appID \"\": must not be empty"},
		{name: "appID with space", in: `apps: [{appID: "a b", addresses: ["1.2.3.4:5"]}]`, wantErr: "contains ' '"},
		{name: "appID too long", in: `apps: [{appID: "` + strings.Repeat("a", 254) + `", addresses: ["1.2.3.4:5"]}]`, wantErr: "longer than 253"},
		{name: "namespace with newline", in: `apps: [{appID: a, namespace: "x\ny", addresses: ["1.2.3.4:5"]}]`, wantErr: "namespace"},
		{name: "no addresses", in: `apps: [{appID: a}]`, wantErr: "apps[0] (a): no addresses"},
		{name: "empty addresses", in: `apps: [{appID: a, addresses: []}]`, wantErr: "no addresses"},
		{name: "missing port", in: `apps: [{appID: a, addresses: ["1.2.3.4"]}]`, wantErr: "missing port"},
		{name: "port zero", in: `apps: [{appID: a, addresses: ["1.2.3.4:0"]}]`, wantErr: `port "0"`},
		{name: "port too big", in: `apps: [{appID: a, addresses: ["1.2.3.4:65536"]}]`, wantErr: `port "65536"`},
		{name: "port named", in: `apps: [{appID: a, addresses: ["1.2.3.4:http"]}]`, wantErr: `port "http"`},
		{name: "port signed", in: `apps: [{appID: a, addresses: ["1.2.3.4:+80"]}]`, wantErr: `port "+80"`},
		{name: "empty host", in: `apps: [{appID: a, addresses: [":80"]}]`, wantErr: "missing host"},
		{name: "unspecified host", in: `apps: [{appID: a, addresses: ["0.0.0.0:80"]}]`, wantErr: "unspecified"},
		{name: "ipv6 without brackets", in: `apps: [{appID: a, addresses: ["::1:80"]}]`, wantErr: "too many colons"},
		{name: "bad hostname", in: `apps: [{appID: a, addresses: ["exa mple:80"]}]`, wantErr: "not a valid DNS name"},
		{name: "mistyped ipv4", in: `apps: [{appID: a, addresses: ["256.1.1.1:80"]}]`, wantErr: "not a valid DNS name"},
		{name: "label starts with dash", in: `apps: [{appID: a, addresses: ["-x.example:80"]}]`, wantErr: "not a valid DNS name"},
		{name: "empty label", in: `apps: [{appID: a, addresses: ["x..example:80"]}]`, wantErr: "not a valid DNS name"},
		{name: "label too long", in: `apps: [{appID: a, addresses: ["` + strings.Repeat("x", 64) + `.example:80"]}]`, wantErr: "not a valid DNS name"},
		{name: "duplicate address", in: `apps: [{appID: a, addresses: ["1.2.3.4:5", "1.2.3.4:05"]}]`, wantErr: "addresses[1] \"1.2.3.4:05\" is listed twice"},
		{
			name:    "duplicate app",
			in:      `apps: [{appID: a, addresses: ["1.2.3.4:5"]}, {appID: a, namespace: default, addresses: ["1.2.3.4:6"]}]`,
			wantErr: `apps[1]: app "a" in namespace "default" is already listed at apps[0]`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse() error = %v; want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse() error = %v; want nil", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse() = %+v; want %+v", got, tt.want)
			}
		})
	}
}

// FuzzParse checks that Parse never panics, that whatever it accepts holds
// the promised invariants, and that re-encoding an accepted file parses to
// the same result.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"apps: []\n",
		"apps:\n  - appID: orders\n    namespace: default\n    addresses: [\"127.0.0.1:50002\", \"127.0.0.1:50012\"]\n",
		"apps: [{appID: a, addresses: [\"[fe80::1%eth0]:80\", \"host.example.:1\"]}]",
		"apps: [{appID: a, addresses: [\"1.2.3.4:0\"]}]",
		"apps: &x [*x]",
		"---\napps: []\n---\n",
		"apps: [{appID: a, addresses: [\"[10.0.0.1]:0080\"]}]",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := Parse(data)
		if err != nil {
			return
		}
		type key struct{ appID, ns string }
		seen := map[key]bool{}
		for _, a := range got.Apps {
			if a.AppID == "" || a.Namespace == "" {
				t.Fatalf("accepted app with empty id or namespace: %+v", a)
			}
			if seen[key{a.AppID, a.Namespace}] {
				t.Fatalf("accepted duplicate app %+v", a)
			}
			seen[key{a.AppID, a.Namespace}] = true
			if len(a.Addresses) == 0 {
				t.Fatalf("accepted app without addresses: %+v", a)
			}
			for _, addr := range a.Addresses {
				host, port, err := net.SplitHostPort(addr)
				if err != nil || host == "" || port == "" || port == "0" {
					t.Fatalf("accepted bad address %q", addr)
				}
				if again, err := normaliseAddress(addr); err != nil || again != addr {
					t.Fatalf("normalised address %q is not stable: %q, %v", addr, again, err)
				}
			}
		}
		out, err := yaml.Marshal(got)
		if err != nil {
			t.Fatalf("Marshal(%+v): %v", got, err)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("re-encoded file does not parse: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(again, got) {
			t.Fatalf("round trip changed the file: got %+v; want %+v", again, got)
		}
	})
}

func TestNamespaceDefault(t *testing.T) {
	got, err := Parse([]byte(`apps: [{appID: a, addresses: ["1.2.3.4:5"]}]`))
	if err != nil {
		t.Fatal(err)
	}
	if ns := got.Apps[0].Namespace; ns != nameresolution.DefaultNamespace {
		t.Errorf("namespace = %q; want %q", ns, nameresolution.DefaultNamespace)
	}
}
