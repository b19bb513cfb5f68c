package dnsapi

// NewResponder returns the answering function of one UDP worker or TCP
// connection of s (tcp says which transport the queries came over),
// without the recover that keeps a panic from stopping the server, so
// that a fuzzer sees one. It reuses its scratch space from call to call,
// as a worker does.
func NewResponder(s *Server) func(q []byte, tcp bool) []byte {
	return newResponder(s).respond
}
