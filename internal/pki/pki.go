// Package pki is the hub's small certificate authority and the agent's way
// to trust it without a public CA: the hub creates its own CA on first
// start, issues itself a server certificate and each device a client
// certificate bound to the device ID; agents pin the SHA-256 fingerprint of
// the CA's public key (from the join token or a pairing code) and verify the
// hub's chain against that CA only.
//
// ServerCerts keeps the hub's server certificate renewed while the hub
// runs, so that it never expires under connected agents. ProbeCA lets an
// agent that pairs without a join token learn the fingerprint of the CA a
// hub presents (trust on first use, confirmed by the user with a pairing
// code) before pinning it.
//
// It imports only the standard library (and internal/atomicfile); the hub
// uses all of it, the agent only the verification side (PinnedClientConfig,
// VerifyPinned, ProbeCA).
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/alicia-home/alicia/internal/atomicfile"
)

// Validity periods.
const (
	CAValidity     = 20 * 365 * 24 * time.Hour
	ServerValidity = 397 * 24 * time.Hour
	// ClientValidity is a device certificate's lifetime. Agents renew
	// theirs once RenewalDue (a third of it left); a device that was off
	// for longer renews with its broker password over pinned HTTPS when it
	// comes back, so an expired certificate never locks a device out. A
	// device is cut off by revoking it at the hub, not by expiry.
	ClientValidity = 365 * 24 * time.Hour
)

// ServerName is the TLS server name agents expect from every hub. The hub's
// identity is the pinned CA key, not a name: a name under the reserved
// .invalid TLD never resolves and does not depend on the hub's address
// (which mDNS may report as anything), and it stays valid when an agent
// does not know the hub ID yet (before enrolment).
const ServerName = "hub.alicia.invalid"

// hubName is the extra DNS name of a hub's certificate, naming its ID.
func hubName(hubID string) string { return hubID + ".hub.alicia.invalid" }

// Fingerprint returns the lowercase hex SHA-256 of the certificate's
// SubjectPublicKeyInfo: it identifies the CA key, and stays the same if the
// CA certificate is re-issued with the same key.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

// CA is the hub's certificate authority.
type CA struct {
	Cert *x509.Certificate
	key  crypto.Signer
}

// Fingerprint returns the CA's public-key fingerprint.
func (ca *CA) Fingerprint() string { return Fingerprint(ca.Cert) }

// CertPEM returns the CA certificate in PEM, for clients that take a CA file
// (Home Assistant, mosquitto_sub --cafile).
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// File names in the CA directory.
const (
	caKeyFile  = "ca.key"
	caCertFile = "ca.crt"
)

// LoadOrCreateCA loads the CA from dir, or creates it (key mode 0600) if
// neither file exists. One file without the other is an error: a half
// written CA must not be silently replaced, since every enrolled agent pins
// its key.
func LoadOrCreateCA(dir, hubID string, now time.Time) (ca *CA, created bool, err error) {
	keyPath, certPath := filepath.Join(dir, caKeyFile), filepath.Join(dir, caCertFile)
	keyPEM, kerr := os.ReadFile(keyPath)
	certPEM, cerr := os.ReadFile(certPath)
	switch {
	case errors.Is(kerr, fs.ErrNotExist) && errors.Is(cerr, fs.ErrNotExist):
		ca, err := newCA(hubID, now)
		if err != nil {
			return nil, false, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(ca.key)
		if err != nil {
			return nil, false, fmt.Errorf("pki: encode CA key: %w", err)
		}
		if err := atomicfile.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, false, fmt.Errorf("pki: write CA key: %w", err)
		}
		if err := atomicfile.WriteFile(certPath, ca.CertPEM(), 0o644); err != nil {
			return nil, false, fmt.Errorf("pki: write CA certificate: %w", err)
		}
		return ca, true, nil
	case kerr != nil:
		return nil, false, fmt.Errorf("pki: CA key %s: %w (the CA certificate exists: restore the key from a backup; a new CA would need every device re-paired)", keyPath, kerr)
	case cerr != nil:
		return nil, false, fmt.Errorf("pki: CA certificate %s: %w (the CA key exists: restore the certificate from a backup)", certPath, cerr)
	}
	if fi, err := os.Stat(keyPath); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, false, fmt.Errorf("pki: CA key %s has mode %v: it must not be readable by group or others (chmod 600 it)", keyPath, fi.Mode().Perm())
	}
	kb, _ := pem.Decode(keyPEM)
	cb, _ := pem.Decode(certPEM)
	if kb == nil || cb == nil {
		return nil, false, fmt.Errorf("pki: %s or %s is not PEM", keyPath, certPath)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, false, fmt.Errorf("pki: CA key %s: %w", keyPath, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, false, fmt.Errorf("pki: CA key %s: %T cannot sign", keyPath, k)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, false, fmt.Errorf("pki: CA certificate %s: %w", certPath, err)
	}
	if !publicKeysEqual(cert.PublicKey, signer.Public()) {
		return nil, false, fmt.Errorf("pki: %s and %s do not belong together", keyPath, certPath)
	}
	if !cert.IsCA {
		return nil, false, fmt.Errorf("pki: %s is not a CA certificate", certPath)
	}
	return &CA{Cert: cert, key: signer}, false, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ka, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ka.Equal(b)
}

