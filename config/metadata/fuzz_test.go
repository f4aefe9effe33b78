package metadata_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outrigger/outrigger/config/metadata"
)

// FuzzDecode: any key and value never panic Decode. A key no field reads is
// returned as unknown and never fails; a value that decodes into a field
// lands there as the documented syntax says.
func FuzzDecode(f *testing.F) {
	f.Add("multiValued", "true")
	f.Add("multivalued", "maybe")
	f.Add("maxConns", "0x7fffffffffffffff")
	f.Add("maxBytes", "-0b101")
	f.Add("ratio", "NaN")
	f.Add("interval", "9223372037")
	f.Add("timeout", "1h1m1.5s")
	f.Add("hosts", ", a ,,b")
	f.Add("nestedSeparator", "")
	f.Add("SECRETSFILE", "x")
	f.Add("other", "\x00")
	f.Fuzz(func(t *testing.T, key, value string) {
		in := map[string]string{"secretsFile": "s.json"}
		in[key] = value
		var got all
		unknown, err := metadata.Decode(in, &got)
		if !slices.IsSorted(unknown) {
			t.Fatalf("unknown %q is not sorted", unknown)
		}
		fields := []string{"secretsfile", "nestedseparator", "multivalued", "maxconns", "maxbytes", "ratio", "hosts", "interval", "timeout"}
		lk := strings.ToLower(key)
		if !slices.Contains(fields, lk) {
			if err != nil {
				t.Fatalf("unknown key %q: error %v", key, err)
			}
			if !slices.Contains(unknown, key) {
				t.Fatalf("unknown key %q not reported: %q", key, unknown)
			}
			return
		}
		if len(unknown) != 0 {
			t.Fatalf("known key %q reported unknown: %q", key, unknown)
		}
		if err != nil {
			if !strings.HasPrefix(err.Error(), "metadata") {
				t.Fatalf("error %q does not start with metadata", err)
			}
			return
		}
		if value == "" {
			return
		}
		switch lk {
		case "secretsfile":
			if key == "secretsFile" && got.File != value {
				t.Fatalf("secretsFile = %q, want %q", got.File, value)
			}
		case "nestedseparator":
			if got.Sep != value {
				t.Fatalf("nestedSeparator = %q, want %q", got.Sep, value)
			}
		case "multivalued":
			want, perr := metadata.ParseBool(value)
			if perr != nil || got.Multi != want {
				t.Fatalf("multiValued %q = %v, ParseBool = %v, %v", value, got.Multi, want, perr)
			}
		case "interval", "timeout":
			d, perr := metadata.ParseDuration(value)
			if perr != nil {
				t.Fatalf("%s %q decoded but ParseDuration fails: %v", key, value, perr)
			}
			if gotD := map[string]time.Duration{"interval": got.Interval, "timeout": got.Timeout}[lk]; gotD != d {
				t.Fatalf("%s %q = %v, want %v", key, value, gotD, d)
			}
		case "hosts":
			if !slices.Equal(got.Hosts, metadata.SplitList(value)) {
				t.Fatalf("hosts %q = %q", value, got.Hosts)
			}
			for _, h := range got.Hosts {
				if h == "" || h != strings.TrimSpace(h) || strings.Contains(h, ",") {
					t.Fatalf("hosts %q: bad element %q", value, h)
				}
			}
		}
	})
}
