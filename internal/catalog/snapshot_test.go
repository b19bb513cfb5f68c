package catalog_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/catalog"
)

// snapshotBinary returns the catalog's snapshot as written by WriteBinary
// (version 3).
func snapshotBinary(tb testing.TB, c *catalog.Catalog) []byte {
	tb.Helper()
	var buf bytes.Buffer
	n, err := c.Snapshot().WriteBinary(&buf)
	if err != nil {
		tb.Fatalf("WriteBinary: %v", err)
	}
	if n != int64(buf.Len()) {
		tb.Fatalf("WriteBinary reported %d bytes, wrote %d", n, buf.Len())
	}
	return buf.Bytes()
}

// populateAll is populate, plus what later rules added to a catalog: an
// instance with active checks, a service the tutorial protocol may not
// take (rules 2), and an eviction's bar.
func populateAll(tb testing.TB, l *replica) {
	tb.Helper()
	populate(tb, l)
	checked := withChecks(newInstance("d1", "db", "10.0.0.8", 5432), 0, tcpCheck,
		catalog.Check{Type: "grpc", Port: 9090, Interval: time.Second, Timeout: time.Second, GRPCService: "db.v1", FailuresBeforeCritical: 1, SuccessesBeforePassing: 1})
	checked.KeyID, checked.HostIP = "k2", "10.0.0.8"
	cmd := register(checked)
	cmd.Rules = catalog.RulesCurrent
	evicted := newInstance("e1", "web-b", "10.0.0.9", 80)
	evicted.KeyID = "k2"
	reg := register(evicted)
	reg.Rules = catalog.RulesCurrent
	l.must(tb, cmd, reg, catalog.Command{Op: catalog.OpEvict, ID: "e1", Until: t0.Add(time.Hour), Reason: "bad build"})
}

// populateTokens is populateAll, plus tokens of every role with every
// field of tokens set, a revoked token, and an instance registered with
// an enrolment key created by create_token.
func populateTokens(tb testing.TB, l *replica) {
	tb.Helper()
	populateAll(tb, l)
	reg := newInstance("t1", "web-c", "10.0.0.10", 80)
	reg.KeyID = "tok-register"
	l.must(tb,
		createToken(newToken("tok-read", catalog.RoleRead, "web-*")),
		createToken(withExpiry(newToken("tok-operator", catalog.RoleOperator, "web-a", "cache"), t0.Add(24*time.Hour))),
		createToken(newToken("tok-admin", catalog.RoleAdmin, "*")),
		createToken(withCallbackTLS(withExpiry(newToken("tok-register", catalog.RoleRegister, "web-c"), t0.Add(time.Hour)), catalog.CallbackTLSAny)),
		createToken(withCallbackTLS(newToken("tok-verify", catalog.RoleRegister, "web-d"), catalog.CallbackTLSVerify)),
		createToken(newToken("tok-gone", catalog.RoleRead, "x")),
		catalog.Command{Op: catalog.OpRevokeKey, ID: "tok-gone"},
		register(reg),
	)
}

