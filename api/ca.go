package api

// CertificateRequest is the body of POST /v1/instances/{id}/certificate:
// a PEM certificate request (CSR) made with a key the instance holds.
// The names the CSR asks for are ignored: the registry decides every
// name of the certificate.
type CertificateRequest struct {
	CSR string `json:"csr"`
}

// CertificateResponse is the answer to a certificate request.
type CertificateResponse struct {
	// Certificate is the instance's certificate, PEM.
	Certificate string `json:"certificate"`
	// CA is every CA certificate the registry holds, PEM: the bundle a
	// peer's certificate must chain to.
	CA string `json:"ca"`
	// SPIFFEID is the certificate's URI SAN,
	// spiffe://<trust-domain>/svc/<service>.
	SPIFFEID string `json:"spiffe_id"`
	// ExpiresAt is the certificate's NotAfter, RFC 3339, UTC.
	ExpiresAt string `json:"expires_at"`
	// Serial is its serial number, hex.
	Serial string `json:"serial"`
}

// CAResponse is GET /v1/ca?format=json: the registry's CA certificates.
type CAResponse struct {
	// TrustDomain is the SPIFFE trust domain of the certificates issued.
	TrustDomain string `json:"trust_domain"`
	// Bundle is every CA certificate, PEM, oldest first.
	Bundle string `json:"bundle"`
	// CAs are the same certificates one by one, oldest first; the last
	// signs.
	CAs []CAInfo `json:"cas"`
}

// CAInfo is one CA certificate.
type CAInfo struct {
	// Fingerprint is the SHA-256 of the certificate (DER), hex.
	Fingerprint string `json:"fingerprint"`
	// Certificate is the CA certificate, PEM.
	Certificate string `json:"certificate"`
	// NotBefore and NotAfter are its validity, RFC 3339, UTC.
	NotBefore string `json:"not_before"`
	NotAfter  string `json:"not_after"`
	// Signing is true for the CA that signs new certificates.
	Signing bool `json:"signing"`
}

// CARotateResponse is the answer to POST /v1/ca/rotate.
type CARotateResponse struct {
	// Fingerprint is the new signing CA's.
	Fingerprint string `json:"fingerprint"`
}

// CodeInstanceCritical means the instance asking for a certificate is
// critical (its TTL ran out, or its checks fail): it gets one once it
// is passing again.
const CodeInstanceCritical = "instance_critical"

// MediaTypePEM is the media type of GET /v1/ca's default answer.
const MediaTypePEM = "application/x-pem-file"
