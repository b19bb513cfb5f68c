package catalog_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/catalog"
)

// frameV2 wraps a JSON body as encoding version 2 does: the version byte,
// the body, and the CRC-32C of both, big-endian. It is written from the
// format's description, not from the encoder, so that the two check each
// other.
func frameV2(body []byte) []byte {
	b := append([]byte{2}, body...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
}

func TestEncodeCommand(t *testing.T) {
	for _, cmd := range commands() {
		t.Run(string(cmd.Op), func(t *testing.T) {
			b, err := catalog.EncodeCommand(cmd)
			if err != nil {
				t.Fatalf("EncodeCommand: %v", err)
			}
			if b[0] != 2 {
				t.Errorf("version byte = %d, want 2", b[0])
			}
			if want := frameV2(b[1 : len(b)-4]); !bytes.Equal(b, want) {
				t.Errorf("encoding is not version byte + body + CRC-32C:\n got %q\nwant %q", b, want)
			}
			got, err := catalog.DecodeCommand(b)
			if err != nil {
				t.Fatalf("DecodeCommand: %v", err)
			}
			if !reflect.DeepEqual(got, cmd) {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, cmd)
			}
			again, err := catalog.EncodeCommand(got)
			if err != nil || !bytes.Equal(again, b) {
				t.Errorf("re-encoding differs: %s vs %s (%v)", again, b, err)
			}
		})
	}
}

// TestDecodeCommand_v1 reads the encoding that data dirs written before
// version 2 hold: a valid entry decodes as it always did; one that does
// not parse or holds a command no muster proposes is corrupt, since
// version 1 has no checksum to tell.
func TestDecodeCommand_v1(t *testing.T) {
	for _, cmd := range commands()[:5] {
		b, err := catalog.EncodeCommand(cmd)
		if err != nil {
			t.Fatal(err)
		}
		got, err := catalog.DecodeCommand(asV1(b))
		if err != nil || !reflect.DeepEqual(got, cmd) {
			t.Errorf("version-1 %s decodes to %+v, %v; want %+v", cmd.Op, got, err, cmd)
		}
	}

	valid, err := catalog.EncodeCommand(register(newInstance("i1", "web-a", "127.0.0.1", 80)))
	if err != nil {
		t.Fatal(err)
	}
	v1 := asV1(valid)
	flip := func(old, new string) []byte {
		if !bytes.Contains(v1, []byte(old)) {
			t.Fatalf("%q not in %s", old, v1)
		}
		return bytes.Replace(slices.Clone(v1), []byte(old), []byte(new), 1)
	}
	for _, tt := range []struct {
		name string
		in   []byte
	}{
		{"version only", []byte{1}},
		{"garbage", append([]byte{1}, "garbage"...)},
		{"trailing data", append(slices.Clone(v1), "{}"...)},
		{"a version-2 entry relabelled", append([]byte{1}, valid[1:]...)},
		{"wrong field type", append([]byte{1}, `{"op":"register","instance":{"port":"80"}}`...)},
		{"bad base64", append([]byte{1}, `{"op":"register","instance":{"token_hash":"!!"}}`...)},
		{"bad time", append([]byte{1}, `{"op":"register","instance":{"registered_at":"yesterday"}}`...)},
		{"no op", append([]byte{1}, `{}`...)},
		{"address with a slash", flip(`"127.0.0.1"`, `"127/0.0.1"`)},
		{"address with a space", flip(`"127.0.0.1"`, `"127 0.0.1"`)},
		{"port out of range", flip(`"port":80`, `"port":0`)},
		{"service name in capitals", flip(`"web-a"`, `"Web-a"`)},
		{"instance ID with a slash", flip(`"id":"i1"`, `"id":"i/"`)},
		{"ttl of zero", flip(`"ttl":10000000000`, `"ttl":00000000000`)},
		{"unknown scheme", flip(`"http"`, `"hutp"`)},
		{"field name damaged", flip(`"address"`, `"addresr"`)},
		{"status damaged", flip(`"passing"`, `"passinf"`)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cmd, err := catalog.DecodeCommand(tt.in)
			if !errors.Is(err, catalog.ErrCorrupt) || errors.Is(err, catalog.ErrBadCommand) {
				t.Fatalf("DecodeCommand(%q) err = %v, want ErrCorrupt (and not ErrBadCommand)", tt.in, err)
			}
			if !reflect.DeepEqual(cmd, catalog.Command{}) {
				t.Errorf("DecodeCommand returned a partial command on error: %+v", cmd)
			}
		})
	}
}

