package identity

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alicia-home/alicia/internal/protocol"
)

func TestLoadOrCreateIsStable(t *testing.T) {
	p := filepath.Join(t.TempDir(), "identity.key")
	k1, created, err := LoadOrCreate(p)
	if err != nil || !created {
		t.Fatalf("first LoadOrCreate = %v, created %v", err, created)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	k2, created, err := LoadOrCreate(p)
	if err != nil || created {
		t.Fatalf("second LoadOrCreate = %v, created %v", err, created)
	}
	if !k1.Equal(k2) {
		t.Fatal("the key changed between loads")
	}
	id := DeviceID(k1.Public().(ed25519.PublicKey))
	if len(id) != DeviceIDLen || id[0] != 'd' {
		t.Errorf("DeviceID = %q, want d + %d base32 digits", id, DeviceIDLen-1)
	}
	if err := protocol.ValidateID(id); err != nil {
		t.Errorf("DeviceID is not a valid protocol ID: %v", err)
	}
}

func TestLoadOrCreateRefuses(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		content string
		mode    os.FileMode
		want    string
	}{
		"group readable": {"x", 0o640, "must not be readable"},
		"not pem":        {"garbage", 0o600, "not a PEM"},
		"bad der":        {"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", 0o600, "identity:"},
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
			if err := os.WriteFile(p, []byte(tc.content), tc.mode); err != nil {
				t.Fatal(err)
			}
			if _, _, err := LoadOrCreate(p); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("LoadOrCreate error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestEnrolmentProof(t *testing.T) {
	k, _, err := LoadOrCreate(filepath.Join(t.TempDir(), "k"))
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := LoadOrCreate(filepath.Join(t.TempDir(), "k"))
	if err != nil {
		t.Fatal(err)
	}
	pub := k.Public().(ed25519.PublicKey)
	sig := SignEnrolment(k, "tok")
	if !VerifyEnrolment(pub, "tok", sig) {
		t.Fatal("a valid proof did not verify")
	}
	if VerifyEnrolment(pub, "other-token", sig) {
		t.Error("the proof verified for another token")
	}
	if VerifyEnrolment(other.Public().(ed25519.PublicKey), "tok", sig) {
		t.Error("the proof verified for another key")
	}
	if VerifyEnrolment(pub[:5], "tok", sig) {
		t.Error("a short public key verified")
	}
}

func TestJoinToken(t *testing.T) {
	fp := strings.Repeat("ab", 32)
	tok := FormatJoinToken("alicia_join_secret", fp)
	secret, got, err := ParseJoinToken(tok)
	if err != nil || secret != "alicia_join_secret" || got != fp {
		t.Fatalf("ParseJoinToken(%q) = %q, %q, %v", tok, secret, got, err)
	}
	if secret, got, err := ParseJoinToken("alicia_join_secret"); err != nil || secret != "alicia_join_secret" || got != "" {
		t.Errorf("token without fingerprint: %q, %q, %v", secret, got, err)
	}
	if FormatJoinToken("s", "") != "s" {
		t.Error("FormatJoinToken without fingerprint changed the secret")
	}
	for _, bad := range []string{"s.abc", "s." + strings.Repeat("AB", 32), "s." + strings.Repeat("zz", 32)} {
		if _, _, err := ParseJoinToken(bad); err == nil {
			t.Errorf("ParseJoinToken(%q) accepted", bad)
		}
	}
}

func TestPairingProofAndCode(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	_, other, _ := ed25519.GenerateKey(nil)
	pub := key.Public().(ed25519.PublicKey)
	fp := strings.Repeat("ab", 32)
	rogue := strings.Repeat("cd", 32)
	sig := SignPairing(key, fp)
	if !VerifyPairing(pub, fp, sig) {
		t.Fatal("a valid pairing proof does not verify")
	}
	if VerifyPairing(pub, rogue, sig) {
		t.Error("a proof made for one hub verifies for another (a rogue could relay it)")
	}
	if VerifyPairing(other.Public().(ed25519.PublicKey), fp, sig) {
		t.Error("a proof verifies for another key")
	}
	if VerifyPairing(pub[:5], fp, sig) {
		t.Error("a short public key verifies")
	}
	// An enrolment proof is not a pairing proof (domain separation).
	if VerifyPairing(pub, fp, SignEnrolment(key, fp)) {
		t.Error("an enrolment proof verifies as a pairing proof")
	}

	code := PairingCode(fp, pub)
	if len(code) != 9 || code[4] != '-' || strings.Trim(code, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567-") != "" {
		t.Fatalf("PairingCode = %q, want XXXX-XXXX in A-Z2-7", code)
	}
	if PairingCode(fp, pub) != code {
		t.Error("PairingCode is not stable")
	}
	if PairingCode(rogue, pub) == code || PairingCode(fp, other.Public().(ed25519.PublicKey)) == code {
		t.Error("PairingCode does not depend on both the hub fingerprint and the key")
	}
	for _, typed := range []string{code, strings.ToLower(code), strings.ReplaceAll(code, "-", " "), strings.ReplaceAll(code, "-", "")} {
		if NormalizePairingCode(typed) != NormalizePairingCode(code) {
			t.Errorf("NormalizePairingCode(%q) = %q, want %q", typed, NormalizePairingCode(typed), NormalizePairingCode(code))
		}
	}
}
