package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/audit"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/random"
	"github.com/musterhq/muster/internal/verify"
)

// SeedConfig is the tutorial protocol's admission policy (`muster server
// --seed-compat`): the registry POSTs a challenge phrase and a fresh secret
// to the service, which proves itself by answering with the response
// phrase and the same secret. There is no enrolment key; Services is the
// only scope. Instances admitted this way are ordinary catalog instances,
// under catalog.SeedKeyID.
type SeedConfig struct {
	// Challenge is the phrase the registry sends; Response is the phrase
	// the service must answer with.
	Challenge, Response string
	// HeartbeatInterval is how often seed services ping; their TTL is three
	// intervals.
	HeartbeatInterval time.Duration
	// Services are the name patterns ('*' wildcard) the tutorial protocol
	// may register. There is no default: the names a keyless protocol may
	// take are named by the operator, and a pattern of wildcards alone
	// is refused.
	Services []string
	// VerifyTimeout is how long the background callback of a registration
	// may take, dial to answer (see RegisterSeed). The tutorial's
	// services answer only once their registration request has returned,
	// so the tutorial's registry waited for them in the background, up to
	// 20 s (Tornado's default).
	VerifyTimeout time.Duration
	// MaxPending bounds the registrations awaiting verification at once,
	// and MaxPendingPerCaller those from one caller's network (its IPv4
	// address or IPv6 /64); beyond them, ErrSeedPending. Each also holds
	// a callback slot (Config.MaxVerifying) while it waits.
	MaxPending, MaxPendingPerCaller int
}

// MaxSeedVerifyTimeout is the longest SeedConfig.VerifyTimeout allowed:
// a pending verification holds a callback slot for as long.
const MaxSeedVerifyTimeout = 2 * time.Minute

// DefaultSeedConfig returns the tutorial's phrases, its 10 s interval and
// its 20 s patience with the callback; 32 registrations may await
// verification at once, 8 of them from one caller's network.
func DefaultSeedConfig() SeedConfig {
	return SeedConfig{
		Challenge:           "It jolly well looks like it might rain",
		Response:            "That is why I carry an umbrella",
		HeartbeatInterval:   10 * time.Second,
		VerifyTimeout:       20 * time.Second,
		MaxPending:          32,
		MaxPendingPerCaller: 8,
	}
}

// Validate reports a configuration error.
func (c SeedConfig) Validate() error {
	if c.Challenge == "" || c.Response == "" {
		return errors.New("seed: challenge and response phrases must not be empty")
	}
	if c.HeartbeatInterval < 100*time.Millisecond || 3*c.HeartbeatInterval > MaxTTL {
		return fmt.Errorf("seed: heartbeat interval must be between 100ms and %s", MaxTTL/3)
	}
	if c.VerifyTimeout < 100*time.Millisecond || c.VerifyTimeout > MaxSeedVerifyTimeout {
		return fmt.Errorf("seed: verify timeout must be between 100ms and %s", MaxSeedVerifyTimeout)
	}
	if c.MaxPending < 1 || c.MaxPendingPerCaller < 1 || c.MaxPendingPerCaller > c.MaxPending {
		return errors.New("seed: at least one registration must be allowed to await verification, and no more per caller than in all")
	}
	if len(c.Services) == 0 {
		return errors.New("seed: name the services the tutorial protocol may register (--seed-services fetch_url,dice_scraper,...)")
	}
	for _, p := range c.Services {
		if !catalog.ValidPattern(p) {
			return fmt.Errorf("seed: service pattern %q: 1 to 63 of a-z 0-9 - _ and *", p)
		}
		if strings.Trim(p, "*") == "" {
			return fmt.Errorf("seed: service pattern %q would let anyone who can reach the API register any name; name the tutorial's services", p)
		}
	}
	return nil
}

// SeedVerifyPath is where the tutorial protocol's callback goes.
const SeedVerifyPath = "/api/v1/verify/"

