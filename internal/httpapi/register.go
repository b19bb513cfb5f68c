package httpapi

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/catalog"
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
	maxNonceLen        = 128
	maxVerifyPathLen   = 256
	maxHostLen         = 253
)

// registration is a validated registration request.
type registration struct {
	api.RegisterRequest
	ttl, deregisterAfter time.Duration
}

// validateRegister checks a registration body and fills in defaults. Every
// error names its field.
func validateRegister(req api.RegisterRequest) (registration, *Error) {
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
	ttl := req.TTL
	if ttl == "" {
		ttl = api.DefaultTTL
	}
	d, err := time.ParseDuration(ttl)
	if err != nil {
		return reg, badField("ttl", "ttl %q is not a duration such as 10s", ttl)
	}
	if d < MinTTL || d > MaxTTL {
		return reg, badField("ttl", "ttl must be between %s and %s", MinTTL, MaxTTL)
	}
	reg.ttl = d
	reg.TTL = d.String()
	reg.deregisterAfter = 10 * d
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
	if len(req.Nonce) > maxNonceLen || !printable(req.Nonce) {
		return reg, badField("nonce", "nonce must be at most %d printable characters", maxNonceLen)
	}
	if len(req.Tags) > maxTags {
		return reg, badField("tags", "at most %d tags", maxTags)
	}
	for _, t := range req.Tags {
		if t == "" || len(t) > maxTagLen || !printable(t) || strings.ContainsAny(t, " ,") {
			return reg, badField("tags", "tag %q must be 1 to %d printable characters without spaces or commas", t, maxTagLen)
		}
	}
	if len(req.Meta) > maxMeta {
		return reg, badField("meta", "at most %d meta entries", maxMeta)
	}
	for k, v := range req.Meta {
		if k == "" || len(k) > maxMetaKeyLen || !metaKey(k) {
			return reg, badField("meta", "meta key %q must be 1 to %d of A-Z a-z 0-9 . _ -", k, maxMetaKeyLen)
		}
		if len(v) > maxMetaValueLen || !printable(v) {
			return reg, badField("meta", "meta value of %q must be at most %d printable characters", k, maxMetaValueLen)
		}
	}
	return reg, nil
}

// verifyPathPrefix bounds where a callback may go on the instance's host,
// so that an enrolment key cannot aim the registry's POST at an arbitrary
// endpoint of some other service in the allowlisted networks.
const verifyPathPrefix = api.VerifyPathPrefix

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

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

func metaKey(k string) bool {
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// register handles POST /v1/services/{service}/instances: authenticate the
// enrolment key, validate, call the instance back, then commit through Raft.
// Nothing is stored unless every step passes.
func (a *apiServer) register(w http.ResponseWriter, r *http.Request) {
	// Keys are read from the catalog, so wait until it is loaded rather
	// than refuse a valid key during log replay.
	if _, ok := a.readyFloor(w); !ok {
		return
	}
	secret := bearer(r)
	if secret == "" {
		writeError(w, a.Logger, errorf(http.StatusUnauthorized, api.CodeUnauthorized, "", "enrolment key required (Authorization: Bearer ...)"))
		return
	}
	key, ok := a.Catalog.KeyBySecretHash(catalog.HashSecret(secret))
	if !ok {
		writeError(w, a.Logger, catalog.ErrKeyRevoked)
		return
	}
	service := r.PathValue("service")
	if !catalog.ValidServiceName(service) {
		writeError(w, a.Logger, badField("service", "service name must be 1 to 63 of a-z 0-9 - _"))
		return
	}
	if !key.Allows(service) {
		writeError(w, a.Logger, catalog.ErrKeyScope)
		return
	}
	var req api.RegisterRequest
	if err := decodeJSON(w, r, a.MaxBody, &req); err != nil {
		writeError(w, a.Logger, err)
		return
	}
	reg, verr := validateRegister(req)
	if verr != nil {
		writeError(w, a.Logger, verr)
		return
	}
	release, ok := a.verifySlot(w)
	if !ok {
		return
	}
	defer release()
	ok, wait, failed := a.verificationAllowed(key.ID+"|"+reg.Address, key.ID)
	if !ok {
		writeError(w, a.Logger, rateLimited(w, wait, "enrolment key and address"))
		return
	}
	if err := a.Verifier.CheckAddress(r.Context(), reg.Address); err != nil {
		failed()
		writeError(w, a.Logger, err)
		return
	}

	id := catalog.RandomID(16)
	token := catalog.RandomSecret()
	challenge := catalog.RandomSecret()
	target := verify.Target{Scheme: reg.VerifyScheme, Address: reg.Address, Port: reg.VerifyPort, Path: reg.VerifyPath}
	proof := api.ProofAddressPort
	if reg.VerifyPort != reg.Port {
		proof = api.ProofAddress
	}
	err := a.Verifier.Verify(r.Context(), target, api.VerifyRequest{
		Service: service, InstanceID: id, Challenge: challenge, Nonce: reg.Nonce, Token: token,
	}, secret)
	if err != nil {
		failed()
		var ve *verify.Error
		if errors.As(err, &ve) {
			a.Logger.Info("registration refused", "service", service, "address", reg.Address, "port", reg.Port,
				"reason", ve.Reason, "detail", ve.Detail)
		}
		writeError(w, a.Logger, err)
		return
	}

	now := a.Now()
	inst := &catalog.Instance{
		ID: id, Service: service, Address: reg.Address, Port: reg.Port, Scheme: reg.Scheme,
		Tags: reg.Tags, Meta: reg.Meta, TTL: reg.ttl, DeregisterAfter: reg.deregisterAfter,
		TokenHash: catalog.HashSecret(token), KeyID: key.ID, Proof: proof,
		Status: catalog.StatusPassing, RegisteredAt: now.UTC(),
	}
	res, err := a.commitRegistration(r.Context(), inst, "api", now)
	if err != nil {
		writeError(w, a.Logger, err)
		return
	}
	w.Header().Set("Location", "/v1/instances/"+id)
	writeJSON(w, http.StatusCreated, api.RegisterResponse{ID: id, Service: service, TTL: reg.TTL, Index: res.Index})
}

// commitRegistration commits a verified instance through Raft and starts
// its heartbeat clock. Both the /v1 and the tutorial-protocol registrations
// end here.
//
// now is the registration time as read from the clock (with its monotonic
// reading, which inst.RegisteredAt, in UTC, no longer carries): the
// tracker's first beat must be on the same clock as later heartbeats.
func (a *apiServer) commitRegistration(ctx context.Context, inst *catalog.Instance, reason string, now time.Time) (catalog.Result, error) {
	res, err := a.Node.Apply(ctx, catalog.Command{Op: catalog.OpRegister, Instance: inst, Reason: reason, Rules: catalog.RulesCurrent})
	if err == nil {
		err = res.Err
	}
	if err != nil {
		return res, err
	}
	a.Tracker.Beat(inst.ID, now)
	if res.Replaced != "" {
		a.Tracker.Forget(res.Replaced)
	}
	a.Logger.Info("instance registered", "service", inst.Service, "id", inst.ID, "address", inst.Address, "port", inst.Port,
		"protocol", reason, "replaced", res.Replaced, "index", res.Index)
	return res, nil
}
