package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
)

// The services the gateway calls, and the meta key that says which site a
// scraper instance reads. They must match what the services register as
// (fetchurl.ServiceName, scraper.ServiceName, scraper.MetaSite,
// wordcloud.ServiceName; a test checks it).
const (
	ServiceFetchURL  = "fetch_url"
	ServiceScraper   = "scraper"
	ServiceWordCloud = "wordcloud"
	MetaSite         = "site"
)

// Limits on what the gateway reads.
const (
	maxFormBytes     = 256 << 10 // the submitted form
	maxFetchAnswer   = 16 << 20  // fetch_url's JSON (base64 of the page)
	maxServiceAnswer = 8 << 20   // a scraper's or wordcloud's JSON
	maxScraperTries  = 3         // scraper instances tried per URL on connection failures
)

// Config configures the gateway.
type Config struct {
	// Resolver finds the services. Required.
	Resolver *client.Resolver
	// HTTPClient calls the services; default Resolver.HTTPClient(), whose
	// transport sends http://fetch_url/… and http://wordcloud/… to an
	// instance picked by the resolver and passes other hosts (a scraper
	// instance's URL) through.
	HTTPClient *http.Client
	// MaxURLs is how many URLs of one submission are processed; the rest
	// are left out with a message. Default 20.
	MaxURLs int
	// Concurrency bounds the URLs of one submission processed at once;
	// default 4.
	Concurrency int
	// Timeout bounds one submission: every URL and the cloud; default 60s.
	Timeout time.Duration
	// Examples prefill the form's text area on GET / (the demo passes
	// jobboard.SampleURLs()).
	Examples []string
	// Logger receives a line per submission and per failed URL; default
	// discards.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults, without a Resolver.
func DefaultConfig() Config {
	return Config{MaxURLs: 20, Concurrency: 4, Timeout: 60 * time.Second}
}

// Validate reports a configuration error. Zero fields other than Resolver
// are valid: Handler fills them from DefaultConfig.
func (c Config) Validate() error {
	var errs []error
	if c.Resolver == nil {
		errs = append(errs, errors.New("a Resolver is required"))
	}
	if c.MaxURLs < 0 || c.Concurrency < 0 || c.Timeout < 0 {
		errs = append(errs, errors.New("MaxURLs, Concurrency and Timeout must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("gateway: config: %w", err)
	}
	return nil
}

// Handler returns the gateway: GET / (the form), POST / (form field urls,
// one URL a line; the results and the cloud) and GET /healthz. It panics
// if cfg.Validate fails.
func Handler(cfg Config) http.Handler {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	def := DefaultConfig()
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = cfg.Resolver.HTTPClient()
	}
	if cfg.MaxURLs == 0 {
		cfg.MaxURLs = def.MaxURLs
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = def.Concurrency
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = def.Timeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	g := &gateway{cfg: cfg, tmpl: template.Must(template.New("page").Parse(pageTemplate))}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		g.render(w, http.StatusOK, page{URLs: strings.Join(cfg.Examples, "\n")})
	})
	mux.HandleFunc("POST /{$}", g.submit)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// gateway holds the configuration and the parsed page; it keeps no state
// between requests.
type gateway struct {
	cfg  Config
	tmpl *template.Template
}

func (g *gateway) render(w http.ResponseWriter, status int, p page) {
	var buf bytes.Buffer
	if err := g.tmpl.Execute(&buf, p); err != nil {
		http.Error(w, "gateway: render page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// submit handles POST /: every URL, then the cloud.
func (g *gateway) submit(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		g.render(w, http.StatusBadRequest, page{Message: fmt.Sprintf("The form could not be read (at most %d KiB of URLs): %v", maxFormBytes>>10, err)})
		return
	}
	raw := r.PostForm.Get("urls")
	var lines []string
	for _, l := range strings.Split(raw, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	p := page{URLs: raw}
	if len(lines) == 0 {
		p.Message = "Enter at least one URL, one per line."
		g.render(w, http.StatusBadRequest, p)
		return
	}
	var notes []string
	if extra := len(lines) - g.cfg.MaxURLs; extra > 0 {
		lines = lines[:g.cfg.MaxURLs]
		notes = append(notes, fmt.Sprintf("Only the first %d URLs were processed; %d more were left out.", g.cfg.MaxURLs, extra))
	}
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.Timeout)
	defer cancel()

	p.Results = g.processAll(ctx, lines)
	var texts []string
	for _, res := range p.Results {
		if res.OK {
			texts = append(texts, res.text)
		} else {
			g.cfg.Logger.Info("url failed", "url", res.URL, "reason", res.Message)
		}
	}
	if len(texts) == 0 {
		notes = append(notes, "No job description text could be extracted from these URLs, so there is no word cloud to draw.")
	} else if svg, err := g.cloud(ctx, strings.Join(texts, "\n")); err != nil {
		notes = append(notes, "The word cloud could not be drawn: "+err.Error())
	} else {
		p.Cloud = svg
	}
	p.Message = strings.Join(notes, " ")
	g.cfg.Logger.Info("word cloud request", "urls", len(lines), "ok", len(texts), "cloud", p.Cloud != "", "took", time.Since(start).Round(time.Millisecond))
	g.render(w, http.StatusOK, p)
}

// processAll processes lines concurrently, at most Concurrency at a time,
// and returns their results in input order. Each goroutine ends when its
// URL is done, which ctx bounds.
func (g *gateway) processAll(ctx context.Context, lines []string) []result {
	results := make([]result, len(lines))
	sem := make(chan struct{}, g.cfg.Concurrency)
	var wg sync.WaitGroup
	for i, line := range lines {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			results[i] = g.process(ctx, line)
		})
	}
	wg.Wait()
	return results
}

// site is the site of a host as scrapers register it: lower case, without
// a leading www. (Hostname has already dropped the port).
func site(host string) string {
	return strings.TrimPrefix(strings.ToLower(host), "www.")
}

// process turns one URL into a result: find a scraper for its site, fetch
// the page through fetch_url, have the scraper extract the description.
func (g *gateway) process(ctx context.Context, line string) result {
	res := result{URL: line}
	u, err := url.Parse(line)
	if err != nil || !u.IsAbs() || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		res.Message = "not an absolute http or https URL"
		return res
	}
	st := site(u.Hostname())
	lookup, err := g.cfg.Resolver.Lookup(ctx, ServiceScraper, client.WithMeta(MetaSite, st))
	if err != nil {
		res.Message = fmt.Sprintf("cannot look up a scraper for %s: %v", st, err)
		return res
	}
	if len(lookup.Instances) == 0 {
		res.Message = fmt.Sprintf("no scraper supports %s yet", st)
		return res
	}
	html, err := g.fetch(ctx, u.String())
	if err != nil {
		res.Message = "could not fetch the page: " + err.Error()
		return res
	}
	text, err := g.scrape(ctx, st, html)
	if err != nil {
		res.Message = err.Error()
		return res
	}
	res.OK, res.text = true, text
	res.Message = fmt.Sprintf("%d words of job description, read by the %s scraper", len(strings.Fields(text)), st)
	return res
}

// fetch gets a page through fetch_url.
func (g *gateway) fetch(ctx context.Context, target string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ServiceFetchURL+"/api/v1/fetchurl/?url="+url.QueryEscape(target), nil)
	if err != nil {
		return nil, err
	}
	data, err := g.call(req, ServiceFetchURL, maxFetchAnswer)
	if err != nil {
		return nil, err
	}
	page, err := base64.StdEncoding.DecodeString(data)
	if err != nil {
		return nil, fmt.Errorf("%s answered a page that is not base64: %v", ServiceFetchURL, err)
	}
	return page, nil
}

