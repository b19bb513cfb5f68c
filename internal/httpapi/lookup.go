package httpapi

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/registry"
)

// LookupConfig bounds the lookups whose answers are larger than one buffer
// (32 KiB): they are streamed, each holding a slot. Smaller answers take
// no slot, so large lookups never starve small ones. Zero fields take
// their defaults.
type LookupConfig struct {
	// MaxLarge is how many large answers may be written at once; default
	// 16. With a buffer of 32 KiB per answer, they hold at most MaxLarge ×
	// 32 KiB of buffers however large the service.
	MaxLarge int
	// Wait is how long a large lookup waits for a slot before it is
	// answered 503 busy with Retry-After; default 1 s.
	Wait time.Duration
	// WriteTimeout bounds the writing of one large answer, so that a
	// client that reads slowly or not at all gives its slot back; default
	// 30 s. The answer is cut short when it runs out.
	WriteTimeout time.Duration
}

// DefaultLookupConfig returns the defaults of LookupConfig.
func DefaultLookupConfig() LookupConfig {
	return LookupConfig{MaxLarge: 16, Wait: time.Second, WriteTimeout: 30 * time.Second}
}

// Validate reports a negative setting (zero means the default).
func (c LookupConfig) Validate() error {
	if c.MaxLarge < 0 || c.Wait < 0 || c.WriteTimeout < 0 {
		return errors.New("httpapi: lookup limits must not be negative")
	}
	return nil
}

// withDefaults returns c with its zero (or negative) fields set to the
// defaults.
func (c LookupConfig) withDefaults() LookupConfig {
	d := DefaultLookupConfig()
	if c.MaxLarge <= 0 {
		c.MaxLarge = d.MaxLarge
	}
	if c.Wait <= 0 {
		c.Wait = d.Wait
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = d.WriteTimeout
	}
	return c
}

// lookupSlots are the slots of large lookups. Waiters are served in the
// order they came (a channel's blocked senders queue in order).
type lookupSlots struct {
	cfg   LookupConfig
	slots chan struct{} // one token per large answer being written
}

func newLookupSlots(cfg LookupConfig) *lookupSlots {
	cfg = cfg.withDefaults()
	return &lookupSlots{cfg: cfg, slots: make(chan struct{}, cfg.MaxLarge)}
}

