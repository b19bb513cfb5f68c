// Package tlsfiles keeps TLS credentials read from files current: a
// certificate with its key, and a bundle of CA certificates. Operators
// renew certificates by writing new files (cert-manager, a cron job with
// openssl, `muster tls cert create`); a server must serve the new ones
// without a restart, and must never stop serving because a renewal was
// caught half-written.
//
// A Pair or a Pool is read once when made (an error then is the
// caller's to report: a server does not start on a bad certificate).
// Afterwards, the first use after at least CheckEvery looks whether
// either file changed (its size, modification time or inode); if so,
// it reads them again. A change that does not parse (a certificate
// written before its key, a file cut short) keeps the credential in use,
// says why through the error callback once per change seen, and is
// tried again at the next check: the renewal is picked up once it is
// whole. Use costs a clock read and, once a second, two stat calls: no
// goroutine and no timer.
//
//	pair, err := tlsfiles.LoadPair(certFile, keyFile, durable.ReadPrivateFile, onErr)
//	cfg := &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return pair.Certificate(), nil }}
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"crypto"
	"encoding/pem"
	"errors"
	"github.com/musterhq/muster/internal/durable"
)

// CheckEvery is how often, at most, the files are looked at for a change.
const CheckEvery = time.Second

// MaxFile bounds what is read of a certificate or a bundle: PEM
// certificates are a few KiB, so a larger file is the wrong one.
const MaxFile = 1 << 20

// stamp identifies a version of a file without reading it.
type stamp struct {
	size  int64
	mtime time.Time
	ino   uint64
}

func stampOf(path string) (stamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}, err
	}
	st := stamp{size: fi.Size(), mtime: fi.ModTime()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = sys.Ino
	}
	return st, nil
}

// current is a value read from files and kept current, what Pair and
// Pool are: the files, their stamps when last read, and when they were
// last looked at.
type current[T any] struct {
	files   []string
	what    string // what the value is, for errors ("the certificate")
	load    func() (*T, error)
	now     func() time.Time
	onError func(error)

	cur     atomic.Pointer[T]
	mu      sync.Mutex   // one reload at a time
	next    atomic.Int64 // unix nanos of the next look
	stamps  []stamp      // the files' when the value in use was read
	refused []stamp      // the stamps of a change that did not load, reported once
}

// start reads the value the first time; an error is the caller's.
func (c *current[T]) start() error {
	sts, _, err := c.changed()
	if err != nil {
		return err
	}
	v, err := c.load()
	if err != nil {
		return err
	}
	c.stamps = sts
	c.cur.Store(v)
	return nil
}

// get returns the value in use, read again first if the files changed
// since it was (looked at most once per CheckEvery, by one caller at a
// time: the others take the value in use meanwhile).
func (c *current[T]) get() *T {
	if c.now().UnixNano() >= c.next.Load() && c.mu.TryLock() {
		defer c.mu.Unlock()
		if sts, changed, err := c.changed(); err != nil {
			c.failed(nil, fmt.Errorf("%s in use stays: %w", c.what, err))
		} else if changed {
			if v, err := c.load(); err != nil {
				c.failed(sts, fmt.Errorf("%s in use stays: %w", c.what, err))
			} else {
				c.stamps, c.refused = sts, nil
				c.cur.Store(v)
			}
		}
	}
	return c.cur.Load()
}

// changed returns the files' stamps and whether they differ from those
// of the value in use; the caller holds mu (or is start).
func (c *current[T]) changed() ([]stamp, bool, error) {
	c.next.Store(c.now().Add(CheckEvery).UnixNano())
	sts := make([]stamp, len(c.files))
	for i, f := range c.files {
		st, err := stampOf(f)
		if err != nil {
			return nil, false, err
		}
		sts[i] = st
	}
	return sts, !slices.Equal(sts, c.stamps), nil
}

// failed reports a change that did not load, once per change.
func (c *current[T]) failed(sts []stamp, err error) {
	if sts != nil && slices.Equal(sts, c.refused) {
		return
	}
	c.refused = sts
	if c.onError != nil {
		c.onError(err)
	}
}

// Pair is a certificate (with its chain) and its private key, kept
// current from two files.
type Pair struct {
	c       current[tls.Certificate]
	readKey func(path string, limit int64) ([]byte, error)
}

// LoadPair reads the certificate chain in certFile and its key in
// keyFile (with readKey, which may hold the key's file to stricter rules,
// as durable.ReadPrivateFile does; nil reads it as any file), and keeps
// them current. onError, when set, is told of a renewal that could not
// be loaded; the pair in use stays.
func LoadPair(certFile, keyFile string, readKey func(path string, limit int64) ([]byte, error), onError func(error)) (*Pair, error) {
	if readKey == nil {
		readKey = durable.ReadFile
	}
	p := &Pair{readKey: readKey}
	p.c = current[tls.Certificate]{files: []string{certFile, keyFile}, what: "the certificate", load: p.load, now: time.Now, onError: onError}
	if err := p.c.start(); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *Pair) load() (*tls.Certificate, error) {
	certFile, keyFile := p.c.files[0], p.c.files[1]
	certPEM, err := durable.ReadFile(certFile, MaxFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := p.readKey(keyFile, 64<<10)
	if err != nil {
		return nil, err
	}
	// X509KeyPair's errors never hold the key's bytes.
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("certificate %s and key %s: %w", certFile, keyFile, err)
	}
	return &c, nil
}

// Certificate returns the pair in use, reloaded first if the files
// changed since it was read (looked at most once per CheckEvery).
func (p *Pair) Certificate() *tls.Certificate { return p.c.get() }

// Pool is a bundle of CA certificates kept current from a file.
type Pool struct {
	c current[x509.CertPool]
}

// LoadPool reads the PEM certificates in file and keeps them current.
// onError is as LoadPair's.
func LoadPool(file string, onError func(error)) (*Pool, error) {
	p := &Pool{}
	p.c = current[x509.CertPool]{files: []string{file}, what: "the CA bundle", load: func() (*x509.CertPool, error) { return ReadPool(file) },
		now: time.Now, onError: onError}
	if err := p.c.start(); err != nil {
		return nil, err
	}
	return p, nil
}

// ReadPool reads the PEM certificates in file once.
func ReadPool(file string) (*x509.CertPool, error) {
	b, err := durable.ReadFile(file, MaxFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return pool, nil
}

// CertPool returns the bundle in use, reloaded first as Pair's is.
func (p *Pool) CertPool() *x509.CertPool { return p.c.get() }

// ParsePrivateKey reads the first private key in PEM: PKCS #8 (what
// muster writes), or SEC 1 or PKCS #1 (what openssl may have written).
// Errors never hold the key.
func ParsePrivateKey(b []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, errors.New("no PEM private key in the file")
		}
		var key any
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, errors.New("the private key does not parse")
		}
		s, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("a %T cannot sign certificates", key)
		}
		return s, nil
	}
}
