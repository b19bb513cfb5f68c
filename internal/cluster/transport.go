package cluster

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// The rule of the Raft port: a node without a cluster secret or
// certificates from a cluster CA has no Raft listener at all. It is a
// single voter whose Raft runs over an in-memory transport that nothing
// outside the process can reach, and its Config.RaftAddr is unused. A
// node with either listens on RaftAddr, and every connection, in either
// direction, is mutually authenticated with TLS 1.3 before Raft reads or
// writes a byte of it (secureStream): with a key derived from the secret
// (secretTLSConfig), or with certificates from the CA (tls.go). A peer
// that proves neither is dropped and logged at warn.

// InMemoryAddrPrefix starts the Raft address of a node that has no Raft
// listener ("in-memory:" + its node ID); Node.RaftAddr and Node.Leader
// report it. Nothing can dial it.
const InMemoryAddrPrefix = "in-memory:"

// Limits of the secure stream layer.
const (
	// handshakeTimeout bounds how long a connection may take to prove its
	// credential, so that a silent stranger cannot hold it open.
	handshakeTimeout = 5 * time.Second
	// maxHandshakes bounds the connections being authenticated at once.
	// A connection beyond it is closed at once.
	maxHandshakes = 64
	// reservedHandshakesDivisor sets the share of the handshake slots
	// (a quarter, whatever their number: 16 of maxHandshakes) that only
	// members' addresses may take; strangers together hold at most the
	// rest (takeSlot).
	reservedHandshakesDivisor = 4
	// refusalLogEvery is the least time between two warnings about
	// refused connections; those in between are counted in the next.
	refusalLogEvery = time.Second
)

// transport is what a Node needs of its Raft transport.
type transport interface {
	raft.Transport
	Close() error
}

// peerAuth is how the Raft port authenticates both ends of every
// connection: Secret (a key derived from the shared cluster secret) or
// *TLSIdentity (certificates from the cluster CA). A node has one or
// neither (loadPeerAuth).
type peerAuth interface {
	// tlsConfig returns the configuration both ends of a connection use:
	// TLS 1.3, this node's certificate, the check of the peer's, and the
	// ALPN protocols of the Raft port.
	tlsConfig() (*tls.Config, error)
	// credential names what a peer must prove, for logs ("the cluster
	// secret"); it never holds the credential itself.
	credential() string
}

// newTransport returns the node's Raft transport: in memory without a
// credential (auth nil), the secure stream layer on cfg.RaftAddr with one.
func newTransport(cfg Config, auth peerAuth, hl hclog.Logger) (transport, *secureStream, error) {
	if auth == nil {
		_, t := raft.NewInmemTransport(raft.ServerAddress(InMemoryAddrPrefix + cfg.NodeID))
		return t, nil, nil
	}
	stream, err := listenSecure(cfg.RaftAddr, auth, cfg.Logger)
	if err != nil {
		return nil, nil, err
	}
	stream.faults.Store(cfg.faults)
	stream.admin.Store(&cfg.AdminCheck)
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  stream,
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  hl,
	}), stream, nil
}

// errNotClusterKey is the handshake error of a peer whose key is not the
// one derived from the cluster secret.
var errNotClusterKey = errors.New("cluster: the peer does not hold the cluster secret")

// secretTLSConfig returns the TLS configuration both ends of a Raft
// connection use in secret mode. Each presents a certificate for the key
// derived from the secret and accepts the other only if its certificate
// is for that same key; TLS 1.3 makes each prove it holds the private key
// (CertificateVerify), so a certificate copied off the wire is of no use.
// Certificate chains, names and dates are not checked (InsecureSkipVerify
// covers only those): possession of the key is the whole credential.
func secretTLSConfig(secret Secret) (*tls.Config, error) {
	key, err := identity(secret)
	if err != nil {
		return nil, err
	}
	pub := key.Public().(ed25519.PublicKey)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		NotBefore:    time.Unix(0, 0).UTC(),
		NotAfter:     time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		return nil, fmt.Errorf("cluster: transport certificate: %w", err)
	}
	verify := func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errNotClusterKey
		}
		cert, err := x509.ParseCertificate(raw[0])
		if err != nil {
			return errNotClusterKey
		}
		got, ok := cert.PublicKey.(ed25519.PublicKey)
		if !ok || subtle.ConstantTimeCompare(got, pub) != 1 {
			return errNotClusterKey
		}
		return nil
	}
	return &tls.Config{
		MinVersion:            tls.VersionTLS13,
		Certificates:          []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		ClientAuth:            tls.RequireAnyClientCert,
		InsecureSkipVerify:    true, // chains and names only; VerifyPeerCertificate checks the key
		VerifyPeerCertificate: verify,
		ServerName:            "muster-raft",
		NextProtos:            []string{protoRaft, protoRPC},
	}, nil
}

