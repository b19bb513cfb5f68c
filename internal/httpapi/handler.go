package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"path"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/registry"
)

// Deps are the handler's dependencies.
type Deps struct {
	// Registry runs every workflow; the handler only decodes and encodes.
	Registry *registry.Registry
	Logger   *slog.Logger
	// MaxBody caps request bodies; default 64 KiB.
	MaxBody int64
	// Mount are routes of other front ends served beside /v1 (the
	// tutorial protocol), sharing the 404 and 405 answers.
	Mount []Route
	// Lookups bounds lookups with large answers (see LookupConfig).
	Lookups LookupConfig
	// Watch tunes the event stream (see WatchConfig).
	Watch WatchConfig
	// Closing, when set, ends when the server begins to close: handlers
	// that may run for minutes (streams, blocking queries) then return, so
	// that shutdown need not wait for them.
	Closing context.Context
	// Observer is told what the API answered, for metrics (optional).
	Observer Observer
	// Metrics, when set, is served at GET /metrics: to loopback callers
	// when MetricsToken is empty, else to callers that present it or the
	// admin token (see metricsRoutes).
	Metrics      http.Handler
	MetricsToken string
	// Pprof serves the runtime's profiles at /debug/pprof/ to the admin
	// token.
	Pprof bool
}

type apiServer struct {
	reg     *registry.Registry
	log     *slog.Logger
	maxBody int64
	enc     *instanceEncoder
	// bufs holds the lookups' answer buffers.
	bufs sync.Pool
	// lookups are the slots of lookups with large answers.
	lookups *lookupSlots
	// beatBodies bounds the batches of heartbeats being read at once.
	beatBodies *bodyBudget
	watchCfg   WatchConfig
	closing    context.Context // nil: never
	// nodeHeader is the X-Muster-Node value last sent (see beginRead).
	nodeHeader atomic.Pointer[[]string]
	obs        Observer
	// reqSeq numbers the requests that bring no ID of their own, for
	// their debug lines, after reqPrefix: random for each handler, so
	// that the IDs of different servers, and of one server's runs, do not
	// collide in a log that gathers them.
	reqSeq    atomic.Uint64
	reqPrefix string
}

// NewHandler returns the API handler.
func NewHandler(d Deps) http.Handler {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.MaxBody == 0 {
		d.MaxBody = 64 << 10
	}
	a := &apiServer{reg: d.Registry, log: d.Logger, maxBody: d.MaxBody, enc: newInstanceEncoder(), lookups: newLookupSlots(d.Lookups),
		watchCfg: d.Watch.withDefaults(), closing: d.Closing, beatBodies: newBodyBudget(beatsBudget, beatsBudgetPerClient), obs: d.Observer,
		reqPrefix: requestIDPrefix()}
	a.bufs.New = func() any { b := make([]byte, 0, 8<<10); return &b }

	all := append(d.Mount, a.metricsRoutes(d)...)
	for _, rt := range a.routes() {
		h := a.adapt(rt.Handler)
		if strings.HasPrefix(rt.Pattern, "/v1/") && !queried[rt.Method+" "+rt.Pattern] {
			h = a.noQuery(h)
		}
		all = append(all, Route{rt.Method, rt.Pattern, h})
	}
	mux := http.NewServeMux()
	paths := http.NewServeMux() // the same patterns without methods, to tell 405 from 404
	allowed := map[string][]string{}
	for _, rt := range all {
		mux.Handle(rt.Method+" "+rt.Pattern, a.instrument(rt.Method+" "+rt.Pattern, rt.Handler))
		if _, ok := allowed[rt.Pattern]; !ok {
			paths.Handle(rt.Pattern, http.NotFoundHandler())
		}
		allowed[rt.Pattern] = append(allowed[rt.Pattern], rt.Method)
	}
	// Requests no route matches are answered here, timed and logged as
	// the route "unmatched" (one label, whatever the path).
	mux.Handle("/", a.instrument("unmatched", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := paths.Handler(r); pattern != "" {
			methods := allowed[pattern]
			sort.Strings(methods)
			w.Header().Set("Allow", strings.Join(methods, ", "))
			WriteError(w, a.log, Errorf(http.StatusMethodNotAllowed, api.CodeMethodNotAllowed, "",
				"method %s not allowed; use %s", r.Method, strings.Join(methods, " or ")))
			return
		}
		WriteError(w, a.log, Errorf(http.StatusNotFound, api.CodeNotFound, "", "no such endpoint %s", r.URL.Path))
	})))
	return Guard(a.log, mux)
}