// TestDecodeCommand_v2 reads the checksummed encoding: every change of
// any one byte after the first is caught as corruption, as are truncation
// and a version-1 entry relabelled; a body its proposer wrote badly (the
// checksum matches) is a bad command, refused alike everywhere.
func TestDecodeCommand_v2(t *testing.T) {
	valid, err := catalog.EncodeCommand(register(newInstance("i1", "web-a", "127.0.0.1", 80)))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("every single-byte change", func(t *testing.T) {
		for i := 1; i < len(valid); i++ {
			for _, mask := range []byte{0x01, 0x02, 0x10, 0x80, 0xff} {
				b := slices.Clone(valid)
				b[i] ^= mask
				if _, err := catalog.DecodeCommand(b); !errors.Is(err, catalog.ErrCorrupt) {
					t.Fatalf("byte %d ^ %#x: err = %v, want ErrCorrupt", i, mask, err)
				}
			}
		}
	})
	for _, tt := range []struct {
		name string
		in   []byte
		want error
	}{
		{"version byte only", []byte{2}, catalog.ErrCorrupt},
		{"shorter than a checksum", []byte{2, 0, 0, 0}, catalog.ErrCorrupt},
		{"truncated by one byte", valid[:len(valid)-1], catalog.ErrCorrupt},
		{"truncated body", append(slices.Clone(valid[:20]), valid[len(valid)-4:]...), catalog.ErrCorrupt},
		{"a byte appended", append(slices.Clone(valid), 0), catalog.ErrCorrupt},
		{"a version-1 entry relabelled", append([]byte{2}, asV1(valid)[1:]...), catalog.ErrCorrupt},
		{"empty body, checksum matches", frameV2(nil), catalog.ErrBadCommand},
		{"garbage, checksum matches", frameV2([]byte("garbage")), catalog.ErrBadCommand},
		{"trailing data, checksum matches", frameV2(append(slices.Clone(valid[1:len(valid)-4]), "{}"...)), catalog.ErrBadCommand},
		{"wrong field type, checksum matches", frameV2([]byte(`{"op":"register","instance":{"port":"80"}}`)), catalog.ErrBadCommand},
		{"nil", nil, catalog.ErrBadCommand},
		{"empty", []byte{}, catalog.ErrBadCommand},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cmd, err := catalog.DecodeCommand(tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("DecodeCommand(%q) err = %v, want %v", tt.in, err, tt.want)
			}
			if tt.want == catalog.ErrBadCommand && errors.Is(err, catalog.ErrCorrupt) {
				t.Fatalf("err = %v is ErrCorrupt too", err)
			}
			if !reflect.DeepEqual(cmd, catalog.Command{}) {
				t.Errorf("DecodeCommand returned a partial command on error: %+v", cmd)
			}
		})
	}
	// A version-2 command that parses is decoded without validation: the
	// checksum vouches for what the proposer wrote, and the applier
	// refuses it alike on every replica.
	bad := frameV2([]byte(`{"op":"register","instance":{"id":"i1","address":"127/0.0.1"}}`))
	cmd, err := catalog.DecodeCommand(bad)
	if err != nil || cmd.Instance == nil || cmd.Instance.Address != "127/0.0.1" {
		t.Fatalf("DecodeCommand = %+v, %v", cmd, err)
	}
	if err := cmd.Validate(); !errors.Is(err, catalog.ErrBadCommand) {
		t.Fatalf("Validate = %v, want ErrBadCommand", err)
	}
}

