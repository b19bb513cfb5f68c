package server

import "testing"

// TestTrimmer: memory is returned once after each busy spell, at the
// first quiet window; a steady load (never quiet), a server always at
// rest (never busy), and windows in between never trim.
func TestTrimmer(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name    string
		windows []uint64 // bytes allocated in each window
		want    []bool
	}{
		{"burst then rest", []uint64{50 * mib, 200 * mib, 0, 0, 0}, []bool{false, false, true, false, false}},
		{"two bursts", []uint64{9 * mib, 0, 0, 9 * mib, mib / 2}, []bool{false, true, false, false, true}},
		{"steady load", []uint64{20 * mib, 20 * mib, 20 * mib, 20 * mib}, []bool{false, false, false, false}},
		{"always at rest", []uint64{0, mib / 4, 0, mib}, []bool{false, false, false, false}},
		{"moderate", []uint64{4 * mib, 3 * mib, 5 * mib, 2 * mib}, []bool{false, false, false, false}},
		{"busy, then moderate, then quiet", []uint64{30 * mib, 4 * mib, 3 * mib, 0}, []bool{false, false, false, true}},
	} {
		tr := trimmer{last: 1000}
		total := uint64(1000)
		for i, w := range tc.windows {
			total += w
			if got := tr.observe(total); got != tc.want[i] {
				t.Errorf("%s: window %d (%d bytes): trim %v, want %v", tc.name, i, w, got, tc.want[i])
			}
		}
	}
}
