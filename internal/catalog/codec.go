package catalog

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"time"
)

// The Raft log and snapshot formats. They are records of their own, apart
// from the in-memory types, so that renaming a field of Instance can never
// change what is on disk. Every command of each encoding version, and a
// snapshot of each snapshot version (snapshot.go: version 1, JSON, and
// versions 2 and 3, binary), are kept as golden files under
// testdata/golden, and a test decodes and applies them: a change here
// that would break an existing data dir fails that test.
//
// To change the format, add fields (old entries decode with them empty and
// must mean what they meant before), or add a version: a new first byte for
// commands, a new version for snapshots, with the old decoders kept. (The
// binary snapshot has no optional fields: a field added to it is a new
// version.)
//
// A field is added to a command only if a replica that predates it, which
// decodes the JSON leniently and drops what it does not know, still does
// what the proposer meant. When it would not, the command is a new
// operation, which halts that replica instead (Apply, ErrUnsupported).
// So the fields of a key's role, expiry and callback TLS mode (keyV1) are
// carried by create_token, added with them, and never by create_key; and
// the fields of rules 5 (a key's consul_verify, an instance's
// external_id) only by commands that ask for rules 5, at which an older
// replica halts.
//
// Command encodings, named by their first byte:
//
//	version 1: 0x01, then the JSON of commandV1. No checksum. Written until
//	           encoding version 2; still read, and validated on the way
//	           in (see DecodeCommand).
//	version 2: 0x02, then the same JSON body as version 1, then the
//	           CRC-32C (Castagnoli) of the version byte and the body, 4
//	           bytes big-endian. Written today.
//
// The checksum catches a flipped or torn byte in a replica's copy of the
// log (Raft and raft-boltdb check nothing of an entry's data), which would
// otherwise be applied as if a proposer had meant it. Snapshots keep the
// CRC the Raft snapshot store puts around them.
const (
	commandVersion1 byte = 1
	commandVersion2 byte = 2
	// checksumLen is the length of a version-2 entry's trailer.
	checksumLen = 4
)

// checksum is the CRC-32C of b. (crc32.MakeTable keeps the Castagnoli
// table after its first call.)
func checksum(b []byte) uint32 {
	return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli))
}

// commandV1 is a command as version 1 of the log writes it.
type commandV1 struct {
	Op            string      `json:"op"`
	Instance      *instanceV1 `json:"instance,omitempty"`
	Key           *keyV1      `json:"key,omitempty"`
	ID            string      `json:"id,omitempty"`
	Status        string      `json:"status,omitempty"`
	IfStatus      string      `json:"if_status,omitempty"`
	Reason        string      `json:"reason,omitempty"`
	Rules         int         `json:"rules,omitempty"`
	SkipIfUnknown bool        `json:"skip_if_unknown,omitempty"`
	// Until is set by evictions only (written since encoding version 2).
	Until *time.Time `json:"until,omitempty"`
	// KeyLimit and HostLimit are set by registrations that carry limits
	// (absent: none).
	KeyLimit  int `json:"key_limit,omitempty"`
	HostLimit int `json:"host_limit,omitempty"`
	// Origin is set by commands proposed since the audit trail (absent:
	// none). Older versions skip it, as they skip every field they do not
	// know.
	Origin *originV1 `json:"origin,omitempty"`
	// CA is set by ca_add only (an operation of its own: see OpAddCA).
	CA *caV1 `json:"ca,omitempty"`
}

// originV1 is a command's origin in version 1 of the log (Command.Origin).
type originV1 struct {
	Time   *time.Time `json:"time,omitempty"`
	Node   string     `json:"node,omitempty"`
	Caller string     `json:"caller,omitempty"`
	Token  string     `json:"token,omitempty"`
}

func originToV1(o *Origin) *originV1 {
	if o == nil {
		return nil
	}
	return &originV1{Time: timeOrNil(o.Time), Node: o.Node, Caller: o.Caller, Token: o.Token}
}

func (r *originV1) toOrigin() *Origin {
	if r == nil {
		return nil
	}
	o := &Origin{Node: r.Node, Caller: r.Caller, Token: r.Token}
	if r.Time != nil {
		o.Time = *r.Time
	}
	return o
}

// instanceV1 is an instance in version 1 of the log and of snapshots.
type instanceV1 struct {
	ID              string            `json:"id"`
	Service         string            `json:"service"`
	Address         string            `json:"address"`
	Port            int               `json:"port"`
	Scheme          string            `json:"scheme"`
	Tags            []string          `json:"tags,omitempty"`
	Meta            map[string]string `json:"meta,omitempty"`
	TTL             time.Duration     `json:"ttl"`
	DeregisterAfter time.Duration     `json:"deregister_after"`
	TokenHash       []byte            `json:"token_hash"`
	KeyID           string            `json:"key_id"`
	Proof           string            `json:"proof"`
	HostIP          string            `json:"host_ip,omitempty"`
	// ExternalID is absent in instances registered before rules 5, and
	// in every instance not registered through the Consul-compatible API.
	ExternalID string `json:"external_id,omitempty"`
	// Checks are absent in instances registered before rules 4.
	Checks       []checkV1 `json:"checks,omitempty"`
	Status       string    `json:"status"`
	Draining     bool      `json:"draining,omitempty"`
	RegisteredAt time.Time `json:"registered_at"`
	CreateIndex  uint64    `json:"create_index"`
	ModifyIndex  uint64    `json:"modify_index"`
}

