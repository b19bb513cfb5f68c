package registry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/audit"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/random"
	"github.com/musterhq/muster/internal/verify"
)

// Registration limits.
const (
	MinTTL             = time.Second
	MaxTTL             = time.Hour
	MaxDeregisterAfter = 7 * 24 * time.Hour
	maxTags            = 64
	maxTagLen          = 128
	maxMeta            = 64
	maxMetaKeyLen      = 128
	maxMetaValueLen    = 512
	// MaxLabelBytes bounds the tags and meta of one instance together
	// (the bytes of every tag, meta key and meta value): every lookup
	// answer carries them, so they are kept small.
	MaxLabelBytes    = 4096
	maxNonceLen      = 128
	maxVerifyPathLen = 256
	maxHostLen       = 253
)

// registration is a validated registration request.
type registration struct {
	api.RegisterRequest
	ttl, deregisterAfter time.Duration
	checks               []catalog.Check
}

// validateRegister checks a registration request and fills in defaults.
// Every error is a *FieldError naming its field.
func validateRegister(req api.RegisterRequest) (registration, *FieldError) {
	reg := registration{RegisterRequest: req}
	if req.Address == "" {
		return reg, badField("address", "address is required")
	}
	if !validHost(req.Address) {
		return reg, badField("address", "address must be an IP address or a DNS host name (a name whose last label is all digits is neither)")
	}
	reg.Address = normalHost(req.Address)
	if req.Port < 1 || req.Port > 65535 {
		return reg, badField("port", "port must be between 1 and 65535")
	}
	if req.VerifyPort == 0 {
		reg.VerifyPort = req.Port
	} else if req.VerifyPort < 1 || req.VerifyPort > 65535 {
		return reg, badField("verify_port", "verify_port must be between 1 and 65535")
	}
	switch req.Scheme {
	case "":
		reg.Scheme = api.DefaultScheme
	case "http", "https":
	default:
		return reg, badField("scheme", "scheme must be http or https")
	}
	switch req.VerifyScheme {
	case "":
		reg.VerifyScheme = reg.Scheme
	case "http", "https":
	default:
		return reg, badField("verify_scheme", "verify_scheme must be http or https")
	}
	cs, ferr := parseChecks(req.Checks, reg.Scheme)
	if ferr != nil {
		return reg, ferr
	}
	reg.checks = cs
	ttl := req.TTL
	if ttl == "" {
		ttl = api.DefaultTTL
	}
	d, err := time.ParseDuration(ttl)
	if err != nil {
		return reg, badField("ttl", "ttl %q is not a duration such as 10s", ttl)
	}
	switch {
	case d == 0 && len(cs) > 0:
		// Its checks alone decide its status: it never heartbeats.
	case d == 0:
		return reg, badField("ttl", "a ttl of 0 needs checks: an instance without checks must heartbeat (ttl between %s and %s)", MinTTL, MaxTTL)
	case d < MinTTL || d > MaxTTL:
		return reg, badField("ttl", "ttl must be between %s and %s", MinTTL, MaxTTL)
	}
	reg.ttl = d
	reg.TTL = d.String()
	reg.deregisterAfter = 10 * d // 0 for a check-only instance: never removed for being critical
	if req.DeregisterAfter != "" {
		da, err := time.ParseDuration(req.DeregisterAfter)
		if err != nil {
			return reg, badField("deregister_after", "deregister_after %q is not a duration", req.DeregisterAfter)
		}
		if da < d || da > MaxDeregisterAfter {
			return reg, badField("deregister_after", "deregister_after must be between the ttl and %s", MaxDeregisterAfter)
		}
		reg.deregisterAfter = da
	}
	if req.VerifyPath == "" {
		reg.VerifyPath = api.DefaultVerifyPath
	} else if !validPath(req.VerifyPath) || !strings.HasPrefix(req.VerifyPath, verifyPathPrefix) {
		return reg, badField("verify_path", "verify_path must start with %s and hold at most %d of a-z A-Z 0-9 - . _ ~ /, with no empty, . or .. segment", verifyPathPrefix, maxVerifyPathLen)
	}
	if len(req.Nonce) > maxNonceLen || !catalog.Displayable(req.Nonce) {
		return reg, badField("nonce", "nonce must be at most %d printable characters", maxNonceLen)
	}
	if len(req.Tags) > maxTags {
		return reg, badField("tags", "at most %d tags", maxTags)
	}
	for _, t := range req.Tags {
		if t == "" || len(t) > maxTagLen || !catalog.Displayable(t) || strings.ContainsAny(t, " ,") {
			return reg, badField("tags", "tag %q must be 1 to %d printable characters without spaces or commas", t, maxTagLen)
		}
	}
	if len(req.Meta) > maxMeta {
		return reg, badField("meta", "at most %d meta entries", maxMeta)
	}
	for k, v := range req.Meta {
		if k == "" || len(k) > maxMetaKeyLen || !catalog.ValidMetaKey(k) {
			return reg, badField("meta", "meta key %q must be 1 to %d of A-Z a-z 0-9 . _ -", k, maxMetaKeyLen)
		}
		if len(v) > maxMetaValueLen || !catalog.Displayable(v) {
			return reg, badField("meta", "meta value of %q must be at most %d printable characters", k, maxMetaValueLen)
		}
	}
	if n := labelBytes(req.Tags, req.Meta); n > MaxLabelBytes {
		field := "meta"
		if len(req.Meta) == 0 {
			field = "tags"
		}
		return reg, badField(field, "tags and meta together hold %d bytes; at most %d are allowed", n, MaxLabelBytes)
	}
	return reg, nil
}

