package confapply

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/alicia-home/alicia/internal/atomicfile"
	"github.com/alicia-home/alicia/internal/bus"
	"github.com/alicia-home/alicia/internal/protocol"
)

// Applier checks one kind's configuration, a JSON object (the empty one
// means "nothing set": the agent's own flags), and prepares it. It must not
// change anything: the returned Change does, once the configuration is
// saved.
type Applier func(content []byte) (Change, error)

// Change is a checked configuration, ready to be put in effect.
type Change struct {
	// Apply puts it in effect; it cannot fail.
	Apply func()
	// Reconnect says the change is about how the agent reaches the hub:
	// the bus session is made again (Config.Reconnect), and only a report
	// sent over a new connection confirms it.
	Reconnect bool
}

// DefaultConfirmWindow is how long a configuration may stay unconfirmed
// before the agent reverts it.
const DefaultConfirmWindow = 2 * time.Minute

// Config configures a Manager.
type Config struct {
	// Path is the state file (the configurations in effect, last-known-good
	// and pending reports). Required.
	Path string
	// DeviceID is the device's ID. Required.
	DeviceID string
	// Kinds are the kinds the agent applies, by name. A kind not here is
	// rejected with a reason.
	Kinds map[string]Applier
	// ConfirmWindow bounds how long a configuration stays unconfirmed.
	// Default DefaultConfirmWindow.
	ConfirmWindow time.Duration
	// Reconnect ends the current bus session, so that the next one is made
	// with the settings in effect. Required.
	Reconnect func()
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger; nil discards.
	Logger *slog.Logger
}

// doc is a configuration as the hub sent it. The zero doc is "nothing
// set": the agent's flags.
type doc struct {
	Hash    string          `json:"hash,omitempty"`
	Content json.RawMessage `json:"content,omitempty"`
}

// content returns the configuration's JSON, {} for the zero doc.
func (d doc) content() []byte {
	if len(d.Content) == 0 {
		return []byte("{}")
	}
	return d.Content
}

// kindState is what the agent keeps of one kind, saved in the state file.
type kindState struct {
	// Current is in effect.
	Current doc `json:"current"`
	// Good is the last confirmed configuration: what a revert goes back to.
	Good doc `json:"good"`
	// Pending says Current is not confirmed yet.
	Pending bool `json:"pending,omitempty"`
	// Refused is the last configuration the agent rejected or reverted,
	// with the status it answered: it is not tried again.
	Refused *protocol.ConfigStatus `json:"refused,omitempty"`
	// Report is the status to send, if any.
	Report *protocol.ConfigStatus `json:"report,omitempty"`

	// Not saved: a restart gives a pending configuration a new window.
	appliedIn uint64    // the session in which Current was applied
	reconnect bool      // Current needs a new session to be confirmed
	deadline  time.Time // when a pending Current is reverted
}

// state is the state file's content.
type state struct {
	Kinds map[string]*kindState `json:"kinds"`
}

// Manager applies the hub's configurations. Create it with Open (which
// puts the saved ones in effect), call Attach for every bus session before
// the session's client runs, and Run for as long as the agent runs. Its
// methods are safe for concurrent use.
type Manager struct {
	cfg   Config
	log   *slog.Logger
	topic string
	kick  chan struct{} // reports to send, or a deadline changed

	// mu guards the fields below; the state file is written under it.
	mu      sync.Mutex
	st      state
	session uint64      // the current bus session's number
	client  *bus.Client // the current session's client
}