// TestSnapshot_WriteBinary: version 3 restores to the very catalog
// version 1 does, is written the same for the same state, and the
// restored catalog goes on like the original.
func TestSnapshot_WriteBinary(t *testing.T) {
	for _, tc := range []struct {
		name    string
		fill    func(testing.TB, *replica)
		version byte // the oldest that holds the state
	}{
		{"empty", func(testing.TB, *replica) {}, 2},
		{"populated", populate, 2},
		{"with checks, keyed services and bars", populateAll, 2},
		{"with tokens of every role", populateTokens, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := newReplica()
			tc.fill(t, src)
			bin := snapshotBinary(t, src.c)
			if bin[0] != 0 || bin[16] != tc.version {
				t.Fatalf("a binary snapshot starts with %#x and is of version %d, want 0 and %d", bin[0], bin[16], tc.version)
			}
			dst := newReplica()
			populate(t, dst) // replaced, not merged
			if err := dst.c.Restore(bytes.NewReader(bin)); err != nil {
				t.Fatalf("Restore: %v", err)
			}
			if got, want := snapshotJSON(t, dst.c), snapshotJSON(t, src.c); !bytes.Equal(got, want) {
				t.Errorf("restored from version %d:\n got %s\nwant %s", tc.version, got, want)
			}
			if again := snapshotBinary(t, dst.c); !bytes.Equal(again, bin) {
				t.Errorf("the restored catalog's snapshot differs from the original's")
			}
			for _, k := range src.c.Keys() {
				if got, ok := dst.c.KeyBySecretHash(k.SecretHash); !ok || !reflect.DeepEqual(got, k) {
					t.Errorf("key %s restored as %+v, want %+v", k.ID, got, k)
				}
			}
			fromV1 := catalog.New()
			if err := fromV1.Restore(bytes.NewReader(snapshotJSON(t, src.c))); err != nil {
				t.Fatal(err)
			}
			if a, b := snapshotBinary(t, fromV1), bin; !bytes.Equal(a, b) {
				t.Errorf("the catalogs restored from JSON and binary differ")
			}
			for _, sv := range src.c.Services() {
				dv := dst.c.Service(sv.Name)
				if dv == nil || dv.Index != sv.Index || len(dv.Instances) != len(sv.Instances) || len(dv.Bars) != len(sv.Bars) {
					t.Errorf("Service(%q) = %+v, want %+v", sv.Name, dv, sv)
				}
			}
			for _, in := range src.c.Instances() {
				got, ok := dst.c.Instance(in.ID)
				if !ok || !got.RegisteredAt.Equal(in.RegisteredAt) || got.Host() != in.Host() {
					t.Errorf("instance %s restored as %+v", in.ID, got)
				}
			}
			idx := src.idx
			for _, cmd := range commands() {
				idx++
				if r1, r2 := src.c.Apply(idx, cmd), dst.c.Apply(idx, cmd); resultString(r1) != resultString(r2) {
					t.Errorf("Apply %s: original %+v, restored %+v", cmd.Op, r1, r2)
				}
			}
			if a, b := snapshotJSON(t, src.c), snapshotJSON(t, dst.c); !bytes.Equal(a, b) {
				t.Errorf("catalogs diverged after restore:\n%s\n%s", a, b)
			}
		})
	}

	t.Run("point in time", func(t *testing.T) {
		l := newReplica()
		populateAll(t, l)
		want := snapshotBinary(t, l.c)
		snap := l.c.Snapshot()
		l.must(t,
			register(newInstance("late", "web-a", "10.0.0.7", 80)),
			catalog.Command{Op: catalog.OpDeregister, ID: "w2"},
			catalog.Command{Op: catalog.OpRevokeKey, ID: "k1"},
		)
		var buf bytes.Buffer
		if _, err := snap.WriteBinary(&buf); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), want) {
			t.Error("snapshot written after later changes differs")
		}
	})

	t.Run("write error", func(t *testing.T) {
		l := newReplica()
		populate(t, l)
		if _, err := l.c.Snapshot().WriteBinary(failWriter{}); err == nil {
			t.Error("WriteBinary to a failing writer returned nil")
		}
	})
}

// frameSnapshotV2 makes body a version-2 snapshot: the header, body, and the
// checksum of both.
func frameSnapshotV2(body []byte) []byte { return frameSnapshot(2, body) }

