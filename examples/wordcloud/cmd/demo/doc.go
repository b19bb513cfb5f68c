// Command demo runs the word-cloud app of the tutorial muster grew from,
// rebuilt on muster: a registry embedded in this process, the offline
// sample job board, and each service (two fetch_url, a scraper per
// built-in layout, wordcloud, the gateway) as a child process of this same
// binary, all on free ports.
//
//	go run ./examples/wordcloud/cmd/demo                             # start it all; Ctrl-C stops it
//	go run ./examples/wordcloud/cmd/demo scraper --site example.org  # join the running demo
//
// It is the one program under examples/ that embeds the registry: besides
// api, client and the word-cloud libraries it imports internal/server and
// internal/durable, and no other internal package (a test in
// examples/wordcloud/gateway checks it). The product binary, cmd/muster,
// never imports it or the libraries.
package main
