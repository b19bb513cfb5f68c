package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/musterhq/muster/internal/durable"
	"github.com/musterhq/muster/internal/tlsfiles"
)

// The files `muster tls` writes, and their defaults. Keys are ECDSA P-256
// (PKCS #8), which every TLS stack and browser takes, so that the same
// certificate can later serve HTTPS too.
const (
	caCertName = "muster-ca.pem"
	caKeyName  = "muster-ca-key.pem"
	// caDays and certDays are the default lifetimes (Consul's): a CA
	// for five years, a server's certificate for one.
	caDays   = 1825
	certDays = 365
	maxDays  = 36500
	// backdate starts a certificate's validity a little before now, so
	// that a server whose clock is behind the issuer's accepts it.
	backdate = 5 * time.Minute
	// maxKeyFile bounds the CA key file read: a PEM key is short.
	maxKeyFile = 64 << 10
)

const tlsLong = `Make the files for the certificate mode of the Raft port (the flags
--tls-ca, --tls-cert and --tls-key of muster server): a cluster CA, then
a certificate for each server, signed by it. Servers holding certificates
from the same CA authenticate each other with TLS 1.3, each with an
identity of its own; the alternative is one shared --cluster-secret-file.

  muster tls ca create --dir certs
  muster tls cert create --node n1 --dir certs --ip 10.0.0.1

The CA's key (muster-ca-key.pem) makes members: keep it off the servers.
No command overwrites a file.`

func newTLSCmd(e env) *cobra.Command {
	group := &cobra.Command{
		Use:   "tls",
		Short: "make a cluster CA and the servers' certificates (for --tls-ca, --tls-cert, --tls-key)",
		Long:  tlsLong,
		Args:  noSubcommand,
		RunE:  showGroupHelp(e),
	}
	ca := &cobra.Command{
		Use:   "ca",
		Short: "the cluster CA",
		Args:  noSubcommand,
		RunE:  showGroupHelp(e),
	}
	ca.AddCommand(newTLSCACreateCmd(e))
	cert := &cobra.Command{
		Use:   "cert",
		Short: "the servers' certificates",
		Args:  noSubcommand,
		RunE:  showGroupHelp(e),
	}
	cert.AddCommand(newTLSCertCreateCmd(e))
	group.AddCommand(ca, cert)
	return group
}

