package catalog

import "github.com/musterhq/muster/internal/pattern"

// MaxNameLen is the longest service name.
const MaxNameLen = 63

// ValidServiceName reports whether s is a service name: 1 to 63 characters
// of lowercase letters, digits, '-' and '_'.
func ValidServiceName(s string) bool {
	if len(s) == 0 || len(s) > MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !nameByte(s[i]) {
			return false
		}
	}
	return true
}

// ValidPattern reports whether p is a key scope pattern: a service name in
// which '*' may stand for any run of name characters.
func ValidPattern(p string) bool {
	if len(p) == 0 || len(p) > MaxNameLen {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] != '*' && !nameByte(p[i]) {
			return false
		}
	}
	return true
}

func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// MatchPattern reports whether name matches pattern, where '*' matches any
// run of characters (including none) and every other byte matches itself
// (package pattern, which the SDK shares).
func MatchPattern(p, name string) bool { return pattern.Match(p, name) }
