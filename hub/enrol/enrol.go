package enrol

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/alicia-home/alicia/hub/events"
	"github.com/alicia-home/alicia/hub/registry"
	"github.com/alicia-home/alicia/hub/tokens"
	"github.com/alicia-home/alicia/internal/identity"
)

// Devices is the device registry as enrolment uses it (hub/registry).
type Devices interface {
	Get(id string) (registry.Device, error)
	Enroll(id, name string, publicKey, secretHash []byte) (registry.Device, error)
	AddPending(id, name string, publicKey []byte) (registry.Device, error)
	SetSecret(id string, secretHash []byte) (registry.Device, error)
	Delete(id string) error
}

// Tokens checks join tokens and uses them up (hub/tokens).
type Tokens interface {
	// CheckJoin reports whether the token has a use left, without using it.
	CheckJoin(token string) error
	// ConsumeJoin uses one use of the token up.
	ConsumeJoin(token string) error
}

// Accounts creates and removes devices' broker accounts (on an external
// broker; with the embedded one the registry is the account store).
type Accounts interface {
	Provision(ctx context.Context, deviceID, password string) error
	Remove(ctx context.Context, deviceID string) error
}

// Window is the pairing window (hub/pairing).
type Window interface {
	ClosesAt() (time.Time, bool)
}

// Publisher receives the device_joined events (hub/events).
type Publisher interface {
	Publish(typ, device string, data any) events.Event
}

// Config wires the Service. Devices and Tokens are required.
type Config struct {
	Devices Devices
	Tokens  Tokens
	// Accounts creates the devices' broker accounts; nil: none to create
	// (the embedded broker checks the registry).
	Accounts Accounts
	// IssueCertificate, if set, issues a device's client certificate
	// (DER) for its public key.
	IssueCertificate func(deviceID string, pub ed25519.PublicKey) ([]byte, error)
	// CAFingerprint is the hex SHA-256 of the hub CA's public key: a join
	// token that names another is refused, and pairing proofs sign it.
	// Empty: the hub has no CA, and pairing is refused (ErrNoCA).
	CAFingerprint string
	// Window is the pairing window; nil: never open.
	Window Window
	// Events gets a device_joined event for each enrolment and pairing
	// request; nil: none.
	Events Publisher
	// Logger; nil discards.
	Logger *slog.Logger
}

// Service enrols and pairs agents. It has no state of its own.
type Service struct {
	cfg Config
	log *slog.Logger
}

