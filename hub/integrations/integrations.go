// Package integrations keeps the broker accounts of integrations that are
// not devices — Home Assistant, and pushers of custom metrics — each with a random password (only
// its SHA-256 is stored) and a scope of topics fixed by its kind, so an
// integration reaches exactly what it needs and nothing of the devices'
// own topics.
package integrations

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/alicia-home/alicia/hub/broker"
	"github.com/alicia-home/alicia/internal/protocol"
	"github.com/alicia-home/alicia/internal/store"
)

// Kinds of integration.
const (
	// KindHomeAssistant reads Home Assistant's discovery prefix and the
	// hub's HA state topics, and publishes its birth message and switch
	// commands.
	KindHomeAssistant = "homeassistant"
	// KindMetrics pushes custom metrics (protocol.Metrics batches) on
	// alicia/v1/integrations/<name>/metrics and reads the hub's
	// acknowledgements on alicia/v1/integrations/<name>/ack; its series
	// are stored under its username (SourceID).
	KindMetrics = "metrics"
)

// UsernamePrefix starts every integration's broker username; device IDs
// start with "d" and the hub's with "hub-", so the three never collide.
const UsernamePrefix = "int-"

// HAStateRoot is the root of the topics the hub publishes for Home
// Assistant (state, availability) and takes its switch commands on.
const HAStateRoot = "alicia/v1/ha/"

// Errors.
var (
	ErrInvalid  = errors.New("invalid integration")
	ErrExists   = errors.New("integration exists")
	ErrNotFound = errors.New("integration not found")
)

// Account is an integration's broker account.
type Account struct {
	Name     string    `json:"name"`
	Kind     string    `json:"kind"`
	Username string    `json:"username"`
	Created  time.Time `json:"created"`
	// Hash is the SHA-256 of the password (never served by the API).
	Hash []byte `json:"secret_hash"`
}

