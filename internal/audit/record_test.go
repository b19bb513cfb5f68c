package audit_test

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/audit"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/random"
)

func TestFromCommand(t *testing.T) {
	at := time.Date(2026, 12, 10, 9, 0, 0, 0, time.UTC)
	origin := &catalog.Origin{Time: at, Node: "n2", Caller: "192.0.2.1:5000"}
	inst := &catalog.Instance{ID: "i1", Service: "web", Address: "10.0.0.1", Port: 80, Scheme: "http", KeyID: "key_1",
		TokenHash: catalog.HashSecret("token-secret"), Status: catalog.StatusPassing, RegisteredAt: at.Add(-time.Hour)}
	key := &catalog.Key{ID: "key_1", SecretHash: catalog.HashSecret("mk_secret"), Services: []string{"web"}, CreatedAt: at.Add(-2 * time.Hour)}
	critical := *inst
	critical.Status = catalog.StatusCritical
	cases := []struct {
		name string
		cmd  catalog.Command
		res  catalog.Result
		want audit.Record
	}{
		{"register", catalog.Command{Op: catalog.OpRegister, Instance: inst, Reason: "api", Origin: origin}, catalog.Result{Instance: inst},
			audit.Record{Time: at, Action: audit.ActionRegister, Outcome: audit.OutcomeOK, Reason: "api", Service: "web", Instance: "i1", Key: "key_1", Caller: "192.0.2.1:5000", Node: "n2"}},
		{"register replacing", catalog.Command{Op: catalog.OpRegister, Instance: inst, Reason: "api", Origin: origin}, catalog.Result{Instance: inst, Replaced: "i0"},
			audit.Record{Time: at, Action: audit.ActionRegister, Outcome: audit.OutcomeOK, Reason: "api; replaced i0", Service: "web", Instance: "i1", Key: "key_1", Caller: "192.0.2.1:5000", Node: "n2"}},
		{"register refused when applied", catalog.Command{Op: catalog.OpRegister, Instance: inst, Reason: "api", Origin: origin}, catalog.Result{Err: catalog.ErrKeyRevoked},
			audit.Record{Time: at, Action: audit.ActionRegister, Outcome: audit.OutcomeRefused, Reason: "enrolment key revoked", Service: "web", Instance: "i1", Key: "key_1", Caller: "192.0.2.1:5000", Node: "n2"}},
		{"register before origins: its registration time", catalog.Command{Op: catalog.OpRegister, Instance: inst, Reason: "seed"}, catalog.Result{Instance: inst},
			audit.Record{Time: at.Add(-time.Hour), Action: audit.ActionRegister, Outcome: audit.OutcomeOK, Reason: "seed", Service: "web", Instance: "i1", Key: "key_1"}},
		{"deregister", catalog.Command{Op: catalog.OpDeregister, ID: "i1", Reason: "api", Origin: origin}, catalog.Result{Instance: inst},
			audit.Record{Time: at, Action: audit.ActionDeregister, Outcome: audit.OutcomeOK, Reason: "api", Service: "web", Instance: "i1", Key: "key_1", Caller: "192.0.2.1:5000", Node: "n2"}},
		{"deregister of an unknown instance", catalog.Command{Op: catalog.OpDeregister, ID: "i9", Reason: "api", Origin: origin}, catalog.Result{Err: catalog.ErrNotFound},
			audit.Record{Time: at, Action: audit.ActionDeregister, Outcome: audit.OutcomeRefused, Reason: "not found", Instance: "i9", Caller: "192.0.2.1:5000", Node: "n2"}},
		{"remove after deregister_after", catalog.Command{Op: catalog.OpDeregister, ID: "i1", IfStatus: catalog.StatusCritical, Reason: "deregister_after expired"}, catalog.Result{Instance: &critical},
			audit.Record{Action: audit.ActionRemove, Outcome: audit.OutcomeOK, Reason: "deregister_after expired", Service: "web", Instance: "i1", Key: "key_1"}},
		{"expire", catalog.Command{Op: catalog.OpSetStatus, ID: "i1", Status: catalog.StatusCritical, IfStatus: catalog.StatusPassing, Reason: catalog.ReasonTTLExpired, Origin: &catalog.Origin{Time: at, Node: "n1"}},
			catalog.Result{Instance: &critical},
			audit.Record{Time: at, Action: audit.ActionExpire, Outcome: audit.OutcomeOK, Reason: "ttl expired", Service: "web", Instance: "i1", Key: "key_1", Status: "critical", Node: "n1"}},
		{"expire that lost to a heartbeat", catalog.Command{Op: catalog.OpSetStatus, ID: "i1", Status: catalog.StatusCritical, IfStatus: catalog.StatusPassing, Reason: catalog.ReasonTTLExpired},
			catalog.Result{Instance: inst, Err: catalog.ErrConflict},
			audit.Record{Action: audit.ActionExpire, Outcome: audit.OutcomeRefused, Reason: "precondition failed", Service: "web", Instance: "i1", Key: "key_1", Status: "critical"}},
		{"back to passing after a heartbeat", catalog.Command{Op: catalog.OpSetStatus, ID: "i1", Status: catalog.StatusPassing, IfStatus: catalog.StatusCritical, Reason: "heartbeat"},
			catalog.Result{Instance: inst},
			audit.Record{Action: audit.ActionStatus, Outcome: audit.OutcomeOK, Reason: "heartbeat", Service: "web", Instance: "i1", Key: "key_1", Status: "passing"}},
		{"drain", catalog.Command{Op: catalog.OpDrain, ID: "i1", Reason: "api"}, catalog.Result{Instance: inst},
			audit.Record{Action: audit.ActionDrain, Outcome: audit.OutcomeOK, Reason: "api", Service: "web", Instance: "i1", Key: "key_1"}},
		{"drain written as a status", catalog.Command{Op: catalog.OpSetStatus, ID: "i1", Status: catalog.StatusDraining, Reason: "api"}, catalog.Result{Instance: inst},
			audit.Record{Action: audit.ActionDrain, Outcome: audit.OutcomeOK, Reason: "api", Service: "web", Instance: "i1", Key: "key_1"}},
		{"evict", catalog.Command{Op: catalog.OpEvict, ID: "i1", Until: at, Reason: "bad build", Origin: origin}, catalog.Result{Instance: inst},
			audit.Record{Time: at, Action: audit.ActionEvict, Outcome: audit.OutcomeOK, Reason: "bad build", Service: "web", Instance: "i1", Key: "key_1", Caller: "192.0.2.1:5000", Node: "n2"}},
		{"key created", catalog.Command{Op: catalog.OpCreateKey, Key: key, Reason: "api", Origin: origin}, catalog.Result{},
			audit.Record{Time: at, Action: audit.ActionKeyCreate, Outcome: audit.OutcomeOK, Reason: "api", Key: "key_1", Caller: "192.0.2.1:5000", Node: "n2"}},
		{"token created", catalog.Command{Op: catalog.OpCreateToken, Key: &catalog.Key{ID: "key_2", SecretHash: catalog.HashSecret("mk_read"),
			Services: []string{"web"}, Role: catalog.RoleRead, CreatedAt: at}, Reason: "api", Origin: origin}, catalog.Result{},
			audit.Record{Time: at, Action: audit.ActionKeyCreate, Outcome: audit.OutcomeOK, Reason: "api", Key: "key_2", Caller: "192.0.2.1:5000", Node: "n2"}},
		{"key created before origins: its creation time", catalog.Command{Op: catalog.OpCreateKey, Key: key, Reason: "api"}, catalog.Result{},
			audit.Record{Time: at.Add(-2 * time.Hour), Action: audit.ActionKeyCreate, Outcome: audit.OutcomeOK, Reason: "api", Key: "key_1"}},
		{"key revoked", catalog.Command{Op: catalog.OpRevokeKey, ID: "key_1", Reason: "api", Origin: origin}, catalog.Result{},
			audit.Record{Time: at, Action: audit.ActionKeyRevoke, Outcome: audit.OutcomeOK, Reason: "api", Key: "key_1", Caller: "192.0.2.1:5000", Node: "n2"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := audit.FromCommand(7, c.cmd, c.res)
			c.want.Index = 7
			if !ok || got != c.want {
				t.Errorf("FromCommand = %+v, %v\nwant %+v", got, ok, c.want)
			}
		})
	}
	if _, ok := audit.FromCommand(8, catalog.Command{Op: "future_op", SkipIfUnknown: true}, catalog.Result{Err: catalog.ErrSkipped}); ok {
		t.Error("a command of an unknown operation made a record")
	}
}

