package kubernetes_test

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outrigger/outrigger/config/metadata/metadatatest"
	"github.com/outrigger/outrigger/nameresolution/kubernetes"
)

func TestMetadataYAML(t *testing.T) {
	metadatatest.CheckYAML(t, "metadata.yaml", kubernetes.Type, kubernetes.Metadata{})
}

func TestParseMetadata(t *testing.T) {
	for _, tc := range []struct {
		name        string
		raw         map[string]any
		want        kubernetes.Metadata
		wantUnknown []string
		wantErr     []string // substrings, each naming a field
	}{{
		name: "Defaults",
		raw:  map[string]any{"dnsServer": "10.96.0.10:53"},
		want: kubernetes.Metadata{ClusterDomain: "cluster.local", DNSServer: "10.96.0.10:53", Port: 50002, Timeout: 2 * time.Second},
	}, {
		name: "AllStrings",
		raw: map[string]any{"clusterDomain": "corp.internal", "dnsServer": "[fd00::10]:5353",
			"port": "6000", "timeout": "500ms"},
		want: kubernetes.Metadata{ClusterDomain: "corp.internal", DNSServer: "[fd00::10]:5353", Port: 6000, Timeout: 500 * time.Millisecond},
	}, {
		name: "YAMLScalars",
		raw:  map[string]any{"dnsServer": "10.96.0.10", "port": 6000, "timeout": 3},
		want: kubernetes.Metadata{ClusterDomain: "cluster.local", DNSServer: "10.96.0.10", Port: 6000, Timeout: 3 * time.Second},
	}, {
		name: "JSONNumbers",
		raw:  map[string]any{"dnsServer": "10.96.0.10:53", "port": json.Number("6001"), "timeout": float64(4)},
		want: kubernetes.Metadata{ClusterDomain: "cluster.local", DNSServer: "10.96.0.10:53", Port: 6001, Timeout: 4 * time.Second},
	}, {
		name: "KeysFoldCase",
		raw:  map[string]any{"DNSServer": "10.96.0.10:53", "clusterdomain": "k8s.local"},
		want: kubernetes.Metadata{ClusterDomain: "k8s.local", DNSServer: "10.96.0.10:53", Port: 50002, Timeout: 2 * time.Second},
	}, {
		name: "Template",
		raw:  map[string]any{"dnsServer": "10.96.0.10:53", "template": "{{.ID}}-{{.Namespace}}.internal:{{.Port}}"},
		want: kubernetes.Metadata{ClusterDomain: "cluster.local", Template: "{{.ID}}-{{.Namespace}}.internal:{{.Port}}",
			DNSServer: "10.96.0.10:53", Port: 50002, Timeout: 2 * time.Second},
	}, {
		name:        "UnknownKeysWarned",
		raw:         map[string]any{"dnsServer": "10.96.0.10:53", "zeta": "1", "alpha": true},
		want:        kubernetes.Metadata{ClusterDomain: "cluster.local", DNSServer: "10.96.0.10:53", Port: 50002, Timeout: 2 * time.Second},
		wantUnknown: []string{"alpha", "zeta"},
	}, {
		name:    "BadPort",
		raw:     map[string]any{"dnsServer": "10.96.0.10:53", "port": 70000},
		wantErr: []string{"metadata port 70000"},
	}, {
		name:    "PortNotANumber",
		raw:     map[string]any{"dnsServer": "10.96.0.10:53", "port": "dapr"},
		wantErr: []string{"metadata port"},
	}, {
		name:    "BadTimeout",
		raw:     map[string]any{"dnsServer": "10.96.0.10:53", "timeout": "-1s"},
		wantErr: []string{"metadata timeout"},
	}, {
		name:    "BadClusterDomain",
		raw:     map[string]any{"dnsServer": "10.96.0.10:53", "clusterDomain": "cluster..local"},
		wantErr: []string{"metadata clusterDomain"},
	}, {
		name:    "DNSServerNotAnAddress",
		raw:     map[string]any{"dnsServer": "kube-dns:53"},
		wantErr: []string{"metadata dnsServer"},
	}, {
		name:    "TemplateDoesNotParse",
		raw:     map[string]any{"dnsServer": "10.96.0.10:53", "template": "{{.ID"},
		wantErr: []string{"metadata template"},
	}, {
		name:    "TemplateReadsData",
		raw:     map[string]any{"dnsServer": "10.96.0.10:53", "template": "{{.ID}}-{{.Data.region}}.internal:{{.Port}}"},
		wantErr: []string{"metadata template", "region"},
	}, {
		name:    "TemplateBadPort",
		raw:     map[string]any{"dnsServer": "10.96.0.10:53", "template": "{{.ID}}.internal:http"},
		wantErr: []string{"metadata template"},
	}, {
		name:    "NestedValue",
		raw:     map[string]any{"dnsServer": "10.96.0.10:53", "clusterDomain": map[string]any{"a": 1}},
		wantErr: []string{"metadata clusterDomain"},
	}, {
		name:    "SeveralErrors",
		raw:     map[string]any{"dnsServer": "10.96.0.10:0", "port": 0, "timeout": "0s"},
		wantErr: []string{"metadata dnsServer", "metadata port", "metadata timeout"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, unknown, err := kubernetes.ParseMetadata(tc.raw)
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatalf("ParseMetadata(%v) = %+v, nil; want an error", tc.raw, got)
				}
				for _, want := range tc.wantErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("ParseMetadata(%v) error %q does not contain %q", tc.raw, err, want)
					}
				}
				if !strings.HasPrefix(err.Error(), "nameresolution/kubernetes: ") {
					t.Errorf("error %q lacks the package prefix", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseMetadata(%v): %v", tc.raw, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseMetadata(%v) =\n%+v\nwant\n%+v", tc.raw, got, tc.want)
			}
			if !slices.Equal(unknown, tc.wantUnknown) {
				t.Errorf("unknown keys %q; want %q", unknown, tc.wantUnknown)
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	_, err := kubernetes.New(kubernetes.Metadata{ClusterDomain: "cluster.local", Port: 50002, Timeout: time.Second})
	if err == nil || !strings.Contains(err.Error(), "metadata dnsServer") {
		t.Errorf("New without a DNS server: %v; want an error naming dnsServer", err)
	}
}
