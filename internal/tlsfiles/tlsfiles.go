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
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
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

// watcher is what Pair and Pool share: the files, their stamps when last
// read, and when they were last looked at.
type watcher struct {
	files   []string
	now     func() time.Time
	onError func(error)

	mu      sync.Mutex   // one reload at a time
	next    atomic.Int64 // unix nanos of the next look
	stamps  []stamp
	refused []stamp // the stamps of a change that did not load, reported once
}

// due reports whether the files should be looked at now.
func (w *watcher) due() bool { return w.now().UnixNano() >= w.next.Load() }

// changed returns the files' stamps and whether they differ from those
// loaded; the caller holds mu.
func (w *watcher) changed() ([]stamp, bool, error) {
	w.next.Store(w.now().Add(CheckEvery).UnixNano())
	sts := make([]stamp, len(w.files))
	for i, f := range w.files {
		st, err := stampOf(f)
		if err != nil {
			return nil, false, err
		}
		sts[i] = st
	}
	return sts, !equal(sts, w.stamps), nil
}

// failed reports a change that did not load, once per change.
func (w *watcher) failed(sts []stamp, err error) {
	if sts != nil && equal(sts, w.refused) {
		return
	}
	w.refused = sts
	if w.onError != nil {
		w.onError(err)
	}
}

func equal(a, b []stamp) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Pair is a certificate (with its chain) and its private key, kept
// current from two files.
type Pair struct {
	w       watcher
	readKey func(path string, limit int64) ([]byte, error)
	cur     atomic.Pointer[tls.Certificate]
}

// LoadPair reads the certificate chain in certFile and its key in
// keyFile (with readKey, which may hold the key's file to stricter rules,
// as durable.ReadPrivateFile does; nil reads it as any file), and keeps
// them current. onError, when set, is told of a renewal that could not
// be loaded; the pair in use stays.
func LoadPair(certFile, keyFile string, readKey func(path string, limit int64) ([]byte, error), onError func(error)) (*Pair, error) {
	if readKey == nil {
		readKey = readFile
	}
	p := &Pair{w: watcher{files: []string{certFile, keyFile}, now: time.Now, onError: onError}, readKey: readKey}
	sts, _, err := p.w.changed()
	if err != nil {
		return nil, err
	}
	c, err := p.load()
	if err != nil {
		return nil, err
	}
	p.w.stamps = sts
	p.cur.Store(c)
	return p, nil
}

func (p *Pair) load() (*tls.Certificate, error) {
	certFile, keyFile := p.w.files[0], p.w.files[1]
	certPEM, err := readFile(certFile, MaxFile)
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
func (p *Pair) Certificate() *tls.Certificate {
	if p.w.due() && p.w.mu.TryLock() {
		defer p.w.mu.Unlock()
		if sts, changed, err := p.w.changed(); err != nil {
			p.w.failed(nil, fmt.Errorf("the certificate in use stays: %w", err))
		} else if changed {
			if c, err := p.load(); err != nil {
				p.w.failed(sts, fmt.Errorf("the certificate in use stays: %w", err))
			} else {
				p.w.stamps, p.w.refused = sts, nil
				p.cur.Store(c)
			}
		}
	}
	return p.cur.Load()
}

// Leaf returns the certificate in use, parsed.
func (p *Pair) Leaf() *x509.Certificate { return p.Certificate().Leaf }

// Pool is a bundle of CA certificates kept current from a file.
type Pool struct {
	w   watcher
	cur atomic.Pointer[x509.CertPool]
}

// LoadPool reads the PEM certificates in file and keeps them current.
// onError is as LoadPair's.
func LoadPool(file string, onError func(error)) (*Pool, error) {
	p := &Pool{w: watcher{files: []string{file}, now: time.Now, onError: onError}}
	sts, _, err := p.w.changed()
	if err != nil {
		return nil, err
	}
	pool, err := loadPool(file)
	if err != nil {
		return nil, err
	}
	p.w.stamps = sts
	p.cur.Store(pool)
	return p, nil
}

// ReadPool reads the PEM certificates in file once.
func ReadPool(file string) (*x509.CertPool, error) { return loadPool(file) }

func loadPool(file string) (*x509.CertPool, error) {
	b, err := readFile(file, MaxFile)
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
func (p *Pool) CertPool() *x509.CertPool {
	if p.w.due() && p.w.mu.TryLock() {
		defer p.w.mu.Unlock()
		if sts, changed, err := p.w.changed(); err != nil {
			p.w.failed(nil, fmt.Errorf("the CA bundle in use stays: %w", err))
		} else if changed {
			if pool, err := loadPool(p.w.files[0]); err != nil {
				p.w.failed(sts, fmt.Errorf("the CA bundle in use stays: %w", err))
			} else {
				p.w.stamps, p.w.refused = sts, nil
				p.cur.Store(pool)
			}
		}
	}
	return p.cur.Load()
}

// readFile reads at most limit bytes of path, refusing a larger file.
func readFile(path string, limit int64) ([]byte, error) {
	// O_NONBLOCK: a FIFO put at the path must not block the handshake
	// that reloads it (and every reload after, holding the lock); it is
	// then refused as no regular file.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes; is it the right file?", path, limit)
	}
	return b, nil
}
