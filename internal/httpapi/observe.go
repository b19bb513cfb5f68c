package httpapi

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strconv"
	"time"
	"unicode"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/redact"
)

// Observer is told what the API answered, for metrics. Each field is
// optional; every function must be cheap and safe for concurrent use.
type Observer struct {
	// Route is called once for each route ("METHOD pattern") when the
	// handler is built, and returns what to call when a request of that
	// route has been answered with status after d.
	Route func(route string) func(status int, d time.Duration)
	// Registration is told each /v1 registration's result: "ok", or the
	// error code of its refusal.
	Registration func(result string)
	// Beats is told of heartbeats received (each beat of a batch counts)
	// and how many of them were refused for their token.
	Beats func(received, unauthorized int)
}

// requestIDHeader carries a caller's ID of its request, which the
// request's debug line shows and the answer echoes.
const requestIDHeader = "X-Request-Id"

// maxRequestID bounds a request ID a caller sends; a longer one, one
// with a character outside printable ASCII, or one that looks like a
// secret (see package redact: it would be written to the log) is
// replaced by this node's own.
const maxRequestID = 128

// instrument wraps the handler of route: it times the request, tells the
// observer its status, and writes the request's line at debug level
// (method, route, status, duration, request ID, caller).
func (a *apiServer) instrument(route string, h http.Handler) http.Handler {
	var done func(int, time.Duration)
	if a.obs.Route != nil {
		done = a.obs.Route(route)
	}
	debug := a.log.Enabled(context.Background(), slog.LevelDebug)
	if done == nil && !debug {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		var id string
		if debug {
			id = a.requestID(sw, r)
		}
		defer func() {
			d := time.Since(start)
			status := sw.status
			if status == 0 {
				status = http.StatusOK // a handler that wrote nothing
			}
			if done != nil {
				done(status, d)
			}
			if debug {
				a.log.Debug("request", "method", methodName(r.Method), "route", route, "status", status,
					"duration", d, "request_id", id, "caller", r.RemoteAddr)
			}
		}()
		h.ServeHTTP(sw, r)
	})
}

// requestID returns the caller's request ID, or one of this node's own
// when it sent none or one refused (see maxRequestID); the answer
// carries the one used.
func (a *apiServer) requestID(w http.ResponseWriter, r *http.Request) string {
	id := r.Header.Get(requestIDHeader)
	if id == "" || len(id) > maxRequestID || !printable(id) || redact.Secretlike(id) {
		id = a.reqPrefix + strconv.FormatUint(a.reqSeq.Add(1), 10)
	}
	w.Header().Set(requestIDHeader, id)
	return id
}

// methodName is method when it is one of HTTP's, else "other": a method
// is whatever word a caller sends, and a log line holds none of theirs.
func methodName(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete,
		http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return method
	}
	return "other"
}

// requestIDPrefix is 8 random hex digits and a dash.
func requestIDPrefix() string {
	var b [4]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:]) + "-"
}

func printable(s string) bool {
	for _, c := range s {
		if c > unicode.MaxASCII || !unicode.IsPrint(c) {
			return false
		}
	}
	return true
}

// statusWriter records the status a handler answers with. Unwrap lets
// http.ResponseController reach the connection (flushes and deadlines of
// streams).
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// beats tells the observer of heartbeats received and refused for their
// token.
func (a *apiServer) beats(received, unauthorized int) {
	if a.obs.Beats != nil {
		a.obs.Beats(received, unauthorized)
	}
}

// tokenRefused reports whether err (a heartbeat's, through heartbeatAuth)
// refuses the token.
func tokenRefused(err error) bool { return refusesToken(APIError(err)) }

// refusesToken reports whether e refuses a request's token.
func refusesToken(e *Error) bool {
	return e.Code == api.CodeUnauthorized || e.Code == api.CodeForbidden
}

// counted is 1 for true, 0 for false.
func counted(b bool) int {
	if b {
		return 1
	}
	return 0
}

// registration tells the observer a registration's result.
func (a *apiServer) registration(err error) {
	if a.obs.Registration == nil {
		return
	}
	if err == nil {
		a.obs.Registration("ok")
		return
	}
	a.obs.Registration(APIError(err).Code)
}

// metricsRoutes returns the routes of /metrics and, with pprof, of
// /debug/pprof/.
//
// /metrics answers, when no metrics token is set, callers on a loopback
// address only (a scraper on the host, or one that reaches the port
// through a tunnel); with a token, any caller that presents it or the
// admin token. It reveals counts and timings, never a service's name, an
// instance or a key (no label holds one). /debug/pprof/ answers the
// admin token only: a profile shows the program's memory and may hold
// anything in it.
func (a *apiServer) metricsRoutes(d Deps) []Route {
	var out []Route
	if d.Metrics != nil {
		out = append(out, Route{"GET", "/metrics", func(w http.ResponseWriter, r *http.Request) {
			if err := a.scraper(r, d.MetricsToken); err != nil {
				WriteError(w, a.log, err)
				return
			}
			d.Metrics.ServeHTTP(w, r)
		}})
	}
	if d.Pprof {
		admin := func(h http.HandlerFunc) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				if err := a.reg.CheckAdmin(Bearer(r)); err != nil {
					WriteError(w, a.log, adminAuth.apply(err))
					return
				}
				h(w, r)
			}
		}
		out = append(out,
			Route{"GET", "/debug/pprof/", admin(pprof.Index)},
			Route{"GET", "/debug/pprof/cmdline", admin(pprof.Cmdline)},
			Route{"GET", "/debug/pprof/profile", admin(pprof.Profile)},
			Route{"GET", "/debug/pprof/symbol", admin(pprof.Symbol)},
			Route{"GET", "/debug/pprof/trace", admin(pprof.Trace)},
		)
	}
	return out
}

// scraper authorises a request for /metrics (see metricsRoutes).
func (a *apiServer) scraper(r *http.Request, token string) error {
	got := Bearer(r)
	if token == "" {
		if Loopback(r.RemoteAddr) {
			return nil
		}
		return Errorf(http.StatusForbidden, api.CodeForbidden, "",
			"/metrics answers loopback callers only; to scrape from elsewhere, give the server a metrics token (--metrics-token-file, or MUSTER_METRICS_TOKEN) and send it as a bearer token")
	}
	if got == "" {
		return Errorf(http.StatusUnauthorized, api.CodeUnauthorized, "", "metrics token or admin token required")
	}
	if constantEqual(got, token) || a.reg.CheckAdmin(got) == nil {
		return nil
	}
	return Errorf(http.StatusForbidden, api.CodeForbidden, "", "token is neither the metrics token nor the admin token")
}

// Loopback reports whether addr ("host:port": a caller's, or a bound
// listener's) is a loopback address.
func Loopback(addr string) bool {
	ap, err := netip.ParseAddrPort(addr)
	return err == nil && ap.Addr().Unmap().IsLoopback()
}

// constantEqual compares two tokens in time independent of where they
// differ.
func constantEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
