package secrets_test

import (
	"errors"
	"fmt"
	"testing"

	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"

	"github.com/outrigger/outrigger/building-blocks/secrets"
)

func TestNotFound(t *testing.T) {
	err := secrets.NotFound("db:password")
	if !errors.Is(err, secrets.ErrNotFound) || !errors.Is(fmt.Errorf("wrapped: %w", err), secrets.ErrNotFound) {
		t.Errorf("NotFound does not match ErrNotFound")
	}
	if got, want := err.Error(), "secret db:password not found"; got != want {
		t.Errorf("NotFound = %q, want Dapr's %q", got, want)
	}
	if errors.Is(errors.New("secret x not found"), secrets.ErrNotFound) {
		t.Error("an unrelated error matches ErrNotFound")
	}
}

func TestAPIErrorText(t *testing.T) {
	_, err := (&secrets.API{}).GetSecret(t.Context(), &runtimev1pb.GetSecretRequest{StoreName: "s", Key: "k"})
	if err == nil || err.Error() != "secret store is not configured" {
		t.Errorf("error text %v, want daprd's message", err)
	}
}
