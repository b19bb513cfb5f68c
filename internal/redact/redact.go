// Package redact keeps what may be a secret out of what muster writes
// down: audit records, log lines and the error messages built from a
// caller's text.
//
// muster never records a secret it holds (see docs/security.md), but a
// careless caller can put one where the registry writes text back: a
// session token pasted as an instance ID, a key's secret as a service
// name or as a JSON field's name, a capability path as verify_path. The
// registry cannot know every secret a caller holds; it can know what
// one looks like. Every secret muster issues is 32 random bytes as
// unpadded base64url (43 characters of A-Z a-z 0-9 - _, with a short
// prefix for key secrets and the admin token), and most secrets made
// elsewhere (API keys, capability URLs) are long runs of mixed-case
// letters and digits. Text withholds such runs:
//
//	redact.Text(`json: unknown field "mk_Qm9vT2s..."`) // json: unknown field "(withheld)"
//
// A run is a maximal run of base64url characters. It looks like a
// secret when it holds both upper- and lowercase letters and is either
// at least 32 characters long, or at least 20 with a digit among them;
// or when it is at least 40 characters long with letters and digits
// (hex or base32 of 20 bytes or more, as `openssl rand -hex 24` makes).
// A 43-character secret lacks a lowercase or an uppercase letter with a
// chance below 1 in 10⁹. Words, host names, the registry's IDs
// (lowercase hex, 32 characters at most), UUIDs (36, their letters of
// one case) and the registry's own messages do not. A secret of one case
// shorter than 40 (`openssl rand -hex 16`) cannot be told from an ID:
// the secrets a node holds itself are withheld by value (Known).
package redact

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
)

// Withheld stands in for what was withheld.
const Withheld = "(withheld)"

// Secret-like runs: at least longRun characters with both cases, at
// least shortRun with both cases and a digit, or at least oneCaseRun with
// letters and digits.
const (
	longRun    = 32
	shortRun   = 20
	oneCaseRun = 40
)

func runByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// secretRun reports whether s (one run) looks like a secret.
func secretRun(s string) bool {
	if len(s) < shortRun {
		return false
	}
	var upper, lower, digit bool
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'A' && c <= 'Z':
			upper = true
		case c >= 'a' && c <= 'z':
			lower = true
		case c >= '0' && c <= '9':
			digit = true
		}
	}
	return upper && lower && (digit || len(s) >= longRun) || len(s) >= oneCaseRun && digit && (upper || lower)
}

// runs calls f with the start and end of each run of s, maximal runs
// of bytes in reports true for, in order, until f returns false.
func runs(s string, in func(byte) bool, f func(i, j int) bool) {
	for i := 0; i < len(s); {
		if !in(s[i]) {
			i++
			continue
		}
		j := i + 1
		for j < len(s) && in(s[j]) {
			j++
		}
		if !f(i, j) {
			return
		}
		i = j
	}
}

// replaceRuns returns s with each run of in's bytes that withhold
// reports true for replaced by Withheld; s itself, without allocating,
// when there is none.
func replaceRuns(s string, in func(byte) bool, withhold func(string) bool) string {
	var b strings.Builder
	last := 0
	runs(s, in, func(i, j int) bool {
		if withhold(s[i:j]) {
			b.WriteString(s[last:i])
			b.WriteString(Withheld)
			last = j
		}
		return true
	})
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// Secretlike reports whether s holds a run that looks like a secret.
func Secretlike(s string) bool {
	found := false
	runs(s, runByte, func(i, j int) bool {
		found = secretRun(s[i:j])
		return !found
	})
	return found
}

// Text returns s with every run that looks like a secret replaced by
// Withheld. It returns s itself, without allocating, when there is none.
func Text(s string) string { return replaceRuns(s, runByte, secretRun) }

// Known withholds given values wherever they appear in a text: the
// secrets the registry holds in the clear and that a caller may choose
// (a metrics token can be any text, so Text's shape rule may miss it).
// The zero Known withholds nothing. It is safe for concurrent use once
// made.
type Known struct {
	secrets []string
}

// NewKnown returns a Known of secrets; values shorter than 8 bytes are
// ignored (too short to be a secret worth the name, and too likely to
// be a word).
func NewKnown(secrets ...string) Known {
	var k Known
	for _, s := range secrets {
		if len(s) >= 8 {
			k.secrets = append(k.secrets, s)
		}
	}
	return k
}

// Text returns s with every known secret replaced by Withheld, and
// every word of 12 or more characters that is a part of one (a message
// that quoted a secret cut short): a word is a run of anything but
// white space, quotes, brackets and commas.
func (k Known) Text(s string) string {
	if len(k.secrets) == 0 {
		return s
	}
	for _, sec := range k.secrets {
		if strings.Contains(s, sec) {
			s = strings.ReplaceAll(s, sec, Withheld)
		}
	}
	return replaceRuns(s, wordByte, func(w string) bool { return len(w) >= minPart && k.part(w) })
}

// minPart is the shortest part of a known secret Text withholds.
const minPart = 12

func wordByte(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\r', '"', '\'', '`', '(', ')', '[', ']', '{', '}', ',', ';', '<', '>':
		return false
	}
	return true
}

// part reports whether w is a part of a known secret.
func (k Known) part(w string) bool {
	for _, sec := range k.secrets {
		if strings.Contains(sec, w) {
			return true
		}
	}
	return false
}

// Holds reports whether s holds a known secret.
func (k Known) Holds(s string) bool {
	for _, sec := range k.secrets {
		if strings.Contains(s, sec) {
			return true
		}
	}
	return false
}

// Handler is a slog.Handler that withholds, from every record it passes
// on, what Text withholds and the secrets its Known holds: in the
// message and in every string attribute, groups and errors included.
// The secrets can be named after it is made (SetKnown), as a server
// learns its own once it has read them. It is what keeps a caller's
// secret out of the log whatever line a caller's text reaches.
type Handler struct {
	next  slog.Handler
	known *atomic.Pointer[Known]
}

// NewHandler returns a Handler passing records on to next.
func NewHandler(next slog.Handler) *Handler {
	return &Handler{next: next, known: new(atomic.Pointer[Known])}
}

// SetKnown names the secrets to withhold by value, replacing those named
// before, for this handler and every one derived from it (WithAttrs,
// WithGroup).
func (h *Handler) SetKnown(k Known) { h.known.Store(&k) }

func (h *Handler) scrub(s string) string {
	s = Text(s)
	if k := h.known.Load(); k != nil {
		s = k.Text(s)
	}
	return s
}

func (h *Handler) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		if s := v.String(); s != "" {
			if t := h.scrub(s); t != s {
				return slog.String(a.Key, t)
			}
		}
	case slog.KindGroup:
		as := v.Group()
		out := make([]slog.Attr, len(as))
		for i, g := range as {
			out[i] = h.attr(g)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(out...)}
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			return slog.String(a.Key, h.scrub(x.Error()))
		case fmt.Stringer:
			return slog.String(a.Key, h.scrub(x.String()))
		case []string:
			out := make([]string, len(x))
			for i, s := range x {
				out[i] = h.scrub(s)
			}
			return slog.Any(a.Key, out)
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

// Enabled is next's.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

// Handle passes r on with what may be a secret withheld.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, h.scrub(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.attr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

// WithAttrs scrubs as and derives a Handler sharing the secrets.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		out[i] = h.attr(a)
	}
	return &Handler{next: h.next.WithAttrs(out), known: h.known}
}

// WithGroup derives a Handler sharing the secrets.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{next: h.next.WithGroup(name), known: h.known}
}
