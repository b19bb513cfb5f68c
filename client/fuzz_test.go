package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
)

// FuzzVerifyHandler feeds arbitrary callback bodies to the SDK's verify
// handler: no registration is pending, so every one must be refused, and
// nothing may panic.
func FuzzVerifyHandler(f *testing.F) {
	for _, s := range []string{
		`{"service":"svc","instance_id":"i","challenge":"c","nonce":"n","token":"t"}`,
		`{"service":"svc","nonce":""}`, `{`, ``, `null`, `[]`, `{"nonce":123}`,
	} {
		f.Add([]byte(s))
	}
	reg, err := client.NewRegistration(client.ServiceConfig{Name: "svc", Address: "127.0.0.1", Port: 1, Key: "k", Registry: "http://127.0.0.1:1"})
	if err != nil {
		f.Fatal(err)
	}
	h := reg.VerifyHandler()
	f.Fuzz(func(t *testing.T, body []byte) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, api.DefaultVerifyPath, bytes.NewReader(body)))
		if w.Code == http.StatusOK || strings.Contains(w.Body.String(), "proof") {
			t.Fatalf("an unsolicited callback got %d %s", w.Code, w.Body)
		}
	})
}

// FuzzWatch feeds arbitrary bytes to Watch as a registry's event stream
// and checks it against a plain reading of the Server-Sent Events rules
// (refSSE): the same events, with the same types, IDs and data, stopping
// where a message does not decode; messages over MaxMessage are refused,
// never buffered; nothing panics.
func FuzzWatch(f *testing.F) {
	for _, s := range []string{
		"retry: 1000\nevent: snapshot\nid: 5\ndata: {\"type\":\"snapshot\",\"index\":5,\"instances\":[{\"id\":\"a\",\"service\":\"web\",\"status\":\"passing\"}]}\n\n: ping\nid: 9\n\n",
		"event: registered\nid: 6\ndata: {\"type\":\"registered\",\"index\":6,\"service\":\"web\",\"instance\":{\"id\":\"b\"},\"replaced\":\"a\"}\n\n",
		"event: protection\ndata: {\"protection\":true}\r\n\r\n",
		"data: a\ndata:b\n\nid\n\nid: \x00\n\n:\n\nevent\n\n",
		"event: status\nid: 18446744073709551615\ndata: {}\n\nid: 18446744073709551616\n\n",
		"\r\n\n\rdata: x\r\r\n\n", "", "\n", "data: ",
	} {
		f.Add([]byte(s))
	}
	const max = 512
	f.Fuzz(func(t *testing.T, body []byte) {
		c, err := client.New(client.Config{Addr: "http://registry.test", HTTPClient: &http.Client{Transport: streamOf(body)}})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		var cause error
		err = c.Watch(context.Background(), client.WatchRequest{MaxMessage: max}, func(ev client.WatchEvent) error {
			if ev.Type == client.WatchDisconnected {
				cause = ev.Err
				return errStop
			}
			if len(ev.Data) > max {
				t.Fatalf("data of %d bytes passed a bound of %d", len(ev.Data), max)
			}
			if (ev.Snapshot != nil) != (ev.Type == api.EventSnapshot) || (ev.Protection != nil) != (ev.Type == api.EventProtection) ||
				(ev.Event != nil) != (ev.Type == api.EventRegistered || ev.Type == api.EventDeregistered || ev.Type == api.EventStatus) {
				t.Fatalf("event %s decoded as %+v", ev.Type, ev)
			}
			got = append(got, fmt.Sprintf("%s %d %q", ev.Type, ev.ID, ev.Data))
			return nil
		})
		if err != errStop {
			if !strings.Contains(fmt.Sprint(err), "MaxMessage") || len(body) <= max {
				t.Fatalf("Watch returned %v", err)
			}
			return // refused a message over the bound: the reference has no bound
		}
		if len(body) > max {
			return
		}
		want, wantEnd := refSSE(body)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		if cause == nil || !strings.Contains(cause.Error(), wantEnd) {
			t.Fatalf("ended with %v, want %q", cause, wantEnd)
		}
	})
}

// streamOf answers every request with a 200 event stream of body.
type streamOf []byte

func (b streamOf) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"text/event-stream"}},
		Body: io.NopCloser(bytes.NewReader(b)), Request: req}, nil
}

// refSSE reads body by the rules as plainly as they are written, and
// returns the events Watch should give ("type id data") and what its
// disconnection should say.
func refSSE(body []byte) ([]string, string) {
	out := []string{`connected 0 ""`}
	var id uint64
	lines := strings.Split(string(body), "\n")
	if len(lines[len(lines)-1]) > 0 {
		// The stream ended inside a line: the message it is in is lost.
		return refMessages(out, lines[:len(lines)-1], &id, "unexpected EOF")
	}
	return refMessages(out, lines[:len(lines)-1], &id, "")
}

func refMessages(out, lines []string, id *uint64, cut string) ([]string, string) {
	var event, data, newID string
	hasData, started := false, false
	for _, l := range lines {
		l = strings.TrimSuffix(l, "\r")
		if l == "" {
			if !started {
				continue
			}
			n := *id
			if newID != "" {
				var err error
				if n, err = strconv.ParseUint(newID, 10, 64); err != nil {
					return out, "not an index"
				}
			}
			typ := "progress"
			if hasData {
				if typ = event; typ == "" {
					typ = "message"
				}
				data = strings.TrimSuffix(data, "\n")
				if !refDecodes(typ, data) {
					return out, "event"
				}
			}
			*id = n
			out = append(out, fmt.Sprintf("%s %d %q", typ, n, data))
			event, data, newID, hasData, started = "", "", "", false, false
			continue
		}
		started = true
		if l[0] == ':' {
			continue
		}
		field, value, found := strings.Cut(l, ":")
		if found {
			value = strings.TrimPrefix(value, " ")
		}
		switch field {
		case "event":
			event = value
		case "data":
			data += value + "\n"
			hasData = true
		case "id":
			if !strings.Contains(value, "\x00") {
				newID = value
			}
		}
	}
	if started || cut != "" {
		return out, "unexpected EOF"
	}
	return out, "ended the stream"
}

// refDecodes reports whether data decodes as the type's wire form.
func refDecodes(typ, data string) bool {
	var v any
	switch typ {
	case api.EventSnapshot:
		v = new(api.WatchSnapshot)
	case api.EventRegistered, api.EventDeregistered, api.EventStatus:
		v = new(api.Event)
	case api.EventProtection:
		v = new(api.Protection)
	default:
		return true
	}
	return json.Unmarshal([]byte(data), v) == nil
}
