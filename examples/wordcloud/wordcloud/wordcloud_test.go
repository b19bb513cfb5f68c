package wordcloud_test

import (
	"bytes"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"github.com/musterhq/muster/examples/wordcloud/internal/servicetest"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/examples/wordcloud/wordcloud"
)

const sample = `Golang engineers build distributed services in Golang. Kubernetes runs the services;
Kubernetes schedules them. We are hiring: you will write Golang, review Golang, and own services.
The team uses gRPC, Kafka and PostgreSQL. Don't worry, it's fun! Ünïcode wörds count too: wörds.`

func TestFrequencies(t *testing.T) {
	tests := []struct {
		name string
		text string
		want []wordcloud.WordCount
	}{
		{"empty", "", nil},
		{"only stop words and short words", "The and of a to is we you it's an", nil},
		{"ordered by count then word", "beta alpha gamma beta gamma beta",
			[]wordcloud.WordCount{{"beta", 3}, {"gamma", 2}, {"alpha", 1}}},
		{"lower-cased, split on non-letters", "Go-lang GOLANG golang's k8s C++ x86_64",
			[]wordcloud.WordCount{{"golang", 2}, {"lang", 1}}},
		{"unicode letters", "Ünïcode wörds wörds", []wordcloud.WordCount{{"wörds", 2}, {"ünïcode", 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := wordcloud.Frequencies(tt.text); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Frequencies(%q) = %v, want %v", tt.text, got, tt.want)
			}
		})
	}
}

func TestFrequencies_Sample(t *testing.T) {
	got := wordcloud.Frequencies(sample)
	if got[0] != (wordcloud.WordCount{Word: "golang", Count: 4}) || got[1] != (wordcloud.WordCount{Word: "services", Count: 3}) {
		t.Fatalf("top words = %v", got[:2])
	}
	if !slices.IsSortedFunc(got, func(a, b wordcloud.WordCount) int {
		if a.Count != b.Count {
			return b.Count - a.Count
		}
		return strings.Compare(a.Word, b.Word)
	}) {
		t.Fatalf("not sorted by count desc, word asc: %v", got)
	}
	for _, wc := range got {
		if wordcloud.IsStopWord(wc.Word) || len([]rune(wc.Word)) < wordcloud.MinWordLen {
			t.Errorf("%q should have been dropped", wc.Word)
		}
	}
	for _, stop := range []string{"the", "are", "you", "will", "and", "them", "don", "too"} {
		if !wordcloud.IsStopWord(stop) {
			t.Errorf("IsStopWord(%q) = false", stop)
		}
	}
	for _, kept := range []string{"kubernetes", "grpc", "kafka", "postgresql", "team", "fun"} {
		if !slices.ContainsFunc(got, func(wc wordcloud.WordCount) bool { return wc.Word == kept }) {
			t.Errorf("%q is missing", kept)
		}
	}
}

// svgDoc is the part of the SVG the tests read.
type svgDoc struct {
	XMLName xml.Name `xml:"svg"`
	ViewBox string   `xml:"viewBox,attr"`
	Texts   []struct {
		Class    string `xml:"class,attr"`
		Count    int    `xml:"data-count,attr"`
		FontSize int    `xml:"font-size,attr"`
		Word     string `xml:",chardata"`
	} `xml:"text"`
}

func parseSVG(tb testing.TB, b []byte) svgDoc {
	tb.Helper()
	var d svgDoc
	if err := xml.Unmarshal(b, &d); err != nil {
		tb.Fatalf("the SVG does not parse: %v\n%s", err, b)
	}
	return d
}

func TestRender(t *testing.T) {
	counts := wordcloud.Frequencies(sample + strings.Repeat(" kubernetes golang", 5))
	svg := wordcloud.Render(counts, 60)
	if !bytes.Equal(svg, wordcloud.Render(counts, 60)) {
		t.Fatal("two renders of the same counts differ")
	}
	shuffled := slices.Clone(counts)
	slices.Reverse(shuffled)
	if !bytes.Equal(svg, wordcloud.Render(shuffled, 60)) {
		t.Fatal("the order of the counts shows in the SVG")
	}
	d := parseSVG(t, svg)
	if len(d.Texts) != len(counts) || len(strings.Fields(d.ViewBox)) != 4 {
		t.Fatalf("%d words drawn of %d, viewBox %q", len(d.Texts), len(counts), d.ViewBox)
	}
	byWord := map[string]int{}
	for i, tx := range d.Texts {
		if tx.Class != "word" || tx.Count <= 0 || tx.FontSize < wordcloud.MinFontSize || tx.FontSize > wordcloud.MaxFontSize {
			t.Errorf("text %d = %+v", i, tx)
		}
		byWord[tx.Word] = tx.FontSize
		if i > 0 && tx.FontSize > d.Texts[i-1].FontSize {
			t.Errorf("%q (%d) is bigger than the more frequent %q", tx.Word, tx.FontSize, d.Texts[i-1].Word)
		}
	}
	top, least := counts[0], counts[len(counts)-1]
	if d.Texts[0].Word != top.Word || byWord[top.Word] != wordcloud.MaxFontSize || byWord[least.Word] != wordcloud.MinFontSize {
		t.Fatalf("most frequent %q has size %d, least frequent %q %d", top.Word, byWord[top.Word], least.Word, byWord[least.Word])
	}
	if !strings.HasPrefix(string(svg), `<svg xmlns="http://www.w3.org/2000/svg"`) {
		t.Fatalf("svg starts %.60q", svg)
	}
}

