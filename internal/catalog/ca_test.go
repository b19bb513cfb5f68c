package catalog_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/catalog"
)

// testCA is a CA as the catalog sees it: opaque certificate and key
// bytes (the catalog never parses them), its ID the certificate's hash.
func testCA(n int) *catalog.CA {
	cert := []byte(fmt.Sprintf("certificate %d", n))
	return &catalog.CA{ID: catalog.CAID(cert), CertDER: cert, KeyDER: []byte(fmt.Sprintf("private key %d", n)),
		AddedAt: time.Date(2026, 12, 3, 10, n, 0, 0, time.UTC)}
}

func TestCatalog_ApplyAddCA(t *testing.T) {
	c := catalog.New()
	idx := uint64(0)
	apply := func(cmd catalog.Command) error {
		idx++
		return c.Apply(idx, cmd).Err
	}
	for i := 1; i <= catalog.MaxCAs; i++ {
		if err := apply(catalog.Command{Op: catalog.OpAddCA, CA: testCA(i)}); err != nil {
			t.Fatalf("add CA %d: %v", i, err)
		}
	}
	if err := apply(catalog.Command{Op: catalog.OpAddCA, CA: testCA(2)}); !errors.Is(err, catalog.ErrExists) {
		t.Errorf("a CA added twice: %v, want ErrExists", err)
	}
	if err := apply(catalog.Command{Op: catalog.OpAddCA, CA: testCA(9)}); !errors.Is(err, catalog.ErrConflict) {
		t.Errorf("a CA past MaxCAs: %v, want ErrConflict", err)
	}
	cas := c.CAs()
	if len(cas) != catalog.MaxCAs || cas[0].ID != testCA(1).ID || cas[len(cas)-1].ID != testCA(catalog.MaxCAs).ID || cas[1].CreateIndex != 2 {
		t.Fatalf("CAs = %+v", cas)
	}
	newest := testCA(catalog.MaxCAs).ID
	if err := apply(catalog.Command{Op: catalog.OpRetireCA, ID: newest}); !errors.Is(err, catalog.ErrConflict) {
		t.Errorf("retiring the signing CA: %v, want ErrConflict", err)
	}
	if err := apply(catalog.Command{Op: catalog.OpRetireCA, ID: testCA(7).ID}); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("retiring an unknown CA: %v, want ErrNotFound", err)
	}
	if err := apply(catalog.Command{Op: catalog.OpRetireCA, ID: testCA(2).ID}); err != nil {
		t.Fatal(err)
	}
	if got := c.CAs(); len(got) != catalog.MaxCAs-1 || got[1].ID != testCA(3).ID {
		t.Errorf("after retiring CA 2: %+v", got)
	}
	if len(cas) != catalog.MaxCAs {
		t.Error("a retirement changed a slice CAs returned earlier")
	}

	// A snapshot holds the CAs in the binary format only.
	var bin, js bytes.Buffer
	if _, err := c.Snapshot().WriteBinary(&bin); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Snapshot().WriteTo(&js); err != nil {
		t.Fatal(err)
	}
	if bin.Bytes()[16] != 5 || !bytes.Contains(bin.Bytes(), []byte("private key 3")) {
		t.Errorf("the binary snapshot is of version %d, with the CAs: %v", bin.Bytes()[16], bytes.Contains(bin.Bytes(), []byte("private key 3")))
	}
	if bytes.Contains(js.Bytes(), []byte("private key")) || bytes.Contains(js.Bytes(), []byte(testCA(3).ID)) {
		t.Error("the JSON snapshot (a backup) holds a CA")
	}
	r := catalog.New()
	if err := r.Restore(&bin); err != nil {
		t.Fatal(err)
	}
	if got := r.CAs(); len(got) != 3 || !bytes.Equal(got[2].KeyDER, testCA(4).KeyDER) {
		t.Errorf("restored CAs = %+v", got)
	}
}

func TestCommand_ValidateCA(t *testing.T) {
	bad := func(edit func(*catalog.CA)) *catalog.CA {
		ca := testCA(1)
		edit(ca)
		return ca
	}
	for name, cmd := range map[string]catalog.Command{
		"no CA":          {Op: catalog.OpAddCA},
		"no certificate": {Op: catalog.OpAddCA, CA: bad(func(ca *catalog.CA) { ca.CertDER = nil })},
		"no key":         {Op: catalog.OpAddCA, CA: bad(func(ca *catalog.CA) { ca.KeyDER = nil })},
		"huge key":       {Op: catalog.OpAddCA, CA: bad(func(ca *catalog.CA) { ca.KeyDER = make([]byte, 17<<10) })},
		"no time":        {Op: catalog.OpAddCA, CA: bad(func(ca *catalog.CA) { ca.AddedAt = time.Time{} })},
		"wrong ID":       {Op: catalog.OpAddCA, CA: bad(func(ca *catalog.CA) { ca.ID = testCA(2).ID })},
		"retire no ID":   {Op: catalog.OpRetireCA},
	} {
		t.Run(name, func(t *testing.T) {
			if err := cmd.Validate(); !errors.Is(err, catalog.ErrBadCommand) {
				t.Errorf("Validate = %v, want ErrBadCommand", err)
			}
			if res := catalog.New().Apply(1, cmd); res.Err == nil {
				t.Error("Apply accepted it")
			}
		})
	}
	if err := (catalog.Command{Op: catalog.OpAddCA, CA: testCA(1)}).Validate(); err != nil {
		t.Error(err)
	}
}

// TestCatalog_OneFirstCA: a registry's first CA may be proposed by two
// servers at once; the first applied wins and the other is refused alike
// everywhere, so one CA signs. A rotation's CA is not so refused.
func TestCatalog_OneFirstCA(t *testing.T) {
	c := catalog.New()
	for i, reason := range []string{catalog.CAReasonFirst, catalog.CAReasonFirst, catalog.CAReasonImported} {
		err := c.Apply(uint64(i+1), catalog.Command{Op: catalog.OpAddCA, CA: testCA(i + 1), Reason: reason}).Err
		if (i == 0) != (err == nil) || (i > 0 && !errors.Is(err, catalog.ErrExists)) {
			t.Errorf("first CA proposal %d (%s): %v", i+1, reason, err)
		}
	}
	if err := c.Apply(4, catalog.Command{Op: catalog.OpAddCA, CA: testCA(4), Reason: "rotate"}).Err; err != nil {
		t.Errorf("a rotation: %v", err)
	}
	if cas := c.CAs(); len(cas) != 2 || cas[0].ID != testCA(1).ID || cas[1].ID != testCA(4).ID {
		t.Errorf("CAs = %+v", cas)
	}
}