// acquire takes a slot, waiting up to cfg.Wait or until ctx ends; it
// reports whether it got one. A slot taken must be released.
func (l *lookupSlots) acquire(ctx context.Context) bool {
	select {
	case l.slots <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(l.cfg.Wait)
	defer t.Stop()
	select {
	case l.slots <- struct{}{}:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

func (l *lookupSlots) release() { <-l.slots }

// query parses r's query string. Unlike URL.Query, which drops a pair it
// cannot parse (tag=a;b, %zz) and so widens a filter without a word, it
// refuses the whole query; and a parameter given more than once that is
// not one of multi (those that take a list) is refused rather than
// read as one of its values.
func query(r *http.Request, multi ...string) (url.Values, *Error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, BadField("query", "malformed query string: %v", err)
	}
	for k, vs := range q {
		if len(vs) > 1 && !slices.Contains(multi, k) {
			return nil, BadField(cmp.Or(k, "query"), "query parameter %q is given %d times; it takes one value", k, len(vs))
		}
	}
	return q, nil
}

// parseLookupQuery parses a GET /v1/services/{service} query.
func parseLookupQuery(q map[string][]string) (registry.Filter, *Error) {
	f := registry.Filter{Status: catalog.StatusPassing}
	for k, vs := range q {
		switch k {
		case "tag":
			for _, v := range vs {
				if v == "" {
					return f, BadField("tag", "tag filter must not be empty")
				}
			}
			f.Tags = vs
		case "meta":
			for _, v := range vs {
				if k, _, ok := strings.Cut(v, ":"); !ok || k == "" {
					return f, BadField("meta", "meta filter %q must be key:value", v)
				}
			}
			f.Meta = vs
		case "status":
			switch s := catalog.Status(vs[len(vs)-1]); s {
			case catalog.StatusPassing, catalog.StatusCritical, catalog.StatusDraining, registry.StatusAny:
				f.Status = s
			default:
				return f, BadField("status", "status must be passing, critical, draining or any")
			}
		case "index", "wait": // parseBlocking's
		default:
			return f, BadField(k, "unknown query parameter %q", k)
		}
	}
	return f, nil
}

// parseBlocking reads a blocking query's index and wait: blocking is
// false when the query has neither. wait without index is an error; an
// index without wait waits registry.DefaultWait.
func parseBlocking(q map[string][]string) (index uint64, wait time.Duration, blocking bool, _ *Error) {
	is, hasIndex := q["index"]
	ws, hasWait := q["wait"]
	if !hasIndex && !hasWait {
		return 0, 0, false, nil
	}
	if !hasIndex {
		return 0, 0, false, BadField("wait", "wait needs index: the index of the answer you hold (X-Muster-Index)")
	}
	index, err := strconv.ParseUint(is[len(is)-1], 10, 64)
	if err != nil {
		return 0, 0, false, BadField("index", "index %q is not a non-negative integer", is[len(is)-1])
	}
	wait = registry.DefaultWait
	if hasWait {
		if wait, err = time.ParseDuration(ws[len(ws)-1]); err != nil || wait <= 0 || wait > registry.MaxWait {
			return 0, 0, false, BadField("wait", "wait %q must be a duration above 0 and at most %s", ws[len(ws)-1], registry.MaxWait)
		}
	}
	return index, wait, true, nil
}

// lookup handles GET /v1/services/{service}, served from memory. It is
// the hot path: the answer is assembled in a pooled buffer from each
// instance's cached static encoding plus the three fields that change,
// with no reflection per request.
//
// An answer that fits in the buffer (lookupChunk) is written whole, as
// one write. A larger one is streamed: it takes a slot of a.lookups
// (waiting up to LookupConfig.Wait, else 503 busy), and is written through
// the same fixed buffer, flushed each time it fills, within
// LookupConfig.WriteTimeout. Memory per lookup is therefore bounded by the
// buffer whatever the size of the service, and the memory and time of
// large answers by the slots. A large answer's first buffer is encoded
// twice, once to learn that the answer does not fit and again to stream
// it: the buffer is given back in between, so that a lookup waiting for a
// slot holds none. A streamed answer has sent its status and
// X-Muster-Index before its body: the read is an immutable view, so only
// a write can fail midway, and then the answer is cut short (the client
// sees the body end early: a chunked body without its last chunk).
func (a *apiServer) lookup(w http.ResponseWriter, r *http.Request) error {
	service := r.PathValue("service")
	if err := registry.CheckServiceName(service); err != nil {
		return err
	}
	scope, err := a.reader(r)
	if err != nil {
		return err
	}
	if err := a.reg.CheckRead(r.Context(), scope, service); err != nil {
		return err
	}
	q, qerr := query(r, "tag", "meta")
	if qerr != nil {
		return qerr
	}
	mode, qerr := readMode(q)
	if qerr != nil {
		return qerr
	}
	f, qerr := parseLookupQuery(q)
	if qerr != nil {
		return qerr
	}
	index, wait, blocking, qerr := parseBlocking(q)
	if qerr != nil {
		return qerr
	}
	if err := a.beginRead(w, r, mode); err != nil {
		return err
	}
	var rd registry.ServiceRead
	if blocking {
		ctx, stop := a.longLived(r.Context())
		rd, err = a.reg.WaitService(ctx, ClientOf(r), service, index, wait)
		stop()
		if err == nil {
			err = a.reg.Recheck(scope)
		}
	} else {
		rd, err = a.reg.Service(service)
	}
	if err != nil {
		return err
	}
	ans := lookupAnswer{service: service, rd: rd, filter: f}
	if rd.View != nil {
		ans.enc = a.enc.forView(rd.View)
	}
	bp := a.bufs.Get().(*[]byte)
	b, whole, _ := ans.encode((*bp)[:0], nil)
	if whole {
		setLookupHeaders(w, rd.Index())
		w.WriteHeader(http.StatusOK)
		w.Write(b)
	}
	a.putBuf(bp, b)
	if whole {
		return nil
	}
	return a.streamLookup(w, r, &ans)
}

// streamLookup writes a lookup answer larger than lookupChunk in chunks,
// holding a slot of a.lookups.
func (a *apiServer) streamLookup(w http.ResponseWriter, r *http.Request, ans *lookupAnswer) error {
	if !a.lookups.acquire(r.Context()) { // or the client left while waiting
		e := Errorf(http.StatusServiceUnavailable, api.CodeBusy, "", "too many large lookups in flight; retry")
		e.RetryAfter = 1
		return e
	}
	defer a.lookups.release()
	// The deadline covers the rest of this response, net/http's final
	// flush included; net/http clears it before the connection's next
	// request. A ResponseWriter that cannot set one (a test recorder)
	// writes without it.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(a.lookups.cfg.WriteTimeout))
	setLookupHeaders(w, ans.rd.Index())
	w.WriteHeader(http.StatusOK)
	bp := a.bufs.Get().(*[]byte)
	b := (*bp)[:0]
	if cap(b) < lookupChunk {
		b = make([]byte, 0, lookupChunk)
	}
	b, _, err := ans.encode(b, w)
	if err == nil {
		_, err = w.Write(b)
	}
	a.putBuf(bp, b)
	if err != nil {
		// Too late for an error answer: the status is sent. The client
		// went away or read too slowly; net/http closes the connection.
		a.log.Debug("lookup answer cut short", "service", ans.service, "err", err)
	}
	return nil
}

// setLookupHeaders sets the headers of a lookup answer.
func setLookupHeaders(w http.ResponseWriter, index uint64) {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h.Set(api.HeaderIndex, strconv.FormatUint(index, 10))
}

// putBuf returns a lookup buffer to the pool, unless it grew past twice
// lookupChunk (encode never lets it; a buffer that did is not kept).
func (a *apiServer) putBuf(bp *[]byte, b []byte) {
	if cap(b) <= 2*lookupChunk {
		*bp = b[:0]
		a.bufs.Put(bp)
	}
}

const (
	// lookupChunk is the size of a lookup's buffer: an answer that fits
	// is written whole, a larger one is streamed in writes of at most
	// this size.
	lookupChunk = 32 << 10
	// lookupEnd closes a lookup's answer.
	lookupEnd = "]}\n"
)

// lookupAnswer is one lookup's answer: the JSON of an api.LookupResponse
// and a newline.
type lookupAnswer struct {
	service string
	rd      registry.ServiceRead
	filter  registry.Filter
	enc     *viewEncoding // nil when rd.View is
}

// encode appends the answer to b, keeping len(b) within lookupChunk.
// With w nil it stops at the first instance that would overflow, and
// returns whole false; otherwise it writes b to w and starts it again
// each time the next instance would overflow, and returns the rest of the
// answer (for the caller to write) or the first write error. When it has
// to flush before an instance whose static encoding alone is over half of
// lookupChunk, it writes that encoding to w from the cache rather than
// copy it into b.
func (ans *lookupAnswer) encode(b []byte, w io.Writer) (_ []byte, whole bool, err error) {
	// Service names are [a-z0-9_-]: safe in JSON without escaping.
	b = append(b, `{"service":"`...)
	b = append(b, ans.service...)
	b = append(b, `","index":`...)
	b = strconv.AppendUint(b, ans.rd.Index(), 10)
	if ans.rd.Protection() {
		// The statuses below were judged under the hold.
		b = append(b, `,"protection":true`...)
	}
	b = append(b, `,"instances":[`...)
	whole = true
	if ans.enc != nil {
		first := true
		ans.rd.Each(ans.filter, func(i int, e registry.Entry) bool {
			static := ans.enc.static[i]
			if len(b)+1+len(static)+maxDynamic > lookupChunk-len(lookupEnd) {
				if w == nil {
					whole = false
					return false
				}
				if !first {
					b = append(b, ',')
				}
				first = false
				if len(static) > lookupChunk/2 {
					if _, err = w.Write(b); err == nil {
						_, err = w.Write(static)
					}
					b = appendDynamic(b[:0], e)
					return err == nil
				}
				if _, err = w.Write(b); err != nil {
					return false
				}
				b = appendInstance(b[:0], static, e)
				return true
			}
			if !first {
				b = append(b, ',')
			}
			first = false
			b = appendInstance(b, static, e)
			return true
		})
	}
	if !whole || err != nil {
		return b, false, err
	}
	if len(ans.rd.Evicted) == 0 {
		return append(b, lookupEnd...), true, nil
	}
	// The evicted endpoints, rare: encoded by reflection, after the
	// instances.
	ev := make([]api.Eviction, len(ans.rd.Evicted))
	for i, bar := range ans.rd.Evicted {
		ev[i] = evictionToAPI(bar)
	}
	tail, merr := json.Marshal(ev)
	if merr != nil {
		return b, false, merr
	}
	if len(b)+len(tail)+len(`],"evicted":}`)+1 > lookupChunk {
		if w == nil {
			return b, false, nil
		}
		if _, err := w.Write(b); err != nil {
			return b, false, err
		}
		b = b[:0]
	}
	b = append(b, `],"evicted":`...)
	b = append(b, tail...)
	return append(b, "}\n"...), true, nil
}

// listServices handles GET /v1/services: services with instances, and
// counts by status.
func (a *apiServer) listServices(w http.ResponseWriter, r *http.Request) error {
	scope, err := a.reader(r)
	if err != nil {
		return err
	}
	q, qerr := query(r)
	if qerr != nil {
		return qerr
	}
	mode, qerr := readMode(q)
	if qerr != nil {
		return qerr
	}
	for k := range q {
		if k != "index" && k != "wait" {
			return BadField(k, "unknown query parameter %q", k)
		}
	}
	since, wait, blocking, qerr := parseBlocking(q)
	if qerr != nil {
		return qerr
	}
	if err := a.beginRead(w, r, mode); err != nil {
		return err
	}
	var (
		sums  []registry.Summary
		index uint64
	)
	if blocking {
		ctx, stop := a.longLived(r.Context())
		sums, index, err = a.reg.WaitServices(ctx, ClientOf(r), since, wait, scope)
		stop()
	} else {
		sums, index, err = a.reg.ServicesFor(scope)
	}
	if err != nil {
		return err
	}
	resp := api.ServicesResponse{Index: index, Protection: a.reg.Protection(), Services: make([]api.ServiceSummary, 0, len(sums))}
	for _, s := range sums {
		resp.Services = append(resp.Services, api.ServiceSummary{Name: s.Name, Index: s.Index, Instances: s.Instances,
			Passing: s.Passing, Critical: s.Critical, Draining: s.Draining})
	}
	w.Header().Set(api.HeaderIndex, strconv.FormatUint(resp.Index, 10))
	WriteJSON(w, http.StatusOK, resp)
	return nil
}

var readAuth = authMessages{
	missing: "this registry answers reads only with a token (it runs with --anonymous-reads=false): send one as Authorization: Bearer ...",
	wrong:   "this token is unknown or revoked",
}

// reader authorises a read: what the request's token may read
// (everything, when reads are anonymous).
func (a *apiServer) reader(r *http.Request) (registry.ReadScope, error) {
	s, err := a.reg.Reader(r.Context(), Bearer(r))
	return s, readAuth.apply(err)
}
