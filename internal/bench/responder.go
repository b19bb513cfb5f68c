package bench

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/verify"
)

// responder answers the registry's verification callbacks for every
// registration the benchmark makes, on several listeners of 127.0.0.1,
// each proving the host for the registrations sent to it (verify_port),
// as a host's agent does; the registry keeps connections to each between
// callbacks, so the benchmark's own connections stay few. A registration is expected (expect) before
// it is sent and claimed (claim) after its 201; the callback is answered
// only for a nonce expected, with the proof under that registration's key
// secret, as docs/api.md's "Answering the callback" says. It records how
// long each answer took to handle. Safe for concurrent use.
type responder struct {
	servers []*http.Server
	ports   []int
	lat     *recorder

	mu      sync.Mutex
	pending map[string]*pendingReg // by nonce
}

type pendingReg struct {
	secret string
	token  string
	id     string
}

// newResponder listens on n free ports of 127.0.0.1.
func newResponder(n int) (*responder, error) {
	r := &responder{lat: newRecorder(), pending: map[string]*pendingReg{}}
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			r.close()
			return nil, err
		}
		s := &http.Server{Handler: http.HandlerFunc(r.serve), ReadHeaderTimeout: 5 * time.Second}
		r.servers = append(r.servers, s)
		r.ports = append(r.ports, ln.Addr().(*net.TCPAddr).Port)
		go s.Serve(ln)
	}
	return r, nil
}

// port returns the listener registration i sends its callback to.
func (r *responder) port(i int) int { return r.ports[i%len(r.ports)] }

func (r *responder) serve(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	var vr api.VerifyRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, req.Body, 16<<10)).Decode(&vr); err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	p := r.pending[vr.Nonce]
	if p != nil {
		p.id, p.token = vr.InstanceID, vr.Token
	}
	r.mu.Unlock()
	if p == nil { // not a registration this process began
		http.Error(w, "unknown nonce", http.StatusForbidden)
		return
	}
	body, _ := json.Marshal(api.VerifyResponse{Proof: verify.Proof(p.secret, vr.Challenge), Nonce: vr.Nonce})
	w.Header().Set("Content-Type", "application/json")
	w.Write(body)
	r.lat.add(time.Since(start))
}

// expect announces a registration with nonce under the key secret.
func (r *responder) expect(nonce, secret string) {
	r.mu.Lock()
	r.pending[nonce] = &pendingReg{secret: secret}
	r.mu.Unlock()
}

// claim returns the session token the callback of nonce carried, and
// forgets the nonce when forget is set. A registration that failed on
// this side (its deadline passed) keeps its nonce: the registry may
// still call back, and a refused callback would spend the key's
// allowance of failed verifications (docs/api.md, "Failure rate"),
// which would then refuse the next workload's registrations.
func (r *responder) claim(nonce string, forget bool) (id, token string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.pending[nonce]
	if forget {
		delete(r.pending, nonce)
	}
	if p == nil {
		return "", ""
	}
	return p.id, p.token
}

func (r *responder) close() {
	for _, s := range r.servers {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		s.Shutdown(ctx)
		cancel()
	}
}
