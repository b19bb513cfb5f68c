package catalog

import (
	"bytes"
	"errors"
	"os"
	"testing"
)

// TestReadBackup_Bound: a snapshot of exactly the bound is read, one
// byte more is too large, and is told apart from a damaged one.
func TestReadBackup_Bound(t *testing.T) {
	golden, err := os.ReadFile("testdata/golden/snapshot.v1.json")
	if err != nil {
		t.Fatal(err)
	}
	n := int64(len(golden))
	tests := []struct {
		name string
		max  int64
		want error
	}{
		{"the bound", n, nil},
		{"above it", n + 1, nil},
		{"one byte over", n - 1, ErrSnapshotTooLarge},
		{"far over", 10, ErrSnapshotTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readBackup(bytes.NewReader(golden), tt.max)
			if !errors.Is(err, tt.want) || (tt.want != nil && errors.Is(err, ErrBadSnapshot)) {
				t.Errorf("error = %v, want %v", err, tt.want)
			}
		})
	}
}
