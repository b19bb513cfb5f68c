package wordcloud

import (
	"fmt"
	"testing"
)

// TestLayout_NoOverlap: no two placed boxes overlap, and every word finds
// a place, for a few shapes of input.
func TestLayout_NoOverlap(t *testing.T) {
	long := func(n, step int) []WordCount {
		var wc []WordCount
		for i := range n {
			wc = append(wc, WordCount{Word: fmt.Sprintf("word%03dlonger", i), Count: 1 + (n-i)/step})
		}
		return wc
	}
	for _, tt := range []struct {
		name  string
		words []WordCount
	}{
		{"steep", long(60, 1)},
		{"flat", long(60, 1000)},
		{"few", long(3, 1)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ws := layout(prepare(tt.words, 0))
			if len(ws) != len(tt.words) {
				t.Fatalf("placed %d of %d", len(ws), len(tt.words))
			}
			for i := range ws {
				for j := i + 1; j < len(ws); j++ {
					if ws[i].box.overlaps(ws[j].box) {
						t.Fatalf("%q %+v overlaps %q %+v", ws[i].Word, ws[i].box, ws[j].Word, ws[j].box)
					}
				}
			}
		})
	}
}

func TestFontSize_Monotonic(t *testing.T) {
	prev := 0
	for c := 1; c <= 50; c++ {
		s := fontSize(c, 1, 50)
		if s < prev || s < MinFontSize || s > MaxFontSize {
			t.Fatalf("fontSize(%d) = %d after %d", c, s, prev)
		}
		prev = s
	}
	if fontSize(1, 1, 50) != MinFontSize || fontSize(50, 1, 50) != MaxFontSize || fontSize(7, 7, 7) != MaxFontSize {
		t.Fatal("the extremes are not MinFontSize and MaxFontSize")
	}
}
