package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/musterhq/muster/internal/catalog"
)

// flipInLog changes raft.db in dir as a failing disk would: in the value of
// the one log entry (bucket "logs", key the big-endian index, value the
// msgpack of raft.Log) that contains find, it replaces the byte at offset
// at within find by b. It returns the entry's index, after checking with
// the log store that the change landed inside the entry's Data.
func flipInLog(tb testing.TB, dir string, find []byte, at int, b byte) uint64 {
	tb.Helper()
	path := filepath.Join(dir, "raft.db")
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		tb.Fatal(err)
	}
	var index uint64
	err = db.Update(func(tx *bbolt.Tx) error {
		logs := tx.Bucket([]byte("logs"))
		if logs == nil {
			return errors.New("no logs bucket")
		}
		c := logs.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			i := bytes.Index(v, find)
			if i < 0 {
				continue
			}
			if index != 0 {
				return fmt.Errorf("%q is in more than one entry", find)
			}
			index = binary.BigEndian.Uint64(k)
			changed := bytes.Clone(v)
			changed[i+at] = b
			if err := logs.Put(bytes.Clone(k), changed); err != nil {
				return err
			}
		}
		if index == 0 {
			return fmt.Errorf("no log entry contains %q", find)
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		tb.Fatal(err)
	}

	store, err := raftboltdb.NewBoltStore(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer store.Close()
	var l raft.Log
	if err := store.GetLog(index, &l); err != nil {
		tb.Fatalf("the changed entry no longer reads as a log entry: %v", err)
	}
	want := bytes.Clone(find)
	want[at] = b
	if l.Type != raft.LogCommand || !bytes.Contains(l.Data, want) {
		tb.Fatalf("the change is not inside entry %d's data: %q", index, l.Data)
	}
	return index
}

// frameV2 wraps a JSON body as command encoding version 2 does: the
// version byte, the body, and the CRC-32C of both, big-endian.
func frameV2(body []byte) []byte {
	b := append([]byte{2}, body...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
}

// waitHalt waits for n to halt and returns its error.
func waitHalt(tb testing.TB, n *Node) error {
	tb.Helper()
	select {
	case <-n.Done():
		return n.Err()
	case <-time.After(10 * time.Second):
		tb.Fatal("the node did not halt")
		return nil
	}
}

// checkCorruptHalt checks that the node halted at entry index because the
// entry is corrupt, and says so usefully: the index, the file and what to
// do.
func checkCorruptHalt(tb testing.TB, n *Node, cfg Config, index uint64) {
	tb.Helper()
	err := waitHalt(tb, n)
	if !errors.Is(err, catalog.ErrCorrupt) {
		tb.Fatalf("Err() = %v, want catalog.ErrCorrupt", err)
	}
	for _, want := range []string{
		fmt.Sprintf("log entry %d:", index),
		filepath.Join(cfg.DataDir, "raft.db"),
		"Restore the data dir from a backup",
	} {
		if !strings.Contains(err.Error(), want) {
			tb.Errorf("halt error lacks %q: %v", want, err)
		}
	}
	if n.IsReady() {
		tb.Error("a halted node reports ready")
	}
	if _, err := n.Apply(context.Background(), catalog.Command{Op: catalog.OpRevokeKey, ID: "k1"}); !errors.Is(err, ErrHalted) {
		tb.Errorf("Apply after halt = %v, want ErrHalted", err)
	}
	if err := n.Snapshot(); err == nil {
		tb.Error("a halted node took a snapshot that would cover the corrupt entry")
	}
}

// TestNode_HaltsOnCorruptEntry reproduces a byte flipped on disk inside a
// registration's log entry. Before entries carried a checksum, the node
// replayed the damaged entry and served the changed address (126.0.0.1,
// 127/0.0.1). Now it halts at that entry, with an error that names its
// index and the file and says what to do, and applies nothing from it on;
// restarted as it is, it halts there again.
func TestNode_HaltsOnCorruptEntry(t *testing.T) {
	key := catalog.Command{Op: catalog.OpCreateKey, Key: &catalog.Key{ID: "k1", SecretHash: hash("s"), Services: []string{"svc*"}}}
	reg := func(id, addr string, port int) catalog.Command {
		cmd := registerCmd(id, "svc", port)
		cmd.Instance.Address = addr
		return cmd
	}

	t.Run("checksummed entry, address changed to another valid one", func(t *testing.T) {
		cfg := testConfig(t, t.TempDir())
		n, _ := openReady(t, cfg)
		mustApply(t, n, key)
		mustApply(t, n, reg("i1", "127.0.0.1", 8001))
		mustApply(t, n, reg("i2", "10.0.0.2", 8002))
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
		// 127.0.0.1 → 126.0.0.1: still a valid address, so only the
		// checksum can tell.
		index := flipInLog(t, cfg.DataDir, []byte(`"address":"127.0.0.1"`), len(`"address":"12`), '6')

		for range 2 {
			cat := catalog.New()
			n, err := Open(cfg, cat)
			if err != nil {
				t.Fatal(err)
			}
			checkCorruptHalt(t, n, cfg, index)
			if _, ok := cat.Key("k1"); !ok {
				t.Error("the entries before the corrupt one were not applied")
			}
			for _, inst := range cat.Instances() {
				t.Errorf("instance %s at %s:%d is in the catalog; nothing from the corrupt entry on may be", inst.ID, inst.Address, inst.Port)
			}
			if got := cat.Index(); got >= index {
				t.Errorf("catalog index %d, want below the corrupt entry's %d", got, index)
			}
			n.Close()
		}
	})

	t.Run("version-1 entry, address made invalid", func(t *testing.T) {
		cfg := testConfig(t, t.TempDir())
		n, _ := openReady(t, cfg)
		mustApply(t, n, key)
		// An entry as muster wrote them before encoding version 2: no
		// checksum.
		b, err := catalog.EncodeCommand(reg("i1", "127.0.0.1", 8001))
		if err != nil {
			t.Fatal(err)
		}
		v1 := append([]byte{1}, b[1:len(b)-4]...)
		f := n.raft.Apply(v1, time.Second)
		if err := f.Error(); err != nil {
			t.Fatal(err)
		}
		if res, _ := f.Response().(catalog.Result); res.Err != nil {
			t.Fatalf("version-1 entry: %v", res.Err)
		}
		mustApply(t, n, reg("i2", "10.0.0.2", 8002))
		n.Close()

		// Undamaged, a version-1 entry replays as it always did.
		n, cat := openReady(t, cfg)
		if inst, ok := cat.Instance("i1"); !ok || inst.Address != "127.0.0.1" {
			t.Fatalf("version-1 entry after restart: %+v, %v", inst, ok)
		}
		n.Close()

		// 127.0.0.1 → 127/0.0.1: a version-1 entry has no checksum, but
		// the command no longer passes validation.
		index := flipInLog(t, cfg.DataDir, []byte(`"address":"127.0.0.1"`), len(`"address":"127`), '/')
		cat = catalog.New()
		n, err = Open(cfg, cat)
		if err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		checkCorruptHalt(t, n, cfg, index)
		if err := n.Err(); !strings.Contains(err.Error(), "instance.address") {
			t.Errorf("halt error does not name the field: %v", err)
		}
		for _, inst := range cat.Instances() {
			t.Errorf("instance %s at %s is in the catalog", inst.ID, inst.Address)
		}
	})
}

// TestNode_ApplyValidates: a command that fails validation is refused
// before it is proposed, so no entry in the log is one this version would
// refuse.
func TestNode_ApplyValidates(t *testing.T) {
	n, cat := openReady(t, testConfig(t, t.TempDir()))
	defer n.Close()
	before := n.raft.LastIndex()
	cmd := registerCmd("i1", "svc", 8001)
	cmd.Instance.Address = "127/0.0.1"
	if _, err := n.Apply(context.Background(), cmd); !errors.Is(err, catalog.ErrBadCommand) {
		t.Fatalf("Apply = %v, want ErrBadCommand", err)
	}
	if n.raft.LastIndex() != before || cat.Index() >= before+1 {
		t.Fatal("the invalid command reached the log")
	}
}

// TestNode_RefusesCommandTurnedNoop: a command entry whose type was
// changed to a no-op or a barrier (which Raft would skip, bringing a
// deregistered address back or losing a registration) is damage: the
// node refuses to open, naming the entry.
func TestNode_RefusesCommandTurnedNoop(t *testing.T) {
	for _, typ := range []raft.LogType{raft.LogNoop, raft.LogBarrier} {
		t.Run(typ.String(), func(t *testing.T) {
			cfg := testConfig(t, t.TempDir())
			n, _ := openReady(t, cfg)
			mustApply(t, n, catalog.Command{Op: catalog.OpCreateKey, Key: &catalog.Key{ID: "k1", SecretHash: hash("s"), Services: []string{"svc*"}}})
			mustApply(t, n, registerCmd("i1", "svc", 8001))
			res := mustApply(t, n, catalog.Command{Op: catalog.OpDeregister, ID: "i1"})
			if err := n.Close(); err != nil {
				t.Fatal(err)
			}
			store, err := raftboltdb.NewBoltStore(filepath.Join(cfg.DataDir, "raft.db"))
			if err != nil {
				t.Fatal(err)
			}
			var l raft.Log
			if err := store.GetLog(res.Index, &l); err != nil {
				t.Fatal(err)
			}
			l.Type = typ
			if err := store.StoreLog(&l); err != nil {
				t.Fatal(err)
			}
			store.Close()

			_, err = Open(cfg, catalog.New())
			if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), fmt.Sprintf("log entry %d", res.Index)) {
				t.Fatalf("Open with the deregistration turned into a %s: %v", typ, err)
			}
		})
	}
}
