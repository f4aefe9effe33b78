package consul_test

import (
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/outrigger/outrigger/nameresolution/consul"
)

// A Dapr Configuration's nameResolution section as Dapr's documentation
// writes it, with the keys spelled as users spell them.
const daprConfiguration = `
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: appconfig
spec:
  nameResolution:
    component: "consul"
    configuration:
      client:
        address: "127.0.0.1:8500"
        Scheme: http
        waitTime: 45s
        tlsConfig:
          insecureSkipVerify: "true"
      selfRegister: true
      checks:
        - name: "Dapr Health Status"
          checkID: "daprHealth:orders"
          interval: "15s"
          http: "http://127.0.0.1:3500/v1.0/healthz"
        - name: "Service Health Status"
          CheckID: "serviceHealth:orders"
          interval: "15s"
          http: "http://127.0.0.1:3000/health"
          header: {X-Probe: [consul]}
      tags:
        - "dapr"
        - "v1"
      meta:
        DAPR_METRICS_PORT: 9090
      daprPortMetaKey: "DAPR_PORT"
      queryOptions:
        useCache: true
        filter: "Checks.ServiceTags contains dapr"
        maxAge: 1m
      futureKey: 1
`

func TestParseMetadataDaprConfiguration(t *testing.T) {
	var doc struct {
		Spec struct {
			NameResolution struct {
				Component     string         `yaml:"component"`
				Configuration map[string]any `yaml:"configuration"`
			} `yaml:"nameResolution"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal([]byte(daprConfiguration), &doc); err != nil {
		t.Fatal(err)
	}
	md, unknown, err := consul.ParseMetadata(doc.Spec.NameResolution.Configuration)
	if err != nil {
		t.Fatalf("ParseMetadata: %v", err)
	}
	if want := []string{"futureKey"}; !slices.Equal(unknown, want) {
		t.Errorf("unknown keys %v; want %v", unknown, want)
	}
	checks := []struct {
		what      string
		got, want any
	}{
		{"client.address", md.Client.Address, "127.0.0.1:8500"},
		{"client.scheme", md.Client.Scheme, "http"},
		{"client.waitTime", md.Client.WaitTime, 45 * time.Second},
		{"client.tlsConfig.insecureSkipVerify", md.Client.TLSConfig.InsecureSkipVerify, true},
		{"selfRegister", md.SelfRegister, true},
		{"len(checks)", len(md.Checks), 2},
		{"checks[1].checkID", md.Checks[1].CheckID, "serviceHealth:orders"},
		{"checks[1].header", fmt.Sprint(md.Checks[1].Header), "map[X-Probe:[consul]]"},
		{"tags", fmt.Sprint(md.Tags), "[dapr v1]"},
		{"meta", fmt.Sprint(md.Meta), "map[DAPR_METRICS_PORT:9090]"},
		{"daprPortMetaKey", md.DaprPortMetaKey, "DAPR_PORT"},
		{"queryOptions.useCache", md.QueryOptions.UseCache, true},
		{"queryOptions.filter", md.QueryOptions.Filter, "Checks.ServiceTags contains dapr"},
		{"queryOptions.maxAge", md.QueryOptions.MaxAge, time.Minute},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v; want %v", c.what, c.got, c.want)
		}
	}
}

func TestParseMetadataDefaults(t *testing.T) {
	for _, raw := range []map[string]any{nil, {}} {
		md, unknown, err := consul.ParseMetadata(raw)
		if err != nil || len(unknown) != 0 {
			t.Fatalf("ParseMetadata(%v) = %v, %v", raw, unknown, err)
		}
		if md.DaprPortMetaKey != "DAPR_PORT" || md.QueryOptions == nil || !md.QueryOptions.UseCache || md.SelfRegister {
			t.Errorf("defaults: daprPortMetaKey %q, queryOptions %+v, selfRegister %v; want DAPR_PORT, {useCache: true}, false",
				md.DaprPortMetaKey, md.QueryOptions, md.SelfRegister)
		}
	}
	// Given queryOptions are taken as they are, as in Dapr.
	md, _, err := consul.ParseMetadata(map[string]any{"queryOptions": map[string]any{"allowStale": true}})
	if err != nil || md.QueryOptions.UseCache || !md.QueryOptions.AllowStale {
		t.Errorf("queryOptions {allowStale: true} = %+v, %v; want allowStale without useCache", md.QueryOptions, err)
	}
	// A bare number is nanoseconds, as Dapr's JSON decoding reads a duration.
	md, _, err = consul.ParseMetadata(map[string]any{"client": map[string]any{"waitTime": 5000000000}})
	if err != nil || md.Client.WaitTime != 5*time.Second {
		t.Errorf("client.waitTime 5000000000 = %v, %v; want 5s", md.Client.WaitTime, err)
	}
}

func TestParseMetadataUnknownKeys(t *testing.T) {
	_, unknown, err := consul.ParseMetadata(map[string]any{
		"client":               map[string]any{"address": "a:1", "colour": "red"},
		"checks":               []any{map[string]any{"tcp": "a:1", "interval": "1s", "odd": 1}},
		"advancedRegistration": map[string]any{"proxy": map[string]any{}, "taggedAddresses": map[string]any{"lan": map[string]any{"address": "a", "zone": 1}}},
		"extra":                true,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"advancedRegistration.proxy", "advancedRegistration.taggedAddresses.lan.zone", "checks[0].odd", "client.colour", "extra"}
	if !slices.Equal(unknown, want) {
		t.Errorf("unknown %v; want %v", unknown, want)
	}
}

func TestParseMetadataErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  map[string]any
		want string // substring of the error, naming the field
	}{
		{"ClientNotObject", map[string]any{"client": "127.0.0.1:8500"}, "client: want an object"},
		{"BadScheme", map[string]any{"client": map[string]any{"scheme": "ftp"}}, "client.scheme"},
		{"BadAddressScheme", map[string]any{"client": map[string]any{"address": "tcp://x:1"}}, "client.address"},
		{"BadWaitTime", map[string]any{"client": map[string]any{"waitTime": "soon"}}, "client.waitTime"},
		{"WaitTimeTooLong", map[string]any{"queryOptions": map[string]any{"waitTime": "11m"}}, "queryOptions.waitTime"},
		{"StaleAndConsistent", map[string]any{"queryOptions": map[string]any{"allowStale": true, "requireConsistent": true}}, "queryOptions: allowStale"},
		{"BadBool", map[string]any{"selfRegister": "perhaps"}, "selfRegister"},
		{"TagsNotList", map[string]any{"tags": "dapr"}, "tags: want a list"},
		{"EmptyTag", map[string]any{"tags": []any{"a", ""}}, "tags[1]"},
		{"BadMetaKey", map[string]any{"meta": map[string]any{"has space": "x"}}, "meta.has space"},
		{"ReservedMetaKey", map[string]any{"meta": map[string]any{"consul-x": "x"}}, "meta.consul-x"},
		{"CheckWithoutKind", map[string]any{"checks": []any{map[string]any{"name": "x"}}}, "checks[0]: says nothing to check"},
		{"CheckTwoKinds", map[string]any{"checks": []any{map[string]any{"tcp": "a:1", "http": "http://a", "interval": "1s"}}}, "checks[0]: several kinds"},
		{"CheckNoInterval", map[string]any{"checks": []any{map[string]any{"http": "http://a/"}}}, "checks[0].interval: required"},
		{"CheckBadInterval", map[string]any{"checks": []any{map[string]any{"tcp": "a:1", "interval": "15"}}}, "checks[0].interval"},
		{"CheckBadURL", map[string]any{"checks": []any{map[string]any{"http": "a/health", "interval": "1s"}}}, "checks[0].http"},
		{"CheckBadStatus", map[string]any{"checks": []any{map[string]any{"ttl": "5s", "status": "fine"}}}, "checks[0].status"},
		{"PortKeyIsNamespaceKey", map[string]any{"daprPortMetaKey": consul.MetaNamespace}, "daprPortMetaKey"},
		{"AdvancedPort", map[string]any{"advancedRegistration": map[string]any{"port": 70000}}, "advancedRegistration.port"},
		{"AdvancedPortNotNumber", map[string]any{"advancedRegistration": map[string]any{"port": "http"}}, "advancedRegistration.port"},
		{"AdvancedCheck", map[string]any{"advancedRegistration": map[string]any{"check": map[string]any{"ttl": "x"}}}, "advancedRegistration.check.ttl"},
		{"AdvancedKind", map[string]any{"advancedRegistration": map[string]any{"kind": "connect-proxy"}}, "advancedRegistration.kind"},
		{"RelayFactorRange", map[string]any{"queryOptions": map[string]any{"relayFactor": 300}}, "queryOptions.relayFactor"},
		{"FractionalPort", map[string]any{"advancedRegistration": map[string]any{"port": 80.5}}, "advancedRegistration.port"},
		{"CaseDuplicates", map[string]any{"selfRegister": true, "SelfRegister": false}, "are one key"},
		{"HTTPAuthWithoutUser", map[string]any{"client": map[string]any{"httpAuth": map[string]any{"password": "p"}}}, "client.httpAuth.username"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := consul.ParseMetadata(tc.raw)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseMetadata(%v) error = %v; want one containing %q", tc.raw, err, tc.want)
			}
		})
	}
}

// FuzzParseMetadata checks that no configuration makes ParseMetadata panic,
// and that what it accepts validates.
func FuzzParseMetadata(f *testing.F) {
	f.Add([]byte(daprConfiguration))
	f.Add([]byte("client: {address: 1}\nchecks: [{}]\n"))
	f.Add([]byte("advancedRegistration: {taggedAddresses: {a: [1]}}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var raw map[string]any
		if yaml.Unmarshal(data, &raw) != nil {
			return
		}
		md, _, err := consul.ParseMetadata(raw)
		if err == nil {
			if verr := md.Validate(); verr != nil {
				t.Fatalf("ParseMetadata accepted what Validate refuses: %v", verr)
			}
		}
	})
}

// yamlEntry is one field of metadata.yaml.
type yamlEntry struct {
	Name        string `yaml:"name"`
	Type        string `yaml:"type"`
	Description string `yaml:"description"`
}

// TestMetadataYAML checks that metadata.yaml lists every field of Metadata,
// nested ones as dotted paths, in declaration order, with its type and a
// description.
func TestMetadataYAML(t *testing.T) {
	data, err := os.ReadFile("metadata.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Type     string      `yaml:"type"`
		Name     string      `yaml:"name"`
		Version  string      `yaml:"version"`
		Metadata []yamlEntry `yaml:"metadata"`
	}
	if err := yaml.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	if f.Type != "nameresolution" || f.Name != "consul" || f.Version != "v1" {
		t.Errorf("metadata.yaml names %s.%s %s; want nameresolution.consul v1", f.Type, f.Name, f.Version)
	}
	want := fieldsOf(reflect.TypeFor[consul.Metadata](), "", map[reflect.Type]bool{})
	var got []yamlEntry
	for _, e := range f.Metadata {
		got = append(got, yamlEntry{Name: e.Name, Type: e.Type})
		if strings.TrimSpace(e.Description) == "" {
			t.Errorf("metadata.yaml: %s has no description", e.Name)
		}
	}
	for i := range max(len(got), len(want)) {
		var g, w yamlEntry
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			t.Errorf("metadata.yaml entry %d is %q (%s); the struct has %q (%s)", i, g.Name, g.Type, w.Name, w.Type)
		}
	}
}

// fieldsOf lists the configuration fields of t as metadata.yaml names them;
// a struct type is expanded where it first appears only.
func fieldsOf(t reflect.Type, prefix string, expanded map[reflect.Type]bool) []yamlEntry {
	var out []yamlEntry
	for i := range t.NumField() {
		sf := t.Field(i)
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		path := prefix + name
		ft := sf.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		typ, sub, subPrefix := kindName(ft), reflect.Type(nil), ""
		switch {
		case ft.Kind() == reflect.Struct && ft != reflect.TypeFor[time.Duration]():
			sub, subPrefix = ft, path+"."
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			sub, subPrefix = ft.Elem(), path+"[]."
		case ft.Kind() == reflect.Map && ft.Elem().Kind() == reflect.Struct:
			sub, subPrefix = ft.Elem(), path+".*."
		}
		out = append(out, yamlEntry{Name: path, Type: typ})
		if sub != nil && !expanded[sub] {
			expanded[sub] = true
			out = append(out, fieldsOf(sub, subPrefix, expanded)...)
		}
	}
	return out
}

func kindName(t reflect.Type) string {
	if t == reflect.TypeFor[time.Duration]() {
		return "duration"
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "bool"
	case reflect.Int, reflect.Int64, reflect.Uint8, reflect.Uint64:
		return "number"
	case reflect.Struct:
		return "object"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Struct {
			return "list of objects"
		}
		return "list of " + kindName(t.Elem()) + "s"
	case reflect.Map:
		switch t.Elem().Kind() {
		case reflect.Struct:
			return "map of objects"
		case reflect.Slice:
			return "map of lists of " + kindName(t.Elem().Elem()) + "s"
		}
		return "map of " + kindName(t.Elem()) + "s"
	}
	return t.String()
}
