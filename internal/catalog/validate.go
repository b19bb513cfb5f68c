package catalog

import (
	"crypto/sha256"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// The rules every command must meet before it is applied. They are the
// union of what every version of muster has proposed, not the registry's
// current, stricter rules for requests: a log entry written by an older
// version must still pass (package registry refuses some forms at the
// front door that its earlier versions stored, such as an upper-case host
// name or a host name whose last label is all digits). So a rule here may
// be loosened only with a new Rules version (replicas that do not know it
// halt instead of refusing what others apply), and never tightened for a
// Rules version that is already in logs.
//
// The registry keeps its own checks, which give each field a user-facing
// message, and its tests check that whatever it accepts passes Validate.
const (
	// MaxIDLen is the longest instance or key ID.
	MaxIDLen = 128
	// MaxExternalIDLen is the longest Instance.ExternalID.
	MaxExternalIDLen = 128

	maxHostLen         = 253
	maxTTL             = time.Hour
	maxDeregisterAfter = 7 * 24 * time.Hour
	maxTags            = 64
	maxTagLen          = 128
	maxMeta            = 64
	maxMetaKeyLen      = 128
	maxMetaValueLen    = 512
	maxDescriptionLen  = 256
	maxProofLen        = 64
	maxChecks          = 16
	maxCheckTextLen    = 1024
	maxCheckThreshold  = 100
)

// Validate reports whether cmd is a command some version of muster could
// have proposed: its IDs, service name, address, port, scheme, TTLs,
// hashes, status, tags and meta are well formed. Its error wraps
// ErrBadCommand and names the field. It is deterministic and reads only
// cmd.
//
// It judges only what this version can apply: a command of an unknown
// operation, or asking for rules newer than RulesMax, is left to
// Apply (ErrUnsupported or ErrSkipped), so that a newer proposer's
// looser rules halt this replica rather than make it refuse what others
// apply. It does not look at the catalog (whether an ID exists, whether a
// key allows a service): that is Apply's.
func (cmd Command) Validate() error {
	switch {
	case cmd.Rules > RulesMax:
		return nil
	case cmd.Rules < 0:
		return badCommand("rules", "rules version %d is negative", cmd.Rules)
	}
	switch cmd.Op {
	case "":
		return badCommand("op", "no operation")
	case OpRegister:
		return validateInstance(cmd.Instance, cmd.Rules)
	case OpDeregister, OpDrain, OpRevokeKey:
		if err := checkID("id", cmd.ID); err != nil {
			return err
		}
		if cmd.IfStatus != "" && !knownStatus(cmd.IfStatus) {
			return badCommand("if_status", "unknown status %q", cmd.IfStatus)
		}
		return nil
	case OpSetStatus:
		if err := checkID("id", cmd.ID); err != nil {
			return err
		}
		if !knownStatus(cmd.Status) {
			return badCommand("status", "unknown status %q", cmd.Status)
		}
		if cmd.IfStatus != "" && !knownStatus(cmd.IfStatus) {
			return badCommand("if_status", "unknown status %q", cmd.IfStatus)
		}
		return nil
	case OpCreateKey:
		if err := validateKey(cmd.Key); err != nil {
			return err
		}
		if cmd.Key.tokenOnly() {
			return badCommand("key", "create_key carries an enrolment key without role, expires_at or callback_tls; propose create_token for a key with them")
		}
		return nil
	case OpCreateToken:
		if err := validateKey(cmd.Key); err != nil {
			return err
		}
		if cmd.Key.ConsulVerify != "" && cmd.Rules < RulesExternal {
			return badCommand("key.consul_verify", "consul_verify needs rules %d, the command asks for %d", RulesExternal, cmd.Rules)
		}
		if cmd.Key.Role == "" {
			return badCommand("key.role", "create_token needs the key's role (register, read, operator or admin)")
		}
		return nil
	case OpAddCA:
		return validateCA(cmd.CA)
	case OpRetireCA:
		return checkID("id", cmd.ID)
	case OpEvict:
		if err := checkID("id", cmd.ID); err != nil {
			return err
		}
		if cmd.Until.IsZero() {
			return badCommand("until", "an eviction needs the time its bar ends")
		}
		return nil
	}
	return nil // an operation this version does not know: Apply's to judge
}

func validateInstance(in *Instance, rules int) error {
	if in == nil {
		return badCommand("instance", "missing")
	}
	if err := checkID("instance.id", in.ID); err != nil {
		return err
	}
	if !ValidServiceName(in.Service) {
		return badCommand("instance.service", "service name %q is not 1 to %d of a-z 0-9 - _", in.Service, MaxNameLen)
	}
	if !ValidHost(in.Address) {
		return badCommand("instance.address", "address %.64q is neither an IP address nor a DNS host name", in.Address)
	}
	if in.Port < 1 || in.Port > 65535 {
		return badCommand("instance.port", "port %d is not between 1 and 65535", in.Port)
	}
	if in.Scheme != "http" && in.Scheme != "https" {
		return badCommand("instance.scheme", "scheme %.16q is neither http nor https", in.Scheme)
	}
	if len(in.Checks) > 0 && rules < 4 {
		return badCommand("instance.checks", "checks need rules 4, the command asks for %d", rules)
	}
	switch {
	case in.TTL == 0 && len(in.Checks) > 0:
		// Rules 4: the checks alone decide its status.
	case in.TTL <= 0 || in.TTL > maxTTL:
		return badCommand("instance.ttl", "ttl %s is not above 0 and at most %s", in.TTL, maxTTL)
	}
	if err := validateChecks(in.Checks); err != nil {
		return err
	}
	if in.DeregisterAfter < in.TTL || in.DeregisterAfter > maxDeregisterAfter {
		return badCommand("instance.deregister_after", "deregister_after %s is not between the ttl and %s", in.DeregisterAfter, maxDeregisterAfter)
	}
	if len(in.TokenHash) != sha256.Size {
		return badCommand("instance.token_hash", "token hash of %d bytes, want %d", len(in.TokenHash), sha256.Size)
	}
	if err := checkID("instance.key_id", in.KeyID); err != nil {
		return err
	}
	if len(in.Proof) > maxProofLen || !Printable(in.Proof) {
		return badCommand("instance.proof", "proof must be at most %d printable characters", maxProofLen)
	}
	if in.Proof == ProofNone && rules < RulesExternal {
		return badCommand("instance.proof", "proof none needs rules %d, the command asks for %d", RulesExternal, rules)
	}
	if in.ExternalID != "" {
		if rules < RulesExternal {
			return badCommand("instance.external_id", "an external ID needs rules %d, the command asks for %d", RulesExternal, rules)
		}
		if !ValidExternalID(in.ExternalID) {
			return badCommand("instance.external_id", "external ID %.64q is not 1 to %d of A-Z a-z 0-9 - _ . : @", in.ExternalID, MaxExternalIDLen)
		}
	}
	if in.HostIP != "" {
		if a, err := netip.ParseAddr(in.HostIP); err != nil || a.String() != in.HostIP {
			return badCommand("instance.host_ip", "host_ip %.64q is not an IP address in its canonical form", in.HostIP)
		}
	}
	if !validStatus(in.Status) {
		return badCommand("instance.status", "status %q is neither passing nor critical", in.Status)
	}
	if len(in.Tags) > maxTags {
		return badCommand("instance.tags", "%d tags, at most %d", len(in.Tags), maxTags)
	}
	for _, t := range in.Tags {
		if t == "" || len(t) > maxTagLen || !Printable(t) || strings.ContainsAny(t, " ,") {
			return badCommand("instance.tags", "tag %q is not 1 to %d printable characters without spaces or commas", t, maxTagLen)
		}
	}
	if len(in.Meta) > maxMeta {
		return badCommand("instance.meta", "%d meta entries, at most %d", len(in.Meta), maxMeta)
	}
	for k, v := range in.Meta {
		if k == "" || len(k) > maxMetaKeyLen || !ValidMetaKey(k) {
			return badCommand("instance.meta", "meta key %q is not 1 to %d of A-Z a-z 0-9 . _ -", k, maxMetaKeyLen)
		}
		if len(v) > maxMetaValueLen || !Printable(v) {
			return badCommand("instance.meta", "meta value of %q is not at most %d printable characters", k, maxMetaValueLen)
		}
	}
	return nil
}

// validateChecks holds checks to the widest bounds any version allowed;
// package checks holds registrations to its own, narrower ones.
func validateChecks(cs []Check) error {
	if len(cs) > maxChecks {
		return badCommand("instance.checks", "%d checks, at most %d", len(cs), maxChecks)
	}
	for i, c := range cs {
		field := fmt.Sprintf("instance.checks[%d]", i)
		switch {
		case c.Type != "http" && c.Type != "tcp" && c.Type != "grpc":
			return badCommand(field+".type", "type %.16q is not http, tcp or grpc", c.Type)
		case len(c.Path) > maxCheckTextLen || !Printable(c.Path) || len(c.GRPCService) > maxCheckTextLen || !Printable(c.GRPCService):
			return badCommand(field, "path or grpc_service is not at most %d printable characters", maxCheckTextLen)
		case c.Port < 0 || c.Port > 65535:
			return badCommand(field+".port", "port %d is not between 0 and 65535", c.Port)
		case c.Interval <= 0 || c.Interval > maxTTL || c.Timeout <= 0 || c.Timeout > c.Interval:
			return badCommand(field+".interval", "interval %s and timeout %s are not 0 < timeout <= interval <= %s", c.Interval, c.Timeout, maxTTL)
		case c.FailuresBeforeCritical < 1 || c.FailuresBeforeCritical > maxCheckThreshold ||
			c.SuccessesBeforePassing < 1 || c.SuccessesBeforePassing > maxCheckThreshold:
			return badCommand(field, "thresholds must be between 1 and %d", maxCheckThreshold)
		}
	}
	return nil
}

func validateKey(k *Key) error {
	if k == nil {
		return badCommand("key", "missing")
	}
	if err := checkID("key.id", k.ID); err != nil {
		return err
	}
	if len(k.SecretHash) != sha256.Size {
		return badCommand("key.secret_hash", "secret hash of %d bytes, want %d", len(k.SecretHash), sha256.Size)
	}
	if len(k.Services) == 0 {
		return badCommand("key.services", "no service name pattern")
	}
	for _, p := range k.Services {
		if !ValidPattern(p) {
			return badCommand("key.services", "pattern %q is not 1 to %d of a-z 0-9 - _ and *", p, MaxNameLen)
		}
	}
	if len(k.Description) > maxDescriptionLen {
		return badCommand("key.description", "description of %d bytes, at most %d", len(k.Description), maxDescriptionLen)
	}
	if k.MaxInstances < 0 {
		return badCommand("key.max_instances", "max_instances %d is negative", k.MaxInstances)
	}
	if field, problem := tokenProblem(k); problem != "" {
		return badCommand(field, "%s", problem)
	}
	return nil
}

// tokenProblem says what is wrong with k's role, expiry and callback TLS
// mode, and in which field, or returns an empty problem. Every stored
// key meets these rules, whichever command created it, so they are
// checked alike by Validate, by Apply (create_token) and on every
// snapshot's keys: what Apply stores always restores. A key of
// create_key has none of the fields and meets them, so the rules tighten
// nothing a log written before them holds.
func tokenProblem(k *Key) (field, problem string) {
	switch {
	case k.Role != "" && !k.Role.Valid():
		return "key.role", fmt.Sprintf("role %.32q is not register, read, operator or admin", k.Role)
	case k.Role == RoleAdmin && !(len(k.Services) == 1 && k.Services[0] == "*"):
		return "key.services", fmt.Sprintf("an admin key may do everything, so its services must be exactly [\"*\"], not %.64q", k.Services)
	case !k.CallbackTLS.Valid():
		return "key.callback_tls", fmt.Sprintf("callback_tls %.32q is not verify or any (or empty, for verify)", k.CallbackTLS)
	case k.CallbackTLS == CallbackTLSAny && k.RoleOrDefault() != RoleRegister:
		return "key.callback_tls", fmt.Sprintf("callback_tls any is for keys of role register, which register instances; this key's role is %s", k.Role)
	case !k.ConsulVerify.Valid():
		return "key.consul_verify", fmt.Sprintf("consul_verify %.32q is not callback or none (or empty, for callback)", k.ConsulVerify)
	case k.ConsulVerify != "" && k.RoleOrDefault() != RoleRegister:
		return "key.consul_verify", fmt.Sprintf("consul_verify is for keys of role register, which register instances; this key's role is %s", k.Role)
	case !k.ExpiresAt.IsZero() && !k.ExpiresAt.After(k.CreatedAt):
		return "key.expires_at", fmt.Sprintf("expires_at %s is not after created_at %s", k.ExpiresAt.Format(time.RFC3339Nano), k.CreatedAt.Format(time.RFC3339Nano))
	}
	return "", ""
}

func badCommand(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrBadCommand, field, fmt.Sprintf(format, args...))
}

