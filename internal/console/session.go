package console

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// Sessions: a person signs in once with a token (a read, operator or
// admin token, or the admin token itself); the console keeps the token in
// memory, never in the browser, and gives the browser a random session
// ID in a cookie (HttpOnly, SameSite=Strict, Secure on TLS). Each request
// authenticates the token again, so that a revoked or expired token ends
// its sessions at once. A restart of the server ends every session.
//
// Every state-changing request (a POST) carries a CSRF token: the
// session's for a signed-in person, else a pre-session token from a
// cookie of its own (double submit), which the sign-in form carries. And
// its Origin, when the browser sends one, must be the console's own.

const (
	sessionCookie = "muster_session"
	csrfCookie    = "muster_csrf" // the pre-session CSRF token
	// sessionIdle ends a session not used for this long; sessionMax ends
	// any session this long after sign-in.
	sessionIdle = time.Hour
	sessionMax  = 12 * time.Hour
	// maxSessions bounds the sessions held. Only a valid token signs in,
	// so only its holders fill them; when full, the least recently used
	// session ends. maxPerToken bounds one token's share: its own least
	// recently used session ends first, so that one token's holder
	// signing in again and again ends no one else's session.
	maxSessions = 1024
	maxPerToken = 8
)

// session is one signed-in person.
type session struct {
	token    string // the credential, held in memory only
	csrf     string
	created  time.Time
	lastUsed time.Time

	// flash is what the next page shows once (an action's outcome),
	// and shown the secret of a token just created: kept for the one
	// page after the creation, so that a reload creates nothing and
	// shows it no more. Guarded by sessions.mu.
	flash string
	shown *created
}

// sessions holds the sessions by the SHA-256 of their IDs, so that the
// map's keys do not themselves open a session.
type sessions struct {
	mu  sync.Mutex
	m   map[[32]byte]*session
	now func() time.Time
}

func newSessions(now func() time.Time) *sessions {
	return &sessions{m: map[[32]byte]*session{}, now: now}
}

// randomToken is 32 random bytes, URL-safe base64.
func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// create starts a session for token and returns its ID.
func (s *sessions) create(token string) (id string, sess *session) {
	id = randomToken()
	now := s.now()
	sess = &session{token: token, csrf: randomToken(), created: now, lastUsed: now}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.capTokenLocked(token, now)
	if len(s.m) >= maxSessions {
		s.evictLocked(now)
	}
	s.m[sha256.Sum256([]byte(id))] = sess
	return id, sess
}

// capTokenLocked ends token's least recently used session while it holds
// maxPerToken.
func (s *sessions) capTokenLocked(token string, now time.Time) {
	for {
		n := 0
		var oldest [32]byte
		var oldestAt time.Time
		for k, v := range s.m {
			if v.token != token {
				continue
			}
			n++
			if oldestAt.IsZero() || v.lastUsed.Before(oldestAt) {
				oldest, oldestAt = k, v.lastUsed
			}
		}
		if n < maxPerToken {
			return
		}
		delete(s.m, oldest)
	}
}

// alive reports whether the session whose ID is id is still held (a
// live page's stream ends with its session).
func (s *sessions) alive(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.m[sha256.Sum256([]byte(id))]
	return v != nil && !s.ended(v, s.now())
}

// setFlash keeps msg, and a token just created, for the session's next
// page.
func (s *sessions) setFlash(sess *session, msg string, shown *created) {
	s.mu.Lock()
	sess.flash, sess.shown = msg, shown
	s.mu.Unlock()
}

// takeFlash returns what the session's next page shows once, and
// forgets it.
func (s *sessions) takeFlash(sess *session) (string, *created) {
	s.mu.Lock()
	defer s.mu.Unlock()
	msg, shown := sess.flash, sess.shown
	sess.flash, sess.shown = "", nil
	return msg, shown
}

// evictLocked drops the sessions that have ended, and the least recently
// used one if none had.
func (s *sessions) evictLocked(now time.Time) {
	var oldest [32]byte
	var oldestAt time.Time
	dropped := false
	for k, v := range s.m {
		if s.ended(v, now) {
			delete(s.m, k)
			dropped = true
			continue
		}
		if oldestAt.IsZero() || v.lastUsed.Before(oldestAt) {
			oldest, oldestAt = k, v.lastUsed
		}
	}
	if !dropped && !oldestAt.IsZero() {
		delete(s.m, oldest)
	}
}

func (s *sessions) ended(v *session, now time.Time) bool {
	return now.Sub(v.lastUsed) > sessionIdle || now.Sub(v.created) > sessionMax
}

// get returns the session whose ID is id, and marks it used; nil for
// none, or one that has ended (which it drops).
func (s *sessions) get(id string) *session {
	if id == "" {
		return nil
	}
	k := sha256.Sum256([]byte(id))
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.m[k]
	if v == nil {
		return nil
	}
	if s.ended(v, now) {
		delete(s.m, k)
		return nil
	}
	v.lastUsed = now
	return v
}

// end drops the session whose ID is id.
func (s *sessions) end(id string) {
	s.mu.Lock()
	delete(s.m, sha256.Sum256([]byte(id)))
	s.mu.Unlock()
}

// len is how many sessions are held.
func (s *sessions) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// cookie is a console cookie: HttpOnly, SameSite=Strict, scoped to the
// console's path, Secure when the request came over TLS.
func cookie(r *http.Request, name, value string, maxAge time.Duration) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: Prefix, HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, MaxAge: int(maxAge / time.Second)}
}

// sameOrigin reports whether a state-changing request came from the
// console's own pages: its Origin (or, without one, its Referer) names
// this host. A request with neither is let through here (some clients
// send none); its CSRF token still has to match.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		o = r.Header.Get("Referer")
	}
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

// tokenEqual compares two CSRF tokens in constant time; an empty one
// never matches.
func tokenEqual(a, b string) bool {
	return a != "" && b != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
