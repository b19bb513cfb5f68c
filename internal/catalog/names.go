package catalog

import "strings"

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
// run of characters (including none) and every other byte matches itself.
func MatchPattern(pattern, name string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == name
	}
	if !strings.HasPrefix(name, parts[0]) {
		return false
	}
	name = name[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, mid := range parts[1 : len(parts)-1] {
		i := strings.Index(name, mid)
		if i < 0 {
			return false
		}
		name = name[i+len(mid):]
	}
	return strings.HasSuffix(name, last)
}
