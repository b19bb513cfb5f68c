package catalog

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
)

// RandomID returns n random bytes as lowercase hex. It is used by
// proposers to name new instances and keys; Apply never calls it.
func RandomID(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// RandomSecret returns 32 random bytes as unpadded base64url, for session
// tokens, key secrets, challenges and the admin token.
func RandomSecret() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
