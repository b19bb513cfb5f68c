package consulapi

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

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/httpapi"
	"github.com/musterhq/muster/internal/registry"
)

// Consul's writes, served with an enrolment key for the credential: a
// registration (the key's name patterns apply; the key's consul_verify
// says whether the address is called back), and, naming the instance by
// the service ID the registrant chose, its heartbeats (check pass, warn,
// fail, update) and its deregistration. Another key's call finds no
// such ID. docs/consul-compat.md lists what is taken and what refused.

// maxWriteBody bounds a write's body: a registration is a few hundred
// bytes; muster's own bounds on tags and meta hold it far below this.
const maxWriteBody = 64 << 10

// maxNoteLen bounds a check's note or output kept as the reason of a
// status change.
const maxNoteLen = 256

// Meta keys a Consul registration may carry to steer muster's callback.
const (
	metaVerifyPort   = "muster_verify_port"
	metaVerifyScheme = "muster_verify_scheme"
)

// serviceRegistration is the body of PUT /v1/agent/service/register as
// Consul's clients send it (api.AgentServiceRegistration): the fields
// muster reads, and those it refuses when set. Go's decoder matches
// field names without regard to case, as Consul's does.
type serviceRegistration struct {
	Kind    string
	ID      string
	Name    string
	Tags    []string
	Port    int
	Address string
	Meta    map[string]string
	Check   *checkRegistration
	Checks  []*checkRegistration
	// Refused when set: muster has no service mesh, namespaces or
	// partitions, and no unix sockets.
	Proxy      json.RawMessage
	Connect    json.RawMessage
	Namespace  string
	Partition  string
	SocketPath string
}

// checkRegistration is one of a registration's checks
// (api.AgentServiceCheck).
type checkRegistration struct {
	CheckID                        string
	Name                           string
	TTL                            string
	HTTP                           string
	Method                         string
	Header                         map[string][]string
	Body                           string
	TCP                            string
	GRPC                           string
	Interval                       string
	Timeout                        string
	Status                         string
	DeregisterCriticalServiceAfter string
	SuccessBeforePassing           int
	FailuresBeforeCritical         int
	// Check types muster does not run: refused when set.
	Args              []string
	ScriptArgs        []string
	DockerContainerID string
	Shell             string
	H2PING            string
	UDP               string
	OSService         string
	AliasService      string
	AliasNode         string
	TLSSkipVerify     bool
}

// writeToken is a write's enrolment key: X-Consul-Token or a bearer
// token. A key in the URL (?token=, which Consul also takes) is refused:
// URLs end up in logs.
func writeToken(r *http.Request) (string, error) {
	if _, ok := r.URL.Query()["token"]; ok {
		return "", httpapi.BadField("token", "send the enrolment key in the X-Consul-Token header (or Authorization: Bearer), never in the URL, where logs keep it")
	}
	if t := r.Header.Get("X-Consul-Token"); t != "" {
		return t, nil
	}
	return httpapi.Bearer(r), nil
}

