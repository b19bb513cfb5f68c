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

	// The one that prompted this: audit's actions (the server's list).
	out, _, _, err := runCLI(t, nil, "audit", "-h")
	if err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile(`(?m)^ +--action .*$`).FindString(out)
	if !strings.Contains(line, "--action ACTION ") || !strings.Contains(line, "register, deregister, drain") ||
		!strings.Contains(line, "audit_read, read, snapshot_installed, suppressed") || !strings.HasSuffix(line, "ca_retire or ca_rotate") {
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

// TestFlags_Descriptions: every flag's description is a whole phrase:
// none stops at an article, a preposition or a conjunction, as lookup
// --consistent's once did ("see every write acknowledged before").
func TestFlags_Descriptions(t *testing.T) {
	dangling := regexp.MustCompile(`\b(a|an|the|of|to|for|before|after|with|and|or|but|than|that|which)$`)
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if usage := strings.TrimSuffix(f.Usage, " (env "+flagEnv(f)+")"); dangling.MatchString(usage) {
				t.Errorf("%s --%s: the description stops mid-sentence: %q", c.CommandPath(), f.Name, usage)
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCmd(env{getenv: func(string) string { return "" }}))
}

// TestHelp_OutputIDs: each command's -o id help says what that command
// prints, not what another's does.
func TestHelp_OutputIDs(t *testing.T) {
	for _, tc := range []struct {
		cmd  []string
		want string
	}{
		{[]string{"services"}, "id (the service names alone, one a line)"},
		{[]string{"lookup"}, "id (the instance IDs alone, one a line)"},
		{[]string{"instance"}, "id (the instance's ID alone)"},
		{[]string{"keys", "list"}, "id (the key IDs alone, one a line)"},
		{[]string{"keys", "create"}, "id (the key's ID)"},
		{[]string{"members"}, "id (the server IDs alone, one a line, sorted)"},
	} {
		out, _, _, err := runCLI(t, nil, append(tc.cmd, "-h")...)
		line := regexp.MustCompile(`(?m)^ +-o, --output .*$`).FindString(out)
		if err != nil || !strings.Contains(line, tc.want) {
			t.Errorf("muster %s -h: %v; -o is described as\n%s\nwant %q", strings.Join(tc.cmd, " "), err, line, tc.want)
		}
		if tc.cmd[0] != "services" && strings.Contains(line, "services") {
			t.Errorf("muster %s -h speaks of services in -o's help: %s", strings.Join(tc.cmd, " "), line)
		}
	}
}
