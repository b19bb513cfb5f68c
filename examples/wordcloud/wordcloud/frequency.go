package wordcloud

import (
	"cmp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MinWordLen is the shortest word, in letters, that Frequencies counts.
const MinWordLen = 3

// WordCount is a word and how often it occurs.
type WordCount struct {
	Word  string `json:"word"`
	Count int    `json:"count"`
}

// Frequencies counts the words of text: it lower-cases it, splits it on
// anything that is not a letter, leaves out words shorter than MinWordLen
// letters and English stop words (IsStopWord), and returns the counts
// sorted by count, highest first, then by word. It returns nil when no word
// is left.
func Frequencies(text string) []WordCount {
	counts := map[string]int{}
	for _, w := range strings.FieldsFunc(strings.ToLower(text), func(r rune) bool { return !unicode.IsLetter(r) }) {
		if utf8.RuneCountInString(w) < MinWordLen || IsStopWord(w) {
			continue
		}
		counts[w]++
	}
	if len(counts) == 0 {
		return nil
	}
	out := make([]WordCount, 0, len(counts))
	for w, c := range counts {
		out = append(out, WordCount{Word: w, Count: c})
	}
	sortCounts(out)
	return out
}

// sortCounts orders counts by count descending, then word ascending: a
// total order, so that map iteration never shows through.
func sortCounts(wc []WordCount) {
	slices.SortFunc(wc, func(a, b WordCount) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return strings.Compare(a.Word, b.Word)
	})
}