// The two protocols the Raft port speaks, told apart by ALPN in the same
// authenticated handshake: Raft's own, and the servers' RPC (rpc.go).
const (
	protoRaft = "muster-raft/1"
	protoRPC  = "muster-rpc/1"
)

// dialConfig returns conf for a client that speaks proto only.
func dialConfig(conf *tls.Config, proto string) *tls.Config {
	c := conf.Clone()
	c.NextProtos = []string{proto}
	return c
}

// secureStream is a raft.StreamLayer over TCP in which every connection
// is mutually authenticated (with the cluster secret, or certificates
// from the cluster CA) before it is handed to Raft (Accept) or returned
// to it (Dial).
//
// An accept loop (one goroutine) takes TCP connections and starts a
// handshake goroutine for each, at most maxHandshakes at a time; each
// handshake has handshakeTimeout to finish. Authenticated connections
// wait on conns for Accept. Close stops the loop and every handshake, and
// waits for them.
type secureStream struct {
	ln        net.Listener
	advertise net.Addr
	tls       *tls.Config
	log       *slog.Logger
	// credential is what peers prove (peerAuth.credential), for logs.
	credential string

	// Tunables, set before the accept loop starts (tests shorten them).
	handshakeTimeout time.Duration
	logEvery         time.Duration
	// faults cuts links in tests of partitions; nil in production. Set
	// once, after the accept loop started, hence atomic.
	faults atomic.Pointer[faults]
	// admin is Config.AdminCheck, proved on every connection, Raft's
	// and the RPC's (exchangeAdmin); set with faults.
	admin atomic.Pointer[[]byte]
	// reserved says whether a remote address is a member's (a server of
	// the Raft configuration, or one this node was told to join or heard
	// of): only those may take the handshake slots kept for members
	// (takeSlot). Set once the node can answer, hence atomic; nil means
	// no address is a member's.
	reserved atomic.Pointer[func(netip.Addr) bool]
	// perIP counts the handshakes in progress from each address group
	// (addrGroup), and strangers those from groups that are not
	// members', under mu (see takeSlot).
	perIP     map[string]int
	strangers int

	slots chan struct{} // a token per handshake in progress
	conns chan net.Conn // authenticated Raft connections, for Accept
	rpc   *connListener // authenticated RPC connections (rpc.go)
	done  chan struct{}
	ctx   context.Context // ends at Close, aborting handshakes
	stop  context.CancelFunc
	once  sync.Once
	wg    sync.WaitGroup

	mu         sync.Mutex // guards perIP, strangers and the two below
	lastWarn   time.Time
	suppressed int
}

var _ raft.StreamLayer = (*secureStream)(nil)

// listenSecure binds addr and starts accepting authenticated connections.
func listenSecure(addr string, auth peerAuth, log *slog.Logger) (*secureStream, error) {
	return listenSecureWith(addr, auth, log, handshakeTimeout, maxHandshakes, refusalLogEvery)
}

func listenSecureWith(addr string, auth peerAuth, log *slog.Logger, timeout time.Duration, slots int, logEvery time.Duration) (*secureStream, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	conf, err := auth.tlsConfig()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cluster: raft listener: %w", err)
	}
	tcp, ok := ln.Addr().(*net.TCPAddr)
	if !ok || tcp.IP.IsUnspecified() {
		ln.Close()
		return nil, fmt.Errorf("cluster: raft address %s cannot be given to peers; listen on the IP address they reach this node at", addr)
	}
	s := &secureStream{
		ln: ln, advertise: tcp, tls: conf, log: log, credential: auth.credential(),
		handshakeTimeout: timeout, logEvery: logEvery,
		slots: make(chan struct{}, slots),
		conns: make(chan net.Conn),
		done:  make(chan struct{}),
	}
	s.rpc = newConnListener(tcp)
	s.ctx, s.stop = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

