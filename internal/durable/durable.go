// Package durable writes small files so that they survive a crash: the
// data goes to a temporary file that is fsynced, renamed over the target,
// and the directory is fsynced so that the rename itself is on disk.
//
//	err := durable.WriteFile(filepath.Join(dir, "admin-token"), []byte(tok), 0o600)
package durable

import (
	"fmt"
	"os"
	"path/filepath"
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
