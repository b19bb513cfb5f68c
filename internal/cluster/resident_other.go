//go:build !linux

package cluster

// fileID names a file; dropping raft.db's resident pages is done on
// Linux only.
type fileID struct{ ino uint64 }

// fileIDOf finds no file: dropping raft.db's resident pages is done on
// Linux only.
func fileIDOf(string) (fileID, bool) { return fileID{}, false }

func shedPages(fileID) (int, error) { return 0, nil }
