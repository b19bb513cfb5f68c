package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
)

// syncBuffer is a bytes.Buffer safe for a command writing while the
// test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestAnswer_AnswersForItsKey: muster answer listens where it is told
// and answers a callback for a service its patterns cover with the
// HMAC of the challenge under MUSTER_KEY, refuses one for another
// service, and stops when interrupted. Without a key or --listen it is a
// usage error.
func TestAnswer_AnswersForItsKey(t *testing.T) {
	if _, _, code, _ := runCLI(t, map[string]string{"MUSTER_KEY": "mk_x"}, "answer"); code != 2 {
		t.Errorf("answer without --listen exits %d, want 2", code)
	}
	if _, _, code, _ := runCLI(t, nil, "answer", "--listen", "127.0.0.1:0"); code != 2 {
		t.Errorf("answer without a key exits %d, want 2", code)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"answer", "--listen", "127.0.0.1:0", "--service", "web*"},
			func(k string) string { return map[string]string{"MUSTER_KEY": "mk_secret"}[k] }, &out, &errOut)
	}()
	var addr string
	re := regexp.MustCompile(`answering callbacks on (127\.0\.0\.1:\d+) for web\*`)
	for deadline := time.Now().Add(5 * time.Second); addr == "" && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			addr = m[1]
		}
	}
	if addr == "" {
		cancel()
		t.Fatalf("no address printed: %q %q", out.String(), errOut.String())
	}
	call := func(service string) (int, api.VerifyResponse) {
		b, _ := json.Marshal(api.VerifyRequest{Service: service, InstanceID: "i1", Challenge: "c-123", Token: "tok"})
		resp, err := http.Post("http://"+addr+api.DefaultVerifyPath, "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var vr api.VerifyResponse
		json.NewDecoder(resp.Body).Decode(&vr)
		return resp.StatusCode, vr
	}
	m := hmac.New(sha256.New, []byte("mk_secret"))
	m.Write([]byte("c-123"))
	if code, vr := call("web_api"); code != 200 || vr.Proof != base64.StdEncoding.EncodeToString(m.Sum(nil)) {
		t.Errorf("web_api: %d %+v", code, vr)
	}
	if code, _ := call("db"); code != 403 {
		t.Errorf("db, not covered: %d, want 403", code)
	}
	if strings.Contains(errOut.String(), "tok") || strings.Contains(errOut.String(), "mk_secret") {
		t.Errorf("the log holds a secret: %s", errOut.String())
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("answer returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("answer did not stop")
	}
}