// SeedAddr is an instance's address as the tutorial protocol gives it.
type SeedAddr struct {
	Scheme string // http or https
	Host   string // canonical (see CanonicalHost)
	Port   int
}

// SeedAdmission is a caller's right to register one service through the
// tutorial protocol: the result of AdmitSeed, to pass to RegisterSeed.
type SeedAdmission struct {
	service string
	caller  string // the caller's network, for the bounds
	remote  string // the caller's address, for the audit trail
}

// AdmitSeed checks that the tutorial protocol may register service for a
// caller at remote (its network address, which stands in for the key the
// protocol does not have, in the failure limits). Errors: ErrSeedOff,
// ErrNotReady, a *FieldError, ErrSeedScope, catalog.ErrProtocolMix (the
// service has, or has had, /v1 instances). A refusal is a record of the
// registration.
func (r *Registry) AdmitSeed(remote, service string) (_ SeedAdmission, err error) {
	defer func() {
		if err != nil {
			r.record(context.Background(), audit.Record{Action: audit.ActionRegister, Service: service, Key: catalog.SeedKeyID, Caller: remote}, err)
		}
	}()
	if r.cfg.Seed == nil {
		return SeedAdmission{}, ErrSeedOff
	}
	if err := r.Ready(); err != nil {
		return SeedAdmission{}, err
	}
	if err := CheckServiceName(service); err != nil {
		return SeedAdmission{}, err
	}
	if !(&catalog.Key{Services: r.cfg.Seed.Services}).Allows(service) {
		return SeedAdmission{}, ErrSeedScope
	}
	if r.cat.Keyed(service) {
		return SeedAdmission{}, catalog.ErrProtocolMix
	}
	if view := r.cat.Service(service); view != nil {
		for _, inst := range view.Instances {
			if inst.KeyID != catalog.SeedKeyID {
				return SeedAdmission{}, catalog.ErrProtocolMix
			}
		}
	}
	return SeedAdmission{service: service, caller: callerNet(remote), remote: remote}, nil
}

