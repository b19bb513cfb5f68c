package httpapi_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testserver"
)

// mountTmpfs mounts a tmpfs of the given size on a new temporary dir and
// unmounts it when the test ends. It skips the test, saying why, where
// mounting is not permitted.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root; TestServer_DiskFull checks the same contract at the cluster's seam")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Skipf("mounting a tmpfs on %s is not permitted here (%v); TestServer_DiskFull checks the same contract at the cluster's seam", dir, err)
	}
	// Registered after TempDir's cleanup, so it runs before it; and before
	// the server's, so it runs after the server has closed.
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fill writes a file into dir until its filesystem is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 256<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	for {
		if _, err := f.Write(chunk[:512]); err != nil {
			break
		}
	}
	f.Sync()
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(path), &st); err != nil || st.Bavail*uint64(st.Bsize) >= 64<<10 {
		t.Fatalf("the filesystem is not full: %d bytes free, %v", st.Bavail*uint64(st.Bsize), err)
	}
}

// TestServer_DiskFull_tmpfs runs a real registry whose data dir is a
// 16 MiB tmpfs and fills it. Before the disk guard, a write on the full
// disk answered 500 internal after its callback had run, and each failed
// write stepped the Raft leader down, so lookups answered 503 for about a
// second (7 of 18 in the attack). Now: writes get 503 unavailable with
// Retry-After and the disk as the reason, before any callback; every
// lookup answers 200; /readyz says degraded: disk; writes succeed once
// the filler is deleted; and after a restart on the same dir every
// acknowledged registration is there and no refused one is.
func TestServer_DiskFull_tmpfs(t *testing.T) {
	if testing.Short() {
		t.Skip("mounts a tmpfs and fills it")
	}
	dir := mountTmpfs(t, "16m")
	mutate := func(c *server.Config) {
		c.DataDir = dir
		// The tmpfs is 16 MiB: with a 4 MiB reserve it is always "near" the
		// reserve, where the guard reads free space on every check (see
		// cluster/disk.go; far from it a reading is kept for a quarter second).
		c.Cluster.DiskReserve = 4 << 20
	}
	h := start(t, mutate)
	filler := filepath.Join(dir, "filler")
	acked, refused := fullDisk(t, h,
		func() { fill(t, filler) },
		func() {
			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
		})

	if err := h.Srv.Close(); err != nil {
		t.Fatal(err)
	}
	s := testserver.Start(t, mutate)
	c, err := client.New(client.Config{Addr: s.URL()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, svc := range acked {
		if res, err := c.Lookup(ctx, svc); err != nil || len(res.Instances) != 1 {
			t.Errorf("acknowledged %s after restart: %+v, %v", svc, res, err)
		}
	}
	for _, svc := range refused {
		if res, err := c.Lookup(ctx, svc); err == nil && len(res.Instances) > 0 {
			t.Errorf("refused %s is registered after restart: %+v", svc, res)
		}
	}
}
