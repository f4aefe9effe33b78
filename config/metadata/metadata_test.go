package metadata_test

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/outrigger/outrigger/config/metadata"
)

type common struct {
	Timeout time.Duration `meta:"timeout" default:"5s"`
}

type all struct {
	common
	File     string        `meta:"secretsFile" required:"true"`
	Sep      string        `meta:"nestedSeparator" default:":"`
	Multi    bool          `meta:"multiValued" default:"false"`
	Conns    int           `meta:"maxConns" default:"4"`
	Bytes    int64         `meta:"maxBytes"`
	Ratio    float64       `meta:"ratio"`
	Hosts    []string      `meta:"hosts"`
	Interval time.Duration `meta:"interval"`
	Ignored  string        `meta:"-"`
	Plain    string
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name        string
		in          map[string]string
		want        all
		wantUnknown []string
	}{
		{
			name: "defaults",
			in:   map[string]string{"secretsFile": "s.json"},
			want: all{common: common{5 * time.Second}, File: "s.json", Sep: ":", Conns: 4},
		},
		{
			name: "every type",
			in: map[string]string{
				"secretsFile": "s.json", "nestedSeparator": ".", "multiValued": "true",
				"maxConns": "0x10", "maxBytes": "9223372036854775807", "ratio": "0.25",
				"hosts": " a, b,,c ", "interval": "90", "timeout": "1m30s",
			},
			want: all{
				common: common{90 * time.Second}, File: "s.json", Sep: ".", Multi: true,
				Conns: 16, Bytes: 1<<63 - 1, Ratio: 0.25, Hosts: []string{"a", "b", "c"},
				Interval: 90 * time.Second,
			},
		},
		{
			name: "keys match case-insensitively",
			in:   map[string]string{"SECRETSFILE": "s.json", "MultiValued": "Yes", "NestedSeparator": "::"},
			want: all{common: common{5 * time.Second}, File: "s.json", Sep: "::", Multi: true, Conns: 4},
		},
		{
			name: "empty values count as absent",
			in:   map[string]string{"secretsFile": "s.json", "nestedSeparator": "", "maxConns": "", "hosts": ""},
			want: all{common: common{5 * time.Second}, File: "s.json", Sep: ":", Conns: 4},
		},
		{
			name:        "unknown keys come back sorted",
			in:          map[string]string{"secretsFile": "s.json", "zeta": "1", "Alpha": "2", "Ignored": "x", "plain": "y"},
			want:        all{common: common{5 * time.Second}, File: "s.json", Sep: ":", Conns: 4},
			wantUnknown: []string{"Alpha", "Ignored", "plain", "zeta"},
		},
		{
			name: "bool words and octal ints as Dapr reads them",
			in:   map[string]string{"secretsFile": "s", "multiValued": " OFF ", "maxConns": "010"},
			want: all{common: common{5 * time.Second}, File: "s", Sep: ":", Conns: 8},
		},
		{
			name: "strings are not trimmed",
			in:   map[string]string{"secretsFile": " s ", "nestedSeparator": " "},
			want: all{common: common{5 * time.Second}, File: " s ", Sep: " ", Conns: 4},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got all
			unknown, err := metadata.Decode(tt.in, &got)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
			if !reflect.DeepEqual(unknown, tt.wantUnknown) {
				t.Errorf("unknown = %q, want %q", unknown, tt.wantUnknown)
			}
		})
	}
}