func newCA(hubID string, now time.Time) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: generate CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "Alicia hub CA " + hubID, Organization: []string{"Alicia"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CAValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("pki: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	return &CA{Cert: cert, key: key}, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// IssueServer issues the hub's TLS server certificate: valid for
// ServerName and the hub's own name plus the given extra names and addresses, for server
// authentication only. The returned certificate carries the chain (leaf,
// CA) so that pinning clients can find the CA in what the server sends.
func (ca *CA) IssueServer(hubID string, dnsNames []string, ips []net.IP, now time.Time) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: generate server key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: hubName(hubID), Organization: []string{"Alicia"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(ServerValidity),
		DNSNames:     append([]string{ServerName, hubName(hubID)}, dnsNames...),
		IPAddresses:  ips,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: create server certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.Cert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// RenewalDue reports whether a certificate should be renewed at now: when
// less than a third of its validity is left (or it has expired).
func RenewalDue(cert *x509.Certificate, now time.Time) bool {
	life := cert.NotAfter.Sub(cert.NotBefore)
	return !now.Before(cert.NotAfter.Add(-life / 3))
}

// IssueClient issues a device's client certificate for its own public key
// (generated on the device; only the public key reaches the hub). The
// certificate names the device ID as its common name and is valid for
// client authentication only.
func (ca *CA) IssueClient(deviceID string, pub crypto.PublicKey, now time.Time) (*x509.Certificate, error) {
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: deviceID, Organization: []string{"Alicia device"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(ClientValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("pki: create client certificate for %s: %w", deviceID, err)
	}
	return x509.ParseCertificate(der)
}

// ErrWrongHub is wrapped by verification errors when the peer's chain does
// not lead to the pinned CA key: another hub (or an impostor) answered.
var ErrWrongHub = errors.New("the hub's certificate does not chain to the pinned CA")

// PinnedClientConfig returns a TLS client configuration that trusts only a
// hub whose server certificate chains to a CA with the pinned public-key
// fingerprint. The CA certificate itself comes from the server's chain, so
// the agent needs only the fingerprint. certs are the client's own
// certificates (nil during enrolment).
func PinnedClientConfig(fingerprint string, certs []tls.Certificate) *tls.Config {
	name := ServerName
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: certs,
		ServerName:   name,
		// The standard verification needs a root pool, which the agent does
		// not have before it sees the CA: VerifyConnection does the whole
		// verification against the pinned key instead.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return VerifyPinned(cs.PeerCertificates, fingerprint, name)
		},
	}
}

// VerifyPinned checks that chain[0] is valid for serverName now and chains
// to a certificate in chain whose public-key fingerprint is fingerprint.
func VerifyPinned(chain []*x509.Certificate, fingerprint, serverName string) error {
	if len(chain) == 0 {
		return fmt.Errorf("pki: %w: no certificate", ErrWrongHub)
	}
	roots := x509.NewCertPool()
	found := false
	for _, c := range chain[1:] {
		if c.IsCA && Fingerprint(c) == fingerprint {
			roots.AddCert(c)
			found = true
		}
	}
	if !found {
		return fmt.Errorf("pki: %w (pinned %s…)", ErrWrongHub, fingerprint[:min(12, len(fingerprint))])
	}
	opts := x509.VerifyOptions{Roots: roots, DNSName: serverName, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	_, err := chain[0].Verify(opts)
	var invalid x509.CertificateInvalidError
	if errors.As(err, &invalid) && invalid.Reason == x509.Expired && time.Now().Before(chain[0].NotBefore) {
		// The local clock is behind the certificate (a board without a
		// real-time clock, before NTP): the identity is proven by the
		// pinned key, so check the rest as of the certificate's start.
		opts.CurrentTime = chain[0].NotBefore.Add(time.Minute)
		_, err = chain[0].Verify(opts)
	}
	if errors.As(err, &invalid) && invalid.Reason == x509.Expired {
		return fmt.Errorf("pki: the hub's certificate has expired (restart the hub to renew it, or check this device's clock): %w", err)
	}
	if err != nil {
		return fmt.Errorf("pki: %w: %w", ErrWrongHub, err)
	}
	return nil
}
