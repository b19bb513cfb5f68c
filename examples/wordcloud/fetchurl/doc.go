// Package fetchurl is the word-cloud demo's fetch_url service: it fetches a
// web page for the gateway and answers it base64-encoded, in the shape of
// the tutorial muster grew from.
//
//	GET /api/v1/fetchurl/?url=http://www.dice.com/jobs/detail/…
//	200 {"data": "<base64 of the page body>"}
//
// Failures are JSON errors, {"error": {"code": …, "message": …}}: a missing
// or malformed url is 400 (api.CodeInvalidArgument); an upstream that
// answers a non-2xx status, sends more than MaxBytes, redirects more than
// MaxRedirects times or cannot be reached is 502; an upstream slower than
// Timeout is 504. The codes are the Code… constants of this package.
//
// The handler does no registration of its own; run it with client.Serve:
//
//	hc := fetchurl.NewClient(http.ProxyURL(jobboardURL)) // every fetch goes to the job board
//	cfg := fetchurl.DefaultConfig()
//	cfg.Client = hc
//	err := client.Serve(ctx, client.ServiceConfig{Name: fetchurl.ServiceName, Address: "127.0.0.1", Port: 8888},
//		fetchurl.Handler(cfg))
package fetchurl
