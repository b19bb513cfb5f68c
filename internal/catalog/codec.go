package catalog

import (
	"encoding/json"
	"fmt"
	"time"
)

// The Raft log and snapshot formats. They are records of their own, apart
// from the in-memory types, so that renaming a field of Instance can never
// change what is on disk. Every version-1 command and a version-1 snapshot
// are kept as golden files under testdata/golden, and a test decodes and
// applies them: a change here that would break an existing data dir fails
// that test.
//
// To change the format, add fields (old entries decode with them empty and
// must mean what they meant before), or add a version: a new first byte for
// commands, a new "version" for snapshots, with the old decoders kept.

// commandVersion is the first byte of every encoded command.
const commandVersion byte = 1

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
	Status          string            `json:"status"`
	Draining        bool              `json:"draining,omitempty"`
	RegisteredAt    time.Time         `json:"registered_at"`
	CreateIndex     uint64            `json:"create_index"`
	ModifyIndex     uint64            `json:"modify_index"`
}

// keyV1 is an enrolment key in version 1 of the log and of snapshots.
type keyV1 struct {
	ID          string    `json:"id"`
	SecretHash  []byte    `json:"secret_hash"`
	Services    []string  `json:"services"`
	Description string    `json:"description,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	CreateIndex uint64    `json:"create_index"`
}

func instanceToV1(in *Instance) *instanceV1 {
	if in == nil {
		return nil
	}
	return &instanceV1{
		ID: in.ID, Service: in.Service, Address: in.Address, Port: in.Port, Scheme: in.Scheme,
		Tags: in.Tags, Meta: in.Meta, TTL: in.TTL, DeregisterAfter: in.DeregisterAfter,
		TokenHash: in.TokenHash, KeyID: in.KeyID, Proof: in.Proof, Status: string(in.Status),
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
		TokenHash: r.TokenHash, KeyID: r.KeyID, Proof: r.Proof, Status: Status(r.Status),
		Draining: r.Draining, RegisteredAt: r.RegisteredAt, CreateIndex: r.CreateIndex, ModifyIndex: r.ModifyIndex,
	}
}

func keyToV1(k *Key) *keyV1 {
	if k == nil {
		return nil
	}
	return &keyV1{ID: k.ID, SecretHash: k.SecretHash, Services: k.Services, Description: k.Description,
		CreatedAt: k.CreatedAt, CreateIndex: k.CreateIndex}
}

func (r *keyV1) toKey() *Key {
	if r == nil {
		return nil
	}
	return &Key{ID: r.ID, SecretHash: r.SecretHash, Services: r.Services, Description: r.Description,
		CreatedAt: r.CreatedAt, CreateIndex: r.CreateIndex}
}

// EncodeCommand returns the Raft log form of cmd.
func EncodeCommand(cmd Command) ([]byte, error) {
	b, err := json.Marshal(commandV1{
		Op: string(cmd.Op), Instance: instanceToV1(cmd.Instance), Key: keyToV1(cmd.Key), ID: cmd.ID,
		Status: string(cmd.Status), IfStatus: string(cmd.IfStatus), Reason: cmd.Reason, Rules: cmd.Rules,
		SkipIfUnknown: cmd.SkipIfUnknown,
	})
	if err != nil {
		return nil, fmt.Errorf("catalog: encode command: %w", err)
	}
	return append([]byte{commandVersion}, b...), nil
}

// DecodeCommand parses the Raft log form of a command. It never panics,
// whatever the input. An entry whose first byte is not a known version is
// ErrUnsupported (a newer muster wrote it); an entry of a known version
// that does not parse is ErrBadCommand.
func DecodeCommand(b []byte) (Command, error) {
	if len(b) == 0 {
		return Command{}, fmt.Errorf("%w: empty entry", ErrBadCommand)
	}
	if b[0] != commandVersion {
		return Command{}, fmt.Errorf("%w: command encoding version %d", ErrUnsupported, b[0])
	}
	var r commandV1
	if err := json.Unmarshal(b[1:], &r); err != nil {
		return Command{}, fmt.Errorf("%w: %v", ErrBadCommand, err)
	}
	return Command{
		Op: Op(r.Op), Instance: r.Instance.toInstance(), Key: r.Key.toKey(), ID: r.ID,
		Status: Status(r.Status), IfStatus: Status(r.IfStatus), Reason: r.Reason, Rules: r.Rules,
		SkipIfUnknown: r.SkipIfUnknown,
	}, nil
}
