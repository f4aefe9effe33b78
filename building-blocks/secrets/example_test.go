package secrets_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"

	"github.com/outrigger/outrigger/building-blocks/secrets"
	"github.com/outrigger/outrigger/building-blocks/secrets/localfile"
)

func ExampleAPI() {
	dir, err := os.MkdirTemp("", "secrets-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "secrets.json")
	if err := os.WriteFile(file, []byte(`{"db": {"password": "s3cret"}, "admin": "root"}`), 0o600); err != nil {
		panic(err)
	}

	store, _, err := localfile.New(map[string]string{"secretsFile": file})
	if err != nil {
		panic(err)
	}
	defer store.Close()
	policy, err := secrets.Scopes{{StoreName: "local", DeniedSecrets: []string{"admin"}}}.Compile()
	if err != nil {
		panic(err)
	}
	api := &secrets.API{
		Lookup: func(name string) (secrets.Store, bool) { return store, name == "local" },
		Policy: policy,
	}
	srv := httptest.NewServer(api)
	defer srv.Close()

	for _, path := range []string{"/v1.0/secrets/local/db:password", "/v1.0/secrets/local/admin", "/v1.0/secrets/local/bulk"} {
		res, err := http.Get(srv.URL + path)
		if err != nil {
			panic(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		fmt.Printf("%d %s", res.StatusCode, body)
		if res.StatusCode != http.StatusOK {
			fmt.Println()
		}
	}
	// Output:
	// 200 {"db:password":"s3cret"}
	// 403 {"errorCode":"ERR_PERMISSION_DENIED","message":"access denied by policy to get \"admin\" from \"local\""}
	// 200 {"db:password":{"db:password":"s3cret"}}
}
