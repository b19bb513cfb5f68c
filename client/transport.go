package client

import (
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
// Hosts that are not service names (anything with a dot, or an IP) pass
// through to Base unchanged.
type Transport struct {
	Resolver *Resolver
	// Base carries the requests; default http.DefaultTransport.
	Base http.RoundTripper
	// MaxAttempts bounds the instances tried per request; default 3.
	MaxAttempts int
	// IsService reports whether a host names a service; default: a host
	// with no dot and no colon that is a valid service name.
	IsService func(host string) bool
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
			return nil, fmt.Errorf("client: resolve %s: %w", service, err)
		}
		tried[inst.ID] = true
		out, err := rewrite(req, inst, i > 0)
		if err != nil {
			closeBody()
			return nil, err
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
		lastErr = fmt.Errorf("client: %s instance %s (%s): %w", service, inst.ID, inst.URL, err)
		if !canRetry(req, err) {
			return nil, lastErr
		}
	}
	closeBody()
	return nil, lastErr
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
			return nil, fmt.Errorf("client: replay body: %w", err)
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
