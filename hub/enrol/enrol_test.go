package enrol

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/alicia-home/alicia/hub/events"
	"github.com/alicia-home/alicia/hub/registry"
	"github.com/alicia-home/alicia/hub/tokens"
	"github.com/alicia-home/alicia/internal/identity"
)

// fp is the test hub's CA fingerprint.
var fp = strings.Repeat("ab", 32)

var errDisk = errors.New("disk full")

// fakeDevices is an in-memory registry; an error set for a method is
// returned instead of doing it.
type fakeDevices struct {
	devices                                                map[string]registry.Device
	getErr, enrollErr, addPendingErr, setSecretErr, delErr error
	// afterAddPending, if set, replaces the device that AddPending's error
	// found (a concurrent request's).
	afterAddPending *registry.Device
	deleted         []string
}

var _ Devices = (*fakeDevices)(nil)

func (f *fakeDevices) Get(id string) (registry.Device, error) {
	if f.getErr != nil {
		return registry.Device{}, f.getErr
	}
	d, ok := f.devices[id]
	if !ok {
		return registry.Device{}, fmt.Errorf("fake: %s: %w", id, registry.ErrNotFound)
	}
	return d, nil
}

func (f *fakeDevices) Enroll(id, name string, pub, hash []byte) (registry.Device, error) {
	if f.enrollErr != nil {
		return registry.Device{}, f.enrollErr
	}
	d := registry.Device{ID: id, Name: name, Status: registry.StatusOffline, PublicKey: pub, SecretHash: hash}
	f.devices[id] = d
	return d, nil
}

func (f *fakeDevices) AddPending(id, name string, pub []byte) (registry.Device, error) {
	if f.addPendingErr != nil {
		if f.afterAddPending != nil {
			f.devices[id] = *f.afterAddPending
		}
		return registry.Device{}, f.addPendingErr
	}
	d := registry.Device{ID: id, Name: name, Status: registry.StatusPending, PublicKey: pub}
	f.devices[id] = d
	return d, nil
}

func (f *fakeDevices) SetSecret(id string, hash []byte) (registry.Device, error) {
	if f.setSecretErr != nil {
		return registry.Device{}, f.setSecretErr
	}
	d := f.devices[id]
	d.SecretHash = hash
	f.devices[id] = d
	return d, nil
}

func (f *fakeDevices) Delete(id string) error {
	f.deleted = append(f.deleted, id)
	if f.delErr != nil {
		return f.delErr
	}
	delete(f.devices, id)
	return nil
}

type fakeTokens struct {
	checkErr, consumeErr error
	consumed             []string
}

func (f *fakeTokens) CheckJoin(string) error { return f.checkErr }

func (f *fakeTokens) ConsumeJoin(tok string) error {
	if f.consumeErr != nil {
		return f.consumeErr
	}
	f.consumed = append(f.consumed, tok)
	return nil
}

type fakeAccounts struct {
	provisionErr, removeErr error
	passwords               map[string]string // device → password
	removed                 []string
}

func (f *fakeAccounts) Provision(_ context.Context, id, password string) error {
	if f.provisionErr != nil {
		return f.provisionErr
	}
	f.passwords[id] = password
	return nil
}

func (f *fakeAccounts) Remove(_ context.Context, id string) error {
	f.removed = append(f.removed, id)
	return f.removeErr
}

type window bool

func (w window) ClosesAt() (time.Time, bool) { return time.Time{}, bool(w) }

type fakeEvents struct{ got []string }

func (f *fakeEvents) Publish(typ, device string, data any) events.Event {
	f.got = append(f.got, fmt.Sprintf("%s %s %v", typ, device, data))
	return events.Event{}
}

// world is a Service on fakes, with the log it writes.
type world struct {
	svc      *Service
	devices  *fakeDevices
	tokens   *fakeTokens
	accounts *fakeAccounts
	events   *fakeEvents
	log      bytes.Buffer
	certErr  error
	issued   []string
}

