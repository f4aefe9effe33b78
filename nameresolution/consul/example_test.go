package consul_test

import (
	"fmt"

	"github.com/outrigger/outrigger/nameresolution/consul"
)

// A Configuration's nameResolution.configuration, as YAML decodes it, read
// into Metadata; keys no field reads come back to be logged.
func ExampleParseMetadata() {
	raw := map[string]any{
		"client":       map[string]any{"address": "127.0.0.1:8500"},
		"selfRegister": true,
		"tags":         []any{"dapr"},
		"checks": []any{map[string]any{
			"name": "App health", "http": "http://127.0.0.1:3000/health", "interval": "15s",
		}},
		"deregisterOnClose": true,
	}
	md, unknown, err := consul.ParseMetadata(raw)
	fmt.Println(md.Client.Address, md.SelfRegister, md.Tags, md.DaprPortMetaKey, md.QueryOptions.UseCache, len(md.Checks))
	fmt.Println(unknown, err)
	// Output:
	// 127.0.0.1:8500 true [dapr] DAPR_PORT true 1
	// [deregisterOnClose] <nil>
}
