package state

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
)

// encryption is a store's encryption at rest, as daprd does it: values are
// sealed with AES-GCM under the primary key and stored as
// base64(nonce || ciphertext) + "||" + the key's name (its secret's name);
// reads open them with whichever of the primary and secondary keys the
// stored name says, so a key can be rotated by making the old primary the
// secondary.
type encryption struct {
	primary, secondary *aesKey
}

type aesKey struct {
	name string
	aead cipher.AEAD
}

// newAESKey reads a hex-encoded AES key (128, 192 or 256 bits).
func newAESKey(name, hexKey string) (*aesKey, error) {
	if name == "" {
		return nil, errors.New("must be a secretKeyRef: its secret's name names the key in stored values")
	}
	raw, err := hex.DecodeString(hexKey)
	if err != nil {
		return nil, fmt.Errorf("not hex: %w", err)
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, fmt.Errorf("want a 128, 192 or 256-bit key (32, 48 or 64 hex digits): %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &aesKey{name: name, aead: aead}, nil
}

func (e *encryption) encrypt(v []byte) ([]byte, error) {
	k := e.primary
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	sealed := k.aead.Seal(nonce, nonce, v, nil)
	out := make([]byte, 0, base64.StdEncoding.EncodedLen(len(sealed))+len(keySeparator)+len(k.name))
	out = base64.StdEncoding.AppendEncode(out, sealed)
	out = append(out, keySeparator...)
	return append(out, k.name...), nil
}

func (e *encryption) decrypt(v []byte) ([]byte, error) {
	if len(v) == 0 {
		return []byte{}, nil
	}
	i := bytes.LastIndex(v, []byte(keySeparator))
	if i < 0 || i+len(keySeparator) == len(v) {
		return nil, errors.New("could not decrypt data: encryption key name not found on record")
	}
	name := string(v[i+len(keySeparator):])
	var k *aesKey
	switch {
	case e.primary != nil && e.primary.name == name:
		k = e.primary
	case e.secondary != nil && e.secondary.name == name:
		k = e.secondary
	default:
		return nil, fmt.Errorf("could not decrypt data: no key named %q (neither primaryEncryptionKey nor secondaryEncryptionKey)", name)
	}
	sealed, err := base64.StdEncoding.DecodeString(string(v[:i]))
	if err != nil {
		return nil, fmt.Errorf("could not decrypt data: %w", err)
	}
	n := k.aead.NonceSize()
	if len(sealed) < n {
		return nil, errors.New("could not decrypt data: too short")
	}
	plain, err := k.aead.Open(nil, sealed[:n], sealed[n:], nil)
	if err != nil {
		return nil, fmt.Errorf("could not decrypt data: %w", err)
	}
	return plain, nil
}
