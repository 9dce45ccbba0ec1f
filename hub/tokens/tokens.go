package tokens

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/alicia-home/alicia/internal/atomicfile"
	"github.com/alicia-home/alicia/internal/store"
)

// Prefixes make a leaked token recognisable (and greppable by secret scanners).
const (
	AdminPrefix = "alicia_admin_"
	JoinPrefix  = "alicia_join_"
)

// Errors returned by Consume. They are deliberately not distinguished in
// REST answers (a caller learns only "invalid join token").
var (
	ErrInvalid = errors.New("invalid token")
	ErrExpired = errors.New("token expired")
	ErrUsedUp  = errors.New("token has no uses left")
)

// Join is the stored form of a join token.
type Join struct {
	Hash      string    `json:"hash"` // hex SHA-256 of the token
	UsesLeft  int       `json:"uses_left"`
	ExpiresAt time.Time `json:"expires_at"`
	CreatedAt time.Time `json:"created_at"`
}

// Tokens manages admin and join tokens. Safe for concurrent use.
type Tokens struct {
	now func() time.Time
	ks  store.Keyspace

	mu sync.Mutex // serialises read-modify-write of join tokens
}

// Config configures Tokens; its zero value works.
type Config struct {
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Open returns Tokens kept in db (hashes only, synced writes). It reads
// nothing until a method asks.
func Open(db *store.DB, cfg Config) *Tokens {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Tokens{now: cfg.Now, ks: db.Keyspace("token")}
}

func newSecret(prefix string) string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return prefix + base64.RawURLEncoding.EncodeToString(b[:])
}

func hash(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

const adminKey = "admin"

// EnsureAdmin makes sure an admin token exists. On first start it creates
// one, writes it to path (mode 0600) and stores its hash. If the store has
// no hash but path holds a token (the store was reset), that token's hash
// is stored again. It reports whether a new token was created.
func (t *Tokens) EnsureAdmin(path string) (created bool, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, err = t.ks.Get(adminKey)
	switch {
	case err == nil:
		return false, nil
	case !errors.Is(err, store.ErrNotFound):
		return false, fmt.Errorf("tokens: read admin token hash: %w", err)
	}
	if b, err := os.ReadFile(path); err == nil {
		tok := strings.TrimSpace(string(b))
		if !strings.HasPrefix(tok, AdminPrefix) {
			return false, fmt.Errorf("tokens: %s does not hold an admin token (want prefix %s); remove it for a new token, or run %q", path, AdminPrefix, RotateCommand)
		}
		return false, t.ks.Put(adminKey, []byte(hash(tok)))
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("tokens: %w", err)
	}
	tok := newSecret(AdminPrefix)
	if err := atomicfile.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return false, fmt.Errorf("tokens: write admin token: %w", err)
	}
	if err := t.ks.Put(adminKey, []byte(hash(tok))); err != nil {
		return false, fmt.Errorf("tokens: store admin token hash: %w", err)
	}
	return true, nil
}

// RotateCommand is how an administrator replaces a lost or leaked admin
// token (the hub must be stopped: it holds the store).
const RotateCommand = "alicia-hub admin-token rotate"

// RotateAdmin makes a new admin token: it writes it to path (mode 0600,
// atomically) and then replaces the stored hash, so the old token stops
// working. If storing the hash fails, path holds a token that does not work
// yet and a second RotateAdmin fixes both.
func (t *Tokens) RotateAdmin(path string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	tok := newSecret(AdminPrefix)
	if err := atomicfile.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return fmt.Errorf("tokens: write admin token: %w", err)
	}
	if err := t.ks.Put(adminKey, []byte(hash(tok))); err != nil {
		return fmt.Errorf("tokens: store admin token hash: %w", err)
	}
	return nil
}

// ErrAdminFile is wrapped by CheckAdminFile's errors.
var ErrAdminFile = errors.New("the file does not hold the working admin token")

