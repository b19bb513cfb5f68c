package console_test

import (
	"bufio"
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testserver"
)

// TestConsole_LiveStreamEndsWithItsSession: with --anonymous-reads=false
// a page's /ui/live stream is the session's: once the session ends (here
// at sign-out), so does the stream, and no change reaches it after.
func TestConsole_LiveStreamEndsWithItsSession(t *testing.T) {
	h := testserver.NewHarness(t, func(c *server.Config) { c.Registry.PrivateReads = true })
	register(t, h, "web")
	rd := h.Token(t, "read", "web")
	b := newBrowser(t, h)
	csrf := b.signIn(rd.Secret)

	// An anonymous stream is refused: the stream needs the session.
	if resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Get(b.base + "/ui/live"); err != nil {
		t.Fatal(err)
	} else if resp.Body.Close(); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("an anonymous /ui/live: %d, want a redirect to sign in", resp.StatusCode)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.base+"/ui/live", nil)
	resp, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/ui/live with the session: %d", resp.StatusCode)
	}
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	time.Sleep(100 * time.Millisecond)

	if code, _, _ := b.post("/ui/signout", url.Values{"csrf": {csrf}}, ""); code != http.StatusSeeOther {
		t.Fatalf("sign-out: %d", code)
	}
	if code, _, _ := b.get("/ui/"); code != http.StatusSeeOther {
		t.Fatalf("after sign-out the session still reads: %d", code)
	}

	register(t, h, "web")
	deadline := time.After(2 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				return // the stream ended: good
			}
			if strings.HasPrefix(l, "data: ") {
				t.Fatalf("after sign-out the session's live stream still reports changes: %q", l)
			}
		case <-deadline:
			return
		}
	}
}
