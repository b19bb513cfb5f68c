package catalog_test

import (
	"bytes"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/musterhq/muster/internal/catalog"
)

// goldenSnapshot is the version-1 snapshot of the golden commands: index
// 16, services fetch_url (12), other (15) and wordcount (5), two
// instances and their keys.
func goldenSnapshot(tb testing.TB) []byte {
	tb.Helper()
	b, err := os.ReadFile("testdata/golden/snapshot.v1.json")
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestReadBackup(t *testing.T) {
	golden := goldenSnapshot(t)
	body := strings.TrimSpace(string(golden))
	tests := []struct {
		name string
		in   string
		want error // nil: accepted
		msg  string
	}{
		{"golden", string(golden), nil, ""},
		{"without the final newline", body, nil, ""},
		{"empty", "", catalog.ErrBadSnapshot, "empty"},
		{"truncated", body[:len(body)/2], catalog.ErrBadSnapshot, "truncated"},
		{"not JSON", "PK\x03\x04 a zip file", catalog.ErrBadSnapshot, "malformed JSON at byte 1"},
		{"a JSON array", "[1,2]", catalog.ErrBadSnapshot, "cannot unmarshal"},
		{"another program's JSON", `{"Index":3,"Term":2,"ID":"x"}`, catalog.ErrBadSnapshot, "unknown field"},
		{"a newer version", `{"version":2,"index":3}`, catalog.ErrBadSnapshot, "snapshot version 2"},
		{"no version", `{"index":3,"instances":[]}`, catalog.ErrBadSnapshot, "snapshot version 0"},
		{"an index no log reaches", `{"version":1,"index":18446744073709551615,"instances":[],"keys":[]}`, catalog.ErrBadSnapshot, "beyond any log's"},
		// A bare version would restore as an empty catalog (an outside
		// review wiped a registry with it).
		{"only a version", `{"version":1}`, catalog.ErrBadSnapshot, "no instances or no keys field"},
		{"no keys field", `{"version":1,"index":3,"instances":[]}`, catalog.ErrBadSnapshot, "no instances or no keys field"},
		{"a field of a newer muster", strings.Replace(body, `"version":1`, `"version":1,"quotas":{}`, 1), catalog.ErrBadSnapshot, `unknown field "quotas"`},
		{"two snapshots", body + "\n" + body, catalog.ErrBadSnapshot, "data follows"},
		{"trailing garbage", body + "x", catalog.ErrBadSnapshot, "malformed JSON"},
		{"a damaged hash", strings.Replace(body, `"token_hash":"`, `"token_hash":"AAAA`, 1), catalog.ErrBadSnapshot, "instance 0"},
		{"a duplicated instance", duplicateInstance(t, body), catalog.ErrBadSnapshot, "duplicated"},
		{"a damaged time", strings.Replace(body, `"registered_at":"`, `"registered_at":"x`, 1), catalog.ErrBadSnapshot, "parsing time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := catalog.ReadBackup(strings.NewReader(tt.in))
			if tt.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				var out bytes.Buffer
				if _, err := b.WriteTo(&out); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(out.Bytes(), golden) {
					t.Errorf("written back differently:\n got %s\nwant %s", out.Bytes(), golden)
				}
				if s := b.Summary(); s != (catalog.BackupSummary{Index: 16, Instances: 2, Services: 2, Keys: 2}) {
					t.Errorf("summary = %+v", s)
				}
				return
			}
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error = %v, want %v saying %q", err, tt.want, tt.msg)
			}
			if b != nil {
				t.Error("a backup was returned with the error")
			}
		})
	}
}

