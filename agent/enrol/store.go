package enrol

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"

	"github.com/alicia-home/alicia/internal/atomicfile"
)

// Credentials are what the agent keeps after enrolment, in
// <state-dir>/credentials.json (mode 0600).
type Credentials struct {
	DeviceID string   `json:"device_id"`
	HubID    string   `json:"hub_id"`
	Hub      string   `json:"hub"` // the hub's API address, host:port
	MQTTURLs []string `json:"mqtt_urls"`
	Password string   `json:"password"`
	// CAFingerprint pins the hub: its HTTPS and MQTT-over-TLS certificates
	// must chain to the CA with this public-key fingerprint.
	CAFingerprint string `json:"ca_fingerprint"`
	// Certificate is the device's client certificate (PEM) from the hub CA.
	Certificate string `json:"certificate,omitempty"`
}

// Store is the credentials file: one path, one lock, and every change
// saved atomically (written to a temporary file, synced, renamed).
type Store struct {
	path string

	// mu guards cur and the file: a change and its save are one step.
	mu  sync.Mutex
	cur *Credentials // nil: not enrolled
}

// Open reads the credentials at path; a missing file is a store without
// credentials (not enrolled). A file that cannot be used is an error that
// names it and says how to recover.
func Open(path string) (*Store, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &Store{path: path}, nil
	}
	if err != nil {
		return nil, err
	}
	var c Credentials
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%s: %w (delete it and enrol again with --join-token)", path, err)
	}
	if c.DeviceID == "" || c.Password == "" || len(c.MQTTURLs) == 0 {
		return nil, fmt.Errorf("%s: incomplete credentials (delete it and enrol again with --join-token)", path)
	}
	if c.CAFingerprint == "" {
		return nil, fmt.Errorf("%s: enrolled without a pinned hub CA (by an older agent): delete it and enrol again with a new --join-token", path)
	}
	return &Store{path: path, cur: &c}, nil
}

// Path is the file's path.
func (s *Store) Path() string { return s.path }

// Get returns a copy of the credentials; ok is false before enrolment.
func (s *Store) Get() (c Credentials, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil {
		return Credentials{}, false
	}
	return *s.cur, true
}

// Save replaces the credentials and writes them.
func (s *Store) Save(c Credentials) error {
	_, err := s.Update(func(cur *Credentials) { *cur = c })
	return err
}

// Update changes a copy of the credentials with f and writes it, in one
// step under the lock, and returns it. Only a change that was written is
// kept: the store holds what the file holds.
func (s *Store) Update(f func(*Credentials)) (Credentials, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := Credentials{}
	if s.cur != nil {
		next = *s.cur
	}
	f(&next)
	b, err := json.MarshalIndent(next, "", "  ")
	if err != nil {
		return next, err
	}
	if err := atomicfile.WriteFile(s.path, append(b, '\n'), 0o600); err != nil {
		return next, err
	}
	s.cur = &next
	return next, nil
}
