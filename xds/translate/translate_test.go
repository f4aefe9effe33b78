package translate

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	xdstypev3 "github.com/cncf/xds/go/xds/type/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/nameresolution"
)

var update = flag.Bool("update", false, "rewrite the golden files")

const anchors = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

// normalised renders a snapshot as stable JSON: per type URL, resources
// sorted by name, each through protojson then re-indented (protojson
// varies its spacing on purpose).
func normalised(t *testing.T, snap *cachev3.Snapshot) []byte {
	t.Helper()
	out := map[string][]any{}
	for _, typ := range []string{resourcev3.ExtensionConfigType, resourcev3.SecretType, resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType} {
		rs := snap.GetResources(typ)
		names := make([]string, 0, len(rs))
		for n := range rs {
			names = append(names, n)
		}
		sort.Strings(names)
		list := []any{}
		for _, n := range names {
			b, err := protojson.Marshal(rs[n].(types.Resource))
			if err != nil {
				t.Fatal(err)
			}
			var v any
			if err := json.Unmarshal(b, &v); err != nil {
				t.Fatal(err)
			}
			list = append(list, v)
		}
		out[typ] = list
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

func TestGolden(t *testing.T) {
	res, err := config.LoadResources([]string{"testdata/basic"})
	if err != nil {
		t.Fatal(err)
	}
	in := Input{
		Resources:       res,
		TrustAnchorsPEM: []byte(anchors),
		Endpoints: []nameresolution.Instance{
			{AppID: "orders", Host: "10.0.0.2", Port: 50002},
			{AppID: "orders", Host: "10.0.0.1", Port: 50002},
			{AppID: "payments", Namespace: "prod", Host: "10.0.0.3", Port: 50002},
		},
	}
	for _, node := range []Node{{AppID: "orders"}, {AppID: "payments"}, {AppID: "payments", Namespace: "prod"}} {
		name := node.AppID + "." + nameresolution.NamespaceOrDefault(node.Namespace)
		t.Run(name, func(t *testing.T) {
			snap, err := Snapshot(in, node, "1")
			if err != nil {
				t.Fatal(err)
			}
			got := normalised(t, snap)
			path := filepath.Join("testdata", "basic", name+".golden.json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./xds/translate -update to write it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("snapshot for %s differs from %s (run with -update after checking the change):\n%s", name, path, got)
			}
		})
	}
}

func TestScopesAndSecrets(t *testing.T) {
	res, err := config.LoadResources([]string{"testdata/basic"})
	if err != nil {
		t.Fatal(err)
	}
	has := func(node Node, name string) bool {
		snap, err := Snapshot(Input{Resources: res}, node, "1")
		if err != nil {
			t.Fatal(err)
		}
		_, ok := snap.GetResources(resourcev3.ExtensionConfigType)[name]
		return ok
	}
	if !has(Node{AppID: "orders"}, "component/statestore") || has(Node{AppID: "payments"}, "component/statestore") {
		t.Error("component scopes not applied")
	}
	if has(Node{AppID: "orders"}, "component/prod-only") || !has(Node{AppID: "orders", Namespace: "prod"}, "component/prod-only") {
		t.Error("component namespaces not applied")
	}
	if !has(Node{AppID: "payments"}, "resiliency/retries") || has(Node{AppID: "orders"}, "resiliency/retries") {
		t.Error("resiliency scopes not applied")
	}
	snap, _ := Snapshot(Input{Resources: res}, Node{AppID: "orders"}, "1")
	b, _ := protojson.Marshal(snap.GetResources(resourcev3.ExtensionConfigType)["component/statestore"].(types.Resource))
	if !strings.Contains(string(b), `"secretKeyRef"`) || !strings.Contains(string(b), `"envRef"`) {
		t.Errorf("references must travel as references: %s", b)
	}
}

func TestExtensionConfigsRoundTrip(t *testing.T) {
	res, err := config.LoadResources([]string{"testdata/basic"})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := Snapshot(Input{Resources: res}, Node{AppID: "orders"}, "1")
	if err != nil {
		t.Fatal(err)
	}
	var ecs []*corev3.TypedExtensionConfig
	for _, r := range snap.GetResources(resourcev3.ExtensionConfigType) {
		ecs = append(ecs, r.(*corev3.TypedExtensionConfig))
	}
	back, err := FromExtensionConfigs(ecs)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Components) != 2 || len(back.Configurations) != 1 || len(back.Subscriptions) != 1 || len(back.Resiliencies) != 0 {
		t.Fatalf("got %d components, %d configurations, %d subscriptions, %d resiliencies", len(back.Components), len(back.Configurations), len(back.Subscriptions), len(back.Resiliencies))
	}
	want := map[string]config.Component{}
	for _, c := range res.Components {
		want[c.Name] = c
	}
	for _, c := range back.Components {
		w := want[c.Name]
		w.Source = config.Source{File: w.Source.String()}
		for i := range w.Metadata {
			w.Metadata[i].Line = 0
		}
		if !reflect.DeepEqual(c.Metadata, w.Metadata) || c.Type != w.Type || c.InitTimeout != w.InitTimeout || c.SecretStore != w.SecretStore || c.Source != w.Source {
			t.Errorf("component %s came back as\n%+v\nwant\n%+v", c.Name, c, w)
		}
	}
	bad := &corev3.TypedExtensionConfig{Name: "component/x", TypedConfig: mustAny(t, &xdstypev3.TypedStruct{TypeUrl: "type.example/Nope"})}
	if _, err := FromExtensionConfigs([]*corev3.TypedExtensionConfig{bad}); err == nil || !strings.Contains(err.Error(), "component/x") {
		t.Errorf("unknown type: %v", err)
	}
}

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestVersionMapMatchesGoControlPlane: the version map made from the hashes
// of Prepare equals the one go-control-plane would build itself.
func TestVersionMapMatchesGoControlPlane(t *testing.T) {
	res, err := config.LoadResources([]string{"testdata/basic"})
	if err != nil {
		t.Fatal(err)
	}
	in := Input{Resources: res, TrustAnchorsPEM: []byte(anchors), Endpoints: []nameresolution.Instance{{AppID: "orders", Host: "10.0.0.1", Port: 1}}}
	snap, err := Snapshot(in, Node{AppID: "orders"}, "1")
	if err != nil {
		t.Fatal(err)
	}
	ours := snap.VersionMap
	snap.VersionMap = nil
	if err := snap.ConstructVersionMap(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ours, snap.VersionMap) {
		t.Errorf("version maps differ:\nours %v\ntheirs %v", ours, snap.VersionMap)
	}
}

// TestVersionsAreStable: translating the same input twice gives every
// resource the same hash, so a rebuild after an unrelated change sends a
// delta client nothing it already has.
func TestVersionsAreStable(t *testing.T) {
	res, err := config.LoadResources([]string{"testdata/basic"})
	if err != nil {
		t.Fatal(err)
	}
	in := Input{Resources: res, TrustAnchorsPEM: []byte(anchors), Endpoints: []nameresolution.Instance{{AppID: "orders", Host: "10.0.0.1", Port: 1}}}
	node := Node{AppID: "payments"}
	first, err := Snapshot(in, node, "1")
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		again, err := Snapshot(in, node, "2")
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(first.VersionMap, again.VersionMap) {
			t.Fatalf("hashes changed between two translations of one input:\n%v\n%v", first.VersionMap, again.VersionMap)
		}
	}
}