// checkV1 is an active health check in version 1 of the log and of
// snapshots (added with rules 4).
type checkV1 struct {
	Type                   string        `json:"type"`
	Path                   string        `json:"path,omitempty"`
	Port                   int           `json:"port,omitempty"`
	Interval               time.Duration `json:"interval"`
	Timeout                time.Duration `json:"timeout"`
	GRPCService            string        `json:"grpc_service,omitempty"`
	FailuresBeforeCritical int           `json:"failures_before_critical"`
	SuccessesBeforePassing int           `json:"successes_before_passing"`
}

func checksToV1(cs []Check) []checkV1 {
	if len(cs) == 0 {
		return nil
	}
	out := make([]checkV1, len(cs))
	for i, c := range cs {
		out[i] = checkV1(c)
	}
	return out
}

func checksFromV1(rs []checkV1) []Check {
	if len(rs) == 0 {
		return nil
	}
	out := make([]Check, len(rs))
	for i, r := range rs {
		out[i] = Check(r)
	}
	return out
}

// keyV1 is an enrolment key in version 1 of the log and of snapshots.
type keyV1 struct {
	ID          string   `json:"id"`
	SecretHash  []byte   `json:"secret_hash"`
	Services    []string `json:"services"`
	Description string   `json:"description,omitempty"`
	// MaxInstances is absent in keys written before quotas (0: the
	// registry's default).
	MaxInstances int       `json:"max_instances,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
	CreateIndex  uint64    `json:"create_index"`
	// Role, ExpiresAt and CallbackTLS are written only for keys created
	// by create_token (absent: an enrolment key that never expires, its
	// callbacks verifying certificates). A create_key command never
	// carries them: a replica that predates them would drop them (see
	// OpCreateToken).
	Role        string     `json:"role,omitempty"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
	CallbackTLS string     `json:"callback_tls,omitempty"`
	// ConsulVerify is written only for keys created by create_token
	// under rules 5 (absent: callback).
	ConsulVerify string `json:"consul_verify,omitempty"`
}

func instanceToV1(in *Instance) *instanceV1 {
	if in == nil {
		return nil
	}
	return &instanceV1{
		ID: in.ID, Service: in.Service, Address: in.Address, Port: in.Port, Scheme: in.Scheme,
		Tags: in.Tags, Meta: in.Meta, TTL: in.TTL, DeregisterAfter: in.DeregisterAfter,
		TokenHash: in.TokenHash, KeyID: in.KeyID, Proof: in.Proof, HostIP: in.HostIP, ExternalID: in.ExternalID, Checks: checksToV1(in.Checks), Status: string(in.Status),
		Draining: in.Draining, RegisteredAt: in.RegisteredAt, CreateIndex: in.CreateIndex, ModifyIndex: in.ModifyIndex,
	}
}

func (r *instanceV1) toInstance() *Instance {
	if r == nil {
		return nil
	}
	return &Instance{
		ID: r.ID, Service: r.Service, Address: r.Address, Port: r.Port, Scheme: r.Scheme,
		Tags: r.Tags, Meta: r.Meta, TTL: r.TTL, DeregisterAfter: r.DeregisterAfter,
		TokenHash: r.TokenHash, KeyID: r.KeyID, Proof: r.Proof, HostIP: r.HostIP, ExternalID: r.ExternalID, Checks: checksFromV1(r.Checks), Status: Status(r.Status),
		Draining: r.Draining, RegisteredAt: r.RegisteredAt, CreateIndex: r.CreateIndex, ModifyIndex: r.ModifyIndex,
	}
}

func keyToV1(k *Key) *keyV1 {
	if k == nil {
		return nil
	}
	return &keyV1{ID: k.ID, SecretHash: k.SecretHash, Services: k.Services, Description: k.Description,
		MaxInstances: k.MaxInstances, CreatedAt: k.CreatedAt, CreateIndex: k.CreateIndex,
		Role: string(k.Role), ExpiresAt: timeOrNil(k.ExpiresAt), CallbackTLS: string(k.CallbackTLS), ConsulVerify: string(k.ConsulVerify)}
}