// New checks cfg and returns the Service. It does no I/O.
func New(cfg Config) (*Service, error) {
	if cfg.Devices == nil || cfg.Tokens == nil {
		return nil, errors.New("enrol: Devices and Tokens are required")
	}
	if cfg.Accounts == nil {
		cfg.Accounts = noAccounts{}
	}
	if cfg.Window == nil {
		cfg.Window = closedWindow{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg, log: cfg.Logger}, nil
}

type noAccounts struct{}

func (noAccounts) Provision(context.Context, string, string) error { return nil }
func (noAccounts) Remove(context.Context, string) error            { return nil }

type closedWindow struct{}

func (closedWindow) ClosesAt() (time.Time, bool) { return time.Time{}, false }

// Request asks to enrol with a join token, with the agent's fields as it
// sent them.
type Request struct {
	Token     string
	PublicKey string // base64 (standard) of the Ed25519 public key
	Name      string // empty: the device ID
	Signature string // base64 of identity.SignEnrolment(key, Token)
	// BrokerURLs are the broker URLs the agent can reach; empty: none,
	// and the request is refused (ErrNoBroker) before anything is made.
	BrokerURLs []string
	// Remote is the agent's address, for the log.
	Remote string
}

// Credentials are what a device gets once: its broker account and
// certificate.
type Credentials struct {
	DeviceID   string
	BrokerURLs []string
	// Password is the broker password (the username is DeviceID); the
	// registry keeps only its hash.
	Password string
	// CertificatePEM is the device's client certificate, empty without
	// IssueCertificate.
	CertificatePEM string
}

// badEnrolmentProof is the detail of a signature that is not an enrolment
// proof for the token and key.
const badEnrolmentProof = "signature: not a valid enrolment proof for this token and public key"

// Enrol checks req's proof and token and gives the new device its
// credentials, undoing what it made if a later step fails (see the package
// doc). A known key is refused (ErrConflict): a join token never replaces
// a device's credentials, or a replayed request would take it over.
func (s *Service) Enrol(ctx context.Context, req Request) (Credentials, error) {
	// A bad name is refused here, as the registry would, so that it does
	// not burn a use of the token.
	pub, err := checkSigned(req.PublicKey, req.Signature, req.Name,
		func(pub ed25519.PublicKey, sig []byte) bool { return identity.VerifyEnrolment(pub, req.Token, sig) }, badEnrolmentProof)
	if err != nil {
		return Credentials{}, err
	}
	secret, fp, err := identity.ParseJoinToken(req.Token)
	if err != nil {
		return Credentials{}, fail(ErrInvalid, "token: "+err.Error(), nil)
	}
	if fp != "" && fp != s.cfg.CAFingerprint {
		return Credentials{}, fail(ErrRefused, "this join token was made by another hub (its CA fingerprint differs)", nil)
	}
	// The token is only checked here; it is used up once the device is
	// saved, so that neither a malformed request nor a broker hiccup burns
	// a use.
	if err := s.cfg.Tokens.CheckJoin(secret); err != nil {
		return Credentials{}, tokenError(err)
	}
	id := identity.DeviceID(pub)
	if _, err := s.cfg.Devices.Get(id); err == nil {
		return Credentials{}, fail(ErrConflict, fmt.Sprintf("device %s is already enrolled: to enrol this key again, delete the device first (DELETE /api/v1/devices/%s)", id, id), nil)
	}
	if len(req.BrokerURLs) == 0 {
		return Credentials{}, fail(ErrNoBroker, "no broker is reachable from the agent's network", nil)
	}
	creds, hash, err := s.newCredentials(ctx, id, pub, req.BrokerURLs)
	if err != nil {
		return Credentials{}, err
	}
	name := req.Name
	if name == "" {
		name = id
	}
	if _, err := s.cfg.Devices.Enroll(id, name, pub, hash); err != nil {
		if errors.Is(err, registry.ErrExists) {
			// A concurrent enrolment of the same key won: the account
			// is the winner's.
			return Credentials{}, fail(ErrConflict, fmt.Sprintf("device %s is already enrolled", id), nil)
		}
		s.removeAccount(ctx, id)
		if errors.Is(err, registry.ErrInvalid) {
			return Credentials{}, fail(ErrInvalid, err.Error(), nil)
		}
		return Credentials{}, fail(ErrInternal, "enrol "+id+": could not save the device", err)
	}
	// The token is used up last, so that no failure above burns a use.
	if err := s.cfg.Tokens.ConsumeJoin(secret); err != nil {
		// Another request used the last use meanwhile: undo.
		if derr := s.cfg.Devices.Delete(id); derr != nil {
			s.log.Error("undo enrolment: the device stays enrolled", "device", id, "err", derr)
		}
		s.removeAccount(ctx, id)
		return Credentials{}, tokenError(err)
	}
	s.log.Info("agent enrolled", "device", id, "name", name, "remote", req.Remote)
	s.publish(id, map[string]string{"name": name, "via": "join_token"})
	return creds, nil
}

// tokenError classifies an error of CheckJoin or ConsumeJoin. The detail
// is the same whatever made the token invalid.
func tokenError(err error) error {
	if errors.Is(err, tokens.ErrInvalid) || errors.Is(err, tokens.ErrExpired) || errors.Is(err, tokens.ErrUsedUp) {
		return fail(ErrBadToken, "invalid join token (unknown, expired or used up): create a new one with POST /api/v1/join-tokens", err)
	}
	return fail(ErrTokensUnavailable, "the hub cannot check join tokens right now", err)
}

// newCredentials issues device id its client certificate and a new broker
// password, and creates its broker account. It returns the credentials to
// hand out once and the password's hash to store.
func (s *Service) newCredentials(ctx context.Context, id string, pub ed25519.PublicKey, urls []string) (Credentials, []byte, error) {
	var certPEM string
	if s.cfg.IssueCertificate != nil {
		der, err := s.cfg.IssueCertificate(id, pub)
		if err != nil {
			return Credentials{}, nil, fail(ErrInternal, "could not issue the client certificate of "+id, err)
		}
		certPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	}
	var pw [32]byte
	_, _ = rand.Read(pw[:])
	password := base64.RawURLEncoding.EncodeToString(pw[:])
	if err := s.cfg.Accounts.Provision(ctx, id, password); err != nil {
		// The broker's answer helps the administrator; it holds no
		// secret of the hub's.
		return Credentials{}, nil, fail(ErrBroker, "could not create the device's broker account: "+err.Error(), nil)
	}
	h := sha256.Sum256([]byte(password))
	return Credentials{DeviceID: id, BrokerURLs: urls, Password: password, CertificatePEM: certPEM}, h[:], nil
}

// removeAccount undoes Accounts.Provision for a request that failed.
func (s *Service) removeAccount(ctx context.Context, id string) {
	if err := s.cfg.Accounts.Remove(ctx, id); err != nil {
		s.log.Error("undo: remove the broker account: it stays on the broker", "device", id, "err", err)
	}
}

func (s *Service) publish(id string, data map[string]string) {
	if s.cfg.Events != nil {
		s.cfg.Events.Publish(events.DeviceJoined, id, data)
	}
}

// checkSigned decodes the base64 public key and signature of an enrolment
// or pairing request, checks the signature with verify and the name (if
// any) with the registry's rules, and names the field at fault.
func checkSigned(pubB64, sigB64, name string, verify func(ed25519.PublicKey, []byte) bool, badSig string) (ed25519.PublicKey, error) {
	pub, err := base64.StdEncoding.DecodeString(pubB64)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return nil, fail(ErrInvalid, "public_key: want the base64 of a 32-byte Ed25519 public key", nil)
	}
	sig, err := base64.StdEncoding.DecodeString(sigB64)
	if err != nil || !verify(pub, sig) {
		return nil, fail(ErrInvalid, badSig, nil)
	}
	if name != "" {
		if err := registry.ValidateName(name); err != nil {
			return nil, fail(ErrInvalid, err.Error(), nil)
		}
	}
	return pub, nil
}