func (s *secureStream) acceptLoop() {
	defer s.wg.Done()
	var delay time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			// A temporary failure (out of file descriptors): back off.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("raft listener: accept failed", "err", err)
			select {
			case <-s.done:
				return
			case <-time.After(delay):
			}
			continue
		}
		delay = 0
		if f := s.faults.Load(); f != nil && !f.admit(c, c.LocalAddr().String(), c.RemoteAddr().String()) {
			c.Close()
			continue
		}
		slot, err := s.takeSlot(c.RemoteAddr())
		if err != nil {
			c.Close()
			s.refused(c.RemoteAddr(), err)
			continue
		}
		s.wg.Add(1)
		go s.handshake(c, slot)
	}
}

// handshake authenticates one accepted connection and hands it to Accept,
// or closes it.
func (s *secureStream) handshake(c net.Conn, slot handshakeSlot) {
	defer s.wg.Done()
	ctx, cancel := context.WithTimeout(s.ctx, s.handshakeTimeout)
	c.SetDeadline(time.Now().Add(s.handshakeTimeout))
	tc := tls.Server(c, s.tls)
	err := tc.HandshakeContext(ctx)
	if err == nil {
		err = s.exchangeAdmin(tc, roleListener)
	}
	cancel()
	s.releaseSlot(slot)
	if err != nil {
		c.Close()
		select {
		case <-s.done:
		default:
			s.refused(c.RemoteAddr(), err)
		}
		return
	}
	c.SetDeadline(time.Time{})
	conns, conn := s.conns, net.Conn(tc)
	if tc.ConnectionState().NegotiatedProtocol == protoRPC {
		// Hidden from net/http as a TLS connection: it would look for a
		// handler of the negotiated protocol and, finding none, close it.
		conns, conn = s.rpc.conns, plainConn{tc}
	}
	select {
	case conns <- conn:
	case <-s.done:
		tc.Close()
	}
}

// maxHandshakesPerIP is the share of the handshake slots one address
// group (addrGroup) may hold.
const maxHandshakesPerIP = 16

// handshakeSlot is what takeSlot counted for one connection.
type handshakeSlot struct {
	group    string
	stranger bool
}

// addrGroup is the unit the handshake slots are shared by: an IPv4
// address, or the /64 of an IPv6 address (one host commonly holds a
// whole /64). An IPv4 address in IPv6 form is taken as IPv4.
func addrGroup(ip netip.Addr) string {
	ip = ip.Unmap()
	if ip.Is4() {
		return ip.String()
	}
	p, err := ip.Prefix(64)
	if err != nil {
		return ip.String()
	}
	return p.String()
}