func newTLSCACreateCmd(e env) *cobra.Command {
	var (
		dir  string
		days int
	)
	cmd := &cobra.Command{
		Use:   "create [--dir DIR] [--days N]",
		Short: "make a cluster CA: muster-ca.pem and muster-ca-key.pem",
		Long: `Make a new cluster CA in --dir: its certificate, muster-ca.pem, which every
server is given (--tls-ca), and its private key, muster-ca-key.pem (mode
0600), which signs the servers' certificates (muster tls cert create) and
should be kept off the servers. Refuses to overwrite either file: a new CA
does not vouch for the servers the old one signed.`,
		Args: nArgs(0, "no arguments"),
		RunE: func(*cobra.Command, []string) error {
			if err := checkDays(days); err != nil {
				return err
			}
			certPath, keyPath := filepath.Join(dir, caCertName), filepath.Join(dir, caKeyName)
			if err := refuseExisting(certPath, keyPath); err != nil {
				return err
			}
			key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				return err
			}
			sn, err := serialNumber()
			if err != nil {
				return err
			}
			now := time.Now()
			tmpl := &x509.Certificate{
				SerialNumber: sn,
				// A random suffix tells one cluster's CA from another's
				// in errors and logs.
				Subject:   pkix.Name{Organization: []string{"muster"}, CommonName: "muster cluster CA " + strings.ToLower(rand.Text()[:8])},
				NotBefore: now.Add(-backdate),
				NotAfter:  now.AddDate(0, 0, days),
				IsCA:      true,
				// It signs servers' certificates, never another CA's.
				BasicConstraintsValid: true,
				MaxPathLenZero:        true,
				KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
			}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
			if err != nil {
				return fmt.Errorf("making the CA certificate: %w", err)
			}
			keyPEM, err := privateKeyPEM(key)
			if err != nil {
				return err
			}
			if err := writeNew(keyPath, keyPEM, certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "wrote the cluster CA's certificate to %s (give it to every server: --tls-ca), valid until %s\n",
				certPath, tmpl.NotAfter.UTC().Format(time.DateOnly))
			fmt.Fprintf(e.stdout, "wrote its private key to %s (mode 0600): it makes members, keep it off the servers\n", keyPath)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", ".", "directory to write the CA's files in (made 0700 if absent)")
	cmd.Flags().IntVar(&days, "days", caDays, "days the CA is valid; the certificates it signs cannot outlive it")
	cmd.MarkFlagDirname("dir")
	return cmd
}

func newTLSCertCreateCmd(e env) *cobra.Command {
	var (
		node, dir, caPath, caKeyPath string
		ips, dnsNames                []string
		days                         int
	)
	cmd := &cobra.Command{
		Use:   "create --node NAME [--dir DIR] [--ca FILE --ca-key FILE] [--ip IP]... [--dns NAME]... [--days N]",
		Short: "make a server's certificate, signed by the cluster CA: NAME.pem and NAME-key.pem",
		Long: `Make a certificate for the server NAME in --dir, signed by the cluster CA
(by default muster-ca.pem and muster-ca-key.pem in --dir): NAME.pem, for
the server's --tls-cert, and its private key NAME-key.pem (mode 0600), for
--tls-key. The certificate is for both server and client authentication
(each server dials its peers and accepts them) and names NAME. Raft does
not check addresses; --ip and --dns add the addresses clients use, for
when the same certificate serves HTTPS. Refuses to overwrite either file.`,
		Args: nArgs(0, "no arguments"),
		RunE: func(*cobra.Command, []string) error {
			if node == "" {
				return usageError("tls cert create needs --node NAME")
			}
			if !nodeNameRE.MatchString(node) {
				return usagef("--node %q: use at most 64 letters, digits, '.', '_' and '-', starting with a letter or digit (it names the files NAME.pem and NAME-key.pem)", node)
			}
			if err := checkDays(days); err != nil {
				return err
			}
			var addrs []net.IP
			for _, s := range ips {
				a, err := netip.ParseAddr(strings.TrimSpace(s))
				if err != nil || a.Zone() != "" {
					return usagef("--ip %q is not an IP address", s)
				}
				addrs = append(addrs, net.IP(a.Unmap().AsSlice()))
			}
			var names []string
			for _, s := range dnsNames {
				s = strings.TrimSpace(s)
				if len(s) > 253 || !dnsNameRE.MatchString(s) {
					return usagef("--dns %q is not a DNS name", s)
				}
				names = append(names, strings.ToLower(s))
			}
			if caPath == "" {
				caPath = filepath.Join(dir, caCertName)
			}
			if caKeyPath == "" {
				caKeyPath = filepath.Join(dir, caKeyName)
			}
			certPath, keyPath := filepath.Join(dir, node+".pem"), filepath.Join(dir, node+"-key.pem")
			if err := refuseExisting(certPath, keyPath); err != nil {
				return err
			}
			ca, caKey, err := loadCA(caPath, caKeyPath)
			if err != nil {
				return err
			}
			now := time.Now()
			notAfter := now.AddDate(0, 0, days)
			if !now.Before(ca.NotAfter) {
				return fmt.Errorf("the CA in %s expired on %s; make a new one (muster tls ca create) and new certificates for every server",
					caPath, ca.NotAfter.UTC().Format(time.DateOnly))
			}
			if notAfter.After(ca.NotAfter) {
				return usagef("the CA in %s expires on %s, before %d days from now: give --days %d or fewer", caPath,
					ca.NotAfter.UTC().Format(time.DateOnly), days, int(ca.NotAfter.Sub(now)/(24*time.Hour)))
			}
			key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				return err
			}
			sn, err := serialNumber()
			if err != nil {
				return err
			}
			tmpl := &x509.Certificate{
				SerialNumber:          sn,
				Subject:               pkix.Name{Organization: []string{"muster"}, CommonName: node},
				NotBefore:             now.Add(-backdate),
				NotAfter:              notAfter,
				BasicConstraintsValid: true,
				KeyUsage:              x509.KeyUsageDigitalSignature,
				ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
				DNSNames:              names,
				IPAddresses:           addrs,
			}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
			if err != nil {
				return fmt.Errorf("signing the certificate with the CA in %s: %w", caPath, err)
			}
			keyPEM, err := privateKeyPEM(key)
			if err != nil {
				return err
			}
			if err := writeNew(keyPath, keyPEM, certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "wrote %s's certificate to %s (--tls-cert), signed by %s, valid until %s\n",
				node, certPath, caPath, notAfter.UTC().Format(time.DateOnly))
			fmt.Fprintf(e.stdout, "wrote its private key to %s (mode 0600; --tls-key)\n", keyPath)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&node, "node", "", "the server's name, in the certificate and the files' names (its --node-id, say)")
	f.StringVar(&dir, "dir", ".", "directory to write the files in (made 0700 if absent), and to find the CA's in")
	f.StringVar(&caPath, "ca", "", "the CA's certificate (default: muster-ca.pem in --dir)")
	f.StringVar(&caKeyPath, "ca-key", "", "the CA's private key, readable by its owner only (default: muster-ca-key.pem in --dir)")
	f.StringSliceVar(&ips, "ip", nil, "an IP address the certificate names (repeat, or separate with commas)")
	f.StringSliceVar(&dnsNames, "dns", nil, "a DNS name the certificate names (repeat, or separate with commas)")
	f.IntVar(&days, "days", certDays, "days the certificate is valid (no longer than the CA)")
	cmd.MarkFlagDirname("dir")
	cmd.MarkFlagFilename("ca")
	cmd.MarkFlagFilename("ca-key")
	return cmd
}

var (
	// nodeNameRE is what --node may be: it becomes a file name.
	nodeNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	// dnsNameRE is a host name, or a wildcard over one.
	dnsNameRE = regexp.MustCompile(`^(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
)

func checkDays(days int) error {
	if days < 1 || days > maxDays {
		return usagef("--days must be between 1 and %d", maxDays)
	}
	return nil
}

// serialNumber returns a random positive serial number of at most 128
// bits (RFC 5280 allows 20 bytes).
func serialNumber() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	return n.Add(n, big.NewInt(1)), nil
}

func privateKeyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// refuseExisting fails if any of paths exists: muster tls never
// overwrites a file.
func refuseExisting(paths ...string) error {
	for _, p := range paths {
		_, err := os.Lstat(p)
		if err == nil {
			return fmt.Errorf("%s already exists; muster tls does not overwrite files: move it away, or give another --dir", p)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// writeNew writes a private key (0600) and then its certificate (0644),
// durably, into a directory it makes 0700 if absent. If the certificate
// cannot be written, the key is removed again.
func writeNew(keyPath string, keyPEM []byte, certPath string, certPEM []byte) error {
	if err := os.MkdirAll(filepath.Dir(keyPath), 0o700); err != nil {
		return err
	}
	if err := refuseExisting(certPath, keyPath); err != nil {
		return err
	}
	if err := durable.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	if err := durable.WriteFile(certPath, certPEM, 0o644); err != nil {
		os.Remove(keyPath)
		return err
	}
	return nil
}

// loadCA reads the CA's certificate and private key, and checks that they
// belong together and that the key file is its owner's alone.
func loadCA(certPath, keyPath string) (*x509.Certificate, crypto.Signer, error) {
	b, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, fmt.Errorf("the CA's certificate: %w; make a CA with muster tls ca create, or give --ca and --ca-key", err)
	}
	var block *pem.Block
	for rest := b; ; {
		block, rest = pem.Decode(rest)
		if block == nil || block.Type == "CERTIFICATE" {
			break
		}
	}
	if block == nil {
		return nil, nil, fmt.Errorf("%s holds no PEM certificate; give the CA's certificate (--ca), which muster tls ca create writes as %s", certPath, caCertName)
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", certPath, err)
	}
	if !ca.IsCA || ca.KeyUsage != 0 && ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, nil, fmt.Errorf("%s holds %q, which is not a CA certificate; give the CA's (--ca), which muster tls ca create writes as %s",
			certPath, ca.Subject.CommonName, caCertName)
	}
	keyPEM, err := readOwnerOnly(keyPath)
	if err != nil {
		return nil, nil, err
	}
	key, err := tlsfiles.ParsePrivateKey(keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("the CA's key %s: %w", keyPath, err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(ca.PublicKey) {
		return nil, nil, fmt.Errorf("the CA's key %s is not the key of the certificate %s; give the pair muster tls ca create wrote", keyPath, certPath)
	}
	return ca, key, nil
}

// readOwnerOnly reads a private key file, which must be a regular file
// that only its owner may read or write. Errors name the file and the
// fix, never its content.
// readOwnerOnly reads the CA's key with durable.ReadPrivateFile: a
// regular file of at most 64 KiB that only its owner may read or write.
func readOwnerOnly(path string) ([]byte, error) {
	b, err := durable.ReadPrivateFile(path, maxKeyFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("the CA's key: %w; make a CA with muster tls ca create, or give --ca and --ca-key", err)
	}
	if err != nil {
		return nil, fmt.Errorf("the CA's key: %w", err)
	}
	return b, nil
}