func (r *keyV1) toKey() *Key {
	if r == nil {
		return nil
	}
	k := &Key{ID: r.ID, SecretHash: r.SecretHash, Services: r.Services, Description: r.Description,
		MaxInstances: r.MaxInstances, CreatedAt: r.CreatedAt, CreateIndex: r.CreateIndex,
		Role: Role(r.Role), CallbackTLS: CallbackTLS(r.CallbackTLS), ConsulVerify: ConsulVerify(r.ConsulVerify)}
	if r.ExpiresAt != nil {
		k.ExpiresAt = *r.ExpiresAt
	}
	return k
}

// EncodeCommand returns the Raft log form of cmd, in encoding version 2.
func EncodeCommand(cmd Command) ([]byte, error) {
	body, err := json.Marshal(commandV1{
		Op: string(cmd.Op), Instance: instanceToV1(cmd.Instance), Key: keyToV1(cmd.Key), ID: cmd.ID,
		Status: string(cmd.Status), IfStatus: string(cmd.IfStatus), Reason: cmd.Reason, Rules: cmd.Rules,
		SkipIfUnknown: cmd.SkipIfUnknown, Until: timeOrNil(cmd.Until), KeyLimit: cmd.KeyLimit, HostLimit: cmd.HostLimit,
		Origin: originToV1(cmd.Origin), CA: caToV1(cmd.CA),
	})
	if err != nil {
		return nil, fmt.Errorf("catalog: encode command: %w", err)
	}
	b := make([]byte, 0, 1+len(body)+checksumLen)
	b = append(b, commandVersion2)
	b = append(b, body...)
	return binary.BigEndian.AppendUint32(b, checksum(b)), nil
}

// DecodeCommand parses the Raft log form of a command, of encoding
// version 1 or 2. It never panics, whatever the input. Its errors:
//
//   - ErrUnsupported: the first byte is no version this muster knows (a
//     newer muster wrote the entry, or its first byte is damaged).
//   - ErrCorrupt: a version-2 entry whose checksum does not match, or
//     that is too short to hold one; a version-1 entry that does not
//     parse, or whose command fails Command.Validate. Version 1 has no
//     checksum, so this is the only check its entries get, and no muster
//     ever wrote a version-1 entry that fails it.
//   - ErrBadCommand: an empty entry, or a version-2 entry whose checksum
//     matches but whose body does not parse: its proposer wrote it so, and
//     every replica refuses it alike.
//
// A version-2 command that parses is returned without Validate: the
// checksum vouches for its bytes, and whether it is well formed is the
// applier's to judge, as for any command (package cluster refuses it
// with ErrBadCommand, alike on every replica).
func DecodeCommand(b []byte) (Command, error) {
	if len(b) == 0 {
		return Command{}, fmt.Errorf("%w: empty entry", ErrBadCommand)
	}
	switch b[0] {
	case commandVersion1:
		cmd, err := decodeBody(b[1:])
		if err != nil {
			return Command{}, fmt.Errorf("%w: version-1 entry (no checksum) does not parse: %v", ErrCorrupt, err)
		}
		if err := cmd.Validate(); err != nil {
			return Command{}, fmt.Errorf("%w: version-1 entry (no checksum) holds a command no muster proposes: %v", ErrCorrupt, err)
		}
		return cmd, nil
	case commandVersion2:
		if len(b) < 1+checksumLen {
			return Command{}, fmt.Errorf("%w: version-2 entry of %d bytes is too short to hold its checksum", ErrCorrupt, len(b))
		}
		n := len(b) - checksumLen
		if stored, computed := binary.BigEndian.Uint32(b[n:]), checksum(b[:n]); stored != computed {
			return Command{}, fmt.Errorf("%w: checksum mismatch (stored %08x, computed %08x over %d bytes)", ErrCorrupt, stored, computed, n)
		}
		cmd, err := decodeBody(b[1:n])
		if err != nil {
			return Command{}, fmt.Errorf("%w: %v", ErrBadCommand, err)
		}
		return cmd, nil
	default:
		return Command{}, fmt.Errorf("%w: command encoding version %d (or a damaged first byte)", ErrUnsupported, b[0])
	}
}

// decodeBody parses the JSON body that versions 1 and 2 share.
func decodeBody(body []byte) (Command, error) {
	var r commandV1
	if err := json.Unmarshal(body, &r); err != nil {
		return Command{}, err
	}
	cmd := Command{
		Op: Op(r.Op), Instance: r.Instance.toInstance(), Key: r.Key.toKey(), ID: r.ID,
		Status: Status(r.Status), IfStatus: Status(r.IfStatus), Reason: r.Reason, Rules: r.Rules,
		SkipIfUnknown: r.SkipIfUnknown, KeyLimit: r.KeyLimit, HostLimit: r.HostLimit, Origin: r.Origin.toOrigin(),
		CA: r.CA.toCA(),
	}
	if r.Until != nil {
		cmd.Until = *r.Until
	}
	return cmd, nil
}

// timeOrNil is t, or nil for the zero time, so that it is left out.
func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