// Open loads the state file and puts the saved configurations in effect:
// what was confirmed, and what was pending with a new confirm window. A
// saved configuration this agent no longer accepts (after an upgrade) is
// replaced by the last good one, and reported.
func Open(cfg Config) (*Manager, error) {
	if cfg.Path == "" || cfg.Reconnect == nil {
		return nil, errors.New("confapply: a state file and a reconnect function are required")
	}
	if err := protocol.ValidateID(cfg.DeviceID); err != nil {
		return nil, fmt.Errorf("confapply: device id: %w", err)
	}
	if cfg.ConfirmWindow <= 0 {
		cfg.ConfirmWindow = DefaultConfirmWindow
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Manager{cfg: cfg, log: cfg.Logger, topic: protocol.DeviceTopic(cfg.DeviceID, protocol.KindConfig), kick: make(chan struct{}, 1)}
	if err := m.load(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range m.kindNames() {
		m.restore(k, m.st.Kinds[k])
	}
	return m, nil
}

// load reads the state file; a missing one is an empty state, a damaged
// one is moved aside (the agent then runs on its flags until the hub sends
// its configuration again, which it does at every connect).
func (m *Manager) load() error {
	m.st = state{Kinds: map[string]*kindState{}}
	b, err := os.ReadFile(m.cfg.Path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("confapply: %w", err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		aside := fmt.Sprintf("%s.corrupt-%d", m.cfg.Path, m.cfg.Now().Unix())
		m.log.Error("the configuration state file is damaged: moving it aside; the agent runs on its flags until the hub sends its configuration", "path", m.cfg.Path, "moved_to", aside, "err", err)
		if rerr := os.Rename(m.cfg.Path, aside); rerr != nil {
			return fmt.Errorf("confapply: %s: %w (and moving it aside failed: %v)", m.cfg.Path, err, rerr)
		}
		return nil
	}
	for k, ks := range st.Kinds {
		if ks != nil {
			m.st.Kinds[k] = ks
		}
	}
	return nil
}

// restore puts a kind's saved configuration in effect at start.
func (m *Manager) restore(kind string, ks *kindState) {
	apply := m.cfg.Kinds[kind]
	if apply == nil {
		return
	}
	ch, err := apply(ks.Current.content())
	if err != nil && ks.Current.Hash != ks.Good.Hash {
		m.log.Warn("the saved configuration is not accepted any more; going back to the last good one", "kind", kind, "hash", ks.Current.Hash, "err", err)
		bad := ks.Current.Hash
		ks.Current, ks.Pending = ks.Good, false
		ks.Refused = &protocol.ConfigStatus{Kind: kind, Hash: bad, State: protocol.ConfigRejected, Reason: "not accepted by this agent: " + err.Error()}
		ks.Report = ks.Refused
		ch, err = apply(ks.Current.content())
	}
	if err != nil {
		m.log.Warn("the saved configuration is not accepted any more; running on the agent's flags", "kind", kind, "err", err)
		ks.Current, ks.Good, ks.Pending = doc{}, doc{}, false
		if ch, err = apply(ks.Current.content()); err != nil {
			m.log.Error("the agent's own settings are not accepted", "kind", kind, "err", err)
			return
		}
	}
	ch.Apply()
	if ks.Pending {
		ks.deadline = m.cfg.Now().Add(m.cfg.ConfirmWindow)
		m.log.Info("a configuration applied before the restart is not confirmed yet", "kind", kind, "hash", ks.Current.Hash, "revert_at", ks.deadline)
	}
	if err := m.save(); err != nil {
		m.log.Warn("save the configuration state", "err", err)
	}
}

// kindNames returns the kinds in the state, sorted. m.mu must be held.
func (m *Manager) kindNames() []string {
	names := make([]string, 0, len(m.st.Kinds))
	for k := range m.st.Kinds {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// save writes the state file. m.mu must be held.
func (m *Manager) save() error {
	b, err := json.Marshal(&m.st)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(m.cfg.Path, b, 0o600)
}

// Attach makes client the current session's: the device's configuration
// topic is subscribed on it, and reports are sent over it. Call it before
// the client runs.
func (m *Manager) Attach(client *bus.Client) error {
	m.mu.Lock()
	m.session++
	m.client = client
	m.mu.Unlock()
	client.OnConnect(func(context.Context) { m.poke() })
	return client.Subscribe(m.topic, 1, m.handle)
}

func (m *Manager) poke() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// handle is the bus handler of the device's configuration topic.
func (m *Manager) handle(_ context.Context, msg bus.Message) {
	if len(msg.Payload) == 0 {
		return // the hub cleared it
	}
	_, c, err := protocol.DecodeAs[*protocol.Config](msg.Payload)
	if err != nil {
		m.log.Warn("a configuration from the hub is not valid; ignored", "topic", msg.Topic, "err", err)
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	session := m.session
	kinds := make([]string, 0, len(c.Configs))
	for k := range c.Configs {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	for _, k := range kinds {
		m.offer(k, c.Configs[k], session)
	}
	if err := m.save(); err != nil {
		m.log.Error("save the configuration state", "err", err)
	}
	m.poke()
}

// offer acts on one kind of a configuration received in session. m.mu
// must be held.
func (m *Manager) offer(kind string, d protocol.ConfigDoc, session uint64) {
	ks := m.st.Kinds[kind]
	if ks == nil {
		ks = &kindState{}
		m.st.Kinds[kind] = ks
	}
	switch {
	case d.Hash == ks.Current.Hash:
		// Sent again (at every connect): say so again; for a pending
		// configuration that is its confirmation.
		ks.Report = &protocol.ConfigStatus{Kind: kind, Hash: d.Hash, State: protocol.ConfigApplied}
		return
	case ks.Refused != nil && d.Hash == ks.Refused.Hash:
		ks.Report = ks.Refused
		return
	}
	refuse := func(reason string) {
		m.log.Warn("configuration rejected", "kind", kind, "hash", d.Hash, "reason", reason)
		ks.Refused = &protocol.ConfigStatus{Kind: kind, Hash: d.Hash, State: protocol.ConfigRejected, Reason: reason}
		ks.Report = ks.Refused
	}
	sum := sha256.Sum256(d.Content)
	if hex.EncodeToString(sum[:]) != d.Hash {
		refuse("its hash is not the SHA-256 of its content")
		return
	}
	apply := m.cfg.Kinds[kind]
	if apply == nil {
		refuse(fmt.Sprintf("this agent does not apply configurations of kind %q", kind))
		return
	}
	ch, err := apply(d.Content)
	if err != nil {
		refuse(err.Error())
		return
	}
	prev := *ks
	if !ks.Pending {
		ks.Good = ks.Current
	}
	ks.Current = doc{Hash: d.Hash, Content: bytes.Clone(d.Content)}
	ks.Pending, ks.Refused = true, nil
	ks.Report = &protocol.ConfigStatus{Kind: kind, Hash: d.Hash, State: protocol.ConfigApplied}
	ks.appliedIn, ks.reconnect = session, ch.Reconnect
	ks.deadline = m.cfg.Now().Add(m.cfg.ConfirmWindow)
	if err := m.save(); err != nil {
		*ks = prev
		refuse("cannot save it: " + err.Error())
		return
	}
	ch.Apply()
	m.log.Info("configuration applied; confirmed once the hub is reached with it", "kind", kind, "hash", d.Hash, "revert_at", ks.deadline)
	if ch.Reconnect {
		m.cfg.Reconnect()
	}
}

// Run sends the reports, confirms what they confirm and reverts what is
// not confirmed in time, until ctx is done.
func (m *Manager) Run(ctx context.Context) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		m.sendReports(ctx)
		next := m.revertOverdue()
		if next.IsZero() {
			next = m.cfg.Now().Add(time.Hour)
		}
		t.Reset(max(time.Until(next), time.Millisecond))
		select {
		case <-ctx.Done():
			return
		case <-m.kick:
		case <-t.C:
		}
	}
}

// sendReports publishes the reports due over the current session's
// client, QoS 1: an acknowledged "applied" of a pending configuration
// confirms it, if made over a connection in which its settings were in
// effect.
func (m *Manager) sendReports(ctx context.Context) {
	m.mu.Lock()
	client, session := m.client, m.session
	var due []protocol.ConfigStatus
	for _, k := range m.kindNames() {
		if r := m.st.Kinds[k].Report; r != nil {
			due = append(due, *r)
		}
	}
	m.mu.Unlock()
	if client == nil || !client.Connected() || len(due) == 0 {
		return
	}
	topic := protocol.DeviceTopic(m.cfg.DeviceID, protocol.KindConfigStatus)
	for _, r := range due {
		b, err := protocol.Encode(m.cfg.DeviceID, m.cfg.Now(), &r)
		if err == nil {
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err = client.Publish(pctx, bus.Message{Topic: topic, Payload: b, QoS: 1})
			cancel()
		}
		if err != nil {
			if ctx.Err() == nil {
				m.log.Debug("configuration report not sent; sent again at the next connect", "kind", r.Kind, "err", err)
			}
			return
		}
		m.delivered(r, session)
	}
}

// delivered notes that report r was acknowledged in session.
func (m *Manager) delivered(r protocol.ConfigStatus, session uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ks := m.st.Kinds[r.Kind]
	if ks == nil || ks.Report == nil || *ks.Report != r {
		return // a newer report is due
	}
	if ks.Pending && r.State == protocol.ConfigApplied && r.Hash == ks.Current.Hash {
		if ks.reconnect && session <= ks.appliedIn {
			return // sent over the old connection: keep it for the new one
		}
		ks.Pending, ks.Good = false, ks.Current
		m.log.Info("configuration confirmed", "kind", r.Kind, "hash", r.Hash)
	}
	ks.Report = nil
	if err := m.save(); err != nil {
		m.log.Warn("save the configuration state", "err", err)
	}
}

// revertOverdue reverts every pending configuration past its deadline and
// returns the earliest deadline still ahead (zero if none).
func (m *Manager) revertOverdue() (next time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.cfg.Now()
	reverted := false
	for _, k := range m.kindNames() {
		ks := m.st.Kinds[k]
		if !ks.Pending {
			continue
		}
		if now.Before(ks.deadline) {
			if next.IsZero() || ks.deadline.Before(next) {
				next = ks.deadline
			}
			continue
		}
		m.revert(k, ks)
		reverted = true
	}
	if reverted {
		if err := m.save(); err != nil {
			m.log.Error("save the configuration state", "err", err)
		}
		m.cfg.Reconnect()
	}
	return next
}

// revert goes back to kind's last good configuration. m.mu must be held.
func (m *Manager) revert(kind string, ks *kindState) {
	bad := ks.Current.Hash
	reason := fmt.Sprintf("applied, but the hub could not be reached with it within %s; went back to the last configuration that reached it", m.cfg.ConfirmWindow)
	apply := m.cfg.Kinds[kind]
	ch, err := apply(ks.Good.content())
	if err != nil {
		// The last good one was accepted before; this agent's flags are
		// the last resort.
		ks.Good = doc{}
		ch, err = apply(ks.Good.content())
	}
	if err != nil {
		m.log.Error("cannot go back to a good configuration", "kind", kind, "err", err)
		return
	}
	ch.Apply()
	ks.Current, ks.Pending = ks.Good, false
	ks.Refused = &protocol.ConfigStatus{Kind: kind, Hash: bad, State: protocol.ConfigReverted, Reason: reason}
	ks.Report = ks.Refused
	m.log.Warn("configuration reverted", "kind", kind, "hash", bad, "reason", reason)
}

// Pending reports whether kind's configuration in effect awaits its
// confirmation, and its hash.
func (m *Manager) Pending(kind string) (hash string, pending bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if ks := m.st.Kinds[kind]; ks != nil {
		return ks.Current.Hash, ks.Pending
	}
	return "", false
}