// scrape has a scraper for st extract the description from page. It picks
// an instance of the lookup through the resolver (balanced, skipping
// instances recently seen failing), and on a connection failure reports
// the instance and tries another, up to maxScraperTries.
func (g *gateway) scrape(ctx context.Context, st string, page []byte) (string, error) {
	form := url.Values{"html": {string(page)}}.Encode()
	var lastErr error
	for range maxScraperTries {
		inst, err := g.cfg.Resolver.Pick(ctx, ServiceScraper, client.WithMeta(MetaSite, st))
		if errors.Is(err, client.ErrNoInstances) {
			return "", fmt.Errorf("no scraper supports %s yet", st)
		}
		if err != nil {
			return "", fmt.Errorf("cannot pick a scraper for %s: %v", st, err)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(inst.URL, "/")+"/api/v1/words", strings.NewReader(form))
		if err != nil {
			return "", fmt.Errorf("the %s scraper's URL %q is not usable: %v", st, inst.URL, err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		text, err := g.call(req, "the "+st+" scraper", maxServiceAnswer)
		var se *serviceError
		switch {
		case err == nil:
			g.cfg.Resolver.ReportSuccess(inst.ID)
			return text, nil
		case errors.As(err, &se), ctx.Err() != nil:
			return "", err // it answered, or time is up
		}
		g.cfg.Resolver.ReportFailure(inst.ID)
		lastErr = err
	}
	return "", lastErr
}

// cloud has wordcloud draw text, and returns the SVG, sanitised.
func (g *gateway) cloud(ctx context.Context, text string) (template.HTML, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+ServiceWordCloud+"/api/v1/wordcloud", strings.NewReader(url.Values{"words": {text}}.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	// Drawing is idempotent: the key lets the transport retry the POST on
	// another instance after a connection failure.
	sum := sha256.Sum256([]byte(text))
	req.Header.Set("Idempotency-Key", hex.EncodeToString(sum[:16]))
	data, err := g.call(req, ServiceWordCloud, maxServiceAnswer)
	if err != nil {
		return "", err
	}
	svg, err := base64.StdEncoding.DecodeString(data)
	if err != nil {
		return "", fmt.Errorf("%s answered an image that is not base64: %v", ServiceWordCloud, err)
	}
	safe, err := sanitizeSVG(svg)
	if err != nil {
		return "", fmt.Errorf("%s answered an SVG the page will not show: %v", ServiceWordCloud, err)
	}
	return safe, nil
}

// serviceError is an error answer from a service: its message is what the
// user sees.
type serviceError struct {
	Service string
	Status  int
	api.ErrorDetail
}

func (e *serviceError) Error() string { return e.Message }

// call sends req to a service (named for messages) and returns the data
// field of its {"data": …} answer. An error answer becomes a
// *serviceError; a request that got no answer, an error that names the
// service.
func (g *gateway) call(req *http.Request, service string, limit int64) (string, error) {
	resp, err := g.cfg.HTTPClient.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL would repeat the page's
		}
		if errors.Is(err, client.ErrNoInstances) {
			return "", fmt.Errorf("no %s instance is registered", service)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return "", fmt.Errorf("%s did not answer in time", service)
		}
		return "", fmt.Errorf("%s is unreachable: %v", service, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return "", fmt.Errorf("reading %s's answer: %v", service, err)
	}
	if int64(len(body)) > limit {
		return "", fmt.Errorf("%s answered more than %d bytes", service, limit)
	}
	if resp.StatusCode != http.StatusOK {
		var eb api.ErrorBody
		if json.Unmarshal(body, &eb) != nil || eb.Error.Message == "" {
			eb.Error = api.ErrorDetail{Code: api.CodeInternal, Message: fmt.Sprintf("%s answered %s", service, resp.Status)}
		}
		return "", &serviceError{Service: service, Status: resp.StatusCode, ErrorDetail: eb.Error}
	}
	var ok struct {
		Data *string `json:"data"`
	}
	if err := json.Unmarshal(body, &ok); err != nil || ok.Data == nil {
		return "", fmt.Errorf("%s answered something that is not {\"data\": …}", service)
	}
	return *ok.Data, nil
}
