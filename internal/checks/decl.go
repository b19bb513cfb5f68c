package checks

import (
	"fmt"
	"time"

	"github.com/musterhq/muster/api"
)

// Declaration limits. They bound what one registration can make the
// registry do: at most MaxChecks probes per instance, none more often than
// MinInterval, none holding a probe slot longer than MaxTimeout.
const (
	// MaxChecks is the most checks one instance may declare.
	MaxChecks = 8
	// MinInterval and MaxInterval bound a check's interval.
	MinInterval = time.Second
	MaxInterval = time.Hour
	// DefaultInterval is the interval of a check that declares none.
	DefaultInterval = 10 * time.Second
	// MinTimeout and MaxTimeout bound a check's timeout, which is also at
	// most its interval.
	MinTimeout = 100 * time.Millisecond
	MaxTimeout = 10 * time.Second
	// DefaultTimeout is the timeout of a check that declares none, or its
	// interval if that is shorter.
	DefaultTimeout = 5 * time.Second
	// DefaultFailuresBeforeCritical and DefaultSuccessesBeforePassing are
	// the thresholds of a check that declares none: one slow answer does
	// not take a busy instance out, and one good answer does not bring a
	// flapping one back.
	DefaultFailuresBeforeCritical = 3
	DefaultSuccessesBeforePassing = 2
	// MaxThreshold bounds both thresholds.
	MaxThreshold = 10
	// MaxPathLen bounds an HTTP check's path and query.
	MaxPathLen = 256
	// MaxGRPCServiceLen bounds a gRPC check's service name.
	MaxGRPCServiceLen = 200
	// DefaultPath is the path of an HTTP check that declares none.
	DefaultPath = "/"
)

// Check is one validated check declaration, with every default filled
// in. It is comparable: two equal Checks probe the same thing the same
// way.
type Check struct {
	// Type is api.CheckHTTP, api.CheckTCP or api.CheckGRPC.
	Type string
	// Path is the HTTP check's path and query, starting with "/"; empty
	// for other types.
	Path string
	// Port is where the check connects; 0 means the instance's port.
	Port int
	// Interval is the time from the start of one probe to the next.
	Interval time.Duration
	// Timeout bounds one probe: connect, request and answer.
	Timeout time.Duration
	// GRPCService is the service name a gRPC check asks about ("" is the
	// server as a whole); empty for other types.
	GRPCService string
	// FailuresBeforeCritical consecutive failed probes turn a passing
	// check critical; SuccessesBeforePassing consecutive successful ones
	// turn a critical check passing.
	FailuresBeforeCritical int
	SuccessesBeforePassing int
}

// FieldError is a check declaration's field that breaks a rule. Field is
// the wire name; Parse qualifies it with the check's position
// ("checks[1].interval"), so a registry can hand it on as its own field
// error.
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