// TestLog_RecordsHoldNoSecret: what a record of a key's creation or an
// instance's registration puts on disk holds neither a secret nor the
// hash of one.
func TestLog_RecordsHoldNoSecret(t *testing.T) {
	l, dir := openLog(t, nil)
	key := &catalog.Key{ID: "key_1", SecretHash: catalog.HashSecret("mk_secret"), Services: []string{"web"}}
	inst := &catalog.Instance{ID: "i1", Service: "web", KeyID: "key_1", TokenHash: catalog.HashSecret("token-secret")}
	l.Applied(1, catalog.Command{Op: catalog.OpCreateKey, Key: key, Reason: "api"}, catalog.Result{})
	l.Applied(2, catalog.Command{Op: catalog.OpRegister, Instance: inst, Reason: "api"}, catalog.Result{Instance: inst})
	closeLog(t, l)
	disk := journalText(t, dir, "applied")
	for _, secret := range []string{"mk_secret", "token-secret", base64.StdEncoding.EncodeToString(key.SecretHash),
		base64.StdEncoding.EncodeToString(inst.TokenHash)} {
		if strings.Contains(disk, secret) {
			t.Errorf("the journal holds %q:\n%s", secret, disk)
		}
	}
	if strings.Count(disk, "\n") != 2 {
		t.Errorf("journal:\n%s", disk)
	}
}