func TestDecodeKeepsFieldsWithoutValueOrDefault(t *testing.T) {
	got := all{Bytes: 7, Hosts: []string{"preset"}, Multi: true}
	if _, err := metadata.Decode(map[string]string{"secretsFile": "s"}, &got); err != nil {
		t.Fatal(err)
	}
	if got.Bytes != 7 || !reflect.DeepEqual(got.Hosts, []string{"preset"}) {
		t.Errorf("fields without value or default changed: %+v", got)
	}
	if got.Multi {
		t.Errorf("multiValued: got true, want its default false")
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		in   map[string]string
		want []string // substrings, each on its own line of the joined error
	}{
		{"missing required", map[string]string{}, []string{"metadata secretsFile: required"}},
		{"empty required", map[string]string{"secretsFile": ""}, []string{"metadata secretsFile: required"}},
		{"bad bool", map[string]string{"secretsFile": "s", "multiValued": "maybe"},
			[]string{`metadata multiValued "maybe": want true or false`}},
		{"bad int", map[string]string{"secretsFile": "s", "maxConns": "four"},
			[]string{`metadata maxConns "four": want an integer`}},
		{"int out of range", map[string]string{"secretsFile": "s", "maxBytes": "9223372036854775808"},
			[]string{`metadata maxBytes "9223372036854775808": out of range`}},
		{"bad float", map[string]string{"secretsFile": "s", "ratio": "half"},
			[]string{`metadata ratio "half": want a number`}},
		{"float out of range", map[string]string{"secretsFile": "s", "ratio": "1e400"},
			[]string{`metadata ratio "1e400": out of range`}},
		{"bad duration", map[string]string{"secretsFile": "s", "interval": "1.5"},
			[]string{`metadata interval "1.5": want a duration such as 30s or 1m30s, or a whole number of seconds`}},
		{"duration seconds overflow", map[string]string{"secretsFile": "s", "interval": "9223372037"},
			[]string{`metadata interval "9223372037": out of range`}},
		{"duration seconds out of int64", map[string]string{"secretsFile": "s", "interval": "99999999999999999999"},
			[]string{`metadata interval "99999999999999999999": out of range`}},
		{"embedded field", map[string]string{"secretsFile": "s", "timeout": "soon"},
			[]string{`metadata timeout "soon": want a duration`}},
		{"keys differing in case", map[string]string{"secretsFile": "s", "multivalued": "true", "multiValued": "true"},
			[]string{`metadata: keys "multiValued" and "multivalued" differ only in case`}},
		{"every problem reported", map[string]string{"multiValued": "maybe", "maxConns": "x"},
			[]string{"metadata secretsFile: required", `metadata multiValued "maybe"`, `metadata maxConns "x"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got all
			_, err := metadata.Decode(tt.in, &got)
			if err == nil {
				t.Fatalf("Decode(%v): no error, want %q", tt.in, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestDecodeBadTarget(t *testing.T) {
	type unsupported struct {
		M map[string]string `meta:"m"`
	}
	type badDefault struct {
		N int `meta:"n" default:"many"`
	}
	type badRequired struct {
		S string `meta:"s" required:"yes"`
	}
	type twice struct {
		A string `meta:"key"`
		B string `meta:"KEY"`
	}
	type unexported struct {
		s string `meta:"s"`
	}
	type emptyName struct {
		S string `meta:""`
	}
	var s all
	tests := []struct {
		name string
		out  any
		want string
	}{
		{"nil", nil, "needs a non-nil pointer to a struct, got <nil>"},
		{"not a pointer", s, "needs a non-nil pointer to a struct, got metadata_test.all"},
		{"nil pointer", (*all)(nil), "got *metadata_test.all"},
		{"pointer to non-struct", new(int), "got *int"},
		{"unsupported type", &unsupported{}, `field M (key "m") has unsupported type map[string]string`},
		{"bad default", &badDefault{}, `metadata n: bad default "many" in the struct tag: want an integer`},
		{"bad required tag", &badRequired{}, `field S: required tag "yes": want true or false`},
		{"two fields, one key", &twice{}, `fields A and B both read key "KEY"`},
		{"unexported", &unexported{}, `field s (key "s") is not exported`},
		{"empty name", &emptyName{}, "field S has an empty meta tag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := metadata.Decode(nil, tt.out)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Decode: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"250ms", 250 * time.Millisecond},
		{"1h2m", time.Hour + 2*time.Minute},
		{"0", 0},
		{"30", 30 * time.Second},
		{" 30 ", 30 * time.Second},
		{"-5", -5 * time.Second},
		{"9223372036", 9223372036 * time.Second},
	}
	for _, tt := range tests {
		got, err := metadata.ParseDuration(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "1.5", "5x", "s", "0x10"} {
		if _, err := metadata.ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q): no error", bad)
		}
	}
}

func TestSplitList(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{" , ,", nil},
		{"a", []string{"a"}},
		{"a,b", []string{"a", "b"}},
		{" a , b c ,", []string{"a", "b c"}},
	}
	for _, tt := range tests {
		if got := metadata.SplitList(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("SplitList(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func ExampleDecode() {
	type fileStore struct {
		SecretsFile     string `meta:"secretsFile" required:"true"`
		NestedSeparator string `meta:"nestedSeparator" default:":"`
		MultiValued     bool   `meta:"multiValued" default:"false"`
	}
	var m fileStore
	unknown, err := metadata.Decode(map[string]string{
		"secretsfile": "secrets.json",
		"multiValued": "true",
		"retries":     "3",
	}, &m)
	fmt.Println(m.SecretsFile, m.NestedSeparator, m.MultiValued, unknown, err)

	_, err = metadata.Decode(map[string]string{"secretsFile": "s.json", "multiValued": "maybe"}, &m)
	fmt.Println(err)
	// Output:
	// secrets.json : true [retries] <nil>
	// metadata multiValued "maybe": want true or false
}

func TestFields(t *testing.T) {
	got, err := metadata.Fields(all{})
	if err != nil {
		t.Fatal(err)
	}
	want := []metadata.Field{
		{Key: "timeout", Type: "duration", Default: "5s"},
		{Key: "secretsFile", Type: "string", Required: true},
		{Key: "nestedSeparator", Type: "string", Default: ":"},
		{Key: "multiValued", Type: "bool", Default: "false"},
		{Key: "maxConns", Type: "number", Default: "4"},
		{Key: "maxBytes", Type: "number"},
		{Key: "ratio", Type: "number"},
		{Key: "hosts", Type: "string"},
		{Key: "interval", Type: "duration"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Fields:\n got %+v\nwant %+v", got, want)
	}
	if got2, err := metadata.Fields(&all{}); err != nil || !reflect.DeepEqual(got2, want) {
		t.Errorf("Fields(pointer) = %+v, %v", got2, err)
	}
	for _, bad := range []any{nil, 3, new(int)} {
		if _, err := metadata.Fields(bad); err == nil {
			t.Errorf("Fields(%T): no error", bad)
		}
	}
	type unsupported struct {
		C chan int `meta:"c"`
	}
	if _, err := metadata.Fields(unsupported{}); err == nil {
		t.Error("Fields(unsupported): no error")
	}
}