// frameSnapshot makes body a binary snapshot of the version: the header,
// body, and the checksum of both.
func frameSnapshot(version byte, body []byte) []byte {
	b := append([]byte("\x00muster-snapshot"), version)
	b = append(b, body...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
}

// timeBin is the binary snapshot's form of a time of Unix seconds sec
// in UTC.
func timeBin(sec int64) []byte { return append(binary.AppendVarint(nil, sec), 0, 0) }

// noTime is the binary snapshot's form of the zero time.
func noTime() []byte { return timeBin(time.Time{}.Unix()) }

// body2 is a version-2 body built from uvarints, strings (a length and
// the bytes) and raw bytes.
func body2(parts ...any) []byte {
	var b []byte
	for _, p := range parts {
		switch v := p.(type) {
		case int:
			b = binary.AppendUvarint(b, uint64(v))
		case string:
			b = binary.AppendUvarint(b, uint64(len(v)))
			b = append(b, v...)
		case []byte:
			b = append(b, v...)
		}
	}
	return b
}

// TestCatalog_Restore_v2Damaged: a binary snapshot (version 2, as
// hand-made, or 3, as WriteBinary writes) that is damaged, cut short, of
// another version, or that breaks a rule every snapshot meets, is
// refused, and the catalog and its subscribers see nothing.
func TestCatalog_Restore_v2Damaged(t *testing.T) {
	src := newReplica()
	populateTokens(t, src)
	good := snapshotBinary(t, src.c)
	hash := string(make([]byte, 32))
	zeroTime := append(binary.AppendVarint(nil, time.Time{}.Unix()), 0, 0)
	// An instance record with the given ID, service and status, every
	// other field empty (shared strings written anew each time).
	inst := func(id, service, status string) []byte {
		return body2(id, 0, service, 0, "", []byte{0}, 0, "", 0, 0, []byte{0, 0}, hash, 0, "", 0, "", 0, "", 0, 0, status, []byte{0}, []byte{0, 0, 0}, 0, 0)
	}
	bad := []struct {
		name string
		in   []byte
	}{
		{"header only", []byte("\x00muster-snapshot\x02")},
		{"cut short", good[:len(good)/2]},
		{"last byte gone", good[:len(good)-1]},
		{"data after", append(append([]byte{}, good...), 0)},
		{"not muster", append([]byte("\x00other-snapshot!\x02"), good[17:]...)},
		{"future version", func() []byte {
			b := bytes.Clone(good)
			b[16] = 4
			return b
		}()},
		{"version 3 read as 2", func() []byte {
			b := bytes.Clone(good)
			b[16] = 2
			return b
		}()},
		// Well framed (the checksum matches), but not what WriteBinary
		// writes, or not a state Apply could have produced.
		{"empty body", frameSnapshotV2(nil)},
		{"trailing byte", frameSnapshotV2(body2(1, 0, 0, 0, 0, 0, 0))},
		{"count beyond the data", frameSnapshotV2(body2(1, 0, 1000000))},
		{"huge count", frameSnapshotV2(body2(1, 0, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}))},
		{"shared string never defined", frameSnapshotV2(body2(1, 0, 1, "a", 1, 0, 0, 0, 0))},
		{"bool of 2", frameSnapshotV2(body2(1, 0, 1, []byte(strings.Replace(string(inst("a", "s", "passing")), "passing\x00", "passing\x02", 1)), 0, 0, 0))},
		{"instance without ID", frameSnapshotV2(body2(1, 0, 1, inst("", "s", "passing"), 0, 0, 0))},
		{"instance with bad service", frameSnapshotV2(body2(1, 0, 1, inst("a", "S", "passing"), 0, 0, 0))},
		{"instance with bad status", frameSnapshotV2(body2(1, 0, 1, inst("a", "s", "up"), 0, 0, 0))},
		{"duplicate instance IDs", frameSnapshotV2(body2(1, 0, 2, inst("a", "s", "passing"), inst("a", "t", "passing"), 0, 0, 0))},
		{"key with short hash", frameSnapshotV2(body2(1, 1, "k", "abc", 0, "", 0, []byte{0, 0, 0}, 0, 0, 0, 0, 0))},
		{"bad service name", frameSnapshotV2(body2(1, 0, 0, 1, 0, "Bad", 1, 0, 0))},
		{"bar without until", frameSnapshotV2(body2(1, 0, 0, 0, 0, 1, 0, "s", 0, "10.0.0.1", []byte{0}, "a", 0, "", zeroTime, 1))},
		{"nanoseconds out of range", frameSnapshotV2(body2(1, 1, "k", hash, 0, "", 0, []byte{0}, 1000000000, []byte{0}, 0, 0, 0, 0, 0))},
		// Version 3: a key's role, expiry and callback TLS mode break
		// the rules Apply keeps (see the well-formed twin below).
		{"version 3 key with an unknown role", frameSnapshot(3, token3("root", noTime(), ""))},
		{"version 3 admin key of one service", frameSnapshot(3, body2(1, 1, "k", hash, 1, 0, "web", "", 0, timeBin(100), 0, 0, "admin", noTime(), 0, "", 0, 0, 0, 0))},
		{"version 3 callback any on a read key", frameSnapshot(3, token3("read", noTime(), "any"))},
		{"version 3 unknown callback mode", frameSnapshot(3, token3("register", noTime(), "none"))},
		{"version 3 expiry before creation", frameSnapshot(3, token3("read", timeBin(50), ""))},
		{"a version-2 body labelled version 3", frameSnapshot(3, body2(1, 1, "k", hash, 1, 0, "*", "", 0, timeBin(100), 0, 0, 0, 0, 0))},
	}
	for _, ok := range [][]byte{
		frameSnapshot(3, token3("admin", noTime(), "")),
		frameSnapshot(3, token3("register", timeBin(200), "any")),
		frameSnapshot(3, token3("", noTime(), "")),
	} {
		if err := catalog.New().Restore(bytes.NewReader(ok)); err != nil {
			t.Fatalf("a well-formed hand-made version-3 snapshot: %v", err)
		}
	}
	// The well-formed twin of the last cases restores, so that they fail
	// for the reason their name gives.
	if err := catalog.New().Restore(bytes.NewReader(frameSnapshotV2(body2(1, 1, "k", hash, 0, "", 0, []byte{0, 0, 0}, 0, 1, inst("a", "s", "passing"), 0, 0, 0)))); err != nil {
		t.Fatalf("a well-formed hand-made snapshot: %v", err)
	}
	for i := 17; i < len(good); i += max(1, len(good)/50) {
		b := bytes.Clone(good)
		b[i] ^= 0x10
		bad = append(bad, struct {
			name string
			in   []byte
		}{fmt.Sprintf("byte %d changed", i), b})
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			l := newReplica()
			populate(t, l)
			before := snapshotJSON(t, l.c)
			sub := l.c.Subscribe()
			defer sub.Close()
			var err error
			if !noPanic(t, "Restore", func() { err = l.c.Restore(bytes.NewReader(tt.in)) }) {
				return
			}
			if err == nil {
				t.Fatal("Restore = nil, want an error")
			}
			if got := snapshotJSON(t, l.c); !bytes.Equal(got, before) {
				t.Errorf("a failed Restore changed the catalog")
			}
			if ch, ok := sub.Take(); ok {
				t.Errorf("a failed Restore notified subscribers: %+v", ch)
			}
		})
	}
}