func TestRender_Max(t *testing.T) {
	var counts []wordcloud.WordCount
	for i := range 100 {
		counts = append(counts, wordcloud.WordCount{Word: "word" + strings.Repeat("x", i%7) + strconv.Itoa(i), Count: 100 - i})
	}
	for _, tt := range []struct{ max, want int }{{10, 10}, {60, 60}, {0, wordcloud.DefaultMaxWords}, {-1, wordcloud.DefaultMaxWords}, {1000, 100}} {
		t.Run(fmt.Sprint(tt.max), func(t *testing.T) {
			d := parseSVG(t, wordcloud.Render(counts, tt.max))
			if len(d.Texts) != tt.want {
				t.Fatalf("Render(100 words, %d) drew %d, want %d", tt.max, len(d.Texts), tt.want)
			}
			if d.Texts[0].Word != counts[0].Word {
				t.Fatalf("first word %q", d.Texts[0].Word)
			}
		})
	}
}

func TestRender_Edges(t *testing.T) {
	for _, tt := range []struct {
		name   string
		counts []wordcloud.WordCount
		words  int
	}{
		{"nil", nil, 0},
		{"zero counts are skipped", []wordcloud.WordCount{{"ghost", 0}, {"", 3}}, 0},
		{"one word", []wordcloud.WordCount{{"solo", 1}}, 1},
		{"equal counts", []wordcloud.WordCount{{"aaa", 2}, {"bbb", 2}, {"ccc", 2}}, 3},
		{"markup is escaped", []wordcloud.WordCount{{"<b>&amp;", 1}}, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := parseSVG(t, wordcloud.Render(tt.counts, 0))
			if len(d.Texts) != tt.words {
				t.Fatalf("%d words drawn, want %d", len(d.Texts), tt.words)
			}
		})
	}
}

func postWords(tb testing.TB, srvURL string, form url.Values) (int, string, api.ErrorDetail) {
	tb.Helper()
	return servicetest.PostForm(tb, srvURL+"/api/v1/wordcloud", form)
}

func TestHandler(t *testing.T) {
	srv := httptest.NewServer(wordcloud.Handler())
	defer srv.Close()
	tests := []struct {
		name     string
		form     url.Values
		want     int
		wantCode string
		wantMsg  string
	}{
		{"ok", url.Values{"words": {sample}}, 200, "", ""},
		{"empty", url.Values{"words": {""}}, 422, wordcloud.CodeNoWords, "no words to draw"},
		{"only stop words", url.Values{"words": {"the and of it"}}, 422, wordcloud.CodeNoWords, "no words to draw"},
		{"missing field", url.Values{"text": {sample}}, 400, api.CodeInvalidArgument, "words is required"},
		{"too large", url.Values{"words": {strings.Repeat("x", wordcloud.MaxBodyBytes)}}, 413, api.CodeBodyTooLarge, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, data, e := postWords(t, srv.URL, tt.form)
			if status != tt.want || e.Code != tt.wantCode || !strings.Contains(e.Message, tt.wantMsg) {
				t.Fatalf("%d %+v; want %d %s %q", status, e, tt.want, tt.wantCode, tt.wantMsg)
			}
			if status != 200 {
				return
			}
			svg, err := base64.StdEncoding.DecodeString(data)
			if err != nil {
				t.Fatal(err)
			}
			if want := wordcloud.Render(wordcloud.Frequencies(sample), wordcloud.DefaultMaxWords); !bytes.Equal(svg, want) {
				t.Fatal("the service's SVG is not Render(Frequencies(words))")
			}
		})
	}
	resp, err := http.Get(srv.URL + "/api/v1/wordcloud")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET = %d", resp.StatusCode)
	}
}

func ExampleFrequencies() {
	for _, wc := range wordcloud.Frequencies("Go services, Golang services: the services we build in Golang.")[:2] {
		fmt.Println(wc.Word, wc.Count)
	}
	// Output:
	// services 3
	// golang 2
}

func FuzzFrequencies(f *testing.F) {
	f.Add(sample)
	f.Add("ÄÖÜ äöü ß ǅ ﬃ")
	f.Fuzz(func(t *testing.T, text string) {
		counts := wordcloud.Frequencies(text)
		svg := wordcloud.Render(counts, 20)
		var d svgDoc
		if err := xml.Unmarshal(svg, &d); err != nil {
			t.Fatalf("Render gave an SVG that does not parse: %v", err)
		}
		if len(d.Texts) != min(len(counts), 20) {
			t.Fatalf("drew %d of %d words", len(d.Texts), len(counts))
		}
	})
}
