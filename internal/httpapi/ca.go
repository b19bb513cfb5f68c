package httpapi

import (
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/registry"
)

// certificate handles POST /v1/instances/{id}/certificate with the
// instance's session token: the body's CSR, signed.
func (a *apiServer) certificate(w http.ResponseWriter, r *http.Request) error {
	// The body is read once the caller is authenticated: the CSR,
	// JSON-escaped, within MaxCSRSize and room for the object.
	body := func() ([]byte, error) {
		var req api.CertificateRequest
		if e := decodeJSON(w, r, 2*registry.MaxCSRSize+1024, &req); e != nil {
			return nil, e
		}
		return []byte(req.CSR), nil
	}
	c, err := a.reg.Certificate(r.Context(), r.PathValue("id"), Bearer(r), body)
	if err != nil {
		return heartbeatAuth.apply(err)
	}
	WriteJSON(w, http.StatusOK, api.CertificateResponse{Certificate: string(c.CertPEM), CA: string(c.Bundle),
		SPIFFEID: c.SPIFFEID, ExpiresAt: c.ExpiresAt.UTC().Format(time.RFC3339), Serial: c.Serial})
	return nil
}

// caBundle handles GET /v1/ca: the CA certificates, PEM, or JSON with
// ?format=json. Anyone may read it, as any read.
func (a *apiServer) caBundle(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	for k, v := range q {
		if k != "format" || len(v) != 1 {
			return BadField(k, "GET /v1/ca takes one parameter, format (pem or json), once")
		}
	}
	format := q.Get("format")
	if format != "" && format != "pem" && format != "json" {
		return BadField("format", "format %.16q: use pem (the default) or json", format)
	}
	bundle, fingerprints, err := a.reg.CABundle(r.Context())
	if err != nil {
		return err
	}
	if format != "json" {
		w.Header().Set("Content-Type", api.MediaTypePEM)
		w.WriteHeader(http.StatusOK)
		w.Write(bundle)
		return nil
	}
	ans := api.CAResponse{TrustDomain: a.reg.TrustDomain(), Bundle: string(bundle), CAs: []api.CAInfo{}}
	rest := bundle
	for i := 0; ; i++ {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil || i >= len(fingerprints) {
			break
		}
		info := api.CAInfo{Fingerprint: fingerprints[i], Certificate: string(pem.EncodeToMemory(block)), Signing: i == len(fingerprints)-1}
		if cert, err := x509.ParseCertificate(block.Bytes); err == nil {
			info.NotBefore, info.NotAfter = cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339)
		}
		ans.CAs = append(ans.CAs, info)
	}
	WriteJSON(w, http.StatusOK, ans)
	return nil
}

// rotateCA handles POST /v1/ca/rotate (admin token).
func (a *apiServer) rotateCA(w http.ResponseWriter, r *http.Request) error {
	id, err := a.reg.RotateCA(r.Context(), Bearer(r))
	if err != nil {
		return adminAuth.apply(err)
	}
	WriteJSON(w, http.StatusOK, api.CARotateResponse{Fingerprint: id})
	return nil
}
