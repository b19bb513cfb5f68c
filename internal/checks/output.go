package checks

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/musterhq/muster/internal/verify"
)

// MaxOutput bounds a check's output in bytes.
const MaxOutput = 256

// excerpt returns s as one line of printable text of at most max bytes:
// invalid UTF-8, control and format characters (newlines, escapes,
// bidirectional overrides) become spaces, runs of spaces become one, and
// a longer text is cut at a character boundary and ends in "…". The
// instance writes what s holds, and lookups show it to anyone, so nothing
// in it may reach a terminal or a log as anything but plain text.
func excerpt(s string, max int) string {
	var b strings.Builder
	space := false
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
		if b.Len() > max {
			break
		}
	}
	out := b.String()
	if len(out) <= max {
		return out
	}
	const ellipsis = "…"
	cut := max - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(out[cut]) {
		cut--
	}
	return strings.TrimRight(out[:cut], " ") + ellipsis
}

// describe turns a probe's error into a short output with no internal
// detail (no addresses, no resolver names, no Go error chains). timeout is
// the probe's own, which a deadline error names.
func describe(err error, timeout time.Duration) string {
	var dnsErr *net.DNSError
	var netErr net.Error
	var tlsErr *tlsError
	switch {
	case errors.As(err, &tlsErr):
		return describeTLS(tlsErr, timeout)
	case errors.Is(err, errNoH2):
		return "no gRPC answer: the instance did not negotiate HTTP/2 (ALPN h2)"
	case errors.Is(err, verify.ErrNotAllowed):
		return "address not allowed: outside the networks the registry may probe"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return "timed out after " + timeout.String()
	case errors.As(err, &dnsErr):
		return "cannot resolve the host name"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "host unreachable"
	case errors.Is(err, syscall.ENETUNREACH):
		return "network unreachable"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed before a complete answer"
	case errors.Is(err, context.Canceled):
		return "probe canceled"
	}
	return failed
}

// failed is the output of a probe that failed in a way describe does not
// name.
const failed = "connection failed"
