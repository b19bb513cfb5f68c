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
// at least 32 characters long, or at least 20 with a digit among them.
// A 43-character secret lacks a lowercase or an uppercase letter with a
// chance below 1 in 10⁹. Words, host names, the registry's IDs
// (lowercase hex), UUIDs (their letters are of one case) and the
// registry's own messages do not.
package redact

import "strings"

// Withheld stands in for what was withheld.
const Withheld = "(withheld)"

// Secret-like runs: at least longRun characters with both cases, or at
// least shortRun with both cases and a digit.
const (
	longRun  = 32
	shortRun = 20
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
	return upper && lower && (digit || len(s) >= longRun)
}

// runs calls f with the start and end of each run of s, in order, until
// f returns false.
func runs(s string, f func(i, j int) bool) {
	for i := 0; i < len(s); {
		if !runByte(s[i]) {
			i++
			continue
		}
		j := i + 1
		for j < len(s) && runByte(s[j]) {
			j++
		}
		if !f(i, j) {
			return
		}
		i = j
	}
}

// Secretlike reports whether s holds a run that looks like a secret.
func Secretlike(s string) bool {
	found := false
	runs(s, func(i, j int) bool {
		found = secretRun(s[i:j])
		return !found
	})
	return found
}

// Text returns s with every run that looks like a secret replaced by
// Withheld. It returns s itself, without allocating, when there is none.
func Text(s string) string {
	var b strings.Builder
	last := 0
	runs(s, func(i, j int) bool {
		if secretRun(s[i:j]) {
			if b.Len() == 0 {
				b.Grow(len(s))
			}
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

// Text returns s with every known secret replaced by Withheld.
func (k Known) Text(s string) string {
	for _, sec := range k.secrets {
		if strings.Contains(s, sec) {
			s = strings.ReplaceAll(s, sec, Withheld)
		}
	}
	return s
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
