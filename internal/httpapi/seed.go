package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/verify"
)

// SeedConfig turns on the tutorial's wire protocol (`muster server
// --seed-compat`): form-encoded register, verify, ping and lookup under
// /api/v1/, as the Tornado registry of "Creating a Microservices Registry"
// spoke it. Instances registered this way are ordinary catalog instances.
type SeedConfig struct {
	// Challenge is the phrase the registry sends; Response is the phrase
	// the service must answer with.
	Challenge, Response string
	// HeartbeatInterval is how often seed services ping; their TTL is three
	// intervals.
	HeartbeatInterval time.Duration
	// Services are the name patterns ('*' wildcard) the tutorial protocol
	// may register. It has no enrolment key, so this is its only scope.
	Services []string
}

// DefaultSeedConfig returns the tutorial's phrases and its 10 s interval.
func DefaultSeedConfig() SeedConfig {
	return SeedConfig{
		Challenge:         "It jolly well looks like it might rain",
		Response:          "That is why I carry an umbrella",
		HeartbeatInterval: 10 * time.Second,
		Services:          []string{"*"},
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
	if len(c.Services) == 0 {
		return errors.New("seed: at least one service name pattern is required")
	}
	for _, p := range c.Services {
		if !catalog.ValidPattern(p) {
			return fmt.Errorf("seed: service pattern %q: 1 to 63 of a-z 0-9 - _ and *", p)
		}
	}
	return nil
}

// seedKeyID is the key tutorial-protocol registrations are committed
// under; see catalog.SeedKeyID.
const seedKeyID = catalog.SeedKeyID

const seedVerifyPath = "/api/v1/verify/"

// seedState is what the seed handlers keep between requests.
type seedState struct {
	cfg     SeedConfig
	rotate  sync.Map // service → *atomic.Uint64, for rotating lookups
	keyOnce sync.Mutex
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

// seedAddr is a parsed (url, port) pair of the tutorial protocol.
type seedAddr struct {
	scheme, host string
	port         int
}

// parseSeedAddr checks the url and port form fields: url is scheme and
// host only, as the tutorial sends it ("http://localhost").
func parseSeedAddr(rawURL, rawPort string) (seedAddr, *Error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || u.Port() != "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return seedAddr{}, badField("url", "url must be a scheme and host such as http://localhost")
	}
	port, err := strconv.Atoi(rawPort)
	if err != nil || port < 1 || port > 65535 {
		return seedAddr{}, badField("port", "port must be a number between 1 and 65535")
	}
	if !validHost(u.Hostname()) {
		return seedAddr{}, badField("url", "url host must be an IP address or a DNS host name")
	}
	return seedAddr{scheme: u.Scheme, host: normalHost(u.Hostname()), port: port}, nil
}

// url returns the tutorial's url form of an instance: scheme://host.
func seedURL(inst *catalog.Instance) string {
	host := inst.Address
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return inst.Scheme + "://" + host
}

// seedForm parses a form body (size-capped) and returns the named fields,
// or a 400 naming the first missing one.
func (a *apiServer) seedForm(w http.ResponseWriter, r *http.Request, names ...string) ([]string, *Error) {
	r.Body = http.MaxBytesReader(w, r.Body, a.MaxBody)
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errorf(http.StatusRequestEntityTooLarge, api.CodeBodyTooLarge, "", "body larger than %d bytes", a.MaxBody)
		}
		return nil, errorf(http.StatusBadRequest, api.CodeInvalidArgument, "", "malformed form body")
	}
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = r.PostForm.Get(n)
		if out[i] == "" {
			return nil, badField(n, "form field %q is required", n)
		}
	}
	return out, nil
}

// seedError answers a tutorial-protocol refusal: always 400, as the
// tutorial's clients expect, with muster's JSON error body.
func (a *apiServer) seedError(w http.ResponseWriter, err error) {
	e := toAPIError(err)
	if e.Status >= 500 {
		writeError(w, a.Logger, err)
		return
	}
	writeJSON(w, http.StatusBadRequest, api.ErrorBody{Error: e.ErrorDetail})
}

// ensureSeedKey creates the seed key through Raft the first time it is
// needed.
func (a *apiServer) ensureSeedKey(r *http.Request) error {
	a.seed.keyOnce.Lock()
	defer a.seed.keyOnce.Unlock()
	if k := a.Catalog.Keys(); containsKey(k, seedKeyID) {
		return nil
	}
	res, err := a.Node.Apply(r.Context(), catalog.Command{Op: catalog.OpCreateKey, Reason: "seed-compat", Key: &catalog.Key{
		ID: seedKeyID, SecretHash: catalog.HashSecret(catalog.RandomSecret()), Services: []string{"*"},
		Description: "registrations through the tutorial protocol (--seed-compat)", CreatedAt: a.Now().UTC().Truncate(time.Second),
	}})
	if err == nil && res.Err != nil && !errors.Is(res.Err, catalog.ErrExists) {
		err = res.Err
	}
	return err
}

func containsKey(keys []*catalog.Key, id string) bool {
	for _, k := range keys {
		if k.ID == id {
			return true
		}
	}
	return false
}

