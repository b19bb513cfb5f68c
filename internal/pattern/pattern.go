// Package pattern matches service names against the patterns that scope
// keys, tokens and DNS answers: '*' matches any run of characters. It is
// a leaf, importing nothing of the module, so that the server's catalog
// and the SDK's callback answerer match alike.
package pattern

import "strings"

// Match reports whether name matches pattern, where '*' matches any run
// of characters (including none) and every other byte matches itself.
func Match(pattern, name string) bool {
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
