package catalog_test

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/catalog"
)

func withChecks(in *catalog.Instance, ttl time.Duration, cs ...catalog.Check) *catalog.Instance {
	in.TTL, in.Checks = ttl, cs
	return in
}

var tcpCheck = catalog.Check{Type: "tcp", Interval: 10 * time.Second, Timeout: 5 * time.Second, FailuresBeforeCritical: 3, SuccessesBeforePassing: 2}

// TestValidate_Checks: checks need rules 4; with them a TTL of 0 is
// allowed, without them it is not; every field of a check is bounded.
func TestValidate_Checks(t *testing.T) {
	reg := func(rules int, in *catalog.Instance) catalog.Command {
		return catalog.Command{Op: catalog.OpRegister, Rules: rules, Instance: in}
	}
	ok := []catalog.Command{
		reg(4, withChecks(newInstance("a", "db", "10.0.0.1", 5432), 0, tcpCheck)),
		reg(4, withChecks(newInstance("a", "db", "10.0.0.1", 5432), 10*time.Second, tcpCheck)),
		reg(3, newInstance("a", "db", "10.0.0.1", 5432)),
	}
	for _, c := range ok {
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: %v", c.Instance, err)
		}
	}
	bad := func(mut func(*catalog.Check)) catalog.Check { c := tcpCheck; mut(&c); return c }
	for name, c := range map[string]catalog.Command{
		"ttl 0 without checks": reg(4, withChecks(newInstance("a", "db", "10.0.0.1", 5432), 0)),
		"checks under rules 3": reg(3, withChecks(newInstance("a", "db", "10.0.0.1", 5432), time.Second, tcpCheck)),
		"unknown type":         reg(4, withChecks(newInstance("a", "db", "10.0.0.1", 5432), 0, bad(func(c *catalog.Check) { c.Type = "udp" }))),
		"port":                 reg(4, withChecks(newInstance("a", "db", "10.0.0.1", 5432), 0, bad(func(c *catalog.Check) { c.Port = 70000 }))),
		"timeout over interval": reg(4, withChecks(newInstance("a", "db", "10.0.0.1", 5432), 0,
			bad(func(c *catalog.Check) { c.Timeout = time.Minute }))),
		"zero interval": reg(4, withChecks(newInstance("a", "db", "10.0.0.1", 5432), 0, bad(func(c *catalog.Check) { c.Interval = 0 }))),
		"threshold":     reg(4, withChecks(newInstance("a", "db", "10.0.0.1", 5432), 0, bad(func(c *catalog.Check) { c.FailuresBeforeCritical = 0 }))),
		"path":          reg(4, withChecks(newInstance("a", "db", "10.0.0.1", 5432), 0, bad(func(c *catalog.Check) { c.Path = "/\x00" }))),
		"too many":      reg(4, withChecks(newInstance("a", "db", "10.0.0.1", 5432), 0, make([]catalog.Check, 17)...)),
	} {
		if err := c.Validate(); !errors.Is(err, catalog.ErrBadCommand) || !strings.Contains(err.Error(), "instance.") {
			t.Errorf("%s: Validate = %v, want a bad command naming the field", name, err)
		}
	}
}

// TestChecks_KeptThroughApplyAndSnapshot: an instance's checks are stored
// as registered, survive a snapshot, and a caller's slice is not shared.
func TestChecks_KeptThroughApplyAndSnapshot(t *testing.T) {
	l := newReplica()
	in := withChecks(newInstance("a", "db", "10.0.0.1", 5432), 0, tcpCheck,
		catalog.Check{Type: "http", Path: "/healthz", Port: 8080, Interval: time.Second, Timeout: time.Second, FailuresBeforeCritical: 1, SuccessesBeforePassing: 1})
	cmd := register(in)
	cmd.Rules = catalog.RulesCurrent
	l.must(t, createKey(newKey("k1", "*")), cmd)
	in.Checks[0].Port = 1 // the caller's slice, changed after the fact
	got, _ := l.c.Instance("a")
	if got.Checks[0] != tcpCheck || len(got.Checks) != 2 {
		t.Fatalf("stored checks = %+v", got.Checks)
	}
	c := catalog.New()
	if err := c.Restore(bytes.NewReader(snapshotJSON(t, l.c))); err != nil {
		t.Fatal(err)
	}
	back, _ := c.Instance("a")
	if !reflect.DeepEqual(back.Checks, got.Checks) || back.TTL != 0 {
		t.Fatalf("restored checks = %+v, ttl %s", back.Checks, back.TTL)
	}
}