// seedRegister handles POST /api/v1/register/ (name, url, port): the
// registry POSTs the challenge phrase and a fresh secret to
// {url}:{port}/api/v1/verify/ and accepts the service only if it answers
// with the response phrase and the same secret.
func (a *apiServer) seedRegister(w http.ResponseWriter, r *http.Request) {
	if _, ok := a.readyFloor(w); !ok {
		return
	}
	f, ferr := a.seedForm(w, r, "name", "url", "port")
	if ferr != nil {
		a.seedError(w, ferr)
		return
	}
	name := f[0]
	if !catalog.ValidServiceName(name) {
		a.seedError(w, badField("name", "service name must be 1 to 63 of a-z 0-9 - _"))
		return
	}
	if !(&catalog.Key{Services: a.seed.cfg.Services}).Allows(name) {
		a.seedError(w, errorf(http.StatusForbidden, api.CodeForbidden, "name", "the tutorial protocol may not register %q here (see --seed-services)", name))
		return
	}
	if view := a.Catalog.Service(name); view != nil {
		for _, inst := range view.Instances {
			if inst.KeyID != seedKeyID {
				a.seedError(w, errorf(http.StatusForbidden, api.CodeForbidden, "name", "%q is registered through the /v1 API; the tutorial protocol may not join it", name))
				return
			}
		}
	}
	addr, aerr := parseSeedAddr(f[1], f[2])
	if aerr != nil {
		a.seedError(w, aerr)
		return
	}
	// No key here: the caller is its remote address.
	release, ok := a.verifySlot(w)
	if !ok {
		return
	}
	defer release()
	caller := callerNet(r.RemoteAddr)
	ok, wait, failed := a.verificationAllowed("seed|"+caller+"|"+addr.host, "seed|"+caller)
	if !ok {
		a.seedError(w, rateLimited(w, wait, "address"))
		return
	}
	if err := a.Verifier.CheckAddress(r.Context(), addr.host); err != nil {
		failed()
		a.seedError(w, err)
		return
	}
	secret := catalog.RandomSecret()
	form := url.Values{"challenge": {a.seed.cfg.Challenge}, "secret": {secret}}
	target := verify.Target{Scheme: addr.scheme, Address: addr.host, Port: addr.port, Path: seedVerifyPath}
	data, err := a.Verifier.Call(r.Context(), target, "application/x-www-form-urlencoded", []byte(form.Encode()))
	if err == nil {
		err = checkSeedReply(data, a.seed.cfg.Response, secret)
	}
	if err != nil {
		failed()
		var detail string
		if ve := (*verify.Error)(nil); errors.As(err, &ve) {
			detail = ve.Detail
		}
		a.Logger.Info("seed registration refused", "service", name, "address", addr.host, "port", addr.port, "err", err, "detail", detail)
		a.seedError(w, err)
		return
	}
	if err := a.ensureSeedKey(r); err != nil {
		writeError(w, a.Logger, err)
		return
	}
	ttl := 3 * a.seed.cfg.HeartbeatInterval
	now := a.Now()
	inst := &catalog.Instance{
		ID: catalog.RandomID(16), Service: name, Address: addr.host, Port: addr.port, Scheme: addr.scheme,
		Meta: map[string]string{"protocol": "seed"}, TTL: ttl, DeregisterAfter: 10 * ttl,
		TokenHash: catalog.HashSecret(secret), KeyID: seedKeyID, Proof: api.ProofAddressPort,
		Status: catalog.StatusPassing, RegisteredAt: now.UTC(),
	}
	if _, err := a.commitRegistration(r.Context(), inst, "seed", now); err != nil {
		if errors.Is(err, catalog.ErrProtocolMix) {
			a.seedError(w, errorf(http.StatusForbidden, api.CodeForbidden, "name", "%q is registered through the /v1 API; the tutorial protocol may not join it", name))
			return
		}
		writeError(w, a.Logger, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": map[string]any{
		"name": name, "url": seedURL(inst), "port": addr.port, "id": inst.ID}})
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

// seedLookup handles GET /api/v1/register/?service_name=X: one passing
// instance of X as {"data": {"name", "url", "port"}}, rotating among them;
// 400 when there is none.
func (a *apiServer) seedLookup(w http.ResponseWriter, r *http.Request) {
	floor, ok := a.readyFloor(w)
	if !ok {
		return
	}
	name := r.URL.Query().Get("service_name")
	if name == "" {
		a.seedError(w, badField("service_name", "service_name is required"))
		return
	}
	var passing []*catalog.Instance
	if view := a.Catalog.Service(name); view != nil {
		now := a.Now()
		for _, inst := range view.Instances {
			if a.Tracker.Status(inst, floor, now) == catalog.StatusPassing {
				passing = append(passing, inst)
			}
		}
	}
	if len(passing) == 0 {
		a.seedError(w, errorf(http.StatusNotFound, api.CodeNotFound, "service_name", "no fresh instance of %q", name))
		return
	}
	v, _ := a.seed.rotate.LoadOrStore(name, new(atomic.Uint64))
	inst := passing[int((v.(*atomic.Uint64).Add(1)-1)%uint64(len(passing)))]
	writeJSON(w, http.StatusOK, map[string]any{"data": map[string]any{"name": name, "url": seedURL(inst), "port": inst.Port}})
}

// seedPing handles POST /api/v1/ping/ (name, url, port, secret): a
// heartbeat of the instance registered at that url and port, authenticated
// by the session secret from its verification.
func (a *apiServer) seedPing(w http.ResponseWriter, r *http.Request) {
	if _, ok := a.readyFloor(w); !ok {
		return
	}
	f, ferr := a.seedForm(w, r, "name", "url", "port", "secret")
	if ferr != nil {
		a.seedError(w, ferr)
		return
	}
	addr, aerr := parseSeedAddr(f[1], f[2])
	if aerr != nil {
		a.seedError(w, aerr)
		return
	}
	inst, ok := a.Catalog.InstanceByAddr(f[0], addr.host, addr.port)
	if !ok || inst.Scheme != addr.scheme || !inst.TokenMatches(f[3]) {
		a.seedError(w, errorf(http.StatusBadRequest, api.CodeNotFound, "", "no registered instance matches this name, url, port and secret"))
		return
	}
	status, err := a.beat(r.Context(), inst)
	if err != nil {
		writeError(w, a.Logger, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": map[string]any{"status": status}})
}