// remoteIP is the IP address of a connection's remote end.
func remoteIP(remote net.Addr) netip.Addr {
	if t, ok := remote.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(t.IP); ok {
			return ip.Unmap()
		}
	}
	ap, err := netip.ParseAddrPort(remote.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// takeSlot counts a handshake from remote, or says why there is no room
// for it. The rule: at most maxHandshakesPerIP handshakes from one
// address group; at most the slots less a quarter from addresses that
// are not members' (strangers, together); members' addresses may take
// any free slot. So strangers, however many addresses they hold, can
// fill only the unreserved share, and a member still gets in.
func (s *secureStream) takeSlot(remote net.Addr) (handshakeSlot, error) {
	ip := remoteIP(remote)
	slot := handshakeSlot{group: addrGroup(ip), stranger: true}
	if f := s.reserved.Load(); f != nil && ip.IsValid() && (*f)(ip) {
		slot.stranger = false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perIP == nil {
		s.perIP = map[string]int{}
	}
	if s.perIP[slot.group] >= maxHandshakesPerIP {
		return slot, errors.New("too many connections from this address are proving the cluster credential at once")
	}
	if slot.stranger && s.strangers >= cap(s.slots)-cap(s.slots)/reservedHandshakesDivisor {
		return slot, errors.New("too many connections from addresses that are not members' are proving the cluster credential at once")
	}
	select {
	case s.slots <- struct{}{}:
	default:
		return slot, errors.New("too many connections are proving their credentials at once")
	}
	s.perIP[slot.group]++
	if slot.stranger {
		s.strangers++
	}
	return slot, nil
}

// releaseSlot ends a handshake counted by takeSlot.
func (s *secureStream) releaseSlot(slot handshakeSlot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	<-s.slots
	if s.perIP[slot.group]--; s.perIP[slot.group] <= 0 {
		delete(s.perIP, slot.group)
	}
	if slot.stranger {
		s.strangers--
	}
}

// plainConn is an authenticated connection served as plain HTTP/1.1.
type plainConn struct{ net.Conn }

// refused logs a refused connection at warn, at most once per logEvery;
// the ones in between are counted in the next line. err never holds the
// secret or a key.
func (s *secureStream) refused(remote net.Addr, err error) {
	s.mu.Lock()
	now := time.Now()
	if !s.lastWarn.IsZero() && now.Sub(s.lastWarn) < s.logEvery {
		s.suppressed++
		s.mu.Unlock()
		return
	}
	n := s.suppressed
	s.lastWarn, s.suppressed = now, 0
	s.mu.Unlock()
	if errors.Is(err, errAdminMismatch) {
		s.log.Error("refused a member whose admin token differs from this node's; every server of a cluster needs the same admin token",
			"remote", remote.String(), "err", err, "refused_since_last_warning", n)
		return
	}
	s.log.Warn("raft: refused a connection that did not prove it holds "+s.credential,
		"remote", remote.String(), "err", err, "refused_since_last_warning", n)
}

// Accept returns the next authenticated connection.
func (s *secureStream) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	}
}

// Close stops listening, aborts handshakes in progress and waits for them.
func (s *secureStream) Close() error {
	var err error
	s.once.Do(func() {
		close(s.done)
		s.stop()
		err = s.ln.Close()
		s.rpc.Close()
		s.wg.Wait()
	})
	return err
}

// Addr is the address peers dial.
func (s *secureStream) Addr() net.Addr { return s.advertise }

// Dial connects to a peer and authenticates it (and this node to it)
// within timeout.
func (s *secureStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if timeout <= 0 || timeout > s.handshakeTimeout {
		timeout = s.handshakeTimeout
	}
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	c, err := s.dialTCP(ctx, string(address))
	if err != nil {
		return nil, err
	}
	tc := tls.Client(c, dialConfig(s.tls, protoRaft))
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("cluster: raft peer %s: %w", address, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		tc.SetDeadline(dl)
	}
	if err := s.exchangeAdmin(tc, roleDialer); err != nil {
		tc.Close()
		return nil, fmt.Errorf("cluster: raft peer %s: %w", address, err)
	}
	tc.SetDeadline(time.Time{})
	return tc, nil
}

// errAdminMismatch is the refusal of a Raft connection between members
// whose admin tokens differ.
var errAdminMismatch = errors.New("the peer's admin token differs from this server's; every server of a cluster needs the same admin token (MUSTER_ADMIN_TOKEN or --admin-token-file)")

// The two ends of a connection, for exchangeAdmin: each proves the
// admin check for its own role, so that a proof sent by one end is of no
// use to the other.
const (
	roleDialer   = "dialer"
	roleListener = "listener"
)

// adminExporterLabel is the TLS exporter label (RFC 8446, section 7.5)
// of the keying material the admin proofs are bound to.
const adminExporterLabel = "EXPORTER-muster-admin-check-v1"

// adminProof is HMAC-SHA256, keyed with the admin check, of the
// connection's exported keying material and role: a value good for this
// connection and this end only.
func adminProof(check []byte, c *tls.Conn, role string) ([]byte, error) {
	cs := c.ConnectionState()
	km, err := cs.ExportKeyingMaterial(adminExporterLabel, nil, 32)
	if err != nil {
		return nil, fmt.Errorf("cluster: export keying material: %w", err)
	}
	m := hmac.New(sha256.New, check)
	m.Write(km)
	m.Write([]byte(role))
	return m.Sum(nil), nil
}