// TestRecord_Bounded: a record's fields are cut to their bounds, at a
// character's boundary, so that a caller cannot make a line long.
func TestRecord_Bounded(t *testing.T) {
	l, dir := openLog(t, nil)
	long := strings.Repeat("é", 1000)
	l.Record(audit.Record{Action: audit.ActionRegister, Outcome: audit.OutcomeRefused, Reason: long, Service: long, Caller: long, Key: long, Instance: long})
	closeLog(t, l)
	line := journalText(t, dir, "local")
	if len(line) > audit.MaxLine/2 {
		t.Errorf("a record of long fields takes %d bytes", len(line))
	}
	if strings.Contains(line, `\ufffd`) || !strings.Contains(line, `"reason":"éé`) {
		t.Errorf("fields cut inside a character: %s", line)
	}
}

func TestReason(t *testing.T) {
	if got := audit.Reason(errors.New("registry: token not allowed here")); got != "token not allowed here" {
		t.Errorf("Reason = %q", got)
	}
}

// TestRecord_CallerSecretsWithheld: a field a caller filled with what
// cannot be an ID or a name (a session token for an instance's ID, a
// key's secret for a service) is withheld; a reason's run that looks
// like a secret is withheld from it; the secrets the node names
// (Withhold) are withheld whatever their form; real IDs and names stay.
func TestRecord_CallerSecretsWithheld(t *testing.T) {
	l, dir := openLog(t, nil)
	token, keySecret, chosen := random.Secret(), "mk_"+random.Secret(), "0123456789abcdef0123456789abcdef"
	l.Withhold(chosen)
	l.Record(audit.Record{Action: audit.ActionDeregister, Outcome: audit.OutcomeRefused, Instance: token, Service: keySecret,
		Key: keySecret, Reason: `json: unknown field "` + keySecret + `"`})
	l.Record(audit.Record{Action: audit.ActionDrain, Outcome: audit.OutcomeRefused, Instance: chosen, Reason: "instance " + chosen + " not found"})
	id := random.ID(16)
	l.Record(audit.Record{Action: audit.ActionDrain, Outcome: audit.OutcomeOK, Instance: id, Service: "web_v2", Key: "key_seed_compat",
		Reason: "already draining"})
	l.Applied(1, catalog.Command{Op: catalog.OpEvict, ID: token, Reason: "leaked " + token}, catalog.Result{Err: catalog.ErrNotFound})
	closeLog(t, l)
	disk := journalText(t, dir, "local") + journalText(t, dir, "applied")
	for _, s := range []string{token, keySecret, chosen} {
		if strings.Contains(disk, s) {
			t.Errorf("the journals hold %q:\n%s", s, disk)
		}
	}
	for _, want := range []string{`"instance_id":"(withheld)"`, `"service":"(withheld)"`, `"key_id":"(withheld)"`,
		`unknown field \"…\"`, `"reason":"instance (withheld) not found"`,
		`"instance_id":"` + id + `","key_id":"key_seed_compat"`, `"service":"web_v2"`} {
		if !strings.Contains(disk, want) {
			t.Errorf("the journals do not hold %s:\n%s", want, disk)
		}
	}
}
