package catalog

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"time"
)

// CA is a certificate authority of the registry: a self-signed CA
// certificate and its private key, with which the registry signs the
// certificates of verified instances. The catalog only stores it: the
// registry generates the key (the catalog reads no randomness), checks
// the certificate, and decides which CA signs (the newest) and when an
// older one retires. Values stored in the catalog are immutable.
//
// KeyDER is the CA's private key. The catalog holds it, and so do the
// Raft log and the binary snapshots on disk (Raft's own), since every
// server of a cluster signs with the same CA; the JSON snapshot, the
// format of backups (Snapshot.WriteTo), never holds it, nor any CA.
type CA struct {
	// ID names the CA: the hex SHA-256 of CertDER (the proposer
	// computes it; see CAID).
	ID string
	// CertDER is the CA certificate, DER.
	CertDER []byte
	// KeyDER is the CA's private key, PKCS#8 DER. Never returned by the
	// API, never logged, never in an audit record.
	KeyDER []byte
	// AddedAt is when the proposer added it, by its clock: a rotation's
	// time, from which the registry judges when the CA before it may
	// retire.
	AddedAt time.Time
	// CreateIndex is the Raft index of the command that added it.
	CreateIndex uint64
}

// The CA operations, added with the registry's certificate authority.
// Neither is SkipIfUnknown, though a replica that predates them could
// never sign a certificate: a replica that skipped ca_add would take
// snapshots without the CA, and a newer follower that installs one of
// them (when that replica leads) would lose the CA that the other
// servers sign with, so that servers of one cluster would answer with
// different CAs, or none: the silent divergence the halt rule exists to
// prevent. A replica that predates them halts at the entry instead, and
// goes on once it runs a muster that knows them (during a rolling
// upgrade: upgrade every follower before the leader, which proposes
// ca_add once it leads with no CA).
const (
	// OpAddCA adds Command.CA, which signs from then on (the newest CA
	// signs). Refused with ErrExists when its ID is taken, and with
	// ErrConflict when MaxCAs are held.
	OpAddCA Op = "ca_add"
	// OpRetireCA removes the CA Command.ID names. Refused with
	// ErrNotFound when it is not held, and with ErrConflict when it is
	// the newest, which signs: the registry always holds one to sign
	// with.
	OpRetireCA Op = "ca_retire"
)

// MaxCAs is the most CAs the catalog holds at once: the signing CA and
// those rotated out whose certificates may still be valid.
const MaxCAs = 4

// maxCADER bounds a CA's certificate and key, DER: a P-256 certificate
// with name constraints is well under 1 KiB, an RSA-4096 key about 2.4 KiB.
const maxCADER = 16 << 10

// CAs returns the CAs held, oldest first (the last signs). The CAs are
// shared with the catalog and must not be changed.
func (c *Catalog) CAs() []*CA {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return slices.Clone(c.cas)
}

// validateCA checks a ca_add command's CA (Validate and Apply alike).
func validateCA(ca *CA) error {
	switch {
	case ca == nil:
		return badCommand("ca", "missing")
	case len(ca.CertDER) == 0 || len(ca.CertDER) > maxCADER:
		return badCommand("ca.cert", "certificate of %d bytes, want 1 to %d", len(ca.CertDER), maxCADER)
	case len(ca.KeyDER) == 0 || len(ca.KeyDER) > maxCADER:
		return badCommand("ca.key", "private key of %d bytes, want 1 to %d", len(ca.KeyDER), maxCADER)
	case ca.AddedAt.IsZero():
		return badCommand("ca.added_at", "a CA needs the time it was added")
	}
	if ca.ID != CAID(ca.CertDER) {
		return badCommand("ca.id", "the ID is not the SHA-256 of the certificate")
	}
	return nil
}

// CAID is the ID of the CA whose certificate is certDER: its SHA-256,
// in hex.
func CAID(certDER []byte) string {
	h := sha256.Sum256(certDER)
	return hex.EncodeToString(h[:])
}

// The reasons of an add_ca command that make a registry's first CA:
// refused when the catalog holds one.
const (
	CAReasonFirst    = "first"
	CAReasonImported = "imported"
)

func (c *Catalog) applyAddCA(idx uint64, cmd Command) (Result, []string) {
	if err := validateCA(cmd.CA); err != nil {
		return Result{Err: err}, nil
	}
	for _, ca := range c.cas {
		if ca.ID == cmd.CA.ID {
			return Result{Err: ErrExists}, nil
		}
	}
	// A registry's first CA (reason "first" or "imported") may be
	// proposed by any server that finds none, at once: the first applied
	// wins, and the others are refused alike, so one CA signs.
	if (cmd.Reason == CAReasonFirst || cmd.Reason == CAReasonImported) && len(c.cas) > 0 {
		return Result{Err: ErrExists}, nil
	}
	if len(c.cas) >= MaxCAs {
		return Result{Err: fmt.Errorf("%w: the catalog holds %d CAs already; retire one first", ErrConflict, MaxCAs)}, nil
	}
	stored := *cmd.CA
	stored.CertDER = slices.Clone(cmd.CA.CertDER)
	stored.KeyDER = slices.Clone(cmd.CA.KeyDER)
	stored.CreateIndex = idx
	c.cas = append(slices.Clip(c.cas), &stored)
	return Result{}, nil
}

func (c *Catalog) applyRetireCA(idx uint64, cmd Command) (Result, []string) {
	i := slices.IndexFunc(c.cas, func(ca *CA) bool { return ca.ID == cmd.ID })
	switch {
	case i < 0:
		return Result{Err: ErrNotFound}, nil
	case i == len(c.cas)-1:
		return Result{Err: fmt.Errorf("%w: the newest CA signs, and is never retired", ErrConflict)}, nil
	}
	c.cas = slices.Delete(slices.Clone(c.cas), i, i+1)
	return Result{}, nil
}

// caV1 is a CA in version 1 of the log (the ca_add command).
type caV1 struct {
	ID          string    `json:"id"`
	CertDER     []byte    `json:"cert_der"`
	KeyDER      []byte    `json:"key_der"`
	AddedAt     time.Time `json:"added_at"`
	CreateIndex uint64    `json:"create_index,omitempty"`
}

func caToV1(ca *CA) *caV1 {
	if ca == nil {
		return nil
	}
	return &caV1{ID: ca.ID, CertDER: ca.CertDER, KeyDER: ca.KeyDER, AddedAt: ca.AddedAt, CreateIndex: ca.CreateIndex}
}

func (r *caV1) toCA() *CA {
	if r == nil {
		return nil
	}
	return &CA{ID: r.ID, CertDER: r.CertDER, KeyDER: r.KeyDER, AddedAt: r.AddedAt, CreateIndex: r.CreateIndex}
}
