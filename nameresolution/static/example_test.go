package static_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/outrigger/outrigger/nameresolution/static"
)

func Example() {
	dir, err := os.MkdirTemp("", "static-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "apps.yaml")
	file := `apps:
  - appID: orders
    addresses: ["127.0.0.1:50002", "127.0.0.1:50012"]
`
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		panic(err)
	}

	r, err := static.New(path)
	if err != nil {
		panic(err)
	}
	defer r.Close()
	for range 3 {
		addr, err := r.Resolve(context.Background(), "orders", "")
		fmt.Println(addr, err)
	}
	_, err = r.Resolve(context.Background(), "orders", "shop")
	fmt.Println(err != nil)
	// Output:
	// 127.0.0.1:50002 <nil>
	// 127.0.0.1:50012 <nil>
	// 127.0.0.1:50002 <nil>
	// true
}