// TestDecodeCommand_unsupported: an entry in an encoding this version does
// not know is what a newer muster writes: it must stop the replica, not be
// skipped.
func TestDecodeCommand_unsupported(t *testing.T) {
	valid, err := catalog.EncodeCommand(catalog.Command{Op: catalog.OpRevokeKey, ID: "k1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		in   []byte
	}{
		{"version zero", append([]byte{0}, valid[1:]...)},
		{"version three", append([]byte{3}, valid[1:]...)},
		{"version 255", append([]byte{255}, valid[1:]...)},
		{"no version byte", valid[1:]},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cmd, err := catalog.DecodeCommand(tt.in)
			if !errors.Is(err, catalog.ErrUnsupported) {
				t.Fatalf("DecodeCommand(%q) err = %v, want ErrUnsupported", tt.in, err)
			}
			if !reflect.DeepEqual(cmd, catalog.Command{}) {
				t.Errorf("DecodeCommand returned a partial command on error: %+v", cmd)
			}
		})
	}
}

func TestCommand_Validate(t *testing.T) {
	inst := func(mutate func(*catalog.Instance)) catalog.Command {
		in := newInstance("i1", "web-a", "10.0.0.1", 80)
		mutate(in)
		return register(in)
	}
	key := func(mutate func(*catalog.Key)) catalog.Command {
		k := newKey("k1", "web-*")
		mutate(k)
		return createKey(k)
	}
	long := strings.Repeat("a", 63)
	for _, tt := range []struct {
		name  string
		cmd   catalog.Command
		field string // "" when valid
	}{
		{"register", inst(func(*catalog.Instance) {}), ""},
		{"register IPv6", inst(func(in *catalog.Instance) { in.Address = "2001:db8::1" }), ""},
		{"register IPv4-mapped IPv6 (stored by early versions)", inst(func(in *catalog.Instance) { in.Address = "::ffff:10.0.0.1" }), ""},
		{"register host name", inst(func(in *catalog.Instance) { in.Address = "api.internal" }), ""},
		{"register host name in capitals (stored by early versions)", inst(func(in *catalog.Instance) { in.Address = "API.Internal" }), ""},
		{"register numeric last label (stored by early versions)", inst(func(in *catalog.Instance) { in.Address = "127.1" }), ""},
		{"register longest label", inst(func(in *catalog.Instance) { in.Address = long + ".x" }), ""},
		{"register seed TTL", inst(func(in *catalog.Instance) { in.TTL, in.DeregisterAfter = 300*time.Millisecond, 3*time.Second }), ""},
		{"register https", inst(func(in *catalog.Instance) { in.Scheme = "https" }), ""},
		{"register critical", inst(func(in *catalog.Instance) { in.Status = catalog.StatusCritical }), ""},
		{"register no tags or meta or proof", inst(func(in *catalog.Instance) { in.Tags, in.Meta, in.Proof = nil, nil, "" }), ""},
		{"register nil instance", catalog.Command{Op: catalog.OpRegister}, "instance"},
		{"register empty ID", inst(func(in *catalog.Instance) { in.ID = "" }), "instance.id"},
		{"register ID too long", inst(func(in *catalog.Instance) { in.ID = strings.Repeat("a", catalog.MaxIDLen+1) }), "instance.id"},
		{"register ID with a quote", inst(func(in *catalog.Instance) { in.ID = `i"1` }), "instance.id"},
		{"register bad service", inst(func(in *catalog.Instance) { in.Service = "Web" }), "instance.service"},
		{"register empty address", inst(func(in *catalog.Instance) { in.Address = "" }), "instance.address"},
		{"register address with a slash", inst(func(in *catalog.Instance) { in.Address = "127/0.0.1" }), "instance.address"},
		{"register address with a port", inst(func(in *catalog.Instance) { in.Address = "10.0.0.1:80" }), "instance.address"},
		{"register address with a trailing dot", inst(func(in *catalog.Instance) { in.Address = "api.internal." }), "instance.address"},
		{"register label too long", inst(func(in *catalog.Instance) { in.Address = long + "a.x" }), "instance.address"},
		{"register label starting with -", inst(func(in *catalog.Instance) { in.Address = "-api.x" }), "instance.address"},
		{"register host too long", inst(func(in *catalog.Instance) { in.Address = strings.Repeat("a.", 127) + "a" }), "instance.address"},
		{"register port 0", inst(func(in *catalog.Instance) { in.Port = 0 }), "instance.port"},
		{"register port 65536", inst(func(in *catalog.Instance) { in.Port = 65536 }), "instance.port"},
		{"register scheme", inst(func(in *catalog.Instance) { in.Scheme = "ftp" }), "instance.scheme"},
		{"register empty scheme", inst(func(in *catalog.Instance) { in.Scheme = "" }), "instance.scheme"},
		{"register ttl 0", inst(func(in *catalog.Instance) { in.TTL = 0 }), "instance.ttl"},
		{"register ttl over an hour", inst(func(in *catalog.Instance) { in.TTL, in.DeregisterAfter = time.Hour+1, 2*time.Hour }), "instance.ttl"},
		{"register deregister_after below ttl", inst(func(in *catalog.Instance) { in.DeregisterAfter = in.TTL - 1 }), "instance.deregister_after"},
		{"register deregister_after over a week", inst(func(in *catalog.Instance) { in.DeregisterAfter = 7*24*time.Hour + 1 }), "instance.deregister_after"},
		{"register short token hash", inst(func(in *catalog.Instance) { in.TokenHash = in.TokenHash[:31] }), "instance.token_hash"},
		{"register no key", inst(func(in *catalog.Instance) { in.KeyID = "" }), "instance.key_id"},
		{"register proof with a newline", inst(func(in *catalog.Instance) { in.Proof = "address\n" }), "instance.proof"},
		{"register status draining", inst(func(in *catalog.Instance) { in.Status = catalog.StatusDraining }), "instance.status"},
		{"register empty tag", inst(func(in *catalog.Instance) { in.Tags = []string{""} }), "instance.tags"},
		{"register tag with a comma", inst(func(in *catalog.Instance) { in.Tags = []string{"a,b"} }), "instance.tags"},
		{"register too many tags", inst(func(in *catalog.Instance) { in.Tags = make([]string, 65) }), "instance.tags"},
		{"register meta key with a space", inst(func(in *catalog.Instance) { in.Meta = map[string]string{"a b": "c"} }), "instance.meta"},
		{"register meta value with a control character", inst(func(in *catalog.Instance) { in.Meta = map[string]string{"a": "\x00"} }), "instance.meta"},
		{"register meta value not UTF-8", inst(func(in *catalog.Instance) { in.Meta = map[string]string{"a": "\xff"} }), "instance.meta"},

		{"create key", key(func(*catalog.Key) {}), ""},
		{"create key with a limit", key(func(k *catalog.Key) { k.MaxInstances = 10 }), ""},
		{"create key nil", catalog.Command{Op: catalog.OpCreateKey}, "key"},
		{"create key empty ID", key(func(k *catalog.Key) { k.ID = "" }), "key.id"},
		{"create key short hash", key(func(k *catalog.Key) { k.SecretHash = []byte("x") }), "key.secret_hash"},
		{"create key no services", key(func(k *catalog.Key) { k.Services = nil }), "key.services"},
		{"create key bad pattern", key(func(k *catalog.Key) { k.Services = []string{"Web*"} }), "key.services"},
		{"create key long description", key(func(k *catalog.Key) { k.Description = strings.Repeat("d", 257) }), "key.description"},
		{"create key negative limit", key(func(k *catalog.Key) { k.MaxInstances = -1 }), "key.max_instances"},

		{"set status", catalog.Command{Op: catalog.OpSetStatus, ID: "i1", Status: catalog.StatusCritical, IfStatus: catalog.StatusPassing}, ""},
		{"set status draining (legacy)", catalog.Command{Op: catalog.OpSetStatus, ID: "i1", Status: catalog.StatusDraining}, ""},
		{"set status unknown", catalog.Command{Op: catalog.OpSetStatus, ID: "i1", Status: "down"}, "status"},
		{"set status empty", catalog.Command{Op: catalog.OpSetStatus, ID: "i1"}, "status"},
		{"set status bad condition", catalog.Command{Op: catalog.OpSetStatus, ID: "i1", Status: catalog.StatusPassing, IfStatus: "up"}, "if_status"},
		{"set status no ID", catalog.Command{Op: catalog.OpSetStatus, Status: catalog.StatusPassing}, "id"},
		{"deregister", catalog.Command{Op: catalog.OpDeregister, ID: "i1", IfStatus: catalog.StatusCritical}, ""},
		{"deregister no ID", catalog.Command{Op: catalog.OpDeregister}, "id"},
		{"deregister bad condition", catalog.Command{Op: catalog.OpDeregister, ID: "i1", IfStatus: "gone"}, "if_status"},
		{"drain", catalog.Command{Op: catalog.OpDrain, ID: "i1"}, ""},
		{"drain ID with a space", catalog.Command{Op: catalog.OpDrain, ID: "i 1"}, "id"},
		{"revoke key", catalog.Command{Op: catalog.OpRevokeKey, ID: "k1"}, ""},
		{"revoke key no ID", catalog.Command{Op: catalog.OpRevokeKey}, "id"},

		{"no op", catalog.Command{}, "op"},
		{"negative rules", catalog.Command{Op: catalog.OpRevokeKey, ID: "k1", Rules: -1}, "rules"},
		// Left to Apply, which halts the replica (ErrUnsupported) or skips.
		{"unknown op", catalog.Command{Op: "from_the_future"}, ""},
		{"newer rules", catalog.Command{Op: catalog.OpRevokeKey, Rules: catalog.RulesMax + 1}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cmd.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, catalog.ErrBadCommand) || !strings.Contains(err.Error(), ": "+tt.field+": ") {
				t.Fatalf("Validate() = %v, want ErrBadCommand naming %q", err, tt.field)
			}
		})
	}
}