// token3 is the body of a version-3 snapshot holding one key, of the
// role, the expiry and the callback TLS mode given, created at Unix
// second 100, its services ["*"].
func token3(role string, expires []byte, callback string) []byte {
	return body2(1, 1, "k", string(make([]byte, 32)), 1, 0, "*", "", 0, timeBin(100), 0, 0, role, expires, 0, callback, 0, 0, 0, 0)
}

// FuzzRestoreV2 explores the body of a binary snapshot behind a matching
// checksum (which a fuzzer would rarely hit by chance), in version 2 or
// 3 (v3): Restore never panics, a refused snapshot changes nothing, and
// whatever it accepts is a catalog that writes and restores again to
// itself.
func FuzzRestoreV2(f *testing.F) {
	for _, fill := range []func(testing.TB, *replica){populate, populateAll, populateTokens, func(testing.TB, *replica) {}} {
		l := newReplica()
		fill(f, l)
		b := snapshotBinary(f, l.c)
		f.Add(b[17:len(b)-4], true)
	}
	if b, err := os.ReadFile("testdata/golden/snapshot.v2.bin"); err == nil {
		f.Add(b[17:len(b)-4], false)
	}
	f.Add([]byte{}, false)
	f.Add(body2(1, 0, 1000000), false)
	f.Add(token3("admin", noTime(), ""), true)
	f.Add(token3("read", noTime(), "any"), true)

	f.Fuzz(func(t *testing.T, body []byte, v3 bool) {
		r := newReplica()
		populate(t, r)
		before := snapshotJSON(t, r.c)
		version := byte(2)
		if v3 {
			version = 3
		}
		var err error
		if !noPanic(t, "Restore", func() { err = r.c.Restore(bytes.NewReader(frameSnapshot(version, body))) }) {
			return
		}
		if err != nil {
			if after := snapshotJSON(t, r.c); !bytes.Equal(after, before) {
				t.Errorf("failed Restore (%v) changed the catalog", err)
			}
			return
		}
		for _, inst := range r.c.Instances() {
			if v := r.c.Service(inst.Service); v == nil || !slices.Contains(v.Instances, inst) {
				t.Errorf("instance %s is not in its service's view", inst.ID)
			}
		}
		bin, js := snapshotBinary(t, r.c), snapshotJSON(t, r.c)
		other := catalog.New()
		if err := other.Restore(bytes.NewReader(bin)); err != nil {
			t.Fatalf("restoring the snapshot of a restored catalog: %v", err)
		}
		if again := snapshotJSON(t, other); !bytes.Equal(again, js) {
			t.Errorf("second round trip differs:\n%s\n%s", js, again)
		}
		idx := r.c.Index()
		for _, cmd := range commands() {
			idx++
			noPanic(t, fmt.Sprintf("Apply(%s) after Restore", cmd.Op), func() { r.c.Apply(idx, cmd) })
		}
	})
}