// labelBytes is the size of an instance's tags and meta as MaxLabelBytes
// counts it.
func labelBytes(tags []string, meta map[string]string) int {
	n := 0
	for _, t := range tags {
		n += len(t)
	}
	for k, v := range meta {
		n += len(k) + len(v)
	}
	return n
}

// verifyPathPrefix bounds where a callback may go on the instance's host,
// so that an enrolment key cannot aim the registry's POST at an arbitrary
// endpoint of some other service in the allowlisted networks.
const verifyPathPrefix = api.VerifyPathPrefix

// CanonicalHost returns the canonical spelling of h, an IP address or a
// DNS host name, and false if h is neither (see validHost). Front ends that
// take an address in another form (the tutorial protocol's url) use it so
// that one endpoint has one catalog key whatever the front end.
func CanonicalHost(h string) (string, bool) {
	if !validHost(h) {
		return "", false
	}
	return normalHost(h), true
}

// normalHost returns the canonical spelling of a valid host, so that one
// endpoint has one catalog key: IPs in their shortest form (IPv4-mapped
// IPv6 as IPv4), names in lower case without a trailing dot.
func normalHost(h string) string {
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Unmap().WithZone("").String()
	}
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

func validHost(h string) bool {
	if net.ParseIP(h) != nil {
		return true
	}
	if len(h) > maxHostLen {
		return false
	}
	h = strings.TrimSuffix(h, ".")
	labels := strings.Split(h, ".")
	// An all-numeric last label is no DNS name but an IPv4 address in a
	// form the resolver would still accept (127.1, 2130706433): refuse it
	// rather than let one endpoint have two spellings.
	if last := labels[len(labels)-1]; strings.Trim(last, "0123456789") == "" || strings.HasPrefix(strings.ToLower(last), "0x") {
		return false
	}
	for _, label := range labels {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// validPath accepts a plain absolute path: letters, digits and - . _ ~ /
// only (so no percent-encoding, no ; or \ for a server to reinterpret), and
// no empty, "." or ".." segment, so that what the registry checks is the
// path every server on the way will see.
func validPath(p string) bool {
	if len(p) > maxVerifyPathLen || !strings.HasPrefix(p, "/") {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~/", c) >= 0) {
			return false
		}
	}
	for _, seg := range strings.Split(strings.Trim(p, "/"), "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// CheckServiceName returns a *FieldError for the field "service" unless
// name is a valid service name.
func CheckServiceName(name string) error {
	if !catalog.ValidServiceName(name) {
		return badField("service", "service name must be 1 to 63 of a-z 0-9 - _")
	}
	return nil
}

// errUnknownKey is the audit trail's reason for a registration whose
// secret names no enrolment key: unknown, or revoked (the catalog keeps
// no trace of a revoked key's secret).
var errUnknownKey = errors.New("registry: the secret names no enrolment key (unknown, or revoked)")

// Admission is a caller's right to register one service with an enrolment
// key: the result of AdmitKey, to pass to Register.
type Admission struct {
	service string
	key     *catalog.Key
	secret  string
}

// Service returns the service the admission is for.
func (a Admission) Service() string { return a.service }

// KeyID returns the ID of the enrolment key admitted, or "".
func (a Admission) KeyID() string {
	if a.key == nil {
		return ""
	}
	return a.key.ID
}

// AdmitKey checks that secret is a live enrolment key whose scope allows
// service. Errors, in the order checked: ErrNotReady (keys are read from
// the catalog, so a valid key is not refused during log replay),
// ErrNoCredential, catalog.ErrKeyRevoked (unknown or revoked key), a
// *FieldError (bad service name), catalog.ErrKeyScope. A refusal is a
// record of the registration, with the key's ID once the secret named
// one (never the secret).
func (r *Registry) AdmitKey(ctx context.Context, secret, service string) (Admission, error) {
	adm, err := r.admitKey(ctx, secret, service)
	if err != nil {
		return Admission{}, err
	}
	return r.AdmitFor(ctx, adm, service)
}

// CheckKey is AdmitKey's checks of the key alone (not ready, no or an
// unknown credential, expired, not of role register), for a front end
// that checks the key before it reads the body that names the service;
// AdmitFor then admits the service. Errors, each a record of a refused
// registration: as AdmitKey's.
func (r *Registry) CheckKey(ctx context.Context, secret string) (Admission, error) {
	return r.admitKey(ctx, secret, "")
}

// AdmitFor admits adm's key (from CheckKey) for service: AdmitKey's
// checks of the service name and the key's scope, each refusal a record.
func (r *Registry) AdmitFor(ctx context.Context, adm Admission, service string) (Admission, error) {
	if adm.key == nil { // not from CheckKey
		return Admission{}, ErrNoCredential
	}
	err := CheckServiceName(service)
	if err == nil && !adm.key.Allows(service) {
		err = catalog.ErrKeyScope
	}
	if err != nil {
		r.record(ctx, audit.Record{Action: audit.ActionRegister, Service: service, Key: adm.key.ID}, err)
		return Admission{}, err
	}
	return Admission{service: service, key: adm.key, secret: adm.secret}, nil
}

// admitKey checks the key of secret, recording a refusal with service
// (the one the request names, if known), and returns an admission for
// no service yet.
func (r *Registry) admitKey(ctx context.Context, secret, service string) (adm Admission, err error) {
	var keyID string
	defer func() {
		if err != nil {
			why := err
			if errors.Is(err, catalog.ErrKeyRevoked) {
				why = errUnknownKey
			}
			r.record(ctx, audit.Record{Action: audit.ActionRegister, Service: service, Key: keyID}, why)
		}
	}()
	if err := r.Ready(); err != nil {
		return Admission{}, err
	}
	if secret == "" {
		return Admission{}, ErrNoCredential
	}
	key, ok := r.cat.KeyBySecretHash(catalog.HashSecret(secret))
	if !ok { // perhaps a key created through another server
		again, err := r.catchUp()
		if err != nil {
			return Admission{}, err
		}
		if again {
			key, ok = r.cat.KeyBySecretHash(catalog.HashSecret(secret))
		}
	}
	if !ok {
		return Admission{}, catalog.ErrKeyRevoked
	}
	keyID = key.ID
	if key.Expired(r.now()) {
		return Admission{}, &ExpiredError{ID: key.ID, At: key.ExpiresAt}
	}
	if role := key.RoleOrDefault(); role != catalog.RoleRegister {
		return Admission{}, &RoleError{Role: role}
	}
	return Admission{key: key, secret: secret}, nil
}

// Registered is the outcome of a registration.
type Registered struct {
	ID      string
	Service string
	// TTL is the TTL as a Go duration string, normalised ("10s").
	TTL   string
	Index uint64
}

// Register validates req, calls the instance back at the address it
// advertises, and commits it. Nothing is stored unless every step passes.
// Errors: a *FieldError; catalog.ErrReplaceDenied (another key's instance
// holds the address and port, and only the host is proved); a
// *QuotaError; ErrBusy; a *RateLimitError; ErrAddressNotAllowed; a
// *VerifyError; the catalog's (catalog.ErrKeyRevoked when the key was
// revoked meanwhile, ErrKeyScope, ErrProtocolMix, ErrReplaceDenied);
// ErrUnavailable.
//
// Every outcome is one audit record: a registration committed, or
// refused when applied, is recorded from the applied log; any other
// refusal or failure here.
func (r *Registry) Register(ctx context.Context, adm Admission, req api.RegisterRequest) (_ Registered, err error) {
	return r.register(ctx, adm, req, registerAs{reason: "api", callback: true, status: catalog.StatusPassing})
}

// registerAs is how a front end's registration differs from /v1's.
type registerAs struct {
	// reason is the audit trail's and the log's word for the front end.
	reason string
	// externalID is the ID the registrant chose (Instance.ExternalID).
	externalID string
	// callback is whether the address is called back; without it the
	// address is still resolved and held to the allowlist and the
	// limits, and the instance's proof is "none".
	callback bool
	// status is the instance's status once registered.
	status catalog.Status
}

func (r *Registry) register(ctx context.Context, adm Admission, req api.RegisterRequest, as registerAs) (_ Registered, err error) {
	if adm.key == nil { // not from AdmitKey
		return Registered{}, ErrNoCredential
	}
	id := random.ID(16)
	var called string // the instance's ID, once a callback carried it
	applied := false
	defer func() {
		if err != nil && !applied {
			r.record(ctx, audit.Record{Action: audit.ActionRegister, Service: adm.service, Instance: called, Key: adm.key.ID}, err)
		}
	}()
	if err := r.writable(); err != nil { // before the callback: a full disk refuses at once
		return Registered{}, err
	}
	reg, ferr := validateRegister(req)
	if ferr != nil {
		return Registered{}, ferr
	}
	token := random.Secret()
	proof := api.ProofAddressPort
	if reg.VerifyPort != reg.Port {
		proof = api.ProofAddress
	}
	if !as.callback {
		proof = api.ProofNone
	}
	if err := r.barred(adm.service, reg.Address, reg.Port); err != nil {
		return Registered{}, err
	}
	old, replacing := r.cat.InstanceByAddr(adm.service, reg.Address, reg.Port)
	// sameHost: the instance replaced is at this address, and counts
	// against it alike (proven or not), so the address's count does not
	// grow.
	sameHost := replacing && (old.Proof == catalog.ProofNone) == (proof == api.ProofNone)
	if !replacing && as.externalID != "" {
		old, replacing = r.cat.InstanceByExternal(adm.key.ID, as.externalID, reg.Address)
		if replacing && old.Service != adm.service {
			return Registered{}, &ExternalIDElsewhereError{ID: as.externalID, Service: old.Service}
		}
	}
	if replacing && old.KeyID != adm.key.ID && proof != api.ProofAddressPort && !(old.Proof == catalog.ProofNone && proof != api.ProofNone) {
		// Checked again in the catalog; refused here before any callback.
		// An instance no callback proved yields to one whose address was.
		return Registered{}, catalog.ErrReplaceDenied
	}
	called = id
	release, hostIP, err := r.proveAddress(ctx, addressProof{
		byTarget: adm.key.ID + "|" + reg.Address, byCaller: adm.key.ID, who: "enrolment key and address", whoCaller: "enrolment key",
		host: reg.Address, refused: "registration refused", keyID: adm.key.ID,
		reserve: func(hostIP string) (func(), error) {
			return r.reserve(adm.key, hostIP, id, replacing && old.KeyID == adm.key.ID, sameHost, proof == api.ProofNone)
		},
		attrs: []any{"service", adm.service, "address", reg.Address, "port", reg.Port},
		call: func(ctx context.Context, hostIP netip.Addr) error {
			if !as.callback {
				return nil
			}
			target := verify.Target{Scheme: reg.VerifyScheme, Address: reg.Address, Port: reg.VerifyPort, Path: reg.VerifyPath, DialIP: hostIP,
				AnyCertificate: adm.key.CallbackTLSOrDefault() == catalog.CallbackTLSAny}
			return r.verifier.Verify(ctx, target, api.VerifyRequest{
				Service: adm.service, InstanceID: id, Challenge: random.Secret(), Nonce: reg.Nonce, Token: token,
			}, adm.secret)
		},
	})
	if err != nil {
		return Registered{}, err
	}
	defer release()

	now := r.now()
	inst := &catalog.Instance{
		ID: id, Service: adm.service, Address: reg.Address, Port: reg.Port, Scheme: reg.Scheme,
		Tags: reg.Tags, Meta: reg.Meta, TTL: reg.ttl, DeregisterAfter: reg.deregisterAfter, Checks: reg.checks,
		TokenHash: catalog.HashSecret(token), KeyID: adm.key.ID, Proof: proof, HostIP: hostIP, ExternalID: as.externalID,
		Status: as.status, RegisteredAt: now.UTC(),
	}
	res, err := r.commitRegistration(ctx, inst, adm.key, as.reason, now)
	applied = res.Index != 0
	if err != nil {
		return Registered{}, err
	}
	return Registered{ID: id, Service: adm.service, TTL: reg.TTL, Index: res.Index}, nil
}

// commitRegistration commits a verified instance and starts its heartbeat
// clock. Both protocols' registrations end here. A result with an index
// was applied (and recorded from the log), whatever the error.
//
// now is the registration time as read from the clock (with its monotonic
// reading, which inst.RegisteredAt, in UTC, no longer carries): the
// tracker's first beat must be on the same clock as later heartbeats.
//
// The command carries the limits of instances of key and of the host, so
// that the state machine holds them exactly: admission (reserve) counts
// what this server knows, and in a cluster every server admits.
func (r *Registry) commitRegistration(ctx context.Context, inst *catalog.Instance, key *catalog.Key, reason string, now time.Time) (catalog.Result, error) {
	old, _ := r.cat.InstanceByAddr(inst.Service, inst.Address, inst.Port)
	res, err := r.propose(ctx, catalog.Command{Op: catalog.OpRegister, Instance: inst, Reason: reason, Rules: catalog.RulesFor(inst, old),
		KeyLimit: r.keyLimit(key), HostLimit: r.cfg.MaxInstancesPerAddress, Origin: origin(ctx)})
	if errors.Is(err, catalog.ErrQuota) {
		return res, &QuotaError{Message: fmt.Sprintf("enrolment key %s (limit %d) or address %s (limit %d, --max-instances-per-address) "+
			"already holds its limit of instances, counted across the cluster; deregister some, or use a key with a higher max_instances",
			inst.KeyID, r.keyLimit(key), inst.Host(), r.cfg.MaxInstancesPerAddress)}
	}
	if err != nil {
		return res, err
	}
	id := inst.ID
	if cur, ok := r.cat.Instance(id); ok {
		id = cur.ID // the catalog's copy: the tracker keeps it for as long as the instance lives
	}
	r.live.Beat(id, now)
	if res.Replaced != "" {
		r.live.Forget(res.Replaced)
	}
	r.log.Info("instance registered", "service", inst.Service, "id", inst.ID, "address", inst.Address, "port", inst.Port,
		"protocol", reason, "replaced", res.Replaced, "index", res.Index)
	return res, nil
}

// ValidateRegistration checks a registration request as Register does
// before calling the instance back; a refusal is a *FieldError.
func ValidateRegistration(req api.RegisterRequest) error {
	if _, err := validateRegister(req); err != nil {
		return err
	}
	return nil
}
