package gateway

import "html/template"

// page is what the template renders.
type page struct {
	// URLs is the textarea's content.
	URLs    string
	Message string
	Results []result
	// Cloud is the sanitised SVG, or empty.
	Cloud template.HTML
}

// result is one URL's line in the results list.
type result struct {
	URL     string
	OK      bool
	Message string
	// text is what the scraper extracted; it is not rendered.
	text string
}

const pageTemplate = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Job word cloud</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
textarea { width: 100%; font-family: ui-monospace, monospace; }
#results li.ok { color: #1a7f37; }
#results li.error { color: #b42318; }
#results .url { font-family: ui-monospace, monospace; }
#cloud svg { max-width: 100%; height: auto; border: 1px solid #ddd; }
</style>
</head>
<body>
<h1>Job word cloud</h1>
<p>Paste the URLs of job postings, one per line, and see which words their descriptions use most.</p>
<form method="post" action="/">
<textarea name="urls" id="urls" rows="8" cols="80" spellcheck="false">{{.URLs}}</textarea>
<p><button type="submit" id="submit">Make the word cloud</button></p>
</form>
{{with .Message}}<p id="message">{{.}}</p>
{{end}}{{with .Results}}<ul id="results">
{{range .}}<li class="{{if .OK}}ok{{else}}error{{end}}"><span class="url">{{.URL}}</span>: {{.Message}}</li>
{{end}}</ul>
{{end}}{{with .Cloud}}<div id="cloud">{{.}}</div>
{{end}}</body>
</html>
`