// CheckAdminFile reports whether the file at path holds the admin token
// whose hash the store keeps. Its error, wrapping ErrAdminFile, says what
// is wrong: the file is missing, empty, not an admin token, or another
// token than the working one (the REST API then refuses what it holds).
func (t *Tokens) CheckAdminFile(path string) error {
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %s is missing", ErrAdminFile, path)
	case err != nil:
		return fmt.Errorf("%w: %w", ErrAdminFile, err)
	}
	tok := strings.TrimSpace(string(b))
	switch {
	case tok == "":
		return fmt.Errorf("%w: %s is empty", ErrAdminFile, path)
	case !strings.HasPrefix(tok, AdminPrefix):
		return fmt.Errorf("%w: %s does not hold an admin token (want prefix %s)", ErrAdminFile, path, AdminPrefix)
	case !t.CheckAdmin(tok):
		return fmt.Errorf("%w: %s holds another token than the one whose hash the store keeps", ErrAdminFile, path)
	}
	return nil
}

// CheckAdmin reports whether token is the admin token.
func (t *Tokens) CheckAdmin(token string) bool {
	if !strings.HasPrefix(token, AdminPrefix) {
		return false
	}
	want, err := t.ks.Get(adminKey)
	return err == nil && string(want) == hash(token)
}

// Join token limits.
const (
	MaxJoinUses = 1000
	MaxJoinTTL  = 30 * 24 * time.Hour
)

// CreateJoin creates a join token valid for uses enrolments within ttl and
// returns its clear text (shown once) and stored form.
func (t *Tokens) CreateJoin(uses int, ttl time.Duration) (string, Join, error) {
	if uses < 1 || uses > MaxJoinUses {
		return "", Join{}, fmt.Errorf("tokens: uses %d out of range [1, %d]", uses, MaxJoinUses)
	}
	if ttl <= 0 || ttl > MaxJoinTTL {
		return "", Join{}, fmt.Errorf("tokens: ttl %s out of range (0, %s]", ttl, MaxJoinTTL)
	}
	tok := newSecret(JoinPrefix)
	now := t.now().UTC()
	j := Join{Hash: hash(tok), UsesLeft: uses, ExpiresAt: now.Add(ttl), CreatedAt: now}
	b, _ := json.Marshal(j)
	if err := t.ks.Put("join/"+j.Hash, b); err != nil {
		return "", Join{}, fmt.Errorf("tokens: store join token: %w", err)
	}
	return tok, j, nil
}

// CheckJoin reports whether token is a join token with a use left, without
// using it (ConsumeJoin may still fail later if another request uses it
// first).
func (t *Tokens) CheckJoin(token string) error {
	if !strings.HasPrefix(token, JoinPrefix) {
		return ErrInvalid
	}
	j, err := store.GetJSON[Join](t.ks, "join/"+hash(token))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return ErrInvalid
	case err != nil:
		return fmt.Errorf("tokens: read join token: %w", err)
	case !t.now().Before(j.ExpiresAt):
		return ErrExpired
	case j.UsesLeft <= 0:
		return ErrUsedUp
	}
	return nil
}

// ConsumeJoin uses up one use of a join token. A token with no uses left is
// deleted.
func (t *Tokens) ConsumeJoin(token string) error {
	if !strings.HasPrefix(token, JoinPrefix) {
		return ErrInvalid
	}
	key := "join/" + hash(token)
	t.mu.Lock()
	defer t.mu.Unlock()
	j, err := store.GetJSON[Join](t.ks, key)
	if errors.Is(err, store.ErrNotFound) {
		return ErrInvalid
	}
	if err != nil {
		return fmt.Errorf("tokens: read join token: %w", err)
	}
	if !t.now().Before(j.ExpiresAt) {
		_ = t.ks.Delete(key)
		return ErrExpired
	}
	if j.UsesLeft <= 0 {
		_ = t.ks.Delete(key)
		return ErrUsedUp
	}
	j.UsesLeft--
	if j.UsesLeft == 0 {
		err = t.ks.Delete(key)
	} else {
		err = store.PutJSON(t.ks, key, j)
	}
	if err != nil {
		return fmt.Errorf("tokens: update join token: %w", err)
	}
	return nil
}
