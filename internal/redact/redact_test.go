package redact

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/random"
)

// TestText_IssuedSecretsWithheld: every kind of secret muster issues
// (session tokens, key secrets, the admin token), and the hex secrets the
// docs make with openssl (rand -hex 24 and 32), wherever it sits in a
// text, is withheld, over many draws.
func TestText_IssuedSecretsWithheld(t *testing.T) {
	for range 2000 {
		for _, sec := range []string{random.Secret(), "mk_" + random.Secret(), "ma_" + random.Secret(), random.ID(24), random.ID(32),
			strings.ToUpper(random.ID(20))} {
			for _, text := range []string{sec, `json: unknown field "` + sec + `"`, "instance " + sec + " not found", "/.well-known/muster/" + sec + "/x"} {
				got := Text(text)
				if strings.Contains(got, sec) || !strings.Contains(got, Withheld) {
					t.Fatalf("Text(%q) = %q: the secret is not withheld", text, got)
				}
				if !Secretlike(text) {
					t.Fatalf("Secretlike(%q) = false", text)
				}
			}
		}
	}
}

// TestText_OrdinaryTextKept: the registry's own words, IDs, host names
// and UUIDs are not taken for secrets, and come back as they were.
func TestText_OrdinaryTextKept(t *testing.T) {
	for _, s := range []string{
		"",
		"ttl expired",
		"instance 9f86d081884c7d659a2feaa0c55ad015 not found",
		"key_0123456789abcdef revoked",
		"replaced 9f86d081884c7d659a2feaa0c55ad015",
		"cannot reach http://api-gateway.prod.example.com:8080/.well-known/muster/verify",
		"request 550e8400-e29b-41d4-a716-446655440000",
		"request 550E8400-E29B-41D4-A716-446655440000",
		"key_0123456789abcdef and 0123456789abcdef0123456789abcdef (an instance's ID)",
		"verification failed: X-Muster-Index missing",
		"the callback answered 503 Service Unavailable",
		"dial tcp 127.0.0.1:9: connect: connection refused",
	} {
		if got := Text(s); got != s {
			t.Errorf("Text(%q) = %q, want it unchanged", s, got)
		}
		if Secretlike(s) {
			t.Errorf("Secretlike(%q) = true", s)
		}
	}
}

func TestText_EveryRunReplaced(t *testing.T) {
	a, b := random.Secret(), random.Secret()
	got := Text("a=" + a + ", b=" + b + ".")
	if want := "a=" + Withheld + ", b=" + Withheld + "."; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestKnown(t *testing.T) {
	k := NewKnown("0123456789abcdef0123456789abcdef", "short")
	got := k.Text("instance 0123456789abcdef0123456789abcdef not found; short")
	if want := "instance " + Withheld + " not found; short"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	// A secret a message cut short: its part is withheld too.
	if got := k.Text(`interval "0123456789abcdef0123"... is not a duration`); got != `interval "`+Withheld+`"... is not a duration` {
		t.Fatalf("a cut secret: %q", got)
	}
	if got := k.Text("instance 89abcdef012 and 0123456789abcdef0123456789abcdefX"); strings.Contains(got, "0123456789abcdef0123456789abcdef") {
		t.Fatalf("%q", got)
	}
	if !k.Holds("x0123456789abcdef0123456789abcdefx") || k.Holds("short") {
		t.Fatal("Holds is wrong")
	}
	var zero Known
	if zero.Text("abc") != "abc" || zero.Holds("abc") {
		t.Fatal("the zero Known withholds something")
	}
}

func BenchmarkText_Clean(b *testing.B) {
	s := "instance 9f86d081884c7d659a2feaa0c55ad015 not found: the session token is not this instance's"
	b.ReportAllocs()
	for b.Loop() {
		if Text(s) != s {
			b.Fatal("changed")
		}
	}
}

// FuzzText: what Text returns holds nothing that looks like a secret,
// and a text with none comes back unchanged.
func FuzzText(f *testing.F) {
	f.Add("instance 9f86d081884c7d659a2feaa0c55ad015 not found")
	f.Add(`json: unknown field "mk_` + random.Secret() + `"`)
	f.Add("aB3" + strings.Repeat("x", 17))
	f.Fuzz(func(t *testing.T, s string) {
		got := Text(s)
		if Secretlike(got) {
			t.Fatalf("Text(%q) = %q still looks like it holds a secret", s, got)
		}
		if (got == s) == Secretlike(s) {
			t.Fatalf("Text(%q) = %q, Secretlike = %v", s, got, Secretlike(s))
		}
	})
}

// TestHandler: a log line's message and every string it carries (an
// attribute, an error, a group's, one given by With) has what may be a
// secret withheld, the node's own secrets too once named; other values
// pass as they were.
func TestHandler(t *testing.T) {
	var buf strings.Builder
	h := NewHandler(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	log := slog.New(h)
	issued, own := "mk_"+random.Secret(), "ops.admin.token.2024"
	with := log.With("id", issued)
	h.SetKnown(NewKnown(own)) // after With: its loggers see it too
	with.Info("refused "+own, "method", issued, "err", errors.New("cannot reach /x/"+own), slog.Group("g", "path", issued),
		"ids", []string{issued}, "took", 1500*time.Millisecond, "n", 7)
	out := buf.String()
	for _, sec := range []string{issued, own} {
		if strings.Contains(out, sec) {
			t.Fatalf("the log holds %q:\n%s", sec, out)
		}
	}
	for _, want := range []string{`msg="refused (withheld)"`, "id=(withheld)", "method=(withheld)", `err="cannot reach /x/(withheld)"`,
		"g.path=(withheld)", "took=1.5s", "n=7"} {
		if !strings.Contains(out, want) {
			t.Errorf("the line lacks %s:\n%s", want, out)
		}
	}
}