// nameRE is an integration's name. It must never admit
// broker.ConnectionSeparator ("."), which separates a username from the
// suffix of an extra connection's client ID (int-<name>.<suffix>), so that
// every client ID belongs to one account.
var nameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,30}$`)

// Accounts stores the integrations' accounts. Safe for concurrent use.
type Accounts struct {
	ks       store.Keyspace
	now      func() time.Time
	haPrefix string

	mu       sync.RWMutex
	accounts map[string]Account // by username
}

// Config configures Accounts; its zero value works.
type Config struct {
	// HAPrefix is Home Assistant's discovery prefix, which its accounts
	// may use; default "homeassistant".
	HAPrefix string
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Open loads the accounts from db.
func Open(db *store.DB, cfg Config) (*Accounts, error) {
	haPrefix, now := cfg.HAPrefix, cfg.Now
	if haPrefix == "" {
		haPrefix = "homeassistant"
	}
	if now == nil {
		now = time.Now
	}
	a := &Accounts{ks: db.Keyspace("integration"), now: now, haPrefix: haPrefix, accounts: map[string]Account{}}
	err := a.ks.Scan(func(key string, val []byte) error {
		var acc Account
		if err := json.Unmarshal(val, &acc); err != nil {
			return fmt.Errorf("integrations: account %q: %w", key, err)
		}
		a.accounts[acc.Username] = acc
		return nil
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// Create adds an account and returns it with its password, which is not
// stored and cannot be shown again.
func (a *Accounts) Create(name, kind string) (Account, string, error) {
	if !nameRE.MatchString(name) {
		return Account{}, "", fmt.Errorf("%w: name %q: 1 to 31 of [a-z0-9-], starting with a letter", ErrInvalid, name)
	}
	if kind != KindHomeAssistant && kind != KindMetrics {
		return Account{}, "", fmt.Errorf("%w: kind %q: want %q or %q", ErrInvalid, kind, KindHomeAssistant, KindMetrics)
	}
	var b [32]byte
	_, _ = rand.Read(b[:])
	password := base64.RawURLEncoding.EncodeToString(b[:])
	h := sha256.Sum256([]byte(password))
	acc := Account{Name: name, Kind: kind, Username: UsernamePrefix + name, Created: a.now().UTC(), Hash: h[:]}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.accounts[acc.Username]; ok {
		return Account{}, "", fmt.Errorf("%w: %s", ErrExists, name)
	}
	v, err := json.Marshal(acc)
	if err != nil {
		return Account{}, "", err
	}
	if err := a.ks.Put(name, v); err != nil {
		return Account{}, "", err
	}
	a.accounts[acc.Username] = acc
	return acc, password, nil
}

// List returns the accounts, by name.
func (a *Accounts) List() []Account {
	a.mu.RLock()
	defer a.mu.RUnlock()
	out := make([]Account, 0, len(a.accounts))
	for _, acc := range a.accounts {
		out = append(out, acc)
	}
	slices.SortFunc(out, func(x, y Account) int { return strings.Compare(x.Name, y.Name) })
	return out
}

// Delete removes an account; its broker sessions must be closed by the
// caller (Allowed refuses them from now on).
func (a *Accounts) Delete(name string) (Account, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	acc, ok := a.accounts[UsernamePrefix+name]
	if !ok {
		return Account{}, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if err := a.ks.Delete(name); err != nil {
		return Account{}, err
	}
	delete(a.accounts, acc.Username)
	return acc, nil
}

// Authenticate returns the broker identity of the account with this
// username and password.
func (a *Accounts) Authenticate(username string, password []byte) (broker.Identity, bool) {
	a.mu.RLock()
	acc, ok := a.accounts[username]
	a.mu.RUnlock()
	if !ok {
		return broker.Identity{}, false
	}
	h := sha256.Sum256(password)
	if subtle.ConstantTimeCompare(h[:], acc.Hash) != 1 {
		return broker.Identity{}, false
	}
	return broker.Identity{Role: broker.RoleIntegration, ID: username, Scope: a.scope(acc)}, true
}

// Get returns the account named name.
func (a *Accounts) Get(name string) (Account, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	acc, ok := a.accounts[UsernamePrefix+name]
	if !ok {
		return Account{}, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	return acc, nil
}

// Check reports whether password is that of the account named name
// (compared in constant time), for the REST API's HTTP Basic
// authentication.
func (a *Accounts) Check(name string, password []byte) (Account, bool) {
	acc, err := a.Get(name)
	if err != nil {
		return Account{}, false
	}
	h := sha256.Sum256(password)
	return acc, subtle.ConstantTimeCompare(h[:], acc.Hash) == 1
}

// MetricsSource reports whether source (a username, as the envelope of a
// batch names it) is an existing account of kind metrics, which may push
// metrics under that source ID.
func (a *Accounts) MetricsSource(source string) bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	acc, ok := a.accounts[source]
	return ok && acc.Kind == KindMetrics
}

// SourceID is the ID under which the metrics of the integration named
// name are stored: its username, which no device ID can be (they start
// with "d").
func SourceID(name string) string { return UsernamePrefix + name }

// Allowed reports whether the account behind id still exists.
func (a *Accounts) Allowed(id broker.Identity) bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	_, ok := a.accounts[id.ID]
	return ok
}

// scope is what acc, given its kind, may touch.
func (a *Accounts) scope(acc Account) broker.Scope {
	switch acc.Kind {
	case KindMetrics:
		return broker.Scope{
			Publish: []string{protocol.IntegrationTopic(acc.Name, protocol.KindMetrics)},
			Read:    []string{protocol.IntegrationsPrefix + acc.Name + "/"},
		}
	case KindHomeAssistant:
		return broker.Scope{
			Publish: []string{a.haPrefix + "/status", HAStateRoot + "+/+/set"},
			Read:    []string{a.haPrefix + "/", HAStateRoot},
		}
	}
	return broker.Scope{}
}

// HubScope is what the hub itself needs besides alicia/: Home
// Assistant's discovery prefix.
func HubScope(haPrefix string) broker.Scope {
	if haPrefix == "" {
		haPrefix = "homeassistant"
	}
	return broker.Scope{Publish: []string{haPrefix + "/#"}, Read: []string{haPrefix + "/"}}
}
