package catalog_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/catalog"
)

// seeded returns a catalog holding key k1 (web-*) and passing instance i1 of
// web-a, applied at indexes 1 and 2.
func seeded(tb testing.TB) *replica {
	tb.Helper()
	r := newReplica()
	r.must(tb, createKey(newKey("k1", "web-*")), register(newInstance("i1", "web-a", "10.0.0.1", 80)))
	return r
}

// applyErrors are the errors Apply may return in Result.Err.
var applyErrors = []error{
	catalog.ErrNotFound, catalog.ErrKeyRevoked, catalog.ErrKeyScope,
	catalog.ErrConflict, catalog.ErrExists, catalog.ErrBadCommand, catalog.ErrProtocolMix,
	catalog.ErrSkipped,
}

func FuzzDecodeCommand(f *testing.F) {
	for _, cmd := range commands() {
		b, err := catalog.EncodeCommand(cmd)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	// Commands that hit the seeded catalog's state.
	for _, cmd := range []catalog.Command{
		register(newInstance("i2", "web-a", "10.0.0.1", 80)), // replaces i1
		register(newInstance("i1", "web-a", "10.0.0.2", 80)), // duplicate ID
		register(newInstance("i2", "db", "10.0.0.2", 80)),    // out of scope
		{Op: catalog.OpSetStatus, ID: "i1", Status: catalog.StatusCritical, IfStatus: catalog.StatusPassing},
		{Op: catalog.OpDeregister, ID: "i1", IfStatus: catalog.StatusCritical},
		{Op: catalog.OpRevokeKey, ID: "k1"},
		createKey(newKey("k1", "x")),
		// Tokens: of each role, refused forms, and create_key carrying
		// what only create_token may.
		createToken(newToken("t1", catalog.RoleRead, "web-*")),
		createToken(withExpiry(newToken("t1", catalog.RoleOperator, "web-a"), t0.Add(time.Hour))),
		createToken(newToken("t1", catalog.RoleAdmin, "*")),
		createToken(withCallbackTLS(newToken("t1", catalog.RoleRegister, "web-*"), catalog.CallbackTLSAny)),
		createToken(newToken("k1", catalog.RoleRead, "x")),                 // duplicate ID
		createToken(newToken("t1", catalog.RoleAdmin, "web-*")),            // admin of some services
		createToken(withExpiry(newToken("t1", catalog.RoleRead, "*"), t0)), // expires as it is created
		createToken(withCallbackTLS(newToken("t1", catalog.RoleRead, "*"), catalog.CallbackTLSAny)),
		createToken(newKey("t1", "*")), // no role
		createKey(newToken("t1", catalog.RoleRead, "*")),
		createKey(withExpiry(newKey("t1", "*"), t0.Add(time.Hour))),
	} {
		b, err := catalog.EncodeCommand(cmd)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		"",
		"\x01",
		"\x02{}",
		"{}",
		"\x01null",
		"\x01{}",
		"\x01[]",
		`` + "\x01" + `{"op":"register","instance":null}`,
		"\x01" + `{"op":"register","instance":{"id":"i9","service":"web-a","token_hash":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","status":"passing","key_id":"k1"}}`,
		"\x01" + `{"op":"register","instance":{"id":"i9","service":"web-a","registered_at":"9999-12-31T23:59:59.999999999+23:59"}}`,
		"\x01" + `{"op":"create_key","key":{"id":"k2","secret_hash":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","services":[""]}}`,
		"\x01" + `{"op":"create_key","key":null}`,
		"\x01" + `{"op":"set_status","id":"i1","status":"critical","if_status":"passing","OP":"deregister"}`,
		"\x01" + `{"op":"register","instance":{"tags":[],"meta":{},"token_hash":""}}`,
		"\x01" + `{"op":"set_status","id":"i1","status":"passing\ud800"}`,
		"\x01" + `{"op":"create_token","key":{"id":"t2","secret_hash":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","services":["*"],"role":"admin","expires_at":"2030-01-01T00:00:00Z"}}`,
		"\x01" + `{"op":"create_token","key":{"id":"t2","secret_hash":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","services":["web-*"],"role":"read","callback_tls":"any"}}`,
		"\x01" + `{"op":"create_token","key":{"id":"t2","secret_hash":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","services":["web-*"],"role":"Root"}}`,
		"\x01" + `{"op":"create_token","key":{"id":"t2","secret_hash":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","services":["web-*"],"role":"register","expires_at":"0001-01-01T00:00:00Z"}}`,
		"\x01" + `{"op":"create_key","key":{"id":"t2","secret_hash":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","services":["web-*"],"role":"read"}}`,
		"\x01" + `{"op":"create_token","key":{"id":"t2","secret_hash":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","services":["web-*"],"role":"read"},"skip_if_unknown":true}`,
	} {
		f.Add([]byte(s))
		if len(s) > 0 && s[0] == 1 {
			// The same body in encoding version 2, its checksum right.
			f.Add(frameV2([]byte(s[1:])))
		}
	}
	// Version-2 entries damaged: a flipped byte in the body, in the
	// checksum, truncated, relabelled as version 1.
	good, err := catalog.EncodeCommand(register(newInstance("i2", "web-a", "10.0.0.2", 80)))
	if err != nil {
		f.Fatal(err)
	}
	for _, i := range []int{1, 30, len(good) / 2, len(good) - 5, len(good) - 1} {
		b := bytes.Clone(good)
		b[i] ^= 0x20
		f.Add(b)
	}
	f.Add(good[:len(good)-1])
	f.Add(good[:3])
	f.Add(append([]byte{1}, good[1:]...))
	f.Add(asV1(good))

	f.Fuzz(func(t *testing.T, b []byte) {
		var cmd catalog.Command
		var err error
		if !noPanic(t, "DecodeCommand", func() { cmd, err = catalog.DecodeCommand(b) }) {
			return
		}
		if err != nil {
			// Which error each kind of entry may get: corruption only for
			// the versions it can be told in, ErrBadCommand only where
			// every replica refuses alike (no entry, or a version-2 body
			// whose checksum matches), ErrUnsupported only for an unknown
			// version byte.
			var want []error
			switch {
			case len(b) == 0:
				want = []error{catalog.ErrBadCommand}
			case b[0] == 1:
				want = []error{catalog.ErrCorrupt}
			case b[0] == 2:
				want = []error{catalog.ErrCorrupt, catalog.ErrBadCommand}
			default:
				want = []error{catalog.ErrUnsupported}
			}
			n := 0
			for _, e := range []error{catalog.ErrCorrupt, catalog.ErrBadCommand, catalog.ErrUnsupported} {
				if errors.Is(err, e) {
					n++
					if !slices.Contains(want, e) {
						t.Errorf("DecodeCommand(%q) error %v; want one of %v", b, err, want)
					}
				}
			}
			if n != 1 {
				t.Errorf("DecodeCommand(%q) error %v wraps %d of ErrCorrupt, ErrBadCommand, ErrUnsupported; want exactly one", b, err, n)
			}
			return
		}
		if b[0] == 1 {
			// A version-1 entry is validated as it is decoded.
			if err := cmd.Validate(); err != nil {
				t.Errorf("DecodeCommand accepted a version-1 entry that fails Validate: %v", err)
			}
		}

		r := seeded(t)
		before := snapshotJSON(t, r.c)
		var res catalog.Result
		if !noPanic(t, "Apply", func() { res = r.c.Apply(3, cmd) }) {
			return
		}
		if errors.Is(res.Err, catalog.ErrUnsupported) {
			// The replica must stop here: nothing applied, index unmoved.
			if after := snapshotJSON(t, r.c); !bytes.Equal(after, before) {
				t.Errorf("unsupported command (%v) changed the catalog:\nbefore %s\nafter  %s", res.Err, before, after)
			}
			return
		}
		if res.Index != 3 || r.c.Index() != 3 {
			t.Errorf("Result.Index = %d, Index() = %d, want 3", res.Index, r.c.Index())
		}
		if res.Err != nil {
			known := false
			for _, e := range applyErrors {
				known = known || errors.Is(res.Err, e)
			}
			if !known {
				t.Errorf("Apply returned unexpected error %v", res.Err)
			}
			want := bytes.Replace(before, []byte(`"index":2`), []byte(`"index":3`), 1)
			if after := snapshotJSON(t, r.c); !bytes.Equal(after, want) {
				t.Errorf("failed command (%v) changed the catalog:\nbefore %s\nafter  %s", res.Err, before, after)
			}
		}

		// Whatever the command did, the state survives a snapshot round trip.
		snap := snapshotJSON(t, r.c)
		other := catalog.New()
		if err := other.Restore(bytes.NewReader(snap)); err != nil {
			t.Fatalf("Restore of the snapshot after Apply: %v\n%s", err, snap)
		}
		if again := snapshotJSON(t, other); !bytes.Equal(again, snap) {
			t.Errorf("snapshot round trip after Apply differs:\n%s\n%s", snap, again)
		}

		enc, err := catalog.EncodeCommand(cmd)
		if err != nil {
			t.Fatalf("EncodeCommand of a decoded command: %v", err)
		}
		dec, err := catalog.DecodeCommand(enc)
		if err != nil {
			t.Fatalf("DecodeCommand(EncodeCommand(cmd)): %v\n%s", err, enc)
		}
		enc2, err := catalog.EncodeCommand(dec)
		if err != nil {
			t.Fatalf("EncodeCommand after round trip: %v", err)
		}
		if !bytes.Equal(enc, enc2) {
			t.Errorf("encoding not stable:\n%s\n%s", enc, enc2)
		}
	})
}

func FuzzRestore(f *testing.F) {
	full := newReplica()
	populate(f, full)
	good := snapshotJSON(f, full.c)
	f.Add(good)
	f.Add(snapshotJSON(f, catalog.New()))
	f.Add(snapshotJSON(f, seeded(f).c))
	f.Add(good[:len(good)/2])
	f.Add(append(bytes.Clone(good), good...))
	for _, s := range []string{
		"",
		"null",
		"{}",
		"[]",
		`{"version":1}`,
		`{"version":2,"index":1}`,
		`{"version":1,"index":18446744073709551615}`,
		`{"version":1,"index":-1}`,
		`{"version":1,"index":5,"services":{"ghost":4}}`,
		`{"version":1,"index":5,"instances":[{"id":"a","service":"s"}],"services":{}}`,
		`{"version":1,"index":5,"instances":[{"id":"a","service":"s"},{"id":"a","service":"t"}],"services":{"s":1,"t":2}}`,
		`{"version":1,"index":5,"keys":[{"id":"k","secret_hash":"AAAA"},{"id":"k2","secret_hash":"AAAA"}]}`,
		`{"version":1,"instances":[{"id":"a","registered_at":"2025-01-02T03:04:05+23:59"}],"services":{"":1}}`,
		`{"version":1,"index":7,"instances":[` + instJSON("a", "orphan", zeroHash, "passing") + `]}`,
		`{"version":1,"index":7,"instances":[` + instJSON("a", "s", zeroHash, "passing") + `,` + instJSON("b", "s", oneHash, "critical") + `],"keys":[{"id":"k","secret_hash":"` + zeroHash + `","services":["*"]}],"services":{"s":6,"gone":2}}`,
		// Lists holding null decode into nil pointers.
		`{"version":1,"index":3,"instances":[null]}`,
		`{"version":1,"index":3,"keys":[null]}`,
		// Keys with the fields of tokens, kept and refused.
		`{"version":1,"index":4,"keys":[{"id":"t","secret_hash":"` + zeroHash + `","services":["*"],"role":"admin","expires_at":"2030-01-01T00:00:00Z","created_at":"2029-01-01T00:00:00Z"},{"id":"u","secret_hash":"` + oneHash + `","services":["web"],"role":"register","callback_tls":"any"}]}`,
		`{"version":1,"index":4,"keys":[{"id":"t","secret_hash":"` + zeroHash + `","services":["web"],"role":"admin"}]}`,
		`{"version":1,"index":4,"keys":[{"id":"t","secret_hash":"` + zeroHash + `","services":["*"],"role":"read","callback_tls":"any"}]}`,
		`{"version":1,"index":4,"keys":[{"id":"t","secret_hash":"` + zeroHash + `","services":["*"],"role":"owner"}]}`,
		`{"version":1,"index":4,"keys":[{"id":"t","secret_hash":"` + zeroHash + `","services":["*"],"role":"read","expires_at":"2020-01-01T00:00:00Z","created_at":"2029-01-01T00:00:00Z"}]}`,
	} {
		f.Add([]byte(s))
	}
	// The binary versions, the CAs' (5) among them.
	for _, name := range []string{"snapshot.v2.bin", "snapshot.v3.bin", "snapshot.v5.bin"} {
		b, err := os.ReadFile("testdata/golden/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}

	f.Fuzz(func(t *testing.T, b []byte) {
		r := newReplica()
		populate(t, r)
		before := snapshotJSON(t, r.c)
		sub := r.c.Subscribe()
		defer sub.Close()

		var err error
		if !noPanic(t, "Restore", func() { err = r.c.Restore(bytes.NewReader(b)) }) {
			return // the catalog may still be locked
		}
		if err != nil {
			if after := snapshotJSON(t, r.c); !bytes.Equal(after, before) {
				t.Errorf("failed Restore (%v) changed the catalog:\nbefore %s\nafter  %s", err, before, after)
			}
			if ch, ok := sub.Take(); ok {
				t.Errorf("a failed Restore notified subscribers: %+v", ch)
			}
			return
		}
		if ch, ok := sub.Take(); !ok || !ch.All {
			t.Errorf("after Restore the subscriber got %+v, %v; want a change of everything", ch, ok)
		}
		for _, inst := range r.c.Instances() {
			if v := r.c.Service(inst.Service); v == nil || !slices.Contains(v.Instances, inst) {
				t.Errorf("instance %s is not in its service's view", inst.ID)
			}
		}
		// Whatever was accepted can be snapshotted and restored again, as a
		// follower installing this node's next snapshot would.
		snap := snapshotJSON(t, r.c)
		other := catalog.New()
		if err := other.Restore(bytes.NewReader(snap)); err != nil {
			t.Fatalf("restoring the snapshot of a restored catalog: %v\n%s", err, snap)
		}
		if again := snapshotJSON(t, other); !bytes.Equal(again, snap) {
			t.Errorf("second round trip differs:\n%s\n%s", snap, again)
		}
		// So can its binary form, which alone holds the CAs.
		bin := snapshotBinary(t, r.c)
		third := catalog.New()
		if err := third.Restore(bytes.NewReader(bin)); err != nil {
			t.Fatalf("restoring the binary snapshot of a restored catalog: %v", err)
		}
		if again := snapshotBinary(t, third); !bytes.Equal(again, bin) || len(third.CAs()) != len(r.c.CAs()) {
			t.Errorf("binary round trip differs (%d CAs, %d before)", len(third.CAs()), len(r.c.CAs()))
		}
		// And the catalog still applies commands over the restored state.
		idx := r.c.Index()
		for _, cmd := range commands() {
			idx++
			noPanic(t, fmt.Sprintf("Apply(%s) after Restore", cmd.Op), func() { r.c.Apply(idx, cmd) })
		}
	})
}

// FuzzDecodeCommandV2 explores the body of encoding version 2 behind a
// matching checksum (which a fuzzer would rarely hit by chance), and
// checks that changing any one byte after the first is caught: CRC-32C
// detects every error burst of up to 32 bits.
func FuzzDecodeCommandV2(f *testing.F) {
	for _, cmd := range commands() {
		b, err := catalog.EncodeCommand(cmd)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[1:len(b)-4], uint(7), byte(1))
	}
	f.Add([]byte(`{"op":"register","instance":{"id":"i9","service":"web-a","address":"127/0.0.1","port":80}}`), uint(40), byte(0x40))
	f.Add([]byte(`{"op":"create_key","key":{"id":"k2","services":["*"],"max_instances":-1}}`), uint(0), byte(0))
	f.Add([]byte(`{"op":"set_status","id":"i1","status":"critical","rules":99}`), uint(3), byte(0xff))
	f.Add([]byte(`{"op":"create_token","key":{"id":"t2","secret_hash":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","services":["*"],"role":"admin"}}`), uint(90), byte(0x01))
	f.Add([]byte(`{"op":"create_token","key":{"id":"t2","secret_hash":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","services":["web-*"],"role":"admin","callback_tls":"any","expires_at":"2000-01-01T00:00:00Z"}}`), uint(0), byte(0))
	f.Add([]byte(`{"op":"create_key","key":{"id":"t2","secret_hash":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","services":["*"],"callback_tls":"verify"}}`), uint(0), byte(0))
	f.Add([]byte(`null`), uint(1), byte(0x80))
	f.Add([]byte{}, uint(0), byte(1))

	f.Fuzz(func(t *testing.T, body []byte, pos uint, mask byte) {
		b := frameV2(body)
		var cmd catalog.Command
		var err error
		if !noPanic(t, "DecodeCommand", func() { cmd, err = catalog.DecodeCommand(b) }) {
			return
		}
		if err != nil && (!errors.Is(err, catalog.ErrBadCommand) || errors.Is(err, catalog.ErrCorrupt)) {
			t.Errorf("DecodeCommand of a well-framed version-2 entry: %v; want ErrBadCommand only", err)
		}
		if err == nil {
			var verr error
			if !noPanic(t, "Validate", func() { verr = cmd.Validate() }) {
				return
			}
			if verr != nil && !errors.Is(verr, catalog.ErrBadCommand) {
				t.Errorf("Validate error %v does not wrap ErrBadCommand", verr)
			}
			if verr == nil {
				r := seeded(t)
				noPanic(t, "Apply", func() { r.c.Apply(3, cmd) })
			}
		}
		if mask == 0 {
			return
		}
		damaged := bytes.Clone(b)
		damaged[1+int(pos%uint(len(b)-1))] ^= mask
		if !noPanic(t, "DecodeCommand", func() { _, err = catalog.DecodeCommand(damaged) }) {
			return
		}
		if !errors.Is(err, catalog.ErrCorrupt) {
			t.Errorf("a changed byte in %q went unnoticed: DecodeCommand = %v", damaged, err)
		}
	})
}
