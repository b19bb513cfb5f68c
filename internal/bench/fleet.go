package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
)

// bulkLoad registers Instances instances (TTL 1h: a catalog at rest) at
// concurrency 64, within a deadline, and reports the server's RSS after.
func (r *runner) bulkLoad(ctx context.Context) []Result {
	n := r.cfg.Instances
	limit := 7 * time.Minute
	if r.cfg.Short {
		limit = 30 * time.Second
	}
	ms := r.members("bench-fleet", n, 100)
	var before Result
	rss0 := r.rss(&before)
	rec := newRecorder()
	m := startMeter(r.serverPID())
	lctx, cancel := context.WithTimeout(ctx, limit)
	done, retries, err := r.registerAll(lctx, ms, "1h", 64, rec)
	cancel()
	res := Result{Workload: "bulk-load", Ops: done, Errors: retries,
		Notes: fmt.Sprintf("%d verified registrations at concurrency 64 over 2 keys, limits lifted", n)}
	r.fill(&res, m.stop())
	latencies(&res, rec)
	rss := r.rss(&res)
	res.Extra = map[string]float64{"instances": float64(done)}
	if rss > 0 && done > 0 {
		per := float64(rss-rss0) / float64(done)
		res.Extra["rss_per_instance_bytes"] = round3(max(per, 0))
		res.Notes += fmt.Sprintf("; RSS %.0f MiB after (%.0f bytes an instance over the RSS before)", float64(rss)/(1<<20), max(per, 0))
	}
	for _, mb := range ms {
		if id, _ := mb.creds(); id != "" {
			r.fleet = append(r.fleet, mb)
		}
	}
	if done < int64(n) {
		res.Status = "partial"
		res.Notes += fmt.Sprintf("; only %d of %d registered within %v", done, n, limit)
		if err != nil {
			res.Notes += ": " + err.Error()
		}
	}
	return []Result{res}
}

// idle measures the server's CPU with the bulk load's catalog and no
// requests at all.
func (r *runner) idle(ctx context.Context) []Result {
	if len(r.fleet) == 0 {
		return []Result{{Workload: "idle-cpu", Status: "not available", Notes: "not available: the bulk load registered nothing"}}
	}
	// The load's tail settles, and the server returns the burst's memory
	// (it does so at the first quiet 5 s window after a busy one): what
	// is measured is the server at rest, and its RSS then.
	settle := 11 * time.Second
	if r.cfg.Short {
		settle = time.Second
	}
	time.Sleep(settle)
	m := startMeter(r.serverPID())
	select {
	case <-ctx.Done():
	case <-time.After(r.cfg.Duration):
	}
	res := Result{Workload: "idle-cpu", Extra: map[string]float64{"instances": float64(len(r.fleet))}}
	r.fill(&res, m.stop())
	r.rss(&res)
	if res.ServerCores != nil {
		res.Extra["server_core_share"] = *res.ServerCores
		res.Notes = fmt.Sprintf("no requests, %d instances at rest: %.2f%% of a core (the expiry sweep every 100 ms, the runtime)",
			len(r.fleet), *res.ServerCores*100)
	} else {
		res.Notes = fmt.Sprintf("no requests, %d instances at rest; the server's CPU is unknown (--server-pid)", len(r.fleet))
	}
	return []Result{res}
}

// mortality is the deaths' and the restart's setting: the bulk load's
// fleet and a tenth more instances of a short TTL (5 s; 2 s in short
// mode), all heartbeated one request each by a keeper, while an event
// stream records when each instance turned critical or left. The keeper's
// and the watcher's goroutines run until stop.
type mortality struct {
	r      *runner
	ttl    time.Duration
	mortal []*member // short TTL; the ones that die
	fleet  []*member // TTL 1h, heartbeated with what capacity is left

	mu       sync.Mutex
	byID     map[string]*member
	gone     map[string]time.Time // first critical or deregistered event, by ID
	falseExp atomic.Int64         // such events for an instance that was heartbeating

	hbOK, hbFail atomic.Int64
	fleetRound   atomic.Int64 // nanoseconds the last full pass over the fleet took
	mortalCh     chan *member
	cancel       context.CancelFunc
	wg           sync.WaitGroup
}

