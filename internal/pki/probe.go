package pki

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
)

// ProbeCA completes a TLS handshake with addr (host:port), sending nothing
// else, and returns the public-key fingerprint of the CA certificate in the
// server's chain that the leaf chains to for ServerName with server-auth
// usage (checked as VerifyPinned does). It fails if the chain has no such
// CA. This is trust on first use: the caller must still decide to trust the
// fingerprint (the user compares a pairing code out of band) before pinning
// it with PinnedClientConfig.
func ProbeCA(ctx context.Context, addr string) (string, error) {
	var fingerprint string
	d := &tls.Dialer{Config: &tls.Config{
		MinVersion: tls.VersionTLS13,
		ServerName: ServerName,
		// There is nothing to verify against yet: VerifyConnection looks
		// for a CA in the chain that the leaf is valid under instead.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			fp, err := chainCA(cs)
			fingerprint = fp
			return err
		},
	}}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", fmt.Errorf("pki: probe the hub at %s: %w", addr, err)
	}
	_ = conn.Close()
	return fingerprint, nil
}

// chainCA returns the fingerprint of the first CA certificate in the peer's
// chain under which the leaf verifies for ServerName.
func chainCA(cs tls.ConnectionState) (string, error) {
	if len(cs.PeerCertificates) == 0 {
		return "", errors.New("pki: the server sent no certificate")
	}
	var errs []error
	for _, c := range cs.PeerCertificates[1:] {
		if !c.IsCA {
			continue
		}
		fp := Fingerprint(c)
		err := VerifyPinned(cs.PeerCertificates, fp, ServerName)
		if err == nil {
			return fp, nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return "", errors.New("pki: the server's chain has no CA certificate: it is not an Alicia hub")
	}
	return "", fmt.Errorf("pki: the server's certificate is not a hub certificate of any CA in its chain: %w", errors.Join(errs...))
}
