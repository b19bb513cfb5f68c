// Package durable writes small files so that they survive a crash: the
// data goes to a temporary file that is fsynced, renamed over the target,
// and the directory is fsynced so that the rename itself is on disk.
//
//	err := durable.WriteFile(filepath.Join(dir, "admin-token"), []byte(tok), 0o600)
package durable

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// WriteFile replaces path with data, created with perm, atomically and
// durably. A reader sees the old file or the new one, never a part.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	// A leftover temporary file (say, from a crash) is removed, not
	// reused: reusing it would keep whatever mode it had.
	if err := os.Remove(tmp); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("durable: %w", err)
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("durable: %w", err)
	}
	if err := f.Chmod(perm); err != nil { // whatever the umask
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("durable: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("durable: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("durable: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("durable: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("durable: %w", err)
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("durable: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("durable: sync dir: %w", err)
	}
	return nil
}

// PrivateDir creates dir (and its parents) if absent, and makes dir
// itself accessible to its owner alone (0700), tightening it if it was
// looser: the files inside are then out of other users' reach whatever
// modes their writers gave them. It reports whether it tightened an
// existing directory, so that the caller can say so.
func PrivateDir(dir string) (tightened bool, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, err
	}
	info, err := os.Stat(dir)
	if err != nil {
		return false, err
	}
	if info.Mode().Perm()&0o077 == 0 {
		return false, nil
	}
	return true, os.Chmod(dir, info.Mode().Perm()&0o700|0o700)
}

// PrivateFile makes the existing file path readable and writable by its
// owner alone (0600) if it was open to others, and reports whether it
// changed it.
func PrivateFile(path string) (tightened bool, err error) {
	info, err := os.Stat(path)
	if err != nil {
		return false, err
	}
	if info.Mode().Perm()&0o077 == 0 {
		return false, nil
	}
	return true, os.Chmod(path, info.Mode().Perm()&0o600)
}

// ErrNotPrivate means a credential's file can be read or written by users
// other than its owner.
var ErrNotPrivate = errors.New("can be read or written by other users")

// ReadFile reads path, which must be a regular file of at most limit
// bytes: a larger one is not the right one (a path given by mistake:
// /dev/zero, a log). It opens without blocking, so that a FIFO put at
// the path is refused at once instead of holding the caller (a TLS
// handshake that reloads a certificate, say) until a writer comes.
// Errors name the path, never the content.
func ReadFile(path string, limit int64) ([]byte, error) {
	return readRegular(path, limit, nil)
}

// ReadPrivateFile reads a file that holds a credential (a token, the
// cluster secret, a TLS private key) as ReadFile does, and only if its
// owner alone may read or write it (mode 0600 or stricter): a file other
// users can read hands them the credential, so it is refused
// (ErrNotPrivate, with the chmod that fixes it) rather than warned
// about. The mode is read from the open file, so it is the mode of the
// file read, not of one swapped in between.
func ReadPrivateFile(path string, limit int64) ([]byte, error) {
	return readRegular(path, limit, func(fi os.FileInfo) error {
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			return fmt.Errorf("%s %w (mode %04o); make it its owner's alone: chmod 600 %s", path, ErrNotPrivate, perm, path)
		}
		return nil
	})
}

// readRegular opens path without blocking, refuses anything but a
// regular file (and what check refuses, given the open file's mode),
// and reads it within limit.
func readRegular(path string, limit int64, check func(os.FileInfo) error) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if check != nil {
		if err := check(fi); err != nil {
			return nil, err
		}
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
