// Package random makes the values muster must never guess or repeat:
// instance and key IDs, session tokens, key secrets, challenges and the
// admin token. It reads crypto/rand only.
//
// It is kept apart from package catalog on purpose: the catalog is a
// deterministic state machine and must never call it. Proposers (the
// registry, the cluster layer) choose random values and put them into
// commands.
//
//	id := random.ID(16)      // 32 lowercase hex characters
//	token := random.Secret() // 43 characters of unpadded base64url
package random

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
)

// ID returns n random bytes as lowercase hex.
func ID(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Secret returns 32 random bytes as unpadded base64url, for session
// tokens, key secrets, challenges and the admin token.
func Secret() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
