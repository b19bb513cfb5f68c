package httpapi

import (
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/health"
	"github.com/musterhq/muster/internal/verify"
)

// Node is the replication layer as the API needs it; *cluster.Node
// implements it. Apply blocks until the command is committed and applied.
type Node interface {
	Apply(ctx context.Context, cmd catalog.Command) (catalog.Result, error)
	// Ready returns a channel closed while this node is a ready leader and
	// when it became one.
	Ready() (<-chan struct{}, time.Time)
	Leader() string
}

// Deps are the handler's dependencies.
type Deps struct {
	Catalog  *catalog.Catalog
	Node     Node
	Tracker  *health.Tracker
	Verifier *verify.Verifier
	// AdminTokenHash is SHA-256 of the admin token.
	AdminTokenHash []byte
	// Grace is the mass-expiry grace (see package health).
	Grace  time.Duration
	Logger *slog.Logger
	// MaxBody caps request bodies; default 64 KiB.
	MaxBody int64
	// MaxVerifying caps concurrent registration callbacks; default 64.
	MaxVerifying int
	// FailureBurst failed verifications per enrolment key are allowed at
	// once, then one per FailureEvery; defaults 10 and 6s.
	FailureBurst int
	FailureEvery time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Seed, when set, also serves the tutorial's wire protocol.
	Seed *SeedConfig
}

type apiServer struct {
	Deps
	verifySlots chan struct{}
	// failures limits failed verifications per (key, address) and, three
	// times as generous, per key; keyFailures is the per-key one.
	failures    *failureLimiter
	keyFailures *failureLimiter
	// bufs holds the lookups' answer buffers.
	bufs sync.Pool
	seed *seedState
}

// NewHandler returns the API handler.
func NewHandler(d Deps) http.Handler {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.MaxBody == 0 {
		d.MaxBody = 64 << 10
	}
	if d.MaxVerifying == 0 {
		d.MaxVerifying = 64
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.FailureBurst == 0 {
		d.FailureBurst = 10
	}
	if d.FailureEvery == 0 {
		d.FailureEvery = 6 * time.Second
	}
	a := &apiServer{Deps: d, verifySlots: make(chan struct{}, d.MaxVerifying), failures: newFailureLimiter(d.FailureBurst, d.FailureEvery),
		keyFailures: newFailureLimiter(3*d.FailureBurst, d.FailureEvery/3)}
	a.bufs.New = func() any { b := make([]byte, 0, 8<<10); return &b }
	if d.Seed != nil {
		a.seed = &seedState{cfg: *d.Seed}
	}

	mux := http.NewServeMux()
	paths := http.NewServeMux() // the same patterns without methods, to tell 405 from 404
	allowed := map[string][]string{}
	for _, rt := range a.routes() {
		if rt.Seed && a.seed == nil {
			continue
		}
		mux.Handle(rt.Method+" "+rt.Pattern, rt.Handler)
		if _, ok := allowed[rt.Pattern]; !ok {
			paths.Handle(rt.Pattern, http.NotFoundHandler())
		}
		allowed[rt.Pattern] = append(allowed[rt.Pattern], rt.Method)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := paths.Handler(r); pattern != "" {
			methods := allowed[pattern]
			sort.Strings(methods)
			w.Header().Set("Allow", strings.Join(methods, ", "))
			writeError(w, a.Logger, errorf(http.StatusMethodNotAllowed, api.CodeMethodNotAllowed, "",
				"method %s not allowed; use %s", r.Method, strings.Join(methods, " or ")))
			return
		}
		writeError(w, a.Logger, errorf(http.StatusNotFound, api.CodeNotFound, "", "no such endpoint %s", r.URL.Path))
	})
	return a.recoverer(mux)
}

