package ca

import (
	"strings"
	"testing"
	"time"
)

// FuzzVerifyToken: arbitrary text never panics the token check and is
// never accepted unless it is a token the authority minted.
func FuzzVerifyToken(f *testing.F) {
	a, err := New(Options{DataDir: f.TempDir(), Logger: quiet})
	if err != nil {
		f.Fatal(err)
	}
	good, err := a.MintToken("orders", "default", time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add("ort1.")
	f.Add("ort1.e30.")
	f.Add(strings.Replace(good, "ort1.", "ort2.", 1))
	f.Fuzz(func(t *testing.T, tok string) {
		app, ns, err := a.VerifyToken(tok)
		if err != nil {
			return
		}
		if strings.TrimSpace(tok) != good {
			t.Fatalf("accepted a token the authority did not mint: %q -> %s/%s", tok, ns, app)
		}
	})
}
