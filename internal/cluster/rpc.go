package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// The servers' RPC. It shares the Raft port and its handshake: a
// connection that negotiates protoRPC by ALPN, after both ends proved
// they hold the cluster secret, is served by an http.Server of its own
// (HTTP/1.1 inside the TLS session), never by the public API's. Only
// members of the cluster with the same admin token can reach it: a
// stranger is refused in the handshake, and a member with another admin
// token at the admin check that follows it (exchangeAdmin), as on the
// Raft port, before a byte of HTTP is read. It
// carries writes forwarded to the leader (forward.go), the forming and
// changing of the cluster (join.go, members.go), and the routes other
// packages add with HandleRPC (heartbeats forwarded to the leader, the
// freshness feed).

// Bounds of the RPC server. Its clients are authenticated members, but a
// member with a bug must not exhaust the leader either.
const (
	rpcMaxBody     = 16 << 20 // a batch of heartbeats or a feed page; a restore has its own bound (restore_live.go)
	rpcMaxHeader   = 16 << 10
	rpcIdleTimeout = 90 * time.Second
	// rpcCallTimeout bounds an RPC whose caller gave no deadline.
	rpcCallTimeout = 10 * time.Second
)

// connListener is a net.Listener fed with connections accepted (and
// authenticated) elsewhere: the secure stream's RPC connections.
type connListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newConnListener(addr net.Addr) *connListener {
	return &connListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

// Accept returns the next connection, or net.ErrClosed after Close.
func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops Accept; connections already handed out are their
// server's to close.
func (l *connListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr is the Raft port's address.
func (l *connListener) Addr() net.Addr { return l.addr }

// rpcError is the body of every RPC answer that is not a success.
type rpcError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// rpcNode is the RPC side of a Node: its server and its client. It is
// nil for a node without a cluster secret, which has no peers.
type rpcNode struct {
	mux    *http.ServeMux
	server *http.Server
	client *http.Client
	ln     *connListener
	wg     sync.WaitGroup
}

// startRPC serves the RPC routes on the secure stream's RPC connections
// and makes the client that dials peers' Raft ports with the RPC
// protocol.
func (n *Node) startRPC(s *secureStream) {
	r := &rpcNode{mux: http.NewServeMux(), ln: s.rpc}
	r.server = &http.Server{
		Handler:           r.mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       rpcIdleTimeout,
		MaxHeaderBytes:    rpcMaxHeader,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelWarn),
	}
	conf := dialConfig(s.tls, protoRPC)
	r.client = &http.Client{
		Transport: &http.Transport{
			DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := s.dialTCP(ctx, addr)
				if err != nil {
					return nil, err
				}
				tc := tls.Client(c, conf)
				if err := tc.HandshakeContext(ctx); err != nil {
					c.Close()
					return nil, handshakeError(addr, err)
				}
				// The admin check, bound to this session, as on Raft's
				// connections (exchangeAdmin): no route is served to a
				// member with another admin token.
				if dl, ok := ctx.Deadline(); ok {
					tc.SetDeadline(dl)
				}
				if err := s.exchangeAdmin(tc, roleDialer); err != nil {
					tc.Close()
					return nil, fmt.Errorf("cluster: %s: %w", addr, err)
				}
				tc.SetDeadline(time.Time{})
				return tc, nil
			},
			// As many idle connections as forwarded writes in flight,
			// so that a busy follower does not pay a handshake for
			// each.
			MaxIdleConnsPerHost:   128,
			IdleConnTimeout:       rpcIdleTimeout / 2,
			ResponseHeaderTimeout: rpcCallTimeout + 5*time.Second,
			DisableCompression:    true,
		},
		// No redirects between servers: an answer is the answer.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	n.rpc = r
	n.routes()
	n.restoreRoutes()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if err := r.server.Serve(r.ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			n.log.Warn("cluster rpc server stopped", "err", err)
		}
	}()
}

// handshakeError names the usual cause of a refused handshake: the peer
// holds another cluster secret.
func handshakeError(addr string, err error) error {
	return fmt.Errorf("%w: %s refused this node or was refused by it "+
		"(do both hold the same cluster secret, or certificates from the same cluster CA?): %w", errHandshake, addr, err)
}

// errHandshake marks a connection to a member that failed in the
// authenticated handshake, before any request was sent.
var errHandshake = errors.New("cluster: the authenticated handshake failed")