// TestCommand_Validate_script: every command of the random scripts that
// Apply accepts passes Validate, so that validation before Apply refuses
// nothing Apply would have taken, except for the registrations with an
// unknown status the scripts make on purpose.
func TestCommand_Validate_script(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3, 42} {
		c := catalog.New()
		for i, cmd := range script(seed, 400) {
			res := c.Apply(uint64(i+1), cmd)
			if res.Err == nil {
				if err := cmd.Validate(); err != nil {
					t.Fatalf("seed %d command %d (%+v) applied but fails Validate: %v", seed, i, cmd, err)
				}
			}
		}
	}
}

func TestValidHost(t *testing.T) {
	for h, want := range map[string]bool{
		"10.0.0.1": true, "::1": true, "fe80::1": true, "::ffff:1.2.3.4": true,
		"a": true, "a-b.c": true, "A.B": true, "xn--bcher-kva.example": true, "1.2.3": true,
		"": false, ".": false, "a..b": false, "a.": false, ".a": false, "-a": false, "a-": false,
		"a_b": false, "a b": false, "a/b": false, "10.0.0.1:80": false, "[::1]": false, "fe80::1%eth0": false,
		"é.example": false,
	} {
		if got := catalog.ValidHost(h); got != want {
			t.Errorf("ValidHost(%q) = %v, want %v", h, got, want)
		}
	}
}

func TestValidID(t *testing.T) {
	for id, want := range map[string]bool{
		"i1": true, "aaaa0000000000000000000000000001": true, "key_0a1b2c3d4e5f6071": true, "key_seed_compat": true, "a.b-c": true,
		"": false, "a b": false, "a/b": false, "a\"b": false, "é": false, strings.Repeat("a", catalog.MaxIDLen+1): false,
	} {
		if got := catalog.ValidID(id); got != want {
			t.Errorf("ValidID(%q) = %v, want %v", id, got, want)
		}
	}
}