// registerService answers PUT /v1/agent/service/register.
func (a *API) registerService(w http.ResponseWriter, r *http.Request) error {
	secret, err := writeToken(r)
	if err != nil {
		return err
	}
	// The key first: a stranger's body is never read.
	adm, err := a.reg.CheckKey(r.Context(), secret)
	if err != nil {
		return admitErr(err, "", a.reg.CheckAdmin(secret) == nil)
	}
	var body serviceRegistration
	if err := httpapi.DecodeLenient(w, r, maxWriteBody, &body); err != nil {
		return err
	}
	adm, err = a.reg.AdmitFor(r.Context(), adm, body.Name)
	if err != nil {
		return admitErr(err, body.Name, false) // the key passed: no admin token
	}
	req, id, passing, err := translate(body, httpapi.ClientOf(r))
	if err != nil {
		a.reg.RefuseRegistration(r.Context(), adm, err)
		return err
	}
	if _, err := a.reg.RegisterExternal(r.Context(), adm, req, id, passing); err != nil {
		var ve *registry.VerifyError
		if errors.As(err, &ve) {
			// A Consul client answers no callback: say what does.
			port := req.VerifyPort
			if port == 0 {
				port = req.Port
			}
			scheme := req.VerifyScheme
			if scheme == "" {
				scheme = "http"
			}
			return &registry.VerifyError{Reason: ve.Reason, Message: fmt.Sprintf("%s. This key's registrations through the Consul API "+
				"are called back (its consul_verify is callback), at %s://%s/.well-known/muster/verify, which a Consul client does not answer: "+
				"run `muster answer` with the key on that host and name its port in the registration's Meta, %s, "+
				"or register with a key created with --consul-verify none", strings.TrimSuffix(ve.Message, "."), scheme,
				net.JoinHostPort(req.Address, strconv.Itoa(port)), metaVerifyPort)}
		}
		return writeErr(err)
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// translate reads a Consul registration as muster's: the request, the
// external ID (Consul's ID, or the name when it has none) and whether it
// starts passing (Consul's checks start critical unless told). caller is
// the address the request came from, the instance's address when the
// registration names none (Consul's would be its agent's). Every refusal
// is a 400 naming the field.
func translate(b serviceRegistration, caller string) (api.RegisterRequest, string, bool, error) {
	var req api.RegisterRequest
	switch {
	case b.Kind != "":
		return req, "", false, httpapi.BadField("Kind", "service kind %.32q is not served: muster registers plain services only", b.Kind)
	case isSet(b.Proxy) || isSet(b.Connect):
		return req, "", false, httpapi.BadField("Connect", "Connect and Proxy are not served: muster has no service mesh")
	case b.Namespace != "" && b.Namespace != "default", b.Partition != "" && b.Partition != "default":
		return req, "", false, httpapi.BadField("Namespace", "namespaces and partitions are not served: muster has one of each")
	case b.SocketPath != "":
		return req, "", false, httpapi.BadField("SocketPath", "unix sockets are not served: an instance has an address and a port")
	}
	id := b.ID
	if id == "" {
		id = b.Name
	}
	req.Address, req.Port, req.Tags = b.Address, b.Port, b.Tags
	if req.Address == "" {
		req.Address = caller
	}
	if b.Port == 0 {
		return req, "", false, httpapi.BadField("Port", "a port is required: muster hands out an address and a port")
	}
	for k, v := range b.Meta {
		switch {
		case k == metaVerifyPort:
			p, err := strconv.Atoi(v)
			if err != nil || p < 1 || p > 65535 {
				return req, "", false, httpapi.BadField("Meta", "%s must be a port, 1 to 65535", metaVerifyPort)
			}
			req.VerifyPort = p
		case k == metaVerifyScheme:
			if v != "http" && v != "https" {
				return req, "", false, httpapi.BadField("Meta", "%s must be http or https", metaVerifyScheme)
			}
			req.VerifyScheme = v
		case strings.HasPrefix(k, "muster_"):
			return req, "", false, httpapi.BadField("Meta", "meta key %.64q: keys beginning muster_ are muster's (%s and %s steer its callback)", k, metaVerifyPort, metaVerifyScheme)
		default:
			if req.Meta == nil {
				req.Meta = map[string]string{}
			}
			req.Meta[k] = v
		}
	}
	checks := b.Checks
	if b.Check != nil {
		checks = append([]*checkRegistration{b.Check}, checks...)
	}
	passing := true
	ttls, scheme := 0, ""
	for i, c := range checks {
		if c == nil {
			continue
		}
		if err := checkName(c, id, i, len(checks)); err != nil {
			return req, "", false, err
		}
		switch c.Status {
		case "passing":
		case "", "critical", "warning":
			// Consul's checks start critical; a warning is no pass.
			passing = false
		default:
			return req, "", false, httpapi.BadField("Check.Status", "status %.32q is not passing, warning or critical", c.Status)
		}
		if c.DeregisterCriticalServiceAfter != "" {
			req.DeregisterAfter = c.DeregisterCriticalServiceAfter
		}
		if t, ok := unsupportedType(c); ok {
			return req, "", false, httpapi.BadField("Check", "%s checks are not served: muster runs TTL, HTTP, TCP and gRPC checks", t)
		}
		switch {
		case c.TTL != "":
			if c.HTTP != "" || c.TCP != "" || c.GRPC != "" {
				return req, "", false, httpapi.BadField("Check.TTL", "a check is a TTL check or a probe, not both")
			}
			if ttls++; ttls > 1 {
				return req, "", false, httpapi.BadField("Check.TTL", "at most one TTL check: an instance has one heartbeat")
			}
			req.TTL = c.TTL
		case c.HTTP != "" || c.TCP != "" || c.GRPC != "":
			d, s, err := probe(c, req.Address)
			if err != nil {
				return req, "", false, err
			}
			if s != "" {
				if scheme != "" && scheme != s {
					return req, "", false, httpapi.BadField("Check.HTTP", "HTTP checks of one instance are all http or all https")
				}
				scheme = s
			}
			req.Checks = append(req.Checks, d)
		default:
			return req, "", false, httpapi.BadField("Check", "a check needs TTL, HTTP, TCP or GRPC")
		}
	}
	switch {
	case ttls == 0 && len(req.Checks) == 0:
		return req, "", false, httpapi.BadField("Check", "a registration needs a TTL check or an HTTP, TCP or gRPC check: without one muster would never know the instance dead")
	case ttls == 0:
		req.TTL = "0s" // its checks alone decide its status
	}
	req.Scheme = scheme
	return req, id, passing, nil
}

// checkName refuses a CheckID other than the one Consul gives the
// check: service:<id> for a registration's only check, service:<id>:<n>
// (n from 1) for the n-th of several. Calls name the check so.
func checkName(c *checkRegistration, id string, i, n int) error {
	if c.CheckID == "" || n == 1 && c.CheckID == "service:"+id || n > 1 && c.CheckID == "service:"+id+":"+strconv.Itoa(i+1) {
		return nil
	}
	if n == 1 {
		return httpapi.BadField("Check.CheckID", "check ID %.64q: muster names a service's check service:%s", c.CheckID, id)
	}
	return httpapi.BadField("Check.CheckID", "check ID %.64q: muster names a service's checks service:%s:1, :2 and so on", c.CheckID, id)
}

// unsupportedType names a check's type when muster does not run it.
func unsupportedType(c *checkRegistration) (string, bool) {
	for _, t := range []struct {
		name string
		set  bool
	}{
		{"script", len(c.Args) > 0 || len(c.ScriptArgs) > 0}, {"Docker", c.DockerContainerID != ""}, {"H2PING", c.H2PING != ""},
		{"UDP", c.UDP != ""}, {"OS service", c.OSService != ""}, {"alias", c.AliasService != "" || c.AliasNode != ""},
	} {
		if t.set {
			return t.name, true
		}
	}
	return "", false
}

// probe reads an HTTP, TCP or gRPC check as muster's: it must probe the
// instance's own host (its address, or the loopback names, which on
// Consul's agent mean the instance's host), since muster probes only the
// instance it registered. scheme is the HTTP check's.
func probe(c *checkRegistration, address string) (api.CheckDecl, string, error) {
	d := api.CheckDecl{Interval: c.Interval, Timeout: c.Timeout, FailuresBeforeCritical: c.FailuresBeforeCritical,
		SuccessesBeforePassing: c.SuccessBeforePassing}
	if c.TLSSkipVerify {
		return d, "", httpapi.BadField("Check.TLSSkipVerify", "TLSSkipVerify is the enrolment key's to allow (callback_tls any), not a check's")
	}
	var hostport, scheme string
	switch {
	case c.HTTP != "":
		if c.Method != "" && c.Method != http.MethodGet {
			return d, "", httpapi.BadField("Check.Method", "HTTP checks use GET, not %.16q", c.Method)
		}
		if len(c.Header) > 0 || c.Body != "" {
			return d, "", httpapi.BadField("Check.Header", "HTTP checks send no headers or body of their own")
		}
		u, err := url.Parse(c.HTTP)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.Fragment != "" {
			return d, "", httpapi.BadField("Check.HTTP", "HTTP check %.100q is not an http or https URL", c.HTTP)
		}
		d.Type, d.Path, scheme, hostport = api.CheckHTTP, u.RequestURI(), u.Scheme, u.Host
		if u.Port() == "" {
			hostport = net.JoinHostPort(u.Hostname(), map[string]string{"http": "80", "https": "443"}[u.Scheme])
		}
	case c.TCP != "":
		d.Type, hostport = api.CheckTCP, c.TCP
	default:
		d.Type = api.CheckGRPC
		hostport, d.GRPCService, _ = strings.Cut(c.GRPC, "/")
	}
	host, port, err := net.SplitHostPort(hostport)
	n, perr := strconv.Atoi(port)
	if err != nil || perr != nil || n < 1 || n > 65535 {
		return d, "", httpapi.BadField("Check", "check target %.100q is not host:port", hostport)
	}
	if !sameHost(host, address) {
		return d, "", httpapi.BadField("Check", "check target %.100q is not the service's address %s: muster probes only the instance it registers", hostport, address)
	}
	d.Port = n
	return d, scheme, nil
}

// sameHost reports whether a check's host names the instance's: the
// same address, or a loopback name (localhost, 127.0.0.1, ::1), which a
// Consul agent running beside the instance would probe.
func sameHost(host, address string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	if a, err := netip.ParseAddr(host); err == nil && a.IsLoopback() {
		return true
	}
	h, ok := registry.CanonicalHost(host)
	a, ok2 := registry.CanonicalHost(address)
	return ok && ok2 && h == a
}

func isSet(raw json.RawMessage) bool {
	s := strings.TrimSpace(string(raw))
	return s != "" && s != "null" && s != "{}"
}

// deregisterService answers PUT /v1/agent/service/deregister/{id}.
func (a *API) deregisterService(w http.ResponseWriter, r *http.Request) error {
	secret, err := writeToken(r)
	if err != nil {
		return err
	}
	if _, err := a.reg.ExternalDeregister(r.Context(), secret, httpapi.ClientOf(r), r.PathValue("id")); err != nil {
		return a.unknown(err, "service", r.PathValue("id"))
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// checkIDs are the instances a check ID may name, the likelier first:
// service:<id> names the only check of <id>, service:<id>:<n> the n-th
// of its several; an ID that itself ends in :<digits> (redis:6379) reads
// both ways.
func checkIDs(checkID string) ([]registry.ExternalRef, bool) {
	rest, ok := strings.CutPrefix(checkID, "service:")
	if !ok || rest == "" {
		return nil, false
	}
	refs := []registry.ExternalRef{{ID: rest}}
	if i := strings.LastIndexByte(rest, ':'); i > 0 {
		if n, err := strconv.ParseUint(rest[i+1:], 10, 16); err == nil && n > 0 {
			refs = append(refs, registry.ExternalRef{ID: rest[:i], Check: int(n)})
		}
	}
	return refs, true
}

// updateCheck answers PUT /v1/agent/check/{pass,warn,fail,update}/{id}.
// pass and warn are heartbeats (muster has no warning: an instance that
// warns is alive); fail marks the instance critical; update takes its
// status from the body.
func (a *API) updateCheck(op string) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error { return a.checkUpdate(w, r, op) }
}

func (a *API) checkUpdate(w http.ResponseWriter, r *http.Request, op string) error {
	secret, err := writeToken(r)
	if err != nil {
		return err
	}
	checkID := r.PathValue("id")
	refs, ok := checkIDs(checkID)
	if !ok {
		return httpapi.Errorf(http.StatusNotFound, api.CodeNotFound, "",
			"check %.64q is not one muster serves: a service's checks are named service:<service id>", checkID)
	}
	status, note := op, r.URL.Query().Get("note")
	switch status {
	case "pass":
		status = api.StatusPassing
	case "warn":
		status = "warning"
	case "fail":
		status = api.StatusCritical
	case "update":
		if err := a.reg.CheckBeatKey(r.Context(), secret); err != nil {
			return writeErr(err)
		}
		var body struct{ Status, Output string }
		if err := httpapi.DecodeLenient(w, r, maxWriteBody, &body); err != nil {
			return err
		}
		status, note = body.Status, body.Output
		if status != api.StatusPassing && status != "warning" && status != api.StatusCritical {
			return httpapi.BadField("Status", "status %.32q is not passing, warning or critical", status)
		}
	}
	if status == api.StatusCritical {
		err = a.reg.ExternalCritical(r.Context(), secret, httpapi.ClientOf(r), failReason(note), refs...)
	} else {
		_, err = a.reg.ExternalBeat(r.Context(), secret, httpapi.ClientOf(r), refs...)
	}
	if err != nil {
		return a.unknown(err, "check", checkID)
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// failReason is the reason a fail is recorded with: its note, bounded
// and printable, after what it is.
func failReason(note string) string {
	if len(note) > maxNoteLen {
		note = note[:maxNoteLen]
	}
	if note == "" || !catalog.Displayable(note) || !catalog.Printable(note) {
		return "consul check fail"
	}
	return "consul check fail: " + note
}

// unknown words a missing instance as Consul's callers expect: the
// service or check they named is unknown to their key.
func (a *API) unknown(err error, what, id string) error {
	if errors.Is(err, registry.ErrInstanceNotFound) {
		return httpapi.Errorf(http.StatusNotFound, api.CodeNotFound, "",
			"no %s %.64q registered with this enrolment key through the Consul-compatible API", what, id)
	}
	return writeErr(err)
}

// admitErr words a refused admission as a Consul client needs it: the
// field is Consul's (Name), and the admin token, which is no enrolment
// key, is told so.
func admitErr(err error, service string, admin bool) error {
	var fe *registry.FieldError
	switch {
	case admin:
		return httpapi.Errorf(http.StatusForbidden, api.CodeForbidden, "",
			"this is the admin token, which does not register: a registration's token is an enrolment key (muster keys create)")
	case errors.As(err, &fe) && fe.Field == "service":
		return httpapi.BadField("Name", "service name %.64q: %s", service, fe.Message)
	case errors.Is(err, catalog.ErrKeyScope) && !errors.As(err, new(*registry.RoleError)):
		return httpapi.Errorf(http.StatusForbidden, api.CodeForbidden, "Name", "this enrolment key's service patterns do not allow %.64q", service)
	}
	return writeErr(err)
}

// writeErr names the header a Consul client sends its key in when a
// write came without one; other errors are the registry's.
func writeErr(err error) error {
	var elsewhere *registry.ExternalIDElsewhereError
	if errors.As(err, &elsewhere) {
		return httpapi.Errorf(http.StatusConflict, api.CodeConflict, "ID",
			"the service ID %q is registered with this key at this address as service %q: deregister it first "+
				"(PUT /v1/agent/service/deregister/%s), then register it under the new name", elsewhere.ID, elsewhere.Service, elsewhere.ID)
	}
	if errors.Is(err, registry.ErrAmbiguousID) {
		return httpapi.Errorf(http.StatusConflict, api.CodeConflict, "",
			"this service ID is registered with this key at several addresses (one per host, as Consul allows), and the call came from none of them: call from the instance's own host")
	}
	if errors.Is(err, registry.ErrNoCredential) {
		return httpapi.Errorf(http.StatusUnauthorized, api.CodeUnauthorized, "",
			"an enrolment key is required: send it in the X-Consul-Token header (or Authorization: Bearer)")
	}
	return err
}
