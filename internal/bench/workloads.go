package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
)

// member is an instance the benchmark registered: what it needs to
// heartbeat it and to register it again at the same place.
type member struct {
	service string
	port    int
	key     int

	mu    sync.Mutex
	id    string
	token string

	dead     atomic.Bool  // the deaths stopped its heartbeats
	inflight atomic.Bool  // a heartbeat is queued or in flight
	lastAck  atomic.Int64 // unix nanoseconds of its last heartbeat answered 200 (or its registration)
	sent     atomic.Int64 // unix nanoseconds its last heartbeat was queued
}

func (m *member) creds() (id, token string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.id, m.token
}

// deregisterAfter is how long after its last heartbeat one of the
// bench's instances with TTL ttl is removed: five minutes after its TTL
// runs out, long enough that no removal falls inside a death round, short
// enough that a server given by --addr lets them go soon after.
func deregisterAfter(ttl string) string {
	d, err := time.ParseDuration(ttl)
	if err != nil {
		return ttl // the server says what is wrong with it
	}
	return (d + 5*time.Minute).String()
}

// refusedFor bounds how long one registration is retried while the
// server refuses it (503 busy, 429): a server whose limits (its register
// rate, its instances per address or per key) hold the bench back would
// otherwise keep a workload waiting until the run's end, measuring only
// its limits.
const refusedFor = 15 * time.Second

// register registers an instance of service at 127.0.0.1:port with key
// number key, its callback answered by the responder; it retries what
// may pass (503 busy, 429) until ctx ends or it has been refused for
// refusedFor. It returns the attempts that failed on the way.
func (r *runner) register(ctx context.Context, m *member, ttl string, n int) (retries int64, err error) {
	secret := r.keys[m.key%len(r.keys)]
	first := time.Now()
	for {
		nc := nonce()
		r.resp.expect(nc, secret)
		res, err := r.admin.Register(ctx, m.service, secret, api.RegisterRequest{Address: "127.0.0.1", Port: m.port,
			VerifyPort: r.resp.port(n), TTL: ttl, DeregisterAfter: deregisterAfter(ttl), Nonce: nc})
		var ce *client.Error
		refused := errors.As(err, &ce) // the registry answered: no callback is still coming
		id, token := r.resp.claim(nc, err == nil || refused)
		if err == nil {
			if id != res.ID {
				return retries, fmt.Errorf("bench: the callback carried instance %s, the registration answered %s", id, res.ID)
			}
			m.mu.Lock()
			m.id, m.token = id, token
			m.mu.Unlock()
			m.lastAck.Store(time.Now().UnixNano())
			return retries, nil
		}
		if !refused || (ce.Status != http.StatusServiceUnavailable && ce.Status != http.StatusTooManyRequests) || ctx.Err() != nil {
			return retries, err
		}
		retries++
		if time.Since(first) > refusedFor {
			return retries, fmt.Errorf("bench: registrations refused for %s (%w); a server given by --addr needs the limits the bench's own server gets: %s",
				refusedFor, err, strings.Join(serverFlags, " "))
		}
		select {
		case <-ctx.Done():
			return retries, ctx.Err()
		case <-time.After(min(max(ce.RetryAfter/10, 20*time.Millisecond), time.Second)):
		}
	}
}

// registerAll registers ms at concurrency conc until done or ctx ends,
// and returns how many were registered.
func (r *runner) registerAll(ctx context.Context, ms []*member, ttl string, conc int, rec *recorder) (done, retries int64, err error) {
	var next, ok, retr atomic.Int64
	var once sync.Once
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= len(ms) {
					return
				}
				start := time.Now()
				n, e := r.register(ctx, ms[i], ttl, i)
				retr.Add(n)
				if e != nil {
					if ctx.Err() == nil {
						once.Do(func() { err = e })
					}
					continue
				}
				if rec != nil {
					rec.add(time.Since(start))
				}
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	return ok.Load(), retr.Load(), err
}

// members makes n members of services prefix-0000, prefix-0001…, per
// to a service, on ports 10000 up.
func (r *runner) members(prefix string, n, per int) []*member {
	ms := make([]*member, n)
	for i := range ms {
		ms[i] = &member{service: fmt.Sprintf("%s-%04d", prefix, i/per), port: r.portBase + i%per, key: i}
	}
	return ms
}

func failed(name string, err error) Result {
	return Result{Workload: name, Status: "failed", Notes: err.Error()}
}

// lookups: GET /v1/services/{service} of a service of 10 instances, at
// concurrency 16 and 64.
func (r *runner) lookups(ctx context.Context) []Result {
	ms := r.members("bench-lookup", 10, 10)
	if _, _, err := r.registerAll(ctx, ms, "1h", 10, nil); err != nil {
		return []Result{failed("lookup", err)}
	}
	var out []Result
	for _, conc := range []int{16, 64} {
		out = append(out, r.gets(ctx, fmt.Sprintf("lookup-c%d", conc), "/v1/services/bench-lookup-0000", conc,
			"one service of 10 instances (about 3 KB an answer)"))
	}
	return out
}