func (mo *mortality) index(m *member) {
	id, _ := m.creds()
	mo.mu.Lock()
	mo.byID[id] = m
	mo.mu.Unlock()
}

// start runs the keeper (conc workers) and the watcher.
func (mo *mortality) start(ctx context.Context, after uint64) {
	ctx, mo.cancel = context.WithCancel(ctx)
	hc := newHTTPClient(32, mo.r.tls)
	every := mo.ttl / 3
	mo.mortalCh = make(chan *member, len(mo.mortal))
	fleetCh := make(chan *member, 64)
	beat := func(m *member) {
		id, token := m.creds()
		err := do(ctx, hc, http.MethodPut, mo.r.url+"/v1/instances/"+id+"/heartbeat", token, http.StatusOK)
		if err != nil {
			mo.hbFail.Add(1)
			if ctx.Err() == nil {
				time.Sleep(20 * time.Millisecond) // the server is down or busy
			}
			return
		}
		mo.hbOK.Add(1)
		m.lastAck.Store(time.Now().UnixNano())
	}
	// The scheduler queues each live mortal instance every TTL/3.
	mo.wg.Add(1)
	go func() {
		defer mo.wg.Done()
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			now := time.Now().UnixNano()
			for _, m := range mo.mortal {
				if !m.dead.Load() && now-m.sent.Load() >= int64(every) && m.inflight.CompareAndSwap(false, true) {
					m.sent.Store(now)
					mo.mortalCh <- m
				}
			}
		}
	}()
	// The fleet feeder goes round the fleet without pause.
	if len(mo.fleet) > 0 {
		mo.wg.Add(1)
		go func() {
			defer mo.wg.Done()
			for {
				start := time.Now()
				for _, m := range mo.fleet {
					select {
					case fleetCh <- m:
					case <-ctx.Done():
						return
					}
				}
				// Paced as if the fleet's TTL were the short one: a
				// round of at least TTL/3. Faster would make every
				// hiccup look like a mass silence to mass-expiry
				// protection (an instance is overdue at 1.5 times its
				// usual interval).
				if d := every - time.Since(start); d > 0 {
					select {
					case <-time.After(d):
					case <-ctx.Done():
						return
					}
				}
				mo.fleetRound.Store(int64(time.Since(start)))
			}
		}()
	}
	for range 32 {
		mo.wg.Add(1)
		go func() {
			defer mo.wg.Done()
			for {
				select { // the short TTL first
				case m := <-mo.mortalCh:
					beat(m)
					m.inflight.Store(false)
					continue
				default:
				}
				select {
				case m := <-mo.mortalCh:
					beat(m)
					m.inflight.Store(false)
				case m := <-fleetCh:
					beat(m)
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	// The watcher records when each instance turned critical or left.
	mo.wg.Add(1)
	go func() {
		defer mo.wg.Done()
		mo.r.admin.Watch(ctx, client.WatchRequest{Resume: true, After: after}, func(ev client.WatchEvent) error {
			e := ev.Event
			if e == nil {
				return nil
			}
			lost := (e.Type == api.EventStatus && e.Instance.Status == api.StatusCritical) ||
				(e.Type == api.EventDeregistered && e.Reason == api.ReasonExpired)
			if !lost {
				return nil
			}
			now := time.Now()
			mo.mu.Lock()
			if _, ok := mo.gone[e.Instance.ID]; !ok {
				mo.gone[e.Instance.ID] = now
			}
			m := mo.byID[e.Instance.ID]
			mo.mu.Unlock()
			if m != nil && !m.dead.Load() {
				mo.falseExp.Add(1)
			}
			return nil
		})
	}()
}

func (mo *mortality) stop() {
	if mo.cancel != nil {
		mo.cancel()
		mo.wg.Wait()
		mo.cancel = nil
	}
}

func (mo *mortality) goneAt(id string) (time.Time, bool) {
	mo.mu.Lock()
	defer mo.mu.Unlock()
	t, ok := mo.gone[id]
	return t, ok
}

// stopMortality stops the deaths' heartbeats, if they run, and waits
// until the short-TTL instances' TTL has run out and the sweep has
// judged them, so that what comes after (the registrations) runs beside
// neither their heartbeats nor their expiry. The bulk load's fleet
// (TTL 1 h) stays.
func (r *runner) stopMortality(ctx context.Context) {
	if r.mortal == nil {
		return
	}
	ttl := r.mortal.ttl
	r.mortal.stop()
	r.mortal = nil
	fmt.Fprintf(r.log, "bench: heartbeats stopped; waiting %s for the short-TTL instances to expire\n", ttl+time.Second)
	select {
	case <-time.After(ttl + time.Second):
	case <-ctx.Done():
	}
}

// setUpMortality registers the short-TTL instances and starts the keeper.
func (r *runner) setUpMortality(ctx context.Context) error {
	ttl := 5 * time.Second
	if r.cfg.Short {
		ttl = 2 * time.Second
	}
	n := max(r.cfg.Instances/10, 1)
	mo := &mortality{r: r, ttl: ttl, mortal: r.members("bench-mortal", n, 100), fleet: r.fleet,
		byID: map[string]*member{}, gone: map[string]time.Time{}}
	// Each is heartbeated from the moment it is registered.
	svc, err := r.admin.Services(ctx)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	done, _, err := r.registerAll(rctx, mo.mortal, ttl.String(), 64, nil)
	if done < int64(n) {
		return fmt.Errorf("registered %d of %d short-TTL instances: %v", done, n, err)
	}
	for _, m := range append(mo.mortal, mo.fleet...) {
		mo.index(m)
	}
	r.mortal = mo
	mo.start(context.WithoutCancel(ctx), svc.Index)
	return nil
}

// deaths: among the fleet and the short-TTL tenth, 1, a hundredth and a
// tenth of Instances stop heartbeating at once; each row is the time
// until every lookup and the event stream show all of them gone.
func (r *runner) deaths(ctx context.Context) []Result {
	n := r.cfg.Instances
	counts := []int{1, max(n/100, 1), max(n/10, 1)}
	name := func(k int) string { return fmt.Sprintf("deaths-%d", k) }
	if len(r.fleet) == 0 {
		var out []Result
		for _, k := range counts {
			out = append(out, Result{Workload: name(k), Status: "not available", Notes: "not available: the bulk load registered nothing"})
		}
		return out
	}
	if err := r.setUpMortality(ctx); err != nil {
		return []Result{failed("deaths", err)}
	}
	mo := r.mortal
	// Victims are spread over the services.
	order := rand.New(rand.NewPCG(1, 2)).Perm(len(mo.mortal))
	time.Sleep(mo.ttl) // every short-TTL instance has heartbeated a few times
	var out []Result
	for _, k := range counts {
		if ctx.Err() != nil {
			break
		}
		victims := make([]*member, k)
		for i := range victims {
			victims[i] = mo.mortal[order[i]]
		}
		out = append(out, r.deathRound(ctx, name(k), victims))
		// Bring them back (a registration at the same place replaces the
		// critical instance) for the next round and the restart.
		rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		r.registerAll(rctx, victims, mo.ttl.String(), 64, nil)
		cancel()
		for _, v := range victims {
			mo.index(v)
			v.sent.Store(0)
			v.dead.Store(false)
		}
		time.Sleep(mo.ttl / 2)
	}
	return out
}

// deathRound stops the victims' heartbeats and waits until lookups and
// the event stream no longer show any of them passing.
func (r *runner) deathRound(ctx context.Context, name string, victims []*member) Result {
	mo := r.mortal
	svc, _ := r.admin.Services(ctx)
	total := 0
	for _, s := range svc.Services {
		total += s.Instances
	}
	false0, ok0, fail0 := mo.falseExp.Load(), mo.hbOK.Load(), mo.hbFail.Load()
	m := startMeter(r.serverPID())
	t0 := time.Now()
	ids := map[string]*member{}
	byService := map[string]map[string]bool{}
	for _, v := range victims {
		v.dead.Store(true)
		id, _ := v.creds()
		ids[id] = v
		if byService[v.service] == nil {
			byService[v.service] = map[string]bool{}
		}
		byService[v.service][id] = true
	}
	limit := mo.ttl + 60*time.Second
	if r.cfg.Short {
		limit = mo.ttl + 10*time.Second
	}
	hc := newHTTPClient(8, r.tls)
	defer hc.CloseIdleConnections()
	var lookupsAt, streamsAt time.Time
	pending := map[string]bool{}
	for s := range byService {
		pending[s] = true
	}
	for time.Since(t0) < limit && ctx.Err() == nil && (lookupsAt.IsZero() || streamsAt.IsZero()) {
		for s := range pending {
			if gone, err := r.absent(ctx, hc, s, byService[s]); err == nil && gone {
				delete(pending, s)
			}
		}
		if len(pending) == 0 && lookupsAt.IsZero() {
			lookupsAt = time.Now()
		}
		if streamsAt.IsZero() {
			all := true
			for id := range ids {
				if _, ok := mo.goneAt(id); !ok {
					all = false
					break
				}
			}
			if all {
				streamsAt = time.Now()
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	u := m.stop()
	res := Result{Workload: name, Ops: int64(len(victims))}
	r.fill(&res, u)
	res.OpsPerS = 0 // a time, not a rate
	r.rss(&res)
	// Per victim: how long after its TTL ran out (from its last
	// heartbeat answered) the stream said so.
	rec := newRecorder()
	for id, v := range ids {
		if at, ok := mo.goneAt(id); ok {
			rec.add(max(at.Sub(time.Unix(0, v.lastAck.Load()).Add(mo.ttl)), 0))
		}
	}
	latencies(&res, rec)
	hbOK, hbFail := mo.hbOK.Load()-ok0, mo.hbFail.Load()-fail0
	falseExp := mo.falseExp.Load() - false0
	res.Extra = map[string]float64{"deaths": float64(len(victims)), "catalog_instances": float64(total),
		"ttl_s": mo.ttl.Seconds(), "false_expirations": float64(falseExp),
		"heartbeats_per_s": round3(float64(hbOK) / u.wall.Seconds()), "heartbeat_errors": float64(hbFail),
		"fleet_heartbeat_round_s": round3(time.Duration(mo.fleetRound.Load()).Seconds())}
	res.Errors = falseExp
	if !lookupsAt.IsZero() {
		res.Extra["lookups_s"] = round3(lookupsAt.Sub(t0).Seconds())
	}
	if !streamsAt.IsZero() {
		res.Extra["streams_s"] = round3(streamsAt.Sub(t0).Seconds())
	}
	if lookupsAt.IsZero() || streamsAt.IsZero() {
		res.Status = "partial"
		res.Notes = fmt.Sprintf("not all shown gone within %v; ", limit)
	} else {
		last := lookupsAt
		if streamsAt.After(last) {
			last = streamsAt
		}
		res.Seconds = round3(last.Sub(t0).Seconds())
	}
	res.Notes += fmt.Sprintf("%d of %d instances stop heartbeating (TTL %v, heartbeats every TTL/3, one request each): lookups show it after %.2fs, streams after %.2fs (p50/p99: stream past each TTL's end); %d false expirations; %.0f heartbeats/s; the TTL-1h fleet's heartbeat round took %.1fs",
		len(victims), total, mo.ttl, res.Extra["lookups_s"], res.Extra["streams_s"], falseExp, res.Extra["heartbeats_per_s"],
		res.Extra["fleet_heartbeat_round_s"])
	if len(victims) == len(mo.mortal) {
		res.Notes += "; every short-TTL instance dies here, so the survivors are the TTL-1h fleet"
	}
	return res
}

// absent reports whether none of ids is among the passing instances of
// service.
func (r *runner) absent(ctx context.Context, hc *http.Client, service string, ids map[string]bool) (bool, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.url+"/v1/services/"+service, nil)
	resp, err := hc.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("lookup %s: %s", service, resp.Status)
	}
	var lr api.LookupResponse
	if err := json.NewDecoder(resp.Body).Decode(&lr); err != nil {
		return false, err
	}
	for _, in := range lr.Instances {
		if ids[in.ID] {
			return false, nil
		}
	}
	return true, nil
}

// restart kills the server (SIGKILL) with the whole catalog, and while
// the keeper goes on heartbeating, measures the time until it is ready
// and serves every instance, and counts instances that were heartbeating
// but expired within the grace plus the TTL after it.
func (r *runner) restart(ctx context.Context) []Result {
	const name = "restart"
	switch {
	case r.srv == nil:
		return []Result{{Workload: name, Status: "not available", Notes: "not available: --addr targets a server this run did not start"}}
	case r.mortal == nil:
		if len(r.fleet) == 0 {
			return []Result{{Workload: name, Status: "not available", Notes: "not available: the bulk load registered nothing"}}
		}
		if err := r.setUpMortality(ctx); err != nil {
			return []Result{failed(name, err)}
		}
		time.Sleep(r.mortal.ttl)
	}
	mo := r.mortal
	svc, err := r.admin.Services(ctx)
	if err != nil {
		return []Result{failed(name, err)}
	}
	want := 0
	for _, s := range svc.Services {
		want += s.Instances
	}
	false0 := mo.falseExp.Load()
	started, err := r.srv.restart(ctx)
	if err != nil {
		return []Result{failed(name, err)}
	}
	ready, err := r.srv.waitReady(ctx, 5*time.Minute)
	if err != nil {
		return []Result{failed(name, err)}
	}
	readyAt := time.Now()
	full := time.Duration(0)
	got := 0
	for time.Since(readyAt) < time.Minute {
		if s, err := r.admin.Services(ctx); err == nil {
			got = 0
			for _, x := range s.Services {
				got += x.Instances
			}
			if got >= want {
				full = time.Since(started)
				break
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	res := Result{Workload: name, Ops: 1, Seconds: round3(full.Seconds())}
	if cpu, err := ReadCPU(r.srv.pid()); err == nil {
		c := round3(cpu.Seconds())
		res.ServerCPUS = &c
	}
	r.rss(&res)
	// The window in which a restart could expire an instance that kept
	// heartbeating: the grace (10 s; 1 s in short mode) plus the TTL.
	grace := 10 * time.Second
	if r.cfg.Short {
		grace = time.Second
	}
	select {
	case <-ctx.Done():
	case <-time.After(grace + mo.ttl + 2*time.Second):
	}
	falseExp := mo.falseExp.Load() - false0
	res.Errors = falseExp
	res.Extra = map[string]float64{"instances": float64(want), "ready_s": round3(ready.Seconds()),
		"full_reads_s": round3(full.Seconds()), "false_expirations": float64(falseExp)}
	res.Notes = fmt.Sprintf("SIGKILL, then start on the same data dir with %d instances: ready after %.2fs, every instance served after %.2fs; %d false expirations within the grace plus the TTL after (short-TTL instances heartbeating throughout)",
		want, ready.Seconds(), full.Seconds(), falseExp)
	if full == 0 {
		res.Status = "partial"
		res.Notes = fmt.Sprintf("only %d of %d instances served a minute after ready; ", got, want) + res.Notes
	}
	if falseExp > 0 {
		res.Status = "failed"
	}
	return []Result{res}
}
