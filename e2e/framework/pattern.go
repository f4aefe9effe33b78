package framework

import (
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"
	"math/rand/v2"
)

// Pattern returns a reader of n pseudo-random bytes determined by seed: a
// body that is cheap to make on both ends of a transfer and whose checksum
// catches any lost, repeated or reordered byte.
func Pattern(seed uint64, n int64) io.Reader {
	var key [32]byte
	for i := range 8 {
		key[i] = byte(seed >> (8 * i))
	}
	return io.LimitReader(rand.NewChaCha8(key), n)
}

// PatternSHA256 is the hex SHA-256 of Pattern(seed, n).
func PatternSHA256(seed uint64, n int64) string {
	h := sha256.New()
	_, _ = io.Copy(h, Pattern(seed, n))
	return hex.EncodeToString(h.Sum(nil))
}

// CountingHash counts and hashes what is written to it.
type CountingHash struct {
	N int64
	h hash.Hash
}

// NewCountingHash returns an empty CountingHash.
func NewCountingHash() *CountingHash { return &CountingHash{h: sha256.New()} }

func (c *CountingHash) Write(p []byte) (int, error) {
	c.N += int64(len(p))
	return c.h.Write(p)
}

// SHA256 is the hex SHA-256 of what was written.
func (c *CountingHash) SHA256() string { return hex.EncodeToString(c.h.Sum(nil)) }
