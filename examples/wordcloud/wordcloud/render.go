package wordcloud

import (
	"encoding/xml"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// DefaultMaxWords is how many words Render draws when asked for max <= 0,
// and how many the service draws.
const DefaultMaxWords = 60

// Font sizes, in pixels, of the least and the most frequent word.
const (
	MinFontSize = 14
	MaxFontSize = 72
)

// Layout parameters: an Archimedean spiral r = spiralA·θ, stretched
// horizontally, walked in steps of about spiralArc pixels along the curve.
const (
	spiralA       = 3.0
	spiralStretch = 1.6
	spiralArc     = 6.0
	maxTheta      = 2000.0
	wordPadding   = 2.0
	cloudMargin   = 8.0
)

// palette colours words by rank; all are dark enough to read on white.
func color(rank int) string {
	palette := [...]string{"#1f4e79", "#c0392b", "#1e8449", "#7d3c98", "#b9770e", "#117a65", "#2e4053", "#a04000"}
	return palette[rank%len(palette)]
}

// rect is an axis-aligned box, x0 < x1 and y0 < y1.
type rect struct{ x0, y0, x1, y1 float64 }

func (a rect) overlaps(b rect) bool {
	return a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1
}

// placed is a word with its position: (x, y) is the centre of its
// estimated box, which is also where text-anchor="middle" puts it.
type placed struct {
	WordCount
	size  int
	x, y  float64
	box   rect
	color string
}

// textWidth estimates the advance width of word in a sans-serif font of
// size px: narrow letters count less, m and w more, wide scripts a full em.
func textWidth(word string, size float64) float64 {
	em := 0.0
	for _, r := range word {
		switch {
		case strings.ContainsRune("fijlt", r):
			em += 0.3
		case r == 'r':
			em += 0.38
		case r == 'm' || r == 'w':
			em += 0.85
		case r >= 0x2E80:
			em += 1.0
		default:
			em += 0.58
		}
	}
	return em * size
}

// fontSize scales a count between lo and hi (the extreme counts) to a size
// between MinFontSize and MaxFontSize, by square root so that one very
// common word does not shrink all the others to the minimum. It never
// decreases as count grows.
func fontSize(count, lo, hi int) int {
	t := 1.0
	if hi > lo {
		t = (math.Sqrt(float64(count)) - math.Sqrt(float64(lo))) / (math.Sqrt(float64(hi)) - math.Sqrt(float64(lo)))
	}
	return int(math.Round(MinFontSize + t*(MaxFontSize-MinFontSize)))
}

// prepare returns at most maxWords words (DefaultMaxWords when max <= 0) of
// counts with a positive count, most frequent first, in a total order.
func prepare(counts []WordCount, maxWords int) []WordCount {
	if maxWords <= 0 {
		maxWords = DefaultMaxWords
	}
	words := make([]WordCount, 0, len(counts))
	for _, c := range counts {
		if c.Count > 0 && c.Word != "" {
			words = append(words, c)
		}
	}
	sortCounts(words)
	if len(words) > maxWords {
		words = words[:maxWords]
	}
	return slices.Clip(words)
}

// layout places words, most frequent first, each at the first point of
// the spiral where its box overlaps no box placed before. A word that finds
// no place before maxTheta is left out. Everything is a function of the
// input alone: no randomness and no map iteration.
func layout(words []WordCount) []placed {
	if len(words) == 0 {
		return nil
	}
	lo, hi := words[len(words)-1].Count, words[0].Count
	out := make([]placed, 0, len(words))
	for i, wc := range words {
		size := fontSize(wc.Count, lo, hi)
		w := textWidth(wc.Word, float64(size)) + 2*wordPadding
		h := float64(size) + 2*wordPadding
		last := -1 // the box hit last time: the likeliest to be hit again
		for theta := 0.0; theta < maxTheta; theta += min(0.3, spiralArc/max(spiralA*theta, 1)) {
			r := spiralA * theta
			x := r * math.Cos(theta) * spiralStretch
			y := r * math.Sin(theta)
			box := rect{x - w/2, y - h/2, x + w/2, y + h/2}
			if last >= 0 && box.overlaps(out[last].box) {
				continue
			}
			if last = collides(box, out); last < 0 {
				out = append(out, placed{WordCount: wc, size: size, x: x, y: y, box: box, color: color(i)})
				break
			}
		}
	}
	return out
}

// collides returns the index of a placed box that box overlaps, or -1.
func collides(box rect, placed []placed) int {
	for i, p := range placed {
		if box.overlaps(p.box) {
			return i
		}
	}
	return -1
}

// Render draws counts as an SVG word cloud: at most maxWords words
// (DefaultMaxWords when maxWords <= 0), most frequent first, font size growing
// with frequency (see MinFontSize, MaxFontSize). Each word is a
// <text class="word" data-count="N"> element. The viewBox fits the words
// placed. The same counts, in any order, give byte-identical output.
func Render(counts []WordCount, maxWords int) []byte {
	ws := layout(prepare(counts, maxWords))
	bounds := rect{0, 0, 100, 40} // an empty cloud is a small blank image
	for i, p := range ws {
		if i == 0 {
			bounds = p.box
			continue
		}
		bounds = rect{min(bounds.x0, p.box.x0), min(bounds.y0, p.box.y0), max(bounds.x1, p.box.x1), max(bounds.y1, p.box.y1)}
	}
	x0 := int(math.Floor(bounds.x0 - cloudMargin))
	y0 := int(math.Floor(bounds.y0 - cloudMargin))
	width := int(math.Ceil(bounds.x1+cloudMargin)) - x0
	height := int(math.Ceil(bounds.y1+cloudMargin)) - y0

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="%d %d %d %d" font-family="Helvetica, Arial, sans-serif" role="img">`+"\n",
		width, height, x0, y0, width, height)
	fmt.Fprintf(&b, "<title>Word cloud of %d words</title>\n", len(ws))
	for _, p := range ws {
		// The baseline sits 0.3 em below the box's centre, so the glyphs
		// (ascenders ~0.8 em, descenders ~0.2 em) fill the box.
		fmt.Fprintf(&b, `<text class="word" data-count="%d" x="%s" y="%s" font-size="%d" fill="%s" text-anchor="middle">`,
			p.Count, num(p.x), num(p.y+0.3*float64(p.size)), p.size, p.color)
		xml.EscapeText(&b, []byte(p.Word))
		b.WriteString("</text>\n")
	}
	b.WriteString("</svg>\n")
	return []byte(b.String())
}

// num formats a coordinate with one decimal, never as -0.0.
func num(v float64) string {
	v = math.Round(v*10) / 10
	if v == 0 {
		v = 0
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}
