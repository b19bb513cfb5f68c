package registry

import (
	"context"
	"errors"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/checks"
)

// Active health checks: the registry probes the instances that declare
// checks, on the leader only. Probe results stay in memory (package
// checks); only a change of an instance's aggregate check status (every
// check passing, or any critical) becomes a Raft command, conditional as
// every status change is: "critical if passing", "passing if critical".
// An instance is passing only while its heartbeat is fresh and every
// check passes: the sweep turns a missed TTL critical, the checks turn a
// failed check critical, and neither brings an instance back while the
// other holds it down (a heartbeat does not revive an instance whose
// checks fail, and passing checks do not revive one whose TTL ran out).

// parseChecks validates a registration's check declarations into the
// catalog's form.
func parseChecks(decls []api.CheckDecl, scheme string) ([]catalog.Check, *FieldError) {
	cs, err := checks.Parse(decls, scheme)
	if err != nil {
		var fe *checks.FieldError
		if errors.As(err, &fe) {
			return nil, badField(fe.Field, "%s", fe.Message)
		}
		return nil, badField("checks", "%v", err)
	}
	if len(cs) == 0 {
		return nil, nil
	}
	out := make([]catalog.Check, len(cs))
	for i, c := range cs {
		out[i] = catalog.Check(c)
	}
	return out, nil
}

// RunChecks probes the instances that declare checks until ctx ends, and
// commits the changes of their aggregate status. Call it while this node
// is a ready leader, once per term (a Monitor serves one term): the
// server runs it beside the sweep. It follows the catalog's changes, so
// an instance is probed from its registration to its removal. Check-only
// instances (TTL 0) that stay critical for their deregister_after are
// removed, as the sweep removes silent ones. The checks of https
// instances trust the CA bundle the verify callback trusts (cfg.Roots is
// replaced by the verifier's), and accept any certificate where the
// instance's key does (callback_tls any). Errors: a bad cfg.
func (r *Registry) RunChecks(ctx context.Context, cfg checks.Config) error {
	cfg.Roots = r.verifier.Roots
	// A key revoked or expired since its instance's checks were set
	// vouches for no certificate from the next probe on.
	cfg.Vouches = func(keyID string) bool {
		k, ok := r.cat.Key(keyID)
		return ok && k.CallbackTLSOrDefault() == catalog.CallbackTLSAny && !k.Expired(r.now())
	}
	m, err := checks.NewMonitor(cfg, r.verifier)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sub := r.cat.Subscribe()
	defer sub.Close()
	run := &checkRun{r: r, m: m, held: map[string]map[string]bool{}, removable: map[string]bool{}, criticalSince: map[string]time.Time{}}
	run.sync(nil)
	r.monitor.Store(m)
	defer r.monitor.CompareAndSwap(m, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = m.Run(ctx) // ends with ctx
	}()
	defer func() { <-done }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sub.Ready():
			if ch, ok := sub.Take(); ok {
				if ch.All {
					run.sync(nil)
				} else {
					run.sync(ch.Services)
				}
			}
		case <-m.Changes():
			run.commit(ctx)
		case <-tick.C:
			run.commit(ctx) // retries what the last attempt could not write
			run.removeDead(ctx)
		}
	}
}

// checkRun is one term's checking.
type checkRun struct {
	r *Registry
	m *checks.Monitor
	// held are the IDs of the instances the Monitor holds, by service.
	held map[string]map[string]bool
	// removable are the held check-only instances with a
	// deregister_after: the only ones removeDead looks at.
	removable map[string]bool
	// criticalSince is when this term first saw each of them committed
	// critical.
	criticalSince map[string]time.Time
}

// sync sets the Monitor's targets of services (every service when nil)
// from the catalog.
func (c *checkRun) sync(services []string) {
	var views []*catalog.ServiceView
	if services == nil {
		views = c.r.cat.Services()
		for name := range c.held {
			if exists, _ := c.r.cat.Checked(name); !exists {
				c.forget(name, nil)
			}
		}
	} else {
		for _, name := range services {
			// Most services have no active checks: they are passed over
			// without making their views (a service that never had an
			// instance has none either).
			if _, checked := c.r.cat.Checked(name); checked == 0 {
				c.forget(name, nil)
			} else if v := c.r.cat.Service(name); v != nil {
				views = append(views, v)
			}
		}
	}
	for _, v := range views {
		if v.Checked == 0 {
			c.forget(v.Name, nil) // none to probe: no pass over its instances
			continue
		}
		now := map[string]bool{}
		for _, inst := range v.Instances {
			if len(inst.Checks) == 0 {
				continue
			}
			cs := make([]checks.Check, len(inst.Checks))
			for i, ck := range inst.Checks {
				cs[i] = checks.Check(ck)
			}
			// Probes go to the address the callback reached (the one a
			// host name resolved to at registration), not to whatever the
			// name resolves to later: a name repointed after registration
			// must not turn the checks on another host.
			addr := inst.Address
			if inst.HostIP != "" {
				addr = inst.HostIP
			}
			// Their certificate is judged as the callback judged it: for
			// the advertised name (or IP address), and against the CA
			// bundle unless the instance's key accepts any certificate.
			err := c.m.Set(checks.Target{ID: inst.ID, Address: addr, Port: inst.Port, Scheme: inst.Scheme,
				ServerName: inst.Address, AnyCertificate: c.anyCertificate(inst),
				Checks: cs, Status: string(inst.Status), Owner: inst.KeyID})
			if err != nil {
				// Admitted under other bounds (or an allowlist since
				// narrowed): it is not probed, and its status stays as
				// committed.
				c.r.log.Warn("instance's checks not run", "id", inst.ID, "service", inst.Service, "err", err)
				continue
			}
			now[inst.ID] = true
			if inst.TTL == 0 && inst.DeregisterAfter > 0 {
				c.removable[inst.ID] = true
			}
		}
		c.forget(v.Name, now)
		if len(now) > 0 {
			c.held[v.Name] = now
		}
	}
}