func newWorld(t *testing.T, open bool, setup func(*world)) *world {
	t.Helper()
	w := &world{devices: &fakeDevices{devices: map[string]registry.Device{}}, tokens: &fakeTokens{},
		accounts: &fakeAccounts{passwords: map[string]string{}}, events: &fakeEvents{}}
	if setup != nil {
		setup(w)
	}
	var err error
	w.svc, err = New(Config{Devices: w.devices, Tokens: w.tokens, Accounts: w.accounts, CAFingerprint: fp, Window: window(open), Events: w.events,
		Logger: slog.New(slog.NewTextHandler(&w.log, nil)),
		IssueCertificate: func(id string, _ ed25519.PublicKey) ([]byte, error) {
			if w.certErr != nil {
				return nil, w.certErr
			}
			w.issued = append(w.issued, id)
			return []byte("der of " + id), nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// outcome is what a request left behind.
type outcome struct {
	Devices     []string // IDs in the registry
	Provisioned []string // broker accounts created
	Removed     []string // broker accounts removed
	Deleted     []string // registry deletes
	Consumed    int      // token uses
	Events      int
}

func (w *world) outcome() outcome {
	o := outcome{Deleted: w.devices.deleted, Removed: w.accounts.removed, Consumed: len(w.tokens.consumed), Events: len(w.events.got)}
	for id := range w.devices.devices {
		o.Devices = append(o.Devices, id)
	}
	for id := range w.accounts.passwords {
		o.Provisioned = append(o.Provisioned, id)
	}
	slices.Sort(o.Devices)
	slices.Sort(o.Provisioned)
	return o
}

func newKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func enrolRequest(key ed25519.PrivateKey, token, name string) Request {
	return Request{Token: token, PublicKey: b64(key.Public().(ed25519.PublicKey)), Name: name,
		Signature: b64(identity.SignEnrolment(key, token)), BrokerURLs: []string{"mqtts://hub:8883"}, Remote: "198.18.0.11:4000"}
}

// kindOf names the Err* sentinel err is, for the diffs.
func kindOf(err error) string {
	if err == nil {
		return "nil"
	}
	var e *Error
	if !errors.As(err, &e) {
		return fmt.Sprintf("not an *Error: %v", err)
	}
	for _, k := range []error{ErrInvalid, ErrBadToken, ErrRefused, ErrConflict, ErrTooMany, ErrNoBroker, ErrNoCA, ErrTokensUnavailable, ErrBroker, ErrInternal} {
		if errors.Is(err, k) {
			return k.Error()
		}
	}
	return fmt.Sprintf("unknown kind %v", e.Kind)
}

func TestEnrol(t *testing.T) {
	key := newKey(t)
	id := identity.DeviceID(key.Public().(ed25519.PublicKey))
	const tok = "alicia_join_secret"
	nothing := outcome{}
	// undone: the account was made and removed again; nothing else stays.
	undone := outcome{Provisioned: []string{id}, Removed: []string{id}}
	tests := []struct {
		name       string
		setup      func(*world)
		req        func(Request) Request
		wantKind   string
		wantDetail string // substring
		want       outcome
		wantLog    string // substring of the log
	}{
		{name: "enrolled", wantKind: "nil",
			want: outcome{Devices: []string{id}, Provisioned: []string{id}, Consumed: 1, Events: 1}, wantLog: "agent enrolled"},
		{name: "public key not base64", req: func(r Request) Request { r.PublicKey = "%%"; return r },
			wantKind: "invalid request", wantDetail: "public_key", want: nothing},
		{name: "signature of another token", req: func(r Request) Request { r.Signature = b64(identity.SignEnrolment(key, tok+"x")); return r },
			wantKind: "invalid request", wantDetail: "signature", want: nothing},
		{name: "bad name", req: func(r Request) Request {
			r.Name = "a\nb"
			r.Signature = b64(identity.SignEnrolment(key, tok))
			return r
		},
			wantKind: "invalid request", wantDetail: "name", want: nothing},
		{name: "malformed token", req: func(r Request) Request {
			r.Token = tok + ".xyz"
			r.Signature = b64(identity.SignEnrolment(key, r.Token))
			return r
		}, wantKind: "invalid request", wantDetail: "token: ", want: nothing},
		{name: "token of another hub", req: func(r Request) Request {
			r.Token = identity.FormatJoinToken(tok, strings.Repeat("cd", 32))
			r.Signature = b64(identity.SignEnrolment(key, r.Token))
			return r
		}, wantKind: "refused", wantDetail: "another hub", want: nothing},
		{name: "token expired", setup: func(w *world) { w.tokens.checkErr = tokens.ErrExpired },
			wantKind: "invalid join token", wantDetail: "unknown, expired or used up", want: nothing},
		{name: "tokens unreadable", setup: func(w *world) { w.tokens.checkErr = errDisk },
			wantKind: "join tokens unavailable", want: nothing},
		{name: "known key", setup: func(w *world) { w.devices.devices[id] = registry.Device{ID: id} },
			wantKind: "already enrolled", wantDetail: "delete the device first", want: outcome{Devices: []string{id}}},
		{name: "no broker reachable", req: func(r Request) Request { r.BrokerURLs = nil; return r },
			wantKind: "no reachable broker", want: nothing},
		{name: "certificate not issued", setup: func(w *world) { w.certErr = errDisk },
			wantKind: "internal error", want: nothing},
		{name: "broker refuses the account", setup: func(w *world) { w.accounts.provisionErr = errors.New("not authorised") },
			wantKind: "broker account not created", wantDetail: "not authorised", want: nothing},
		{name: "a concurrent enrolment of the key won", setup: func(w *world) { w.devices.enrollErr = fmt.Errorf("fake: %w", registry.ErrExists) },
			wantKind: "already enrolled", want: outcome{Provisioned: []string{id}}}, // the account is the winner's
		{name: "registry refuses the name", setup: func(w *world) { w.devices.enrollErr = fmt.Errorf("fake: name: %w", registry.ErrInvalid) },
			wantKind: "invalid request", wantDetail: "fake: name", want: undone},
		{name: "registry write fails", setup: func(w *world) { w.devices.enrollErr = errDisk },
			wantKind: "internal error", want: undone},
		{name: "last use taken meanwhile", setup: func(w *world) { w.tokens.consumeErr = tokens.ErrUsedUp },
			wantKind: "invalid join token", want: outcome{Provisioned: []string{id}, Removed: []string{id}, Deleted: []string{id}}},
		{name: "token use not saved", setup: func(w *world) { w.tokens.consumeErr = errDisk },
			wantKind: "join tokens unavailable", want: outcome{Provisioned: []string{id}, Removed: []string{id}, Deleted: []string{id}}},
		{name: "undo fails: leftovers are logged", setup: func(w *world) {
			w.tokens.consumeErr = tokens.ErrUsedUp
			w.devices.delErr = errDisk
			w.accounts.removeErr = errors.New("broker gone")
		}, wantKind: "invalid join token", want: outcome{Devices: []string{id}, Provisioned: []string{id}, Removed: []string{id}, Deleted: []string{id}},
			wantLog: "broker gone"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, false, tt.setup)
			req := enrolRequest(key, tok, "pi")
			if tt.req != nil {
				req = tt.req(req)
			}
			creds, err := w.svc.Enrol(context.Background(), req)
			if got := kindOf(err); got != tt.wantKind {
				t.Fatalf("error %v: kind %q, want %q", err, got, tt.wantKind)
			}
			if err != nil && !strings.Contains(err.(*Error).Detail, tt.wantDetail) {
				t.Errorf("detail %q does not contain %q", err.(*Error).Detail, tt.wantDetail)
			}
			if diff := cmp.Diff(tt.want, w.outcome()); diff != "" {
				t.Errorf("left behind (-want +got):\n%s", diff)
			}
			if !strings.Contains(w.log.String(), tt.wantLog) {
				t.Errorf("log does not say %q:\n%s", tt.wantLog, w.log.String())
			}
			if err != nil {
				return
			}
			want := Credentials{DeviceID: id, BrokerURLs: req.BrokerURLs, Password: w.accounts.passwords[id], CertificatePEM: creds.CertificatePEM}
			if diff := cmp.Diff(want, creds); diff != "" {
				t.Errorf("credentials (-want +got):\n%s", diff)
			}
			if h := sha256.Sum256([]byte(creds.Password)); !bytes.Equal(w.devices.devices[id].SecretHash, h[:]) {
				t.Error("the registry does not hold the hash of the password handed out")
			}
			if !strings.Contains(creds.CertificatePEM, "BEGIN CERTIFICATE") {
				t.Errorf("certificate %q is not PEM", creds.CertificatePEM)
			}
		})
	}
}

func pairRequest(key ed25519.PrivateKey, fingerprint, name string) PairRequest {
	return PairRequest{PublicKey: b64(key.Public().(ed25519.PublicKey)), Name: name, Signature: b64(identity.SignPairing(key, fingerprint)),
		BrokerURLs: []string{"mqtts://hub:8883"}, Remote: "198.18.0.11:4000"}
}

func TestPair(t *testing.T) {
	key := newKey(t)
	pub := key.Public().(ed25519.PublicKey)
	id := identity.DeviceID(pub)
	code := identity.PairingCode(fp, pub)
	withDevice := func(st registry.Status, secret []byte) func(*world) {
		return func(w *world) {
			w.devices.devices[id] = registry.Device{ID: id, Status: st, PublicKey: pub, SecretHash: secret}
		}
	}
	approved := withDevice(registry.StatusOffline, nil)
	known := outcome{Devices: []string{id}}
	tests := []struct {
		name        string
		open        bool
		setup       func(*world)
		req         func(PairRequest) PairRequest
		wantKind    string
		wantPending bool
		want        outcome
	}{
		{name: "asks during the window", open: true, wantKind: "nil", wantPending: true, want: outcome{Devices: []string{id}, Events: 1}},
		{name: "asks outside the window", wantKind: "refused", want: outcome{}},
		{name: "proof for another hub", open: true, req: func(r PairRequest) PairRequest {
			r.Signature = b64(identity.SignPairing(key, strings.Repeat("cd", 32)))
			return r
		}, wantKind: "invalid request", want: outcome{}},
		{name: "asks again while pending", setup: withDevice(registry.StatusPending, nil), wantKind: "nil", wantPending: true, want: known},
		{name: "concurrent request of the key", open: true, setup: func(w *world) {
			w.devices.addPendingErr = fmt.Errorf("fake: %w", registry.ErrExists)
			w.devices.afterAddPending = &registry.Device{ID: id, Status: registry.StatusPending}
		}, wantKind: "nil", wantPending: true, want: known},
		{name: "too many pending", open: true, setup: func(w *world) { w.devices.addPendingErr = registry.ErrTooManyPending },
			wantKind: "too many pending devices", want: outcome{}},
		{name: "registry refuses the name", open: true, setup: func(w *world) { w.devices.addPendingErr = fmt.Errorf("name: %w", registry.ErrInvalid) },
			wantKind: "invalid request", want: outcome{}},
		{name: "registry write fails", open: true, setup: func(w *world) { w.devices.addPendingErr = errDisk }, wantKind: "internal error", want: outcome{}},
		{name: "registry read fails", open: true, setup: func(w *world) { w.devices.getErr = errDisk }, wantKind: "internal error", want: outcome{}},
		{name: "rejected", setup: withDevice(registry.StatusRejected, nil), wantKind: "refused", want: known},
		{name: "revoked", setup: withDevice(registry.StatusRevoked, nil), wantKind: "refused", want: known},
		{name: "credentials collected before", setup: withDevice(registry.StatusOnline, []byte("hash")), wantKind: "already enrolled", want: known},
		{name: "approved: collects", setup: approved, wantKind: "nil", want: outcome{Devices: []string{id}, Provisioned: []string{id}}},
		{name: "approved, no broker reachable", setup: approved, req: func(r PairRequest) PairRequest { r.BrokerURLs = nil; return r },
			wantKind: "no reachable broker", want: known},
		{name: "approved, certificate not issued", setup: func(w *world) { approved(w); w.certErr = errDisk }, wantKind: "internal error", want: known},
		{name: "approved, broker refuses", setup: func(w *world) { approved(w); w.accounts.provisionErr = errDisk },
			wantKind: "broker account not created", want: known},
		{name: "approved, a concurrent request collected", setup: func(w *world) {
			approved(w)
			w.devices.setSecretErr = fmt.Errorf("fake: %w", registry.ErrExists)
		}, wantKind: "already enrolled", want: outcome{Devices: []string{id}, Provisioned: []string{id}}}, // the account is the winner's
		{name: "approved, revoked meanwhile", setup: func(w *world) {
			approved(w)
			w.devices.setSecretErr = fmt.Errorf("fake: %w", registry.ErrNotAccepted)
		}, wantKind: "refused", want: outcome{Devices: []string{id}, Provisioned: []string{id}, Removed: []string{id}}},
		{name: "approved, deleted meanwhile", setup: func(w *world) {
			approved(w)
			w.devices.setSecretErr = fmt.Errorf("fake: %w", registry.ErrNotFound)
		}, wantKind: "refused", want: outcome{Devices: []string{id}, Provisioned: []string{id}, Removed: []string{id}}},
		{name: "approved, registry write fails", setup: func(w *world) { approved(w); w.devices.setSecretErr = errDisk },
			wantKind: "internal error", want: outcome{Devices: []string{id}, Provisioned: []string{id}, Removed: []string{id}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, tt.open, tt.setup)
			req := pairRequest(key, fp, "porch")
			if tt.req != nil {
				req = tt.req(req)
			}
			p, err := w.svc.Pair(context.Background(), req)
			if got := kindOf(err); got != tt.wantKind {
				t.Fatalf("error %v: kind %q, want %q", err, got, tt.wantKind)
			}
			if diff := cmp.Diff(tt.want, w.outcome()); diff != "" {
				t.Errorf("left behind (-want +got):\n%s", diff)
			}
			if err != nil {
				return
			}
			want := Paired{DeviceID: id, Pending: tt.wantPending, Code: code}
			if !tt.wantPending {
				want.Credentials = Credentials{DeviceID: id, BrokerURLs: req.BrokerURLs, Password: w.accounts.passwords[id], CertificatePEM: p.Credentials.CertificatePEM}
				if p.Credentials.CertificatePEM == "" || p.Credentials.Password == "" {
					t.Errorf("collected no certificate or password: %+v", p.Credentials)
				}
			}
			if diff := cmp.Diff(want, p); diff != "" {
				t.Errorf("answer (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPairWithoutCA: a hub without a CA refuses pairing (agents could not
// verify it) before reading anything.
func TestPairWithoutCA(t *testing.T) {
	devs := &fakeDevices{devices: map[string]registry.Device{}, getErr: errors.New("must not be read")}
	svc, err := New(Config{Devices: devs, Tokens: &fakeTokens{}, Window: window(true)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = svc.Pair(context.Background(), pairRequest(newKey(t), "", "x"))
	if got := kindOf(err); got != "no CA" {
		t.Errorf("error %v: kind %q, want no CA", err, got)
	}
}

func TestNewRequiresDependencies(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no devices": {Tokens: &fakeTokens{}},
		"no tokens":  {Devices: &fakeDevices{}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

// TestErrorKind: errors.Is matches an *Error's kind, and only that kind,
// and reaches its cause.
func TestErrorKind(t *testing.T) {
	err := fmt.Errorf("wrapped: %w", fail(ErrBadToken, "detail", tokens.ErrExpired))
	for _, c := range []struct {
		target error
		want   bool
	}{{ErrBadToken, true}, {tokens.ErrExpired, true}, {ErrRefused, false}, {ErrInternal, false}} {
		if got := errors.Is(err, c.target); got != c.want {
			t.Errorf("errors.Is(err, %v) = %v, want %v", c.target, got, c.want)
		}
	}
	if got, want := err.Error(), "wrapped: detail: token expired"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}
