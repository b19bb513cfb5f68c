package console_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/testserver"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// troubles gathers what a page must never write to the console:
// exceptions, errors and warnings, the browser's own among them (a
// request that failed or was answered 4xx/5xx, a script or style the CSP
// refused), but those expected.
type troubles struct {
	mu       sync.Mutex
	list     []string
	expected func(m chromedp.ConsoleMessage) bool
}

func (tr *troubles) listen(ctx context.Context) {
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			switch m.Type {
			case chromedp.ConsoleError, chromedp.ConsoleWarning, chromedp.ConsoleException:
				if !tr.expected(m) {
					tr.mu.Lock()
					tr.list = append(tr.list, m.String()+" ("+m.URL+")")
					tr.mu.Unlock()
				}
			}
		}
	}()
}

func (tr *troubles) take() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	out := tr.list
	tr.list = nil
	return out
}

// TestConsole_Browser drives the console in Chromium, as a person would:
// the services page shows a registered service; an instance that
// registers appears without a reload, and turns critical once its TTL
// runs out without a heartbeat; an anonymous reader cannot drain it; an
// admin signs in through the form and drains another from the instance
// page, through its confirmation; and when the registry goes away, the
// page says it is stale. Each main page is captured at a desktop and a
// phone width (the directory is logged), and no page has an exception,
// a console error or an unexpected failed request.
func TestConsole_Browser(t *testing.T) {
	if testing.Short() {
		t.Skip("drives a browser")
	}
	browser := testutil.Chromium(t)
	h := testserver.NewHarness(t, nil)
	key := h.Key(t, "*")
	registerTTL := func(service, ttl string) string {
		t.Helper()
		in := testutil.NewInstance(t, key.Secret, verify.Proof)
		reg, err := h.Anon.Register(context.Background(), service, key.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: in.Port(), TTL: ttl,
			Tags: []string{"v2"}, Meta: map[string]string{"team": "core"}})
		if err != nil {
			t.Fatal(err)
		}
		return reg.ID
	}
	registerTTL("db", "1h")

	shots, err := os.MkdirTemp("", "muster-console-screenshots-")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", shots)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	bctx, cancelB := chromedp.NewContext(actx)
	defer cancelB()
	bctx, cancelT := context.WithTimeout(bctx, 2*time.Minute)
	defer cancelT()
	base := h.Srv.URL() + "/ui/"
	// The one error a page may show: the anonymous drain's 403, below.
	tr := &troubles{expected: func(m chromedp.ConsoleMessage) bool {
		return strings.Contains(m.Text, "403") && strings.HasSuffix(m.URL, "/drain")
	}}
	if err := chromedp.Do(bctx, chromedp.EmulateViewport(1280, 800)); err != nil { // starts the browser
		t.Fatal(err)
	}
	tr.listen(bctx)
	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("the text of %s: %v", sel, err)
		}
		return s
	}
	shoot := func(name string) {
		t.Helper()
		for _, size := range []struct {
			name string
			w, h int64
		}{{"desktop", 1280, 800}, {"phone", 390, 844}} {
			run("viewport", chromedp.EmulateViewport(size.w, size.h), chromedp.Sleep(200*time.Millisecond))
			png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
			if err != nil {
				t.Fatalf("screenshot %s: %v", name, err)
			}
			if err := os.WriteFile(filepath.Join(shots, name+"-"+size.name+".png"), png, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		run("viewport", chromedp.EmulateViewport(1280, 800))
	}
	visible := func(sel string) chromedp.Action[chromedp.Void] { return chromedp.WaitVisible(chromedp.CSS(sel)) }

	// The services page, and a service that registers while it is open.
	run("open the console", chromedp.Navigate(base), visible(`tr[data-service="db"]`))
	shoot("services")
	registered := time.Now()
	id := registerTTL("web", "2s")
	run("see web appear", visible(`tr[data-service="web"]`))
	t.Logf("a new service appeared on the open page %s after its registration", time.Since(registered).Round(time.Millisecond))

	// Its instance turns critical when its TTL runs out, on the open page.
	run("open web", chromedp.Navigate(base+"services/web"), visible(`tr[data-instance="`+id+`"]`))
	run("see it critical", visible(`tr[data-instance="`+id+`"][data-status="critical"]`))
	t.Logf("its instance was shown critical %s after its registration (TTL 2 s)", time.Since(registered).Round(time.Millisecond))
	if st := text(`tr[data-instance="` + id + `"] td.status`); !strings.Contains(st, "critical") || !strings.Contains(st, "✗") {
		t.Errorf("the status cell says %q: a word and an icon, not colour alone", st)
	}
	shoot("service")
	// Dark mode follows the system's setting.
	dark := func(on bool) {
		t.Helper()
		var f []*emulation.MediaFeature
		if on {
			f = []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}}
		}
		if _, err := chromedp.Call(bctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Features: f}); err != nil {
			t.Fatal(err)
		}
	}
	dark(true)
	if bg, err := chromedp.Run(bctx, chromedp.Evaluate[string](`getComputedStyle(document.body).backgroundColor`)); err != nil || bg != "rgb(13, 17, 23)" {
		t.Errorf("in dark mode the page's background is %q (%v)", bg, err)
	}
	shoot("service-dark")
	dark(false)

	// An anonymous reader cannot drain.
	other := registerTTL("web", "1h")
	run("try to drain anonymously", chromedp.Navigate(base+"instances/"+other+"/drain"), visible(`main`))
	if got := text(`main`); !strings.Contains(got, "Only an operator or an admin") {
		t.Errorf("the anonymous drain page says %q", got)
	}

	// An admin signs in through the form, and drains from the instance
	// page through its confirmation.
	run("sign in", chromedp.Navigate(base+"signin"), visible(`#token`), chromedp.SendKeys(chromedp.CSS(`#token`), h.AdminToken(t)),
		chromedp.Submit(chromedp.CSS(`#token`)), visible(`.who form`))
	if who := text(`.who .role`); who != "signed in: admin" {
		t.Errorf("after signing in the page says %q", who)
	}
	run("open the instance", chromedp.Navigate(base+"instances/"+other), visible(`a.button`))
	shoot("instance")
	run("drain it", chromedp.Click(chromedp.CSS(`a[href$="/drain"]`)), visible(`form button.danger`),
		chromedp.Click(chromedp.CSS(`form button.danger`)), visible(`tr[data-instance="`+other+`"][data-status="draining"]`))
	if in, err := h.Anon.Instance(context.Background(), other); err != nil || in.Status != api.StatusDraining {
		t.Errorf("after the drain from the console: %+v, %v", in, err)
	}

	// The admin creates a token and sees its secret that once.
	run("open the tokens", chromedp.Navigate(base+"tokens"), visible(`form.create`))
	run("create a token", chromedp.SetValue(chromedp.CSS(`form.create input[name=services]`), "web"),
		chromedp.SetValue(chromedp.CSS(`form.create input[name=description]`), "browser test"),
		chromedp.Click(chromedp.CSS(`form.create button[type=submit]`)), visible(`#secret`))
	secret, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.getElementById("secret").value`))
	if err != nil || !strings.HasPrefix(secret, "mt_") {
		t.Fatalf("the new token's secret: %q, %v", secret, err)
	}
	run("copy it", chromedp.Click(chromedp.CSS(`button.copy`)), visible(`.copied`))
	shoot("tokens")
	run("the tokens again", chromedp.Navigate(base+"tokens"), visible(`table.tokens`))
	if html, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.documentElement.outerHTML`)); err != nil || strings.Contains(html, secret) {
		t.Errorf("the tokens page shows the secret again (%v)", err)
	}
	run("the cluster", chromedp.Navigate(base+"cluster"), visible(`dl.fields`))
	shoot("cluster")
	run("the audit trail", chromedp.Navigate(base+"audit"), visible(`table.audit tbody tr[data-action="key_create"]`))
	shoot("audit")

	// The keyboard reaches the skip link first, and it leads to the page.
	run("tab", chromedp.Navigate(base), visible(`main`), chromedp.KeyEvent("\t"))
	if focused, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.activeElement.textContent`)); err != nil || focused != "Skip to content" {
		t.Errorf("the first Tab focuses %q (%v), want the skip link", focused, err)
	}

	// The registry goes away: the open page says it may be stale.
	run("the stale banner is hidden", chromedp.WaitNotVisible(chromedp.CSS(`#stale`)))
	time.Sleep(300 * time.Millisecond) // the last messages
	if trouble := tr.take(); len(trouble) > 0 {
		t.Errorf("the pages had troubles:\n%s", strings.Join(trouble, "\n"))
	}
	h.Srv.Close()
	run("see the stale banner", visible(`#stale`))
}
