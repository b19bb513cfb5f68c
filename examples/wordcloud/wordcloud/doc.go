// Package wordcloud is the word-cloud demo's wordcloud service: it counts
// the words of a text and draws them as an SVG word cloud, in the shape of
// the tutorial's service (which drew a PNG).
//
//	POST /api/v1/wordcloud   (form field words)
//	200 {"data": "<base64 of an SVG image>"}
//
// Frequencies counts words (lower case, letters only, at least three of
// them, English stop words left out); Render lays the most frequent ones
// out on an Archimedean spiral, biggest first, with font sizes that grow
// with frequency. Rendering is deterministic: the same counts give the same
// bytes.
//
//	counts := wordcloud.Frequencies(text)
//	svg := wordcloud.Render(counts, wordcloud.DefaultMaxWords)
//
// Run it with client.Serve under ServiceName:
//
//	err := client.Serve(ctx, client.ServiceConfig{Name: wordcloud.ServiceName, Address: "127.0.0.1", Port: 8886},
//		wordcloud.Handler())
package wordcloud