// anyCertificate reports whether the checks of inst, an https instance,
// accept any certificate: its enrolment key's callback_tls is any. A key
// since revoked vouches for nothing, and its instances' certificates are
// verified.
func (c *checkRun) anyCertificate(inst *catalog.Instance) bool {
	if inst.Scheme != "https" {
		return false
	}
	k, ok := c.r.cat.Key(inst.KeyID)
	return ok && k.CallbackTLSOrDefault() == catalog.CallbackTLSAny && !k.Expired(c.r.now())
}

// forget removes from the Monitor the instances of service it holds that
// are not in keep.
func (c *checkRun) forget(service string, keep map[string]bool) {
	for id := range c.held[service] {
		if !keep[id] {
			c.m.Remove(id)
			delete(c.removable, id)
			delete(c.criticalSince, id)
		}
	}
	delete(c.held, service)
}

// commit writes the Monitor's pending transitions. A transition is
// acknowledged once written or once moot (the instance is gone, or
// already in that status); one that could not be written is left for the
// next attempt.
func (c *checkRun) commit(ctx context.Context) {
	for _, tr := range c.m.Pending() {
		inst, ok := c.r.cat.Instance(tr.ID)
		if !ok {
			c.m.Ack(tr)
			continue
		}
		var cmd catalog.Command
		switch tr.Status {
		case api.StatusCritical:
			cmd = catalog.Command{Op: catalog.OpSetStatus, ID: tr.ID, Status: catalog.StatusCritical, IfStatus: catalog.StatusPassing, Reason: "check failed"}
		default:
			// A return to passing spends from the key's write budget, as
			// a heartbeat's does, so that checks that flap cannot write
			// faster than the key may; out of budget it waits for the
			// next attempt. Going critical never waits.
			now := c.r.now()
			if ok, _ := c.r.registrations.Allow(now, inst.KeyID); !ok {
				continue
			}
			if !c.r.heartbeatFresh(inst) {
				// Its TTL ran out: a heartbeat, not its checks, brings it
				// back (the heartbeat asks the Monitor first).
				c.m.Ack(tr)
				continue
			}
			c.r.registrations.Spend(now, inst.KeyID)
			cmd = catalog.Command{Op: catalog.OpSetStatus, ID: tr.ID, Status: catalog.StatusPassing, IfStatus: catalog.StatusCritical, Reason: "checks passing"}
		}
		_, err := c.r.propose(ctx, cmd)
		switch {
		case err == nil, errors.Is(err, catalog.ErrConflict), errors.Is(err, catalog.ErrNotFound):
			c.m.Ack(tr)
			c.r.log.Info("instance checks changed its status", "id", tr.ID, "service", inst.Service, "status", tr.Status)
		default:
			c.r.log.Warn("could not commit a check's status change; retrying", "id", tr.ID, "status", tr.Status, "err", err)
			return
		}
	}
}

// removeDead removes check-only instances (TTL 0, which the sweep does
// not judge) that have been critical for their deregister_after (0:
// never), counted from when this term first saw them critical. It looks
// only at those that have a deregister_after, not at every instance with
// checks.
func (c *checkRun) removeDead(ctx context.Context) {
	now := c.r.now()
	for id := range c.removable {
		inst, ok := c.r.cat.Instance(id)
		if !ok || inst.Status != catalog.StatusCritical {
			delete(c.criticalSince, id)
			continue
		}
		since, seen := c.criticalSince[id]
		if !seen {
			c.criticalSince[id] = now
			continue
		}
		if now.Sub(since) < inst.DeregisterAfter {
			continue
		}
		_, err := c.r.propose(ctx, catalog.Command{Op: catalog.OpDeregister, ID: id, IfStatus: catalog.StatusCritical, Reason: "deregister_after expired"})
		if err == nil || errors.Is(err, catalog.ErrConflict) || errors.Is(err, catalog.ErrNotFound) {
			delete(c.criticalSince, id)
		}
	}
}

// heartbeatFresh reports whether inst's TTL has not run out (always, for
// a check-only instance), ignoring what the catalog committed.
func (r *Registry) heartbeatFresh(inst *catalog.Instance) bool {
	floor, ok := r.live.Floor()
	return ok && !r.live.Expired(inst, floor, r.now())
}

// checksFailing reports whether this node's Monitor holds inst's checks
// and they do not all pass.
func (r *Registry) checksFailing(id string) bool {
	m := r.monitor.Load()
	if m == nil {
		return false
	}
	passing, ok := m.Passing(id)
	return ok && !passing
}

// CheckStates returns the states of inst's checks as this node knows
// them (see checkStates; nil when it declares none).
func (r *Registry) CheckStates(inst *catalog.Instance) []api.CheckState {
	if len(inst.Checks) == 0 {
		return nil
	}
	return checkStates(r.monitor.Load(), inst)
}