// RegisterSeed accepts the instance at addr for the tutorial protocol's
// phrase exchange and returns without waiting for it, as the tutorial's
// registry did: the tutorial's services answer the callback only once
// their registration request has returned. It checks at once everything
// that needs no answer from the instance (the disk, an operator's bar,
// the pending bounds, the callback slots, the failure limits, the
// allowlist, the quotas), then runs the callback in the background, with
// SeedConfig.VerifyTimeout to answer, and commits the instance, with a
// TTL of three heartbeat intervals, only if the answer is right. The
// SeedVerification it returns reports the outcome. A registration for
// the name, url and port of one still pending returns that one and
// starts nothing.
//
// Errors, when nothing was started: ErrSeedOff; ErrUnavailable; a
// *BarredError; ErrSeedPending; ErrBusy; a *RateLimitError;
// ErrAddressNotAllowed; a *VerifyError (the host does not resolve); a
// *QuotaError; ErrClosed. Each is a record of the registration; so is
// the outcome of a verification started (see finishSeed).
func (r *Registry) RegisterSeed(ctx context.Context, adm SeedAdmission, addr SeedAddr) (_ *SeedVerification, err error) {
	defer func() {
		if err != nil {
			r.record(ctx, audit.Record{Action: audit.ActionRegister, Service: adm.service, Key: catalog.SeedKeyID, Caller: adm.remote}, err)
		}
	}()
	s := r.seed
	if s == nil {
		return nil, ErrSeedOff
	}
	if err := r.writable(); err != nil { // before the callback: a full disk refuses at once
		return nil, err
	}
	if err := r.barred(adm.service, addr.Host, addr.Port); err != nil {
		return nil, err
	}
	ep := seedEndpoint{service: adm.service, addr: addr}
	attrs := []any{"service", adm.service, "address", addr.Host, "port", addr.Port}
	if v := s.pending(ep); v != nil {
		r.log.Info("seed registration already awaiting verification", append(attrs, "id", v.ID)...)
		return v, nil
	}
	if err := s.room(adm.caller, *r.cfg.Seed); err != nil { // before the allowlist's DNS lookup
		return nil, err
	}
	v := &SeedVerification{ID: random.ID(16), ep: ep, caller: adm.caller, remote: adm.remote, done: make(chan struct{})}
	old, replacing := r.cat.InstanceByAddr(adm.service, addr.Host, addr.Port)
	secret := random.Secret()
	p := addressProof{
		reserve: func(hostIP string) (func(), error) {
			return r.reserve(&catalog.Key{ID: catalog.SeedKeyID}, hostIP, v.ID, replacing && old.KeyID == catalog.SeedKeyID, replacing && old.Proof != catalog.ProofNone, false)
		},
		byTarget: "seed|" + adm.caller + "|" + addr.Host, byCaller: "seed|" + adm.caller, who: "address", whoCaller: "address", seed: true,
		host: addr.Host, refused: "seed registration refused", attrs: attrs,
		call: func(ctx context.Context, hostIP netip.Addr) error {
			form := url.Values{"challenge": {r.cfg.Seed.Challenge}, "secret": {secret}}
			target := verify.Target{Scheme: addr.Scheme, Address: addr.Host, Port: addr.Port, Path: SeedVerifyPath, DialIP: hostIP}
			data, err := s.verifier.Call(ctx, target, "application/x-www-form-urlencoded", []byte(form.Encode()))
			if err != nil {
				if s.ctx.Err() != nil {
					return ErrClosed // cut short by Close: no refusal of the instance's
				}
				return err
			}
			return checkSeedReply(data, r.cfg.Seed.Response, secret)
		},
	}
	a, err := r.admitProof(ctx, p)
	if err != nil {
		return nil, err
	}
	if running, err := s.add(v, *r.cfg.Seed); err != nil || running != nil {
		a.release() // refused, or another request for the endpoint got in first
		return running, err
	}
	r.log.Info("seed registration accepted for verification", append(attrs, "id", v.ID, "caller", adm.caller)...)
	go r.verifySeed(v, p, a, secret)
	return v, nil
}

// finishSeed runs an admitted registration's callback and commits the
// instance if the answer is right. ctx bounds the callback only: once the
// answer is right the commit runs to its end, unless Close had begun.
//
// Its outcome is one audit record: from the applied log if the instance
// was committed (or refused when applied), from here otherwise.
func (r *Registry) finishSeed(ctx context.Context, v *SeedVerification, p addressProof, a admittedProof, secret string) (_ *catalog.Instance, err error) {
	applied := false
	defer func() {
		if err != nil && !applied {
			r.record(ctx, audit.Record{Action: audit.ActionRegister, Service: v.ep.service, Instance: v.ID, Key: catalog.SeedKeyID}, err)
		}
	}()
	if err := r.runProof(ctx, p, a); err != nil {
		return nil, err
	}
	defer a.release()
	if r.seed.ctx.Err() != nil {
		return nil, ErrClosed // verified, but nothing is committed once Close has begun
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), seedCommitTimeout)
	defer cancel()
	ttl := 3 * r.cfg.Seed.HeartbeatInterval
	now := r.now()
	addr := v.ep.addr
	inst := &catalog.Instance{
		ID: v.ID, Service: v.ep.service, Address: addr.Host, Port: addr.Port, Scheme: addr.Scheme,
		Meta: map[string]string{"protocol": "seed"}, TTL: ttl, DeregisterAfter: 10 * ttl,
		TokenHash: catalog.HashSecret(secret), KeyID: catalog.SeedKeyID, Proof: api.ProofAddressPort, HostIP: a.ip.String(),
		Status: catalog.StatusPassing, RegisteredAt: now.UTC(),
	}
	// The instance has been told it is accepted: while no leader can
	// take the commit (an election), it is tried again until the commit
	// deadline. IDs are random, so a retry that finds the ID taken
	// means an earlier attempt committed and only its answer was lost.
	for attempt := 0; ; attempt++ {
		err := r.ensureSeedKey(cctx)
		if err == nil {
			var res catalog.Result
			res, err = r.commitRegistration(cctx, inst, &catalog.Key{ID: catalog.SeedKeyID}, "seed", now)
			applied = applied || res.Index != 0
		}
		switch {
		case err == nil:
			return inst, nil
		case attempt > 0 && errors.Is(err, catalog.ErrExists):
			if got, ok := r.cat.Instance(inst.ID); ok && got.TokenMatches(secret) {
				r.live.Beat(inst.ID, now)
				return inst, nil
			}
			return nil, err
		case !errors.Is(err, ErrUnavailable) || r.seed.ctx.Err() != nil:
			return nil, err
		}
		select {
		case <-cctx.Done():
			return nil, err
		case <-r.seed.ctx.Done():
			return nil, ErrClosed
		case <-time.After(seedCommitRetry):
		}
	}
}

