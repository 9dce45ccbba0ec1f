// Package identity is a device's cryptographic identity: the Ed25519 key the
// agent generates once and keeps in its state directory, the device ID
// derived from the public key, the enrolment proof that binds a join token
// to that key, and the pairing proof and code for pairing without a token.
// The agent and the hub both import it; it imports only
// the standard library and internal/atomicfile.
package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base32"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/alicia-home/alicia/internal/atomicfile"
)

// idEncoding is lowercase base32 without padding: IDs are safe as MQTT
// client IDs, topic levels, file names and DNS labels.
var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// DeviceIDLen is the length of a device ID: "d" and 20 base32 digits (100 bits).
const DeviceIDLen = 21

// DeviceID derives the device ID from its public key: "d" followed by the
// first 100 bits of SHA-256(public key) in lowercase base32. The same key
// always gives the same ID, and nobody can claim an ID without its key.
func DeviceID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "d" + idEncoding.EncodeToString(sum[:])[:DeviceIDLen-1]
}

// LoadOrCreate reads the PKCS#8 PEM private key at path, or, if there is
// none, generates a new Ed25519 key and writes it there with mode 0600. It
// reports whether it created the key. It refuses a key file readable by
// group or others.
func LoadOrCreate(path string) (key ed25519.PrivateKey, created bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, false, fmt.Errorf("identity: generate key: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, false, fmt.Errorf("identity: encode key: %w", err)
		}
		if err := atomicfile.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, false, fmt.Errorf("identity: write key: %w", err)
		}
		return key, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("identity: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, false, fmt.Errorf("identity: key file %s has mode %v: it must not be readable by group or others (chmod 600 it)", path, fi.Mode().Perm())
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, false, fmt.Errorf("identity: %s: not a PEM \"PRIVATE KEY\" block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, false, fmt.Errorf("identity: %s: %w", path, err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, false, fmt.Errorf("identity: %s: key is %T, want Ed25519", path, k)
	}
	return key, false, nil
}

// enrolmentMessage is what the agent signs to enrol: a domain separator, the
// join token and the public key, so a proof cannot be replayed for another
// key or reused in another protocol.
func enrolmentMessage(token string, pub ed25519.PublicKey) []byte {
	var b strings.Builder
	b.WriteString("alicia-enrol-v1\x00")
	b.WriteString(token)
	b.WriteByte(0)
	b.Write(pub)
	return []byte(b.String())
}

// SignEnrolment returns the proof that the holder of key asks to enrol with token.
func SignEnrolment(key ed25519.PrivateKey, token string) []byte {
	return ed25519.Sign(key, enrolmentMessage(token, key.Public().(ed25519.PublicKey)))
}

// VerifyEnrolment checks a proof made by SignEnrolment.
func VerifyEnrolment(pub ed25519.PublicKey, token string, sig []byte) bool {
	return len(pub) == ed25519.PublicKeySize && ed25519.Verify(pub, enrolmentMessage(token, pub), sig)
}

// pairingMessage is what the agent signs to ask to pair without a join
// token: a domain separator, the fingerprint of the hub CA it saw and its
// public key. Bound to the fingerprint, the request is useless to a rogue
// hub that would relay it to the real one.
func pairingMessage(fingerprint string, pub ed25519.PublicKey) []byte {
	var b strings.Builder
	b.WriteString("alicia-pair-v1\x00")
	b.WriteString(fingerprint)
	b.WriteByte(0)
	b.Write(pub)
	return []byte(b.String())
}

// SignPairing returns the proof that the holder of key asks to pair with
// the hub whose CA has the given fingerprint.
func SignPairing(key ed25519.PrivateKey, fingerprint string) []byte {
	return ed25519.Sign(key, pairingMessage(fingerprint, key.Public().(ed25519.PublicKey)))
}

// VerifyPairing checks a proof made by SignPairing.
func VerifyPairing(pub ed25519.PublicKey, fingerprint string, sig []byte) bool {
	return len(pub) == ed25519.PublicKeySize && ed25519.Verify(pub, pairingMessage(fingerprint, pub), sig)
}

// codeEncoding is uppercase base32 (A–Z, 2–7): no 0/O or 1/I to confuse.
var codeEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// PairingCode is the short code that both the agent (in its log) and the
// hub (in the pending device) show for a pairing request, "XXXX-XXXX": 40
// bits of SHA-256 over the hub CA fingerprint and the device's public key.
// An administrator approves a device only by typing the code the device
// shows: a different code means another device, or an agent that reached
// another hub.
func PairingCode(fingerprint string, pub ed25519.PublicKey) string {
	h := sha256.New()
	h.Write([]byte("alicia-pair-code-v1\x00"))
	h.Write([]byte(fingerprint))
	h.Write([]byte{0})
	h.Write(pub)
	c := codeEncoding.EncodeToString(h.Sum(nil)[:5])
	return c[:4] + "-" + c[4:]
}

// NormalizePairingCode uppercases a typed code and drops spaces and dashes,
// so "abcd efgh" and "ABCD-EFGH" compare equal.
func NormalizePairingCode(code string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '-' || r == ' ':
			return -1
		case 'a' <= r && r <= 'z':
			return r - 'a' + 'A'
		}
		return r
	}, code)
}

// A join token as handed to a user is "<secret>.<fingerprint>": the
// secret the hub checks (it keeps only its hash) and the hex SHA-256
// fingerprint of the hub CA's public key, which the agent pins before it
// sends anything, so a rogue host answering on the LAN never learns the
// secret.

// FormatJoinToken joins a join-token secret and the hub CA fingerprint.
func FormatJoinToken(secret, fingerprint string) string {
	if fingerprint == "" {
		return secret
	}
	return secret + "." + fingerprint
}

// ParseJoinToken splits a join token into its secret and fingerprint. The
// fingerprint is empty for a token without one (the hub accepts those; an
// agent refuses them).
func ParseJoinToken(token string) (secret, fingerprint string, err error) {
	secret, fingerprint, found := strings.Cut(token, ".")
	if !found {
		return token, "", nil
	}
	if len(fingerprint) != 64 || strings.Trim(fingerprint, "0123456789abcdef") != "" {
		return "", "", errors.New("join token: malformed hub fingerprint after the '.'")
	}
	return secret, fingerprint, nil
}
