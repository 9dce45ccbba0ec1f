package enrol

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/alicia-home/alicia/internal/identity"
	"github.com/alicia-home/alicia/internal/pki"
)

// TestRenewSchedule runs the renewal loop in a synctest bubble (fake time):
// a fresh certificate is never renewed and the credentials file is left
// alone, an ageing one is renewed once, and a failing renewal is retried
// after 1, 2, 4… minutes even when the check interval is longer.
func TestRenewSchedule(t *testing.T) {
	for _, tc := range []struct {
		name     string
		age      time.Duration // of the certificate in use
		fail     bool          // every renewal fails
		check    time.Duration
		run      time.Duration
		renewals int
	}{
		{"fresh certificate", 24 * time.Hour, false, 10 * time.Millisecond, 200 * time.Millisecond, 0},
		{"ageing certificate", pki.ClientValidity*2/3 + time.Hour, false, 10 * time.Millisecond, 200 * time.Millisecond, 1},
		{"expired certificate", pki.ClientValidity + time.Hour, false, 6 * time.Hour, time.Minute, 1},
		{"renewal failing", pki.ClientValidity, true, 6 * time.Hour, 10 * time.Minute, 4}, // at 0, 1, 3 and 7 min
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				_, key, err := ed25519.GenerateKey(rand.Reader)
				if err != nil {
					t.Fatal(err)
				}
				ca, _, err := pki.LoadOrCreateCA(t.TempDir(), "hub-1", time.Now())
				if err != nil {
					t.Fatal(err)
				}
				id := identity.DeviceID(key.Public().(ed25519.PublicKey))
				issue := func(at time.Time) string {
					c, err := ca.IssueClient(id, key.Public(), at)
					if err != nil {
						t.Fatal(err)
					}
					return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
				}
				path := filepath.Join(t.TempDir(), "credentials.json")
				empty, err := Open(path)
				if err != nil {
					t.Fatal(err)
				}
				if err := empty.Save(Credentials{DeviceID: id, HubID: "hub-1", Hub: "127.0.0.1:1", MQTTURLs: []string{"mqtt://127.0.0.1:1"},
					Password: "pw", CAFingerprint: ca.Fingerprint(), Certificate: issue(time.Now().Add(-tc.age))}); err != nil {
					t.Fatal(err)
				}
				before, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				store, err := Open(path)
				if err != nil {
					t.Fatal(err)
				}
				e, err := New(Config{Key: key}, store)
				if err != nil {
					t.Fatal(err)
				}
				creds, _ := store.Get()
				c, err := clientCertificate(creds.Certificate, key)
				if err != nil {
					t.Fatal(err)
				}
				e.cert.Store(&c)
				renewals := 0
				e.renew = func(context.Context) error {
					renewals++
					if tc.fail {
						return errors.New("503 Service Unavailable")
					}
					pem := issue(time.Now())
					c, err := clientCertificate(pem, key)
					if err != nil {
						t.Fatal(err)
					}
					e.cert.Store(&c)
					_, err = e.store.Update(func(c *Credentials) { c.Certificate = pem })
					return err
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() { defer close(done); e.Renew(ctx, tc.check) }()
				time.Sleep(tc.run) // fake time: the bubble's clock jumps
				synctest.Wait()
				cancel()
				<-done
				if renewals != tc.renewals {
					t.Errorf("%d renewals in %s with checks every %s, want %d", renewals, tc.run, tc.check, tc.renewals)
				}
				after, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if changed, want := !bytes.Equal(before, after), renewals > 0 && !tc.fail; changed != want {
					t.Errorf("credentials.json changed: %v, want %v", changed, want)
				}
			})
		})
	}
}