// exchangeAdmin runs on every authenticated connection, Raft's and the
// RPC's, in both directions, before Raft or the RPC server sees it: each
// end sends its proof of the admin check (Config.AdminCheck) for its own
// role (adminProof), reads the other's and compares it, in constant
// time, with the proof it expects for the other role. The raw admin
// check never travels, and a proof is bound to the TLS session and to
// one end, so a peer without the admin token cannot reflect this end's
// proof back, nor replay one from another connection. A mismatch refuses
// the connection on both ends (errAdminMismatch): a server with another
// admin token neither votes, replicates, leads, nor reaches any RPC
// route.
func (s *secureStream) exchangeAdmin(c *tls.Conn, role string) error {
	var check []byte
	if p := s.admin.Load(); p != nil {
		check = *p
	}
	other := roleListener
	if role == roleListener {
		other = roleDialer
	}
	mine, err := adminProof(check, c, role)
	if err != nil {
		return err
	}
	want, err := adminProof(check, c, other)
	if err != nil {
		return err
	}
	if _, err := c.Write(mine); err != nil {
		return err
	}
	theirs := make([]byte, sha256.Size)
	if _, err := io.ReadFull(c, theirs); err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(want, theirs) != 1 {
		return errAdminMismatch
	}
	return nil
}

// dialTCP connects to a member's Raft port, for Raft or the RPC (with
// faults set, from the IP address this node listens on, and not at all
// across a cut link).
func (s *secureStream) dialTCP(ctx context.Context, address string) (net.Conn, error) {
	var d net.Dialer
	f := s.faults.Load()
	if f != nil {
		local := s.advertise.(*net.TCPAddr).IP.String()
		if f.blocked(local, address) {
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errLinkCut}
		}
		d.LocalAddr = &net.TCPAddr{IP: s.advertise.(*net.TCPAddr).IP}
	}
	c, err := d.DialContext(ctx, "tcp", address)
	if err != nil {
		return nil, err
	}
	if f != nil && !f.admit(c, c.LocalAddr().String(), address) {
		c.Close()
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errLinkCut}
	}
	return c, nil
}

// singleVoterRule enforces the rule for a node without a cluster secret
// or certificates: its Raft configuration, if it has one yet, lists this
// node and no other server. A member of a larger cluster needs one of
// them to reach its peers; a configuration without this node means
// node-id was changed.
func singleVoterRule(conf raft.Configuration, self raft.ServerID, dataDir string) error {
	if len(conf.Servers) == 0 {
		return nil
	}
	mine := false
	var all []string
	for _, s := range conf.Servers {
		mine = mine || s.ID == self
		all = append(all, fmt.Sprintf("%s (%s)", s.ID, s.Address))
	}
	if !mine {
		return fmt.Errorf("cluster: the Raft configuration in raft.db lists %v but not this node, %s; was %s/node-id changed?",
			all, self, dataDir)
	}
	if len(conf.Servers) > 1 {
		return fmt.Errorf("cluster: the Raft configuration in raft.db lists other servers %v; "+
			"the members of a cluster of more than one node need the cluster secret (muster server --cluster-secret-file) "+
			"or certificates from the cluster CA (--tls-ca, --tls-cert, --tls-key)", all)
	}
	return nil
}

// updateOwnAddress makes the leader's entry in the Raft configuration
// carry its transport's address. Raft elects a single voter by its ID,
// so a node whose address changed (a data dir bootstrapped on
// 127.0.0.1:9001, now without a listener, or on another port) still
// elects itself; the configuration is corrected here so that peers that
// join later are given the address this node has now. It runs on the
// leader only, once per term, and logs rather than fails: the stale
// address harms nothing until there are peers.
func (n *Node) updateOwnAddress() {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		n.log.Warn("could not read the Raft configuration", "err", err)
		return
	}
	self, addr := raft.ServerID(n.cfg.NodeID), n.transport.LocalAddr()
	for _, s := range f.Configuration().Servers {
		if s.ID != self || s.Address == addr || s.Suffrage != raft.Voter {
			continue
		}
		// AddVoter of an existing voter changes only its address.
		if err := n.waitFuture(n.raft.AddVoter(self, addr, f.Index(), n.cfg.ApplyTimeout)); err != nil {
			n.log.Warn("could not update this node's address in the Raft configuration", "from", s.Address, "to", addr, "err", err)
			return
		}
		n.log.Info("updated this node's address in the Raft configuration", "from", s.Address, "to", addr)
	}
}
