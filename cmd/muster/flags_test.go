package main

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// TestFlags_Placeholders: no flag of any command has a placeholder (the
// word after its name in the help) longer than 20 characters, since pflag
// lines every description up after the longest; an enum flag whose
// values do not fit shows a name (ACTION) and lists every value in its
// description instead, as --outcome does.
func TestFlags_Placeholders(t *testing.T) {
	root := newRootCmd(env{getenv: func(string) string { return "" }})
	var walk func(c *cobra.Command)
	checked := 0
	walk = func(c *cobra.Command) {
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			checked++
			name, usage := pflag.UnquoteUsage(f)
			if len(name) > 20 {
				t.Errorf("%s --%s: placeholder %q is %d characters, more than 20", c.CommandPath(), f.Name, name, len(name))
			}
			ev, ok := f.Value.(*enumValue)
			if !ok || name == strings.Join(ev.named(), "|") {
				return
			}
			if name != strings.ToUpper(name) {
				t.Errorf("%s --%s: placeholder %q is neither the values nor a NAME", c.CommandPath(), f.Name, name)
			}
			for _, v := range ev.named() {
				if !regexp.MustCompile(`\b` + regexp.QuoteMeta(v) + `\b`).MatchString(usage) {
					t.Errorf("%s --%s: the description does not list the value %q, which the placeholder %s does not show: %q",
						c.CommandPath(), f.Name, v, name, usage)
				}
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	if checked < 50 {
		t.Fatalf("checked only %d flags", checked)
	}

	// The one that prompted this: audit's 16 actions.
	out, _, _, err := runCLI(t, nil, "audit", "-h")
	if err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile(`(?m)^ +--action .*$`).FindString(out)
	if !strings.Contains(line, "--action ACTION ") || !strings.Contains(line, "register, deregister, drain") ||
		!strings.HasSuffix(line, "audit_read or snapshot_installed") {
		t.Errorf("audit -h shows --action as:\n%s", line)
	}
	// The other flags' descriptions start where --action's long list of
	// values would have pushed them before: past column 180.
	follow := regexp.MustCompile(`(?m)^ +--follow .*$`).FindString(out)
	if i := strings.Index(follow, "after the records"); i < 0 || i > 40 {
		t.Errorf("audit -h pads its flags' lines out to column %d: %q", i, follow)
	}
}

// TestOrList: the lists of values the help texts write.
func TestOrList(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{nil, ""}, {[]string{"a"}, "a"}, {[]string{"a", "b"}, "a or b"}, {[]string{"a", "b", "c"}, "a, b or c"},
	} {
		if got := orList(tc.in); got != tc.want {
			t.Errorf("orList(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestShortDuration: durations as the help texts and errors write them.
func TestShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		720 * time.Hour: "720h", time.Hour: "1h", time.Second: "1s", 10 * time.Second: "10s",
		100 * time.Millisecond: "100ms", 90 * time.Minute: "1h30m", 61 * time.Second: "1m1s", 2 * time.Minute: "2m",
	} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%s) = %q, want %q", d, got, want)
		}
	}
}
