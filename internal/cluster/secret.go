package cluster

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"log/slog"

	"github.com/musterhq/muster/internal/durable"
)

// MinSecretLen is the shortest cluster secret accepted, in bytes. The
// output of `openssl rand -hex 32` (64 characters) is a good secret.
const MinSecretLen = 32

// Secret is the cluster secret: every Raft peer holds the same one, and a
// connection to the Raft port is accepted only from a peer that proves it
// holds it too (see the Raft port section of docs/security.md). It prints
// and logs as "[secret]", never as its bytes.
type Secret []byte

// String hides the secret from fmt's %v and %s.
func (Secret) String() string { return "[secret]" }

// GoString hides the secret from fmt's %#v.
func (Secret) GoString() string { return "[secret]" }

// LogValue hides the secret from slog.
func (Secret) LogValue() slog.Value { return slog.StringValue("[secret]") }

// ReadSecretFile reads a cluster secret from path. The file must be
// readable by its owner only (mode 0600 or stricter): a secret that other
// users can read admits them to the cluster, so a group- or
// world-accessible file is refused rather than warned about. Surrounding
// whitespace (a trailing newline) is not part of the secret. Errors name
// the file, never its content.
func ReadSecretFile(path string) (Secret, error) {
	b, err := readPrivateFile(path, "secret file")
	if err != nil {
		return nil, err
	}
	s := bytes.TrimSpace(b)
	if len(s) < MinSecretLen {
		return nil, fmt.Errorf("cluster: secret file %s holds %d bytes; a cluster secret needs at least %d "+
			"(make one with: openssl rand -hex 32 > %s)", path, len(s), MinSecretLen, path)
	}
	return Secret(bytes.Clone(s)), nil
}

// maxPrivateFile bounds the files readPrivateFile reads: a secret or a
// PEM key is short, so a larger file is not the right one.
const maxPrivateFile = 64 << 10

// readPrivateFile reads a file that holds a credential (the cluster
// secret, a TLS private key) with durable.ReadPrivateFile: a regular file
// only its owner may read or write. what names the file in errors
// ("secret file").
func readPrivateFile(path, what string) ([]byte, error) {
	b, err := durable.ReadPrivateFile(path, maxPrivateFile)
	if err != nil {
		return nil, fmt.Errorf("cluster: %s: %w", what, err)
	}
	return b, nil
}

// identityLabel is the HKDF info string of the transport's key. Changing
// it changes every cluster's key, so it carries a version.
const identityLabel = "muster raft transport identity v1 (ed25519 seed)"

// identity derives the Raft transport's ed25519 key from the secret. Every
// holder of the secret derives the same key, and the key reveals nothing
// of the secret (HKDF-SHA256, a one-way function of it).
func identity(s Secret) (ed25519.PrivateKey, error) {
	seed, err := hkdf.Key(sha256.New, s, nil, identityLabel, ed25519.SeedSize)
	if err != nil {
		return nil, fmt.Errorf("cluster: derive transport key: %w", err)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// tlsConfig makes Secret a peerAuth: the Raft port's TLS configuration
// for a key derived from the secret (secretTLSConfig).
func (s Secret) tlsConfig() (*tls.Config, error) { return secretTLSConfig(s) }

// credential is what a peer proves in secret mode, for logs.
func (Secret) credential() string { return "the cluster secret" }