// seedCommitRetry is the pause between attempts to commit a verified
// tutorial-protocol instance while no leader takes it.
const seedCommitRetry = 200 * time.Millisecond

// SeedPing is the tutorial protocol's heartbeat: the instance of service
// registered at addr, authenticated by the secret of its verification.
// Errors: ErrSeedOff, ErrNotReady, ErrInstanceNotFound (no instance matches
// the name, address and secret), ErrUnavailable.
func (r *Registry) SeedPing(ctx context.Context, service string, addr SeedAddr, secret string) (catalog.Status, error) {
	if r.cfg.Seed == nil {
		return "", ErrSeedOff
	}
	if err := r.Ready(); err != nil {
		return "", err
	}
	inst, ok := r.cat.InstanceByAddr(service, addr.Host, addr.Port)
	if !ok || inst.Scheme != addr.Scheme || !inst.TokenMatches(secret) {
		return "", ErrInstanceNotFound
	}
	now := r.now()
	if status, revive := r.heard(inst, now); !revive {
		return status, nil
	}
	return r.revive(ctx, inst, now)
}

// ensureSeedKey creates the tutorial protocol's key the first time it is
// needed.
func (r *Registry) ensureSeedKey(ctx context.Context) error {
	r.seedKey.Lock()
	defer r.seedKey.Unlock()
	if _, ok := r.cat.Key(catalog.SeedKeyID); ok {
		return nil
	}
	_, err := r.propose(ctx, catalog.Command{Op: catalog.OpCreateKey, Reason: "seed-compat", Key: &catalog.Key{
		ID: catalog.SeedKeyID, SecretHash: catalog.HashSecret(random.Secret()), Services: []string{"*"},
		Description: "registrations through the tutorial protocol (--seed-compat)", CreatedAt: r.now().UTC().Truncate(time.Second),
	}})
	if errors.Is(err, catalog.ErrExists) {
		err = nil
	}
	return err
}

// checkSeedReply checks the verify answer: JSON whose reply is the
// response phrase and whose secret is the one sent.
func checkSeedReply(data []byte, response, secret string) error {
	var reply struct {
		Reply  string `json:"reply"`
		Secret string `json:"secret"`
	}
	if err := json.Unmarshal(data, &reply); err != nil {
		return &verify.Error{Reason: api.ReasonBadResponse, Msg: `answer is not JSON {"name", "url", "port", "reply", "secret"}`}
	}
	if reply.Reply != response {
		return &verify.Error{Reason: api.ReasonBadProof, Msg: "reply is not the expected response phrase"}
	}
	if reply.Secret != secret {
		return &verify.Error{Reason: api.ReasonBadProof, Msg: "secret is not the one the registry sent"}
	}
	return nil
}

// callerNet names the network a caller of the tutorial protocol comes
// from, for its failure limit: the IPv4 address, or the IPv6 /64 (a host
// usually has a whole /64 to pick addresses from).
func callerNet(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}