// recoverer turns a handler panic into a 500 so that no input can take the
// server down, and logs the stack.
func (a *apiServer) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				a.Logger.Error("handler panic", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
				writeError(w, a.Logger, errors.New("panic"))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// verifySlot takes one of the slots for registration callbacks; when all
// are taken it answers 503 busy and reports false. Call release when done.
func (a *apiServer) verifySlot(w http.ResponseWriter) (release func(), ok bool) {
	select {
	case a.verifySlots <- struct{}{}:
		return func() { <-a.verifySlots }, true
	default:
		w.Header().Set("Retry-After", "1")
		writeError(w, a.Logger, errorf(http.StatusServiceUnavailable, api.CodeBusy, "", "too many registrations in flight; retry"))
		return nil, false
	}
}

// verificationAllowed checks the failure limiters for a caller (byTarget:
// the caller and the address; byCaller: the caller alone). It returns
// false and how long to wait when either is spent; failed(), to call when
// the verification fails, spends from both.
func (a *apiServer) verificationAllowed(byTarget, byCaller string) (ok bool, wait time.Duration, failed func()) {
	now := a.Now()
	ok1, w1 := a.failures.Allow(now, byTarget)
	ok2, w2 := a.keyFailures.Allow(now, byCaller)
	return ok1 && ok2, max(w1, w2), func() {
		now := a.Now()
		a.failures.Fail(now, byTarget)
		a.keyFailures.Fail(now, byCaller)
	}
}

// rateLimited is the refusal when a caller's failure allowance is spent.
func rateLimited(w http.ResponseWriter, wait time.Duration, who string) *Error {
	w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
	return errorf(http.StatusTooManyRequests, api.CodeRateLimited, "",
		"too many failed verifications lately from this %s; retry in %s", who, wait.Round(time.Second)+time.Second)
}

// isAdmin reports whether r carries the admin token.
func (a *apiServer) isAdmin(r *http.Request) bool {
	tok := bearer(r)
	if tok == "" || len(a.AdminTokenHash) == 0 {
		return false
	}
	return subtle.ConstantTimeCompare(catalog.HashSecret(tok), a.AdminTokenHash) == 1
}

func (a *apiServer) requireAdmin(w http.ResponseWriter, r *http.Request) bool {
	if bearer(r) == "" {
		writeError(w, a.Logger, errorf(http.StatusUnauthorized, api.CodeUnauthorized, "", "admin token required (Authorization: Bearer ...)"))
		return false
	}
	if !a.isAdmin(r) {
		writeError(w, a.Logger, errorf(http.StatusForbidden, api.CodeForbidden, "", "this token is not the admin token"))
		return false
	}
	return true
}

// floor returns the earliest time the tracker may assume as a last
// heartbeat: the moment this node became leader, plus the grace.
func (a *apiServer) floor() (time.Time, bool) {
	ch, since := a.Node.Ready()
	select {
	case <-ch:
		return since.Add(a.Grace), true
	default:
		return time.Time{}, false
	}
}

// readyFloor is floor for read handlers: when the node is not a ready
// leader its catalog may still be replaying the log, so rather than answer
// from a partial catalog it writes a 503 and reports false.
func (a *apiServer) readyFloor(w http.ResponseWriter) (time.Time, bool) {
	floor, ok := a.floor()
	if !ok {
		w.Header().Set("Retry-After", "1")
		writeError(w, a.Logger, errorf(http.StatusServiceUnavailable, api.CodeUnavailable, "", "the catalog is still loading; retry"))
	}
	return floor, ok
}

func (a *apiServer) livez(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, api.Health{Status: "ok"})
}

func (a *apiServer) readyz(w http.ResponseWriter, r *http.Request) {
	if _, ok := a.floor(); !ok {
		reason := "no leader elected yet"
		if a.Node.Leader() != "" {
			reason = "catalog not yet loaded on the leader, or this node is not the leader"
		}
		writeJSON(w, http.StatusServiceUnavailable, api.Health{Status: "not_ready", Leader: a.Node.Leader(), Reason: reason})
		return
	}
	writeJSON(w, http.StatusOK, api.Health{Status: "ready", Leader: a.Node.Leader(), Index: a.Catalog.Index()})
}