func badField(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// Parse validates the check declarations of an instance whose scheme is
// scheme ("" is api.DefaultScheme) and returns them with their defaults
// filled in, in the order declared. No declarations is no checks (nil,
// nil). Every error is a *FieldError whose Field is "checks" or
// "checks[i].<field>".
func Parse(decls []api.CheckDecl, scheme string) ([]Check, error) {
	if len(decls) == 0 {
		return nil, nil
	}
	if len(decls) > MaxChecks {
		return nil, badField("checks", "at most %d checks per instance", MaxChecks)
	}
	out := make([]Check, len(decls))
	for i, d := range decls {
		c, err := FromDecl(d)
		if err == nil {
			err = c.supports(scheme)
		}
		if err != nil {
			fe := err.(*FieldError)
			return nil, badField(fmt.Sprintf("checks[%d].%s", i, fe.Field), "%s", fe.Message)
		}
		out[i] = c
	}
	return out, nil
}

// FromDecl validates one declaration and fills in its defaults. An error
// is a *FieldError naming the wire field ("interval").
func FromDecl(d api.CheckDecl) (Check, error) {
	c := Check{
		Type:                   d.Type,
		Path:                   d.Path,
		Port:                   d.Port,
		GRPCService:            d.GRPCService,
		FailuresBeforeCritical: d.FailuresBeforeCritical,
		SuccessesBeforePassing: d.SuccessesBeforePassing,
	}
	switch d.Type {
	case api.CheckHTTP, api.CheckTCP, api.CheckGRPC:
	case "":
		return Check{}, badField("type", "type is required: http, tcp or grpc")
	default:
		return Check{}, badField("type", "type %.32q is not http, tcp or grpc", d.Type)
	}
	if d.Type == api.CheckHTTP && c.Path == "" {
		c.Path = DefaultPath
	}
	c.Interval = DefaultInterval
	if d.Interval != "" {
		iv, err := time.ParseDuration(d.Interval)
		if err != nil {
			return Check{}, badField("interval", "interval %.32q is not a duration such as 10s", d.Interval)
		}
		c.Interval = iv
	}
	c.Timeout = min(c.Interval, DefaultTimeout)
	if d.Timeout != "" {
		to, err := time.ParseDuration(d.Timeout)
		if err != nil {
			return Check{}, badField("timeout", "timeout %.32q is not a duration such as 1s", d.Timeout)
		}
		c.Timeout = to
	}
	if c.FailuresBeforeCritical == 0 {
		c.FailuresBeforeCritical = DefaultFailuresBeforeCritical
	}
	if c.SuccessesBeforePassing == 0 {
		c.SuccessesBeforePassing = DefaultSuccessesBeforePassing
	}
	if err := c.validate(MinInterval, MinTimeout); err != nil {
		return Check{}, err
	}
	return c, nil
}

// Decl returns the wire form of c, every field explicit. FromDecl of it
// is c again.
func (c Check) Decl() api.CheckDecl {
	return api.CheckDecl{
		Type:                   c.Type,
		Path:                   c.Path,
		Port:                   c.Port,
		Interval:               c.Interval.String(),
		Timeout:                c.Timeout.String(),
		GRPCService:            c.GRPCService,
		FailuresBeforeCritical: c.FailuresBeforeCritical,
		SuccessesBeforePassing: c.SuccessesBeforePassing,
	}
}

// Decls returns the wire forms of checks (see Check.Decl); nil for none.
func Decls(checks []Check) []api.CheckDecl {
	if len(checks) == 0 {
		return nil
	}
	out := make([]api.CheckDecl, len(checks))
	for i, c := range checks {
		out[i] = c.Decl()
	}
	return out
}

// Validate reports the first rule c breaks, as a *FieldError naming the
// wire field; nil if c is a check a registration may declare.
func (c Check) Validate() error { return c.validate(MinInterval, MinTimeout) }

// validate checks c with the given lower bounds (a Monitor's may be lower,
// for tests). It returns a *FieldError, never a nil *FieldError in an
// error interface.
func (c Check) validate(minInterval, minTimeout time.Duration) error {
	switch c.Type {
	case api.CheckHTTP:
		if !validPath(c.Path) {
			return badField("path", "path must start with / and hold at most %d of A-Z a-z 0-9 - . _ ~ ! $ & ' ( ) * + , ; = : @ / ? and %%XX escapes, not starting with //", MaxPathLen)
		}
	case api.CheckTCP, api.CheckGRPC:
		if c.Path != "" {
			return badField("path", "path is only for http checks")
		}
	default:
		return badField("type", "type %.32q is not http, tcp or grpc", c.Type)
	}
	if c.GRPCService != "" {
		if c.Type != api.CheckGRPC {
			return badField("grpc_service", "grpc_service is only for grpc checks")
		}
		if !validGRPCService(c.GRPCService) {
			return badField("grpc_service", "grpc_service must be at most %d of A-Z a-z 0-9 . _ - /", MaxGRPCServiceLen)
		}
	}
	if c.Port < 0 || c.Port > 65535 {
		return badField("port", "port must be between 1 and 65535 (leave it out for the instance's port)")
	}
	if c.Interval < minInterval || c.Interval > MaxInterval {
		return badField("interval", "interval must be between %s and %s", minInterval, MaxInterval)
	}
	if c.Timeout < minTimeout || c.Timeout > MaxTimeout || c.Timeout > c.Interval {
		return badField("timeout", "timeout must be between %s and %s, and at most the interval", minTimeout, MaxTimeout)
	}
	if c.FailuresBeforeCritical < 1 || c.FailuresBeforeCritical > MaxThreshold {
		return badField("failures_before_critical", "failures_before_critical must be between 1 and %d", MaxThreshold)
	}
	if c.SuccessesBeforePassing < 1 || c.SuccessesBeforePassing > MaxThreshold {
		return badField("successes_before_passing", "successes_before_passing must be between 1 and %d", MaxThreshold)
	}
	return nil
}

// supports reports whether c can probe an instance of scheme: every
// check can probe http and https instances (an https instance's HTTP and
// gRPC checks speak TLS); no other scheme is known.
func (c Check) supports(scheme string) error {
	switch scheme {
	case "", "http", "https":
		return nil
	default:
		return badField("type", "the instance's scheme %.16q is not http or https", scheme)
	}
}

// validPath reports whether p is an absolute path with an optional query
// made of RFC 3986 path and query characters, without a fragment, a
// scheme or a host: it can only name a resource on the instance itself.
func validPath(p string) bool {
	if len(p) == 0 || len(p) > MaxPathLen || p[0] != '/' || (len(p) > 1 && p[1] == '/') {
		return false
	}
	for i := 0; i < len(p); i++ {
		b := p[i]
		switch {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		case b == '%':
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
				return false
			}
			i += 2
		default:
			switch b {
			case '-', '.', '_', '~', '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=', ':', '@', '/', '?':
			default:
				return false
			}
		}
	}
	return true
}

func isHex(b byte) bool {
	return '0' <= b && b <= '9' || 'a' <= b && b <= 'f' || 'A' <= b && b <= 'F'
}

// validGRPCService reports whether s is a plausible fully qualified gRPC
// service name ("grpc.health.v1.Health", "my.pkg.Orders").
func validGRPCService(s string) bool {
	if len(s) > MaxGRPCServiceLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '.' || b == '_' || b == '-' || b == '/') {
			return false
		}
	}
	return true
}
