package state_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"

	commonv1pb "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"

	"github.com/outrigger/outrigger/building-blocks/state"
	"github.com/outrigger/outrigger/building-blocks/state/inmemory"
)

const (
	oldKey = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	newKey = "f0e0d0c0b0a090807060504030201000f0e0d0c0b0a090807060504030201000"
)

func encryptedAPI(t *testing.T, store *inmemory.Store, meta, names map[string]string) *state.API {
	t.Helper()
	c, _, err := state.NewComponent(meta, names, func(map[string]string) (*inmemory.Store, []string, error) { return store, nil, nil })
	if err != nil {
		t.Fatal(err)
	}
	return &state.API{Lookup: func(string) (*state.Component, bool) { return c, true }, Configured: func() bool { return true }, AppID: "app"}
}

func TestEncryptionAtRest(t *testing.T) {
	ctx := context.Background()
	store, _, _ := inmemory.New(nil)
	api := encryptedAPI(t, store, map[string]string{"primaryEncryptionKey": oldKey}, map[string]string{"primaryEncryptionKey": "key-2025"})
	plain := []byte(`{"card":"4111"}`)
	if _, err := api.SaveState(ctx, &runtimev1pb.SaveStateRequest{StoreName: "s", States: []*commonv1pb.StateItem{{Key: "k", Value: plain}}}); err != nil {
		t.Fatal(err)
	}
	raw, found, err := store.Get(ctx, state.GetRequest{Key: "app||k"})
	if err != nil || !found {
		t.Fatal(found, err)
	}
	if bytes.Contains(raw.Value, []byte("4111")) || !strings.HasSuffix(string(raw.Value), "||key-2025") {
		t.Fatalf("stored %q: want base64 ciphertext and the key's name", raw.Value)
	}
	// Dapr's layout: base64(nonce || AES-GCM ciphertext) "||" name; open it
	// by hand.
	sealed, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(string(raw.Value), "||key-2025"))
	if err != nil {
		t.Fatal(err)
	}
	k, _ := hex.DecodeString(oldKey)
	block, _ := aes.NewCipher(k)
	gcm, _ := cipher.NewGCM(block)
	opened, err := gcm.Open(nil, sealed[:gcm.NonceSize()], sealed[gcm.NonceSize():], nil)
	if err != nil || !bytes.Equal(opened, plain) {
		t.Fatalf("opened by hand: %q %v", opened, err)
	}
	got, err := api.GetState(ctx, &runtimev1pb.GetStateRequest{StoreName: "s", Key: "k"})
	if err != nil || !bytes.Equal(got.GetData(), plain) {
		t.Fatalf("GetState: %q %v", got.GetData(), err)
	}
	// Rotation: the old key becomes the secondary; old values still read,
	// new ones are sealed with the new key.
	rotated := encryptedAPI(t, store, map[string]string{"primaryEncryptionKey": newKey, "secondaryEncryptionKey": oldKey},
		map[string]string{"primaryEncryptionKey": "key-2026", "secondaryEncryptionKey": "key-2025"})
	if got, err := rotated.GetState(ctx, &runtimev1pb.GetStateRequest{StoreName: "s", Key: "k"}); err != nil || !bytes.Equal(got.GetData(), plain) {
		t.Fatalf("after rotation: %q %v", got.GetData(), err)
	}
	if _, err := rotated.SaveState(ctx, &runtimev1pb.SaveStateRequest{StoreName: "s", States: []*commonv1pb.StateItem{{Key: "k2", Value: plain}}}); err != nil {
		t.Fatal(err)
	}
	if raw, _, _ := store.Get(ctx, state.GetRequest{Key: "app||k2"}); !strings.HasSuffix(string(raw.Value), "||key-2026") {
		t.Errorf("a new value is sealed with %q", raw.Value)
	}
	// Without the old key, old values are an error, not garbage.
	onlyNew := encryptedAPI(t, store, map[string]string{"primaryEncryptionKey": newKey}, map[string]string{"primaryEncryptionKey": "key-2026"})
	if _, err := onlyNew.GetState(ctx, &runtimev1pb.GetStateRequest{StoreName: "s", Key: "k"}); err == nil {
		t.Error("a value sealed with a key the store no longer has was read")
	}
	// Bulk reads decrypt too, and report a value they cannot open per item.
	bulk, err := onlyNew.GetBulkState(ctx, &runtimev1pb.GetBulkStateRequest{StoreName: "s", Keys: []string{"k", "k2"}})
	if err != nil || bulk.GetItems()[0].GetError() == "" || !bytes.Equal(bulk.GetItems()[1].GetData(), plain) {
		t.Errorf("bulk: %v %v", bulk, err)
	}
	// Bad keys are refused at load.
	for _, bad := range []map[string]string{
		{"primaryEncryptionKey": "not-hex"},
		{"primaryEncryptionKey": "abcd"},
		{"secondaryEncryptionKey": oldKey},
	} {
		if _, _, err := state.NewComponent(bad, map[string]string{"primaryEncryptionKey": "a", "secondaryEncryptionKey": "b"}, inmemory.New); err == nil {
			t.Errorf("%v: accepted", bad)
		}
	}
}
