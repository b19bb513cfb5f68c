package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
)

// Transport is a service-aware http.RoundTripper: a request whose host is
// a service name (http://fetch_url/api/v1/fetchurl/?url=…) goes to an
// instance picked by the Resolver. On a connection failure the instance is
// ejected and the request is retried on another instance, if it is safe to:
// always when the connection was never made, and otherwise only for
// idempotent requests (GET, HEAD, OPTIONS, TRACE, PUT, DELETE, or any with
// an Idempotency-Key header) whose body can be replayed.
//
// Hosts that are not service names (anything with a dot, an IP, a host
// with a port) pass through to Base unchanged, unless OnlyServices is set.
// A host that would be a service name but for its upper case letters
// (http://Fetch_URL/) is an error that says so, matching
// ErrNotServiceName, rather than a DNS lookup: service names are lower
// case, and DNS ignores case, so the lower-case spelling loses nothing.
type Transport struct {
	Resolver *Resolver
	// Base carries the requests; default http.DefaultTransport.
	Base http.RoundTripper
	// MaxAttempts bounds the instances tried per request; default 3.
	MaxAttempts int
	// IsService reports whether a host names a service; default
	// DefaultIsService. Set, it replaces the upper-case rule above too.
	IsService func(host string) bool
	// OnlyServices, when set, makes every request whose host is not a
	// service name (including one with a port) fail with an error
	// matching ErrNotServiceName, instead of passing through to Base: for
	// clients that must only ever reach services through muster.
	OnlyServices bool
	// mtls is set by Registration.MTLSTransport: requests go to their
	// instance over https, whatever scheme it registered, with the
	// service named in their context for Base (mtlsBase).
	mtls bool
}

// HTTPClient returns an *http.Client whose requests to service names go
// through the resolver.
func (r *Resolver) HTTPClient() *http.Client {
	return &http.Client{Transport: &Transport{Resolver: r}}
}

// DefaultIsService reports whether host looks like a service name.
func DefaultIsService(host string) bool {
	if host == "" || len(host) > 63 {
		return false
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return host != "localhost"
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	isService := t.IsService
	if isService == nil {
		isService = DefaultIsService
	}
	service := req.URL.Hostname()
	if req.URL.Port() != "" || !isService(service) {
		if err := t.notService(req.URL.Host, service); err != nil {
			if req.Body != nil {
				req.Body.Close()
			}
			return nil, err
		}
		return base.RoundTrip(req)
	}
	attempts := t.MaxAttempts
	if attempts <= 0 {
		attempts = 3
	}
	// A RoundTripper must close the request body, even on errors; once
	// Base has been handed a request, Base has closed it.
	sent := false
	closeBody := func() {
		if req.Body != nil && !sent {
			req.Body.Close()
		}
	}
	tried := map[string]bool{}
	var lastErr error
	for i := 0; i < attempts; i++ {
		inst, err := t.Resolver.pick(req.Context(), service, tried, nil)
		if err != nil {
			closeBody()
			if lastErr != nil && errors.Is(err, ErrNoInstances) {
				return nil, lastErr
			}
			return nil, errorf("resolve %s: %w", service, err)
		}
		tried[inst.ID] = true
		out, err := rewrite(req, inst, i > 0)
		if err != nil {
			closeBody()
			return nil, err
		}
		if t.mtls {
			out.URL.Scheme = "https"
			out = out.WithContext(context.WithValue(out.Context(), mtlsService{}, service))
		}
		sent = true
		resp, err := base.RoundTrip(out)
		if err == nil {
			t.Resolver.ReportSuccess(inst.ID)
			return resp, nil
		}
		if req.Context().Err() != nil {
			return nil, err
		}
		t.Resolver.ReportFailure(inst.ID)
		lastErr = errorf("%s instance %s (%s): %w", service, inst.ID, inst.URL, err)
		if !canRetry(req, err) {
			return nil, lastErr
		}
	}
	closeBody()
	return nil, lastErr
}

// notService returns the error for a request whose host is not a service
// name, or nil when such a request may pass through to Base.
func (t *Transport) notService(hostport, host string) error {
	if lower := strings.ToLower(host); t.IsService == nil && hostport == host && host != lower && DefaultIsService(lower) {
		return errorf("%w: host %q: service names are lower case; write %q", ErrNotServiceName, host, lower)
	}
	if t.OnlyServices {
		return errorf("%w: host %q: this transport sends requests only to muster services, named by 1 to 63 of a-z 0-9 - _ with no port",
			ErrNotServiceName, hostport)
	}
	return nil
}

// rewrite points a copy of req at inst. Retries get a fresh body.
func rewrite(req *http.Request, inst Instance, retry bool) (*http.Request, error) {
	out := req.Clone(req.Context())
	out.URL.Scheme = inst.Scheme
	out.URL.Host = net.JoinHostPort(inst.Address, fmt.Sprint(inst.Port))
	out.Host = ""
	if retry && req.Body != nil && req.Body != http.NoBody {
		body, err := req.GetBody()
		if err != nil {
			return nil, errorf("replay body: %w", err)
		}
		out.Body = body
	}
	return out, nil
}

// canRetry reports whether a failed request may go to another instance.
func canRetry(req *http.Request, err error) bool {
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return false
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true // nothing was sent
	}
	switch strings.ToUpper(req.Method) {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return req.Header.Get("Idempotency-Key") != ""
}