// closeRPC stops the RPC server and waits for it.
func (r *rpcNode) close() {
	if r == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := r.server.Shutdown(ctx); err != nil {
		r.server.Close()
	}
	r.ln.Close()
	r.wg.Wait()
	r.client.CloseIdleConnections()
}

// HandleRPC adds a route to the servers' RPC (another package's: the
// registry's heartbeat forwarding and freshness feed). Its callers are
// members of the cluster with the same admin token: every RPC
// connection, whatever route it then asks for, was authenticated in the
// handshake and passed the admin check (exchangeAdmin) before the RPC
// server read a byte of it. Bodies are bounded at rpcMaxBody. It does
// nothing on a node without a cluster secret, which has no RPC.
func (n *Node) HandleRPC(pattern string, h http.Handler) {
	if n.rpc == nil {
		return
	}
	n.handle(pattern, h)
}

// handle adds a route to the servers' RPC with its body bounded at
// rpcMaxBody: the cluster's own routes and HandleRPC's. Only
// /cluster/restore has a bound of its own (restore_live.go).
func (n *Node) handle(pattern string, h http.Handler) {
	n.rpc.mux.Handle(pattern, http.MaxBytesHandler(h, rpcMaxBody))
}

// HasPeers reports whether this node can have peers: it has a cluster
// secret, so a Raft listener and the servers' RPC.
func (n *Node) HasPeers() bool { return n.rpc != nil }

// ErrNoRPC is returned by the calls to peers on a node without a
// cluster secret.
var ErrNoRPC = errors.New("cluster: this node has no cluster secret, so no peers")

// Call sends an RPC to the member at raftAddr: a POST of in as JSON (a
// GET when in is nil) to path, decoding the answer into out when out is
// not nil. A refusal comes back as a *RemoteError. Another package's
// routes (HandleRPC) are called through it.
func (n *Node) Call(ctx context.Context, raftAddr, path string, in, out any) error {
	if n.rpc == nil {
		return ErrNoRPC
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, rpcCallTimeout)
		defer cancel()
	}
	method, body := http.MethodGet, io.Reader(nil)
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		method, body = http.MethodPost, bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "https://"+raftAddr+path, body)
	if err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok {
		req.Header.Set(deadlineHeader, time.Until(dl).String())
	}
	resp, err := n.rpc.client.Do(req)
	if err != nil {
		return adminRefusal(raftAddr, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, rpcMaxBody))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e rpcError
		if json.Unmarshal(b, &e) != nil || e.Code == "" {
			e = rpcError{Code: "internal", Message: fmt.Sprintf("%s from %s", resp.Status, raftAddr)}
		}
		return &RemoteError{Addr: raftAddr, Code: e.Code, Message: e.Message}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("cluster: answer of %s%s: %w", raftAddr, path, err)
	}
	return nil
}

// adminRefusal turns a connection refused for its admin check into the
// refusal a member answers with (code admin_mismatch); other errors are
// returned as they are.
func adminRefusal(addr string, err error) error {
	if errors.Is(err, errAdminMismatch) {
		return &RemoteError{Addr: addr, Code: "admin_mismatch", Message: errAdminMismatch.Error()}
	}
	return err
}

// deadlineHeader carries the time left to the caller's deadline, so
// that the member answering works within it.
const deadlineHeader = "X-Muster-Deadline"

// RemoteError is a refusal answered by another member.
type RemoteError struct {
	Addr    string // the member's Raft address
	Code    string
	Message string
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("cluster: %s refused: %s (%s)", e.Addr, e.Message, e.Code)
}

// rpcContext is the request's context bounded by the caller's deadline.
func rpcContext(r *http.Request) (context.Context, context.CancelFunc) {
	d, err := time.ParseDuration(r.Header.Get(deadlineHeader))
	if err != nil || d <= 0 || d > time.Minute {
		d = rpcCallTimeout
	}
	return context.WithTimeout(r.Context(), d)
}

// WriteRPC writes v as an RPC's JSON answer.
func WriteRPC(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// WriteRPCError writes an RPC refusal.
func WriteRPCError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(rpcError{Code: code, Message: msg})
}

// ReadRPC decodes an RPC's JSON body into v, answering 400 when it
// cannot; it reports whether it could.
func ReadRPC(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		WriteRPCError(w, http.StatusBadRequest, "bad_request", err.Error())
		return false
	}
	return true
}