// ValidExternalID reports whether s may be an Instance.ExternalID: 1 to
// MaxExternalIDLen of A-Z a-z 0-9 - _ . : and @, the service IDs Consul's
// clients choose (web-1, redis:6379, api@host), and nothing that a URL
// path or a log line would read differently (so not . or .., which a
// path does).
func ValidExternalID(s string) bool {
	if len(s) == 0 || len(s) > MaxExternalIDLen || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_.:@", c) >= 0) {
			return false
		}
	}
	return true
}

// ValidID reports whether s is an instance or key ID: 1 to MaxIDLen of
// A-Z a-z 0-9 - _ and '.'. Proposers use lowercase hex with a prefix
// ("key_…"); the rule is wider so that it holds for every ID ever
// written.
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > MaxIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func checkID(field, id string) error {
	if !ValidID(id) {
		return badCommand(field, "ID %.64q is not 1 to %d of A-Z a-z 0-9 - _ .", id, MaxIDLen)
	}
	return nil
}

// ValidHost reports whether h may be an instance's address in the
// catalog: an IP address as net.ParseIP reads it, or a DNS host name of
// dot-separated labels of 1 to 63 letters, digits and '-' (not at either
// end of a label), at most 253 bytes in all, with no trailing dot. It is
// the rule every version of the registry has kept to; the registry
// refuses more at the front door (see registry.CanonicalHost) and stores
// hosts in canonical form.
func ValidHost(h string) bool {
	if net.ParseIP(h) != nil {
		return true
	}
	if h == "" || len(h) > maxHostLen {
		return false
	}
	for _, label := range strings.Split(h, ".") {
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

// knownStatus reports whether s is a status a command may name: the two
// the catalog stores, or draining, which entries written before draining
// became a flag use.
func knownStatus(s Status) bool {
	return s == StatusPassing || s == StatusCritical || s == StatusDraining
}

// Printable reports whether s is valid UTF-8 without control characters:
// the rule for tags, meta values, nonces and notes.
func Printable(s string) bool {
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

// Displayable reports whether s is printable text a terminal shows as it
// is: valid UTF-8 without control characters (C0, DEL and C1: U+0085 is a
// line break and U+009B starts an escape sequence on terminals that
// honour C1), format characters (the bidirectional overrides and
// isolates, zero-width characters) or line and paragraph separators. It
// is the rule of text the registry accepts from a request (tags, meta
// values, nonces, descriptions, reasons), stricter than Printable, which
// commands already in logs were applied under and which stays as it is.
func Displayable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		switch {
		case r < 0x20 || r == 0x7f:
			return false
		case r < 0x80:
		case unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp):
			return false
		}
	}
	return true
}

// ValidMetaKey reports whether k is made of A-Z a-z 0-9 . _ - only (its
// length is the caller's to check).
func ValidMetaKey(k string) bool {
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