// floor: GET /livez at concurrency 16, the route that does least (a
// 15-byte answer, no catalog): what the server's HTTP stack and its
// middleware alone cost per request, with the same load generator as the
// lookups. No request Go's HTTP server answers can do better per server
// CPU-second (plain heartbeats, answered by the lean reader, do); the gap
// to it is what muster's own work costs.
func (r *runner) floor(ctx context.Context) []Result {
	return []Result{r.gets(ctx, "http-floor", "/livez", 16, "GET /livez: the HTTP stack alone, concurrency 16, keep-alive")}
}

// gets runs GET path at concurrency conc for the configured duration.
func (r *runner) gets(ctx context.Context, name, path string, conc int, notes string) Result {
	hc := newHTTPClient(conc, r.tls)
	defer hc.CloseIdleConnections()
	rec := newRecorder()
	url := r.url + path
	m := startMeter(r.serverPID())
	ok, bad, err := hammer(ctx, conc, r.cfg.Duration, func(ctx context.Context, _, _ int) error {
		start := time.Now()
		if err := do(ctx, hc, http.MethodGet, url, "", http.StatusOK); err != nil {
			return err
		}
		rec.add(time.Since(start))
		return nil
	})
	res := Result{Workload: name, Ops: ok, Errors: bad, Notes: notes}
	r.finish(&res, m.stop(), rec, err)
	return res
}

// heartbeats: PUT /v1/instances/{id}/heartbeat, one request per beat,
// over 1,000 instances (100 in short mode) at concurrency 32; and the
// SDK's fastest channel (sdkHeartbeats).
func (r *runner) heartbeats(ctx context.Context) []Result {
	n := 1000
	if r.cfg.Short {
		n = 100
	}
	ms := r.members("bench-hb", n, 100)
	if _, _, err := r.registerAll(ctx, ms, "1h", 32, nil); err != nil {
		return []Result{failed("heartbeat", err)}
	}
	const conc = 32
	beat, client, err := r.beater(conc, ms)
	if err != nil {
		return []Result{failed("heartbeat", err)}
	}
	defer beat.close()
	rec := newRecorder()
	m := startMeter(r.serverPID())
	ok, bad, err := hammer(ctx, conc, r.cfg.Duration, func(ctx context.Context, w, i int) error {
		start := time.Now()
		if err := beat.do(ctx, w, (w*7919+i)%n); err != nil {
			return err
		}
		rec.add(time.Since(start))
		return nil
	})
	res := Result{Workload: "heartbeat", Ops: ok, Errors: bad,
		Notes: fmt.Sprintf("per request, %d instances, concurrency %d, keep-alive, %s", n, conc, client)}
	r.finish(&res, m.stop(), rec, err)
	return []Result{res, r.sdkHeartbeats(ctx, ms)}
}

// beaters send one member's heartbeat as one request: over raw
// connections (one per worker) to an http:// server, else with Go's
// client.
type beaters struct {
	conns []*rawConn
	reqs  [][]byte // by member
	hc    *http.Client
	urls  []string // by member, with hc
	toks  []string
}

// beater prepares the heartbeats of ms for conc workers, and says which
// client sends them.
func (r *runner) beater(conc int, ms []*member) (*beaters, string, error) {
	b := &beaters{}
	if !strings.HasPrefix(r.url, "http://") {
		b.hc = newHTTPClient(conc, r.tls)
		for _, m := range ms {
			id, token := m.creds()
			b.urls = append(b.urls, r.url+"/v1/instances/"+id+"/heartbeat")
			b.toks = append(b.toks, token)
		}
		return b, "Go's HTTP client (over TLS)", nil
	}
	for range conc {
		c, err := newRawConn(r.url)
		if err != nil {
			return nil, "", err
		}
		b.conns = append(b.conns, c)
	}
	for _, m := range ms {
		id, token := m.creds()
		b.reqs = append(b.reqs, rawRequest(http.MethodPut, b.conns[0].addr, "/v1/instances/"+id+"/heartbeat", token))
	}
	return b, "a lean HTTP/1.1 client (Go's own, on one core, could not keep the server busy)", nil
}

// do sends member i's heartbeat from worker w; anything but 200 is an
// error.
func (b *beaters) do(ctx context.Context, w, i int) error {
	if b.hc != nil {
		return do(ctx, b.hc, http.MethodPut, b.urls[i], b.toks[i], http.StatusOK)
	}
	status, err := b.conns[w].do(ctx, b.reqs[i])
	if err == nil && status != http.StatusOK {
		err = errStatus(b.reqs[i], status)
	}
	return err
}

func (b *beaters) close() {
	for _, c := range b.conns {
		c.close()
	}
	if b.hc != nil {
		b.hc.CloseIdleConnections()
	}
}

