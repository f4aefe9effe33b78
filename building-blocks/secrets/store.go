// Package secrets is the secrets building block: the component interface
// every secret store implements (Store), the Configuration's secret scopes
// (Scopes, compiled to a Policy), and the Dapr secrets API over both
// (API): GET /v1.0/secrets/{store}/{key} and GET /v1.0/secrets/{store}/bulk
// on HTTP, and GetSecret and GetBulkSecret of dapr.proto.runtime.v1.Dapr on
// gRPC, with daprd's answers, error codes and statuses.
//
// Backends live in sub-packages (localenv, localfile), each passing the
// conformance suite in secretstest. Nothing here registers anything: cmd/
// wires backends by their component type, and the sidecar mounts the API.
package secrets

import (
	"context"
	"errors"
)

// Store is a secret store component, as the secrets API uses it. Methods are
// safe for concurrent use. Returned maps belong to the caller.
type Store interface {
	// GetSecret returns the secret named key: one or more name/value pairs.
	// Stores holding one value per secret return {key: value}. A key the
	// store does not hold is an error matching ErrNotFound, except in stores
	// documented otherwise (Dapr's local.env answers {key: ""}). metadata is
	// the request's metadata, passed on as the caller sent it.
	GetSecret(ctx context.Context, key string, metadata map[string]string) (map[string]string, error)
	// BulkGetSecret returns every secret the store holds, by key; each value
	// is what GetSecret returns for that key. An empty store returns an empty,
	// non-nil map.
	BulkGetSecret(ctx context.Context, metadata map[string]string) (map[string]map[string]string, error)
	// Close releases what the store holds.
	Close() error
}

// ErrNotFound is matched (errors.Is) by the error a Store returns for a key
// it does not hold.
var ErrNotFound = errors.New("secret not found")

// NotFound returns the error a Store returns for a key it does not hold. It
// matches ErrNotFound and reads "secret <key> not found", the text Dapr's
// stores use, which daprd puts in its ERR_SECRET_GET message.
func NotFound(key string) error { return notFoundError(key) }

type notFoundError string

func (e notFoundError) Error() string        { return "secret " + string(e) + " not found" }
func (e notFoundError) Is(target error) bool { return target == ErrNotFound }
