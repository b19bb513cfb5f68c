package tlsfiles

import (
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/testutil"
)

// clock lets a test pass CheckEvery without sleeping.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// TestPair_Renewal: a renewed certificate is served after the next
// check, not before; a renewal caught half-written (the certificate
// before its key) keeps the pair in use and is reported once; once the
// key follows, the new pair is served.
func TestPair_Renewal(t *testing.T) {
	ca := testutil.NewTestCA(t, "ca")
	dir := t.TempDir()
	certFile, keyFile := ca.Issue(t, dir, "srv")
	var errs []error
	p, err := LoadPair(certFile, keyFile, nil, func(err error) { errs = append(errs, err) })
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Now()}
	p.c.now = c.now
	p.c.next.Store(c.now().Add(CheckEvery).UnixNano())
	first := p.Certificate().Leaf.SerialNumber

	newCert, newKey := ca.IssuePEM(t, "srv")
	testutil.WriteFile(t, certFile, newCert, 0o644) // the key not yet
	if got := p.Certificate().Leaf.SerialNumber; got.Cmp(first) != 0 {
		t.Fatal("the files were read again before CheckEvery")
	}
	c.add(CheckEvery)
	if got := p.Certificate().Leaf.SerialNumber; got.Cmp(first) != 0 {
		t.Fatal("a certificate without its key was taken")
	}
	c.add(CheckEvery)
	p.Certificate()
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "stays") {
		t.Fatalf("the half-written renewal was reported %d times: %v", len(errs), errs)
	}
	testutil.WriteFile(t, keyFile, newKey, 0o600)
	c.add(CheckEvery)
	second := p.Certificate().Leaf.SerialNumber
	if second.Cmp(first) == 0 {
		t.Fatal("the whole renewal was not taken")
	}
	// A file that goes away keeps the pair too.
	os.Remove(certFile)
	c.add(CheckEvery)
	if p.Certificate().Leaf.SerialNumber.Cmp(second) != 0 || len(errs) != 2 {
		t.Fatalf("after the certificate's file went away: %v", errs)
	}
}

func TestLoadPair_Refusals(t *testing.T) {
	ca := testutil.NewTestCA(t, "ca")
	dir := t.TempDir()
	certFile, keyFile := ca.Issue(t, dir, "srv")
	other, otherKey := ca.Issue(t, dir, "other")
	big := filepath.Join(dir, "big")
	os.WriteFile(big, make([]byte, MaxFile+1), 0o644)
	for name, files := range map[string][2]string{
		"key of another": {certFile, otherKey},
		"missing cert":   {filepath.Join(dir, "none.pem"), keyFile},
		"cert for key":   {keyFile, keyFile},
		"large":          {big, keyFile},
		"key as cert":    {other, certFile},
	} {
		if _, err := LoadPair(files[0], files[1], nil, nil); err == nil {
			t.Errorf("%s: loaded", name)
		} else if strings.Contains(err.Error(), "PRIVATE KEY-----") {
			t.Errorf("%s: the error holds the key: %v", name, err)
		}
	}
	refuse := errors.New("refused by readKey")
	if _, err := LoadPair(certFile, keyFile, func(string, int64) ([]byte, error) { return nil, refuse }, nil); !errors.Is(err, refuse) {
		t.Errorf("readKey's refusal: %v", err)
	}
}

// TestPool_Renewal: a CA bundle changed on disk is used after the next
// check; one that holds no certificate keeps the bundle in use.
func TestPool_Renewal(t *testing.T) {
	a, b := testutil.NewTestCA(t, "a"), testutil.NewTestCA(t, "b")
	file := filepath.Join(t.TempDir(), "bundle.pem")
	testutil.WriteFile(t, file, a.CertPEM, 0o644)
	var errs []error
	p, err := LoadPool(file, func(err error) { errs = append(errs, err) })
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Now()}
	p.c.now = c.now
	trusts := func(ca *testutil.TestCA) bool {
		_, err := ca.Cert.Verify(x509Opts(p))
		return err == nil
	}
	if !trusts(a) || trusts(b) {
		t.Fatal("the first bundle")
	}
	testutil.WriteFile(t, file, []byte("not a certificate"), 0o644)
	c.add(CheckEvery)
	if !trusts(a) || len(errs) != 1 {
		t.Fatalf("a broken bundle replaced the one in use: %v", errs)
	}
	testutil.WriteFile(t, file, append(append([]byte{}, a.CertPEM...), b.CertPEM...), 0o644)
	c.add(CheckEvery)
	if !trusts(a) || !trusts(b) {
		t.Fatal("the renewed bundle is not used")
	}
}

func x509Opts(p *Pool) x509.VerifyOptions { return x509.VerifyOptions{Roots: p.CertPool()} }

// TestPair_FIFONeverBlocks: a FIFO put where the certificate was (no
// writer will ever come) is refused at once, the pair in use stays, and
// a good file put back afterwards is taken.
func TestPair_FIFONeverBlocks(t *testing.T) {
	ca := testutil.NewTestCA(t, "ca")
	dir := t.TempDir()
	certFile, keyFile := ca.Issue(t, dir, "srv")
	p, err := LoadPair(certFile, keyFile, nil, func(error) {})
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Now()}
	p.c.now = c.now
	first := p.Certificate().Leaf.SerialNumber
	os.Remove(certFile)
	if err := syscall.Mkfifo(certFile, 0o644); err != nil {
		t.Skip("no mkfifo here:", err)
	}
	c.add(CheckEvery)
	done := make(chan struct{})
	go func() { p.Certificate(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a FIFO at the certificate's path blocked the reload")
	}
	if p.Certificate().Leaf.SerialNumber.Cmp(first) != 0 {
		t.Fatal("the pair in use changed")
	}
	os.Remove(certFile)
	newCert, newKey := ca.IssuePEM(t, "srv")
	testutil.WriteFile(t, certFile, newCert, 0o644)
	testutil.WriteFile(t, keyFile, newKey, 0o600)
	c.add(CheckEvery)
	if p.Certificate().Leaf.SerialNumber.Cmp(first) == 0 {
		t.Fatal("the good files put back were not taken")
	}
}