// sdkHeartbeats: the SDK's Client.Heartbeat called by many goroutines at
// once over the instances ms, as the Registrations of a host that runs
// many instances call it: the client gathers concurrent beats into
// batches (POST /v1/heartbeats).
func (r *runner) sdkHeartbeats(ctx context.Context, ms []*member) Result {
	conc := 4096
	if r.cfg.Short {
		conc = 256
	}
	hc := newHTTPClient(8, r.tls)
	defer hc.CloseIdleConnections()
	c, err := client.New(client.Config{Addr: r.url, HTTPClient: hc})
	if err != nil {
		return failed("heartbeat-sdk", err)
	}
	rec := newRecorder()
	m := startMeter(r.serverPID())
	ok, bad, err := hammer(ctx, conc, r.cfg.Duration, func(ctx context.Context, w, i int) error {
		id, token := ms[(w*7919+i)%len(ms)].creds()
		start := time.Now()
		if _, err := c.Heartbeat(ctx, id, token); err != nil {
			return err
		}
		rec.add(time.Since(start))
		return nil
	})
	res := Result{Workload: "heartbeat-sdk", Ops: ok, Errors: bad,
		Notes: fmt.Sprintf("client.Heartbeat from %d goroutines over %d instances: concurrent beats go in batches (POST /v1/heartbeats, at most %d a request, 4 requests in flight)", conc, len(ms), api.MaxBeats)}
	r.finish(&res, m.stop(), rec, err)
	return res
}

// registrations: verified registrations (the callback included) of new
// instances at concurrency 16 and 64, the callbacks answered in this
// process by the responder, whose own handling time is reported too.
func (r *runner) registrations(ctx context.Context) []Result {
	var out []Result
	for _, conc := range []int{16, 64} {
		rec := newRecorder()
		r.resp.lat.reset()
		m := startMeter(r.serverPID())
		name := fmt.Sprintf("register-c%d", conc)
		var fail atomic.Int64
		ok, bad, err := hammer(ctx, conc, r.cfg.Duration, func(ctx context.Context, w, i int) error {
			mb := &member{service: fmt.Sprintf("bench-reg-c%d-%02d", conc, w), port: r.portBase + i, key: w}
			if i >= 50000 {
				return errors.New("bench: out of ports")
			}
			start := time.Now()
			retries, err := r.register(ctx, mb, "1h", w*100000+i)
			fail.Add(retries)
			if err != nil {
				return err
			}
			rec.add(time.Since(start))
			return nil
		})
		limits := "register rate and quotas lifted"
		if r.srv == nil {
			limits = "the limits of the server given by --addr"
		}
		u := m.stop()
		res := Result{Workload: name, Ops: ok, Errors: bad + fail.Load(),
			Notes: "new instances, 2 keys, " + limits + "; errors count 503 busy and 429 retried"}
		if p50, p99, ok := r.resp.lat.quantiles(); ok {
			res.Extra = map[string]float64{"responder_p50_ms": p50, "responder_p99_ms": p99}
			res.Notes += fmt.Sprintf("; the callback responder's own handling: p50 %.3fms, p99 %.3fms", p50, p99)
		}
		r.finish(&res, u, rec, err)
		if ok == 0 { // however the attempts ended: a registration row without one is no figure
			res.Status = "failed"
			res.Notes += "; no registration passed in the workload's time: a server given by --addr needs " + strings.Join(serverFlags, " ")
		}
		out = append(out, res)
	}
	return out
}

// fanout: 1,000 event streams (50 in short mode) watch one service; each
// registration's latency is measured from sending it to each stream
// reading its event.
func (r *runner) fanout(ctx context.Context) []Result {
	watchers := 1000
	if r.cfg.Short {
		watchers = 50
	}
	const name = "watch-fanout"
	const service = "bench-fanout"
	w, err := OpenWatchers(ctx, r.url, service, watchers, r.tls)
	if err != nil {
		return []Result{failed(name, err)}
	}
	defer w.Close()
	rec := newRecorder()
	m := startMeter(r.serverPID())
	deadline := time.Now().Add(r.cfg.Duration)
	var ops int64
loop:
	for i := 0; time.Now().Before(deadline) && ctx.Err() == nil; i++ {
		mb := &member{service: service, port: r.portBase + i}
		sent := time.Now()
		if _, err = r.register(ctx, mb, "1h", i); err != nil {
			break
		}
		for got := 0; got < watchers; {
			select {
			case a := <-w.Arrivals:
				rec.add(a.At.Sub(sent))
				got++
			case <-time.After(30 * time.Second):
				err = fmt.Errorf("%d of %d streams had the event after 30 s", got, watchers)
				break loop
			}
		}
		ops++
	}
	res := Result{Workload: name, Ops: ops,
		Notes: fmt.Sprintf("%d streams on one service; latency from sending a registration (callback included) to each stream reading it", watchers)}
	r.fill(&res, m.stop())
	latencies(&res, rec)
	r.rss(&res)
	if ops > 0 && res.ServerCPUS != nil {
		res.Extra = map[string]float64{"server_cpu_ms_per_registration": round3(*res.ServerCPUS * 1000 / float64(ops)),
			"streams": float64(watchers)}
	}
	if err != nil {
		res.Status = "partial"
		res.Notes += "; " + err.Error()
	}
	return []Result{res}
}