// Guard wraps a front end's router as /v1's is: a panic is a 500 with a
// JSON body and the stack logged, so that no input takes the server
// down; a CONNECT, or a path that is not canonical, is a JSON 405 or 404
// before any route is looked at. Every listener's handler goes through
// it.
func Guard(log *slog.Logger, mux http.Handler) http.Handler {
	return recoverer(log, canonical(log, mux))
}

// canonical answers a path that is not in canonical form (an empty, . or
// .. segment: /v1/instances//heartbeat, //v1/services) with the JSON 404
// of an unknown endpoint. net/http's mux would answer a bare redirect to
// the cleaned path, which no API client follows usefully and which can
// turn a missing ID into a request for another resource.
func canonical(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodConnect { // never routed; the mux would answer in plain text
			WriteError(w, log, Errorf(http.StatusMethodNotAllowed, api.CodeMethodNotAllowed, "", "method CONNECT is not allowed: muster is not a proxy"))
			return
		}
		if p := r.URL.Path; !canonicalPath(p) {
			WriteError(w, log, Errorf(http.StatusNotFound, api.CodeNotFound, "",
				"no such endpoint %s: the path has an empty, . or .. segment (is an ID missing?)", p))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// canonicalPath reports whether p is rooted and has no empty, . or ..
// segment (a trailing slash is allowed: the tutorial's paths have one).
func canonicalPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c == p
}

// adapt turns a handler that returns its error into an http.HandlerFunc
// that writes it: the one place /v1 errors are written.
func (a *apiServer) adapt(h handlerFunc) http.HandlerFunc { return Adapt(a.log, h) }

// Adapt turns a handler that returns its error into an http.HandlerFunc
// that writes it as a JSON error (WriteError): for every front end.
func Adapt(log *slog.Logger, h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			WriteError(w, log, err)
		}
	}
}

// recoverer turns a handler panic into a 500 so that no input can take the
// server down, and logs the stack.
func recoverer(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				log.Error("handler panic", "method", r.Method, "route", r.Pattern, "panic", v, "stack", string(debug.Stack()))
				WriteError(w, log, errors.New("panic"))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

func (a *apiServer) livez(w http.ResponseWriter, r *http.Request) error {
	WriteJSON(w, http.StatusOK, api.Health{Status: "ok"})
	return nil
}

// readyz answers 200 while the node serves reads (a ready leader), and
// 503 while it does not. A degraded node still answers 200, so that a
// load balancer keeps sending it reads, with status "degraded", the
// impaired part in "degraded" and what it means in "reason": with "disk",
// writes are refused (503 unavailable with Retry-After) until space is
// freed.
func (a *apiServer) readyz(w http.ResponseWriter, r *http.Request) error {
	h := a.reg.Health()
	if !h.Ready {
		reason := "no leader elected yet"
		switch {
		case h.Degraded == "removed":
			reason = "this server was removed from its cluster: it takes no part; to make it a member again, stop it, empty its data dir and start it with --join"
		case h.Leader != "":
			reason = "this node has not yet applied the leader's log (it is loading, or catching up)"
		}
		WriteJSON(w, http.StatusServiceUnavailable, api.Health{Status: "not_ready", Leader: h.Leader, Reason: reason, Degraded: h.Degraded})
		return nil
	}
	// Mass-expiry protection is a state of the fleet, not of this node:
	// it is reported, and the node stays ready.
	p := a.reg.ProtectionState()
	if h.Degraded != "" {
		reason := "degraded: " + h.Degraded
		if h.Degraded == "disk" {
			reason = "the data dir's disk is below its free-space reserve: writes are refused until space is freed; reads are served"
		}
		WriteJSON(w, http.StatusOK, api.Health{Status: "degraded", Leader: h.Leader, Index: h.Index, Degraded: h.Degraded, Reason: reason,
			Protection: p.Active, ProtectionActivations: p.Activations, ProtectionCooldownUntil: cooldown(p)})
		return nil
	}
	WriteJSON(w, http.StatusOK, api.Health{Status: "ready", Leader: h.Leader, Index: h.Index, Protection: p.Active, ProtectionActivations: p.Activations,
		ProtectionCooldownUntil: cooldown(p)})
	return nil
}

// cooldown formats the end of protection's cooldown for /readyz, "" when
// none runs.
func cooldown(p registry.ProtectionState) string {
	if p.CooldownUntil.IsZero() {
		return ""
	}
	return p.CooldownUntil.UTC().Format(time.RFC3339)
}