// bigCatalog is a catalog shaped like muster bench's bulk load: n
// instances in services of 100, at one address, under two keys.
func bigCatalog(tb testing.TB, n int) *catalog.Catalog {
	tb.Helper()
	l := newReplica()
	l.must(tb, createKey(newKey("k1", "*")), createKey(newKey("k2", "*")))
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range n {
		// IDs as the registry makes them: 16 random bytes in hex.
		id := fmt.Sprintf("%016x%016x", rng.Uint64(), rng.Uint64())
		in := newInstance(id, fmt.Sprintf("bench-fleet-%04d", i/100), "127.0.0.1", 10000+i%100)
		in.Tags, in.Meta = nil, nil
		in.TTL, in.DeregisterAfter, in.HostIP = time.Hour, 168*time.Hour, "127.0.0.1"
		in.KeyID = []string{"k1", "k2"}[i%2]
		in.RegisteredAt = t0.Add(time.Duration(i) * time.Millisecond)
		cmd := register(in)
		cmd.Rules = catalog.RulesCurrent
		l.must(tb, cmd)
	}
	return l.c
}

// BenchmarkSnapshot measures writing and restoring a snapshot of 100,000
// instances in either version: the restore is what a restart of the
// registry waits for, the write what each Raft snapshot costs. Run it
// with
//
//	go test -run xxx -bench Snapshot -benchtime 5x ./internal/catalog/
func BenchmarkSnapshot(b *testing.B) {
	c := bigCatalog(b, 100_000)
	formats := []struct {
		name  string
		write func(*catalog.Snapshot, *bytes.Buffer) error
	}{
		{"v1-json", func(s *catalog.Snapshot, w *bytes.Buffer) error { _, err := s.WriteTo(w); return err }},
		{"v3-binary", func(s *catalog.Snapshot, w *bytes.Buffer) error { _, err := s.WriteBinary(w); return err }},
	}
	for _, f := range formats {
		var buf bytes.Buffer
		b.Run("Write/"+f.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				buf.Reset()
				if err := f.write(c.Snapshot(), &buf); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(buf.Len()), "bytes")
		})
		b.Run("Restore/"+f.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				dst := catalog.New()
				if err := dst.Restore(bytes.NewReader(buf.Bytes())); err != nil {
					b.Fatal(err)
				}
				if dst.Len() != 100_000 {
					b.Fatalf("restored %d instances", dst.Len())
				}
				runtime.KeepAlive(dst)
			}
		})
	}
}