// TestReadBackup_tokens: a backup holding tokens (their fields optional
// in version 1) is read and written back unchanged, and one whose keys
// break the rules of roles is refused, naming the key and the field.
func TestReadBackup_tokens(t *testing.T) {
	golden, err := os.ReadFile("testdata/golden/snapshot-tokens.v4.json")
	if err != nil {
		t.Fatal(err)
	}
	b, err := catalog.ReadBackup(bytes.NewReader(golden))
	if err != nil {
		t.Fatalf("refused: %v", err)
	}
	var out bytes.Buffer
	if _, err := b.WriteTo(&out); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), golden) {
		t.Errorf("written back differently:\n got %s\nwant %s", out.Bytes(), golden)
	}
	if s := b.Summary(); s.Keys != 5 || s.Index != 21 {
		t.Errorf("summary = %+v, want 5 keys at index 21", s)
	}
	body := string(golden)
	for _, tt := range []struct {
		name, old, new, msg string
	}{
		{"an unknown role", `"role":"read"`, `"role":"root"`, `key 1 (key_5a5b5c5d5e5f6061): key.role`},
		{"an admin of some services", `"services":["*"],"description":"golden admin token"`, `"services":["fetch_*"],"description":"golden admin token"`, `key 3 (key_9a9b9c9d9e9fa0a1): key.services`},
		{"callback any on a read token", `"role":"read"`, `"role":"read","callback_tls":"any"`, `key.callback_tls: callback_tls any is for keys of role register`},
		{"an expiry before creation", `"expires_at":"2027-03-03T09:00:00Z"`, `"expires_at":"2026-03-03T09:00:00Z"`, `key.expires_at`},
		{"a field of a newer muster in a key", `"role":"read"`, `"role":"read","scopes":["lookup"]`, `unknown field "scopes"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(body, tt.old) {
				t.Fatalf("%s is not in the golden snapshot", tt.old)
			}
			_, err := catalog.ReadBackup(strings.NewReader(strings.Replace(body, tt.old, tt.new, 1)))
			if !errors.Is(err, catalog.ErrBadSnapshot) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error = %v, want ErrBadSnapshot saying %q", err, tt.msg)
			}
		})
	}
}

// duplicateInstance returns the golden snapshot with its first instance
// listed twice.
func duplicateInstance(tb testing.TB, body string) string {
	tb.Helper()
	start := strings.Index(body, `"instances":[`) + len(`"instances":[`)
	end := strings.Index(body[start:], `},{"id"`)
	if end < 0 {
		tb.Fatal("the golden snapshot changed shape")
	}
	first := body[start : start+end+1]
	return body[:start] + first + "," + body[start:]
}

// TestReadBackup_Reader: a reader's failure is its own error, not a
// damaged snapshot's, and a reader that ends early is a truncated one.
func TestReadBackup_Reader(t *testing.T) {
	golden := goldenSnapshot(t)
	boom := errors.New("connection reset")
	_, err := catalog.ReadBackup(iotest.TimeoutReader(bytes.NewReader(golden)))
	if err == nil || errors.Is(err, catalog.ErrBadSnapshot) || !errors.Is(err, iotest.ErrTimeout) {
		t.Errorf("a reader that times out: %v", err)
	}
	_, err = catalog.ReadBackup(iotest.ErrReader(boom))
	if !errors.Is(err, boom) || errors.Is(err, catalog.ErrBadSnapshot) {
		t.Errorf("a failing reader: %v", err)
	}
	if _, err := catalog.ReadBackup(iotest.OneByteReader(bytes.NewReader(golden))); err != nil {
		t.Errorf("one byte at a time: %v", err)
	}
}

// TestBackup_Rebased: a catalog restored from a rebased backup is at the
// new index, and so is every service, those the backup empties
// included, while instances keep theirs; the backup itself is not
// changed.
func TestBackup_Rebased(t *testing.T) {
	b, err := catalog.ReadBackup(bytes.NewReader(goldenSnapshot(t)))
	if err != nil {
		t.Fatal(err)
	}
	r := b.Rebased(100, []string{"gone", "other"})
	if b.Index() != 16 || r.Index() != 100 {
		t.Fatalf("indexes: backup %d, rebased %d", b.Index(), r.Index())
	}
	var buf bytes.Buffer
	if _, err := r.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	c := catalog.New()
	if err := c.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if c.Index() != 100 {
		t.Errorf("catalog index = %d, want 100", c.Index())
	}
	var names []string
	for _, v := range c.Services() {
		names = append(names, v.Name)
		if v.Index != 100 {
			t.Errorf("service %s at index %d, want 100", v.Name, v.Index)
		}
	}
	if want := []string{"fetch_url", "gone", "other", "wordcount"}; !slices.Equal(names, want) {
		t.Errorf("services = %v, want %v", names, want)
	}
	if v := c.Service("gone"); v == nil || len(v.Instances) != 0 {
		t.Errorf("a service only the replaced catalog had: %+v", v)
	}
	inst, ok := c.Instance("aaaa0000000000000000000000000001")
	if !ok || inst.CreateIndex != 3 {
		t.Errorf("instance = %+v, %v; want its own create index 3", inst, ok)
	}
	if evs, ok, _ := c.Events(99, 0, nil); ok || len(evs) != 0 {
		t.Errorf("the event history covers index 99 after a restore at 100: %v, %v", evs, ok)
	}
}

// FuzzReadBackup: whatever ReadBackup accepts, a catalog restores, both
// as it is and rebased (a replica's FSM must never fail to restore a
// backup the leader checked: hashicorp/raft panics if it does), and
// writes back to a backup that reads the same.
func FuzzReadBackup(f *testing.F) {
	golden := goldenSnapshot(f)
	f.Add(golden)
	if tokens, err := os.ReadFile("testdata/golden/snapshot-tokens.v4.json"); err == nil {
		f.Add(tokens)
	}
	f.Add([]byte(`{"version":1,"index":0}`))
	f.Add([]byte(`{"version":1,"index":7,"services":{"a":3},"keyed":["a"],"bars":[{"service":"a","address":"x","port":1,"instance":"i","until":"2030-01-01T00:00:00Z","index":2}]}`))
	f.Add([]byte(`{"version":1,"instances":[null]}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		b, err := catalog.ReadBackup(bytes.NewReader(in))
		if err != nil {
			if !errors.Is(err, catalog.ErrBadSnapshot) {
				t.Fatalf("refused without ErrBadSnapshot: %v", err)
			}
			return
		}
		for _, bk := range []*catalog.Backup{b, b.Rebased(b.Index()+1, []string{"zz"})} {
			var buf bytes.Buffer
			if _, err := bk.WriteTo(&buf); err != nil {
				t.Fatal(err)
			}
			again, err := catalog.ReadBackup(bytes.NewReader(buf.Bytes()))
			if err != nil {
				t.Fatalf("written back, it no longer reads: %v\n%s", err, buf.Bytes())
			}
			if again.Summary() != bk.Summary() {
				t.Fatalf("summary %+v, read back %+v", bk.Summary(), again.Summary())
			}
			c := catalog.New()
			if err := c.Restore(&buf); err != nil {
				t.Fatalf("checked, yet a catalog refuses it: %v", err)
			}
			if c.Index() != bk.Index() {
				t.Fatalf("restored at %d, want %d", c.Index(), bk.Index())
			}
		}
	})
}
