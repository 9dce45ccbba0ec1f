// Package actuate executes the hub's remote commands on the device's
// hardware (hal): it checks each command against the lines, buses and
// sensors the device declared, applies it at most once per command ID,
// serialises commands per line and per bus, and never starts a command
// past its deadline. Every command gets a result; none is dropped.
package actuate

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/physic"

	"github.com/alicia-home/alicia/hal"
	"github.com/alicia-home/alicia/internal/protocol"
)

// DefaultRemember is how many results Executor keeps for repeated IDs.
const DefaultRemember = 1024

// Config configures an Executor.
type Config struct {
	// Board is the device's hardware. Required.
	Board hal.Board
	// Lines are the device's GPIO lines as registered (names, aliases,
	// directions). A command may name a line by either; writing to a line
	// declared "in" is refused; a line without a declared direction may
	// be read and written.
	Lines []protocol.HardwareLine
	// I2C lists the I2C buses commands may use.
	I2C []string
	// ReadSensor reads a declared sensor now; nil refuses sensor.read.
	ReadSensor func(ctx context.Context, name string) (map[string]float64, error)
	// Remember is how many results are kept to answer repeated command IDs.
	// Default DefaultRemember.
	Remember int
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Executor runs commands. It is safe for concurrent use.
type Executor struct {
	cfg   Config
	lines map[string]protocol.HardwareLine // by name and by alias
	i2c   map[string]bool

	mu    sync.Mutex
	locks map[string]*sync.Mutex // per line name and per "i2c/<bus>"
	done  map[string]*entry      // by command ID
	order []string               // command IDs, oldest first, for forgetting
}

// entry is one command ID's execution: ready closes when res is set.
type entry struct {
	ready chan struct{}
	res   protocol.CommandResult
}

// New returns an Executor for cfg.
func New(cfg Config) *Executor {
	if cfg.Remember <= 0 {
		cfg.Remember = DefaultRemember
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	e := &Executor{cfg: cfg, lines: map[string]protocol.HardwareLine{}, i2c: map[string]bool{},
		locks: map[string]*sync.Mutex{}, done: map[string]*entry{}}
	for _, l := range cfg.Lines {
		e.lines[l.Name] = l
		if l.Alias != "" {
			e.lines[l.Alias] = l
		}
	}
	for _, b := range cfg.I2C {
		e.i2c[b] = true
	}
	return e
}

// Execute runs cmd once and returns its result. A command ID seen before
// is not run again: Execute waits for the first run if it is still going
// and returns its result with Repeat set.
func (e *Executor) Execute(ctx context.Context, cmd *protocol.Command) protocol.CommandResult {
	e.mu.Lock()
	if prev := e.done[cmd.ID]; prev != nil {
		e.mu.Unlock()
		select {
		case <-prev.ready:
		case <-ctx.Done():
			return fail(cmd.ID, protocol.ResultFailed, fmt.Errorf("a run of the same command ID is still going: %w", ctx.Err()))
		}
		res := prev.res
		res.Repeat = true
		return res
	}
	ent := &entry{ready: make(chan struct{})}
	e.done[cmd.ID] = ent
	e.order = append(e.order, cmd.ID)
	if len(e.order) > e.cfg.Remember {
		delete(e.done, e.order[0])
		e.order = e.order[1:]
	}
	e.mu.Unlock()

	ent.res = e.run(ctx, cmd)
	close(ent.ready)
	return ent.res
}

// invalidErr marks a command the device refuses as it stands.
type invalidErr struct{ error }

func invalid(format string, args ...any) error { return invalidErr{fmt.Errorf(format, args...)} }

func fail(id, status string, err error) protocol.CommandResult {
	return protocol.CommandResult{ID: id, Status: status, Error: err.Error()}
}

func (e *Executor) run(ctx context.Context, cmd *protocol.Command) protocol.CommandResult {
	if err := cmd.Validate(); err != nil {
		return fail(cmd.ID, protocol.ResultInvalid, err)
	}
	if now := e.cfg.Now(); now.After(cmd.Deadline) {
		return fail(cmd.ID, protocol.ResultExpired, fmt.Errorf("arrived %s after its deadline %s; not started",
			now.Sub(cmd.Deadline).Round(time.Millisecond), cmd.Deadline.Format(time.RFC3339Nano)))
	}
	values, data, err := e.apply(ctx, cmd)
	var inv invalidErr
	switch {
	case errors.As(err, &inv), errors.Is(err, hal.ErrNotPresent):
		return fail(cmd.ID, protocol.ResultInvalid, err)
	case err != nil:
		return fail(cmd.ID, protocol.ResultFailed, err)
	}
	return protocol.CommandResult{ID: cmd.ID, Status: protocol.ResultOK, Values: values, Data: data}
}

// lock takes the lock of key (a line name or "i2c/<bus>") and returns its
// release.
func (e *Executor) lock(key string) func() {
	e.mu.Lock()
	l := e.locks[key]
	if l == nil {
		l = &sync.Mutex{}
		e.locks[key] = l
	}
	e.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// line resolves a command's line and checks it may be written if write.
func (e *Executor) line(name string, write bool) (protocol.HardwareLine, error) {
	l, ok := e.lines[name]
	if !ok {
		return l, invalid("line %q: not a line of this device", name)
	}
	if write && l.Direction == protocol.DirIn {
		return l, invalid("line %q (%s) is declared as an input; it cannot be written", name, l.Name)
	}
	return l, nil
}

func (e *Executor) apply(ctx context.Context, cmd *protocol.Command) (map[string]float64, string, error) {
	p := cmd.Params
	switch cmd.Action {
	case protocol.ActionGPIOWrite, protocol.ActionGPIOPulse, protocol.ActionPWMSet:
		l, err := e.line(p.Line, true)
		if err != nil {
			return nil, "", err
		}
		if cmd.Action == protocol.ActionPWMSet && !l.PWM {
			return nil, "", invalid("line %q (%s) has no hardware PWM", p.Line, l.Name)
		}
		defer e.lock(l.Name)()
		pin, err := e.cfg.Board.GPIO(l.Name)
		if err != nil {
			return nil, "", err
		}
		switch cmd.Action {
		case protocol.ActionGPIOWrite:
			return nil, "", out(pin, *p.Level)
		case protocol.ActionGPIOPulse:
			if err := out(pin, *p.Level); err != nil {
				return nil, "", err
			}
			t := time.NewTimer(time.Duration(p.DurationMS) * time.Millisecond)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
				// The agent is stopping: end the pulse early rather than
				// leave the line in the pulse's level.
			}
			return nil, "", out(pin, !*p.Level)
		default:
			duty := gpio.Duty(*p.Duty * float64(gpio.DutyMax))
			if err := pin.PWM(duty, physic.Frequency(p.FrequencyHz*float64(physic.Hertz))); err != nil {
				return nil, "", fmt.Errorf("pwm on %s: %w", l.Name, err)
			}
			return nil, "", nil
		}
	case protocol.ActionGPIORead:
		l, err := e.line(p.Line, false)
		if err != nil {
			return nil, "", err
		}
		defer e.lock(l.Name)()
		pin, err := e.cfg.Board.GPIO(l.Name)
		if err != nil {
			return nil, "", err
		}
		level := 0.0
		if pin.Read() == gpio.High {
			level = 1
		}
		return map[string]float64{"level": level}, "", nil
	case protocol.ActionI2CTransfer:
		if !e.i2c[p.Bus] {
			return nil, "", invalid("i2c bus %q: not a bus of this device", p.Bus)
		}
		defer e.lock("i2c/" + p.Bus)()
		bus, err := e.cfg.Board.I2C(p.Bus)
		if err != nil {
			return nil, "", err
		}
		defer bus.Close()
		w, err := hex.DecodeString(p.Write)
		if err != nil {
			return nil, "", invalid("write: %v", err)
		}
		r := make([]byte, p.ReadLen)
		if err := bus.Tx(*p.Address, w, r); err != nil {
			return nil, "", fmt.Errorf("i2c bus %s, address %#x: %w", p.Bus, *p.Address, err)
		}
		if len(r) == 0 {
			return nil, "", nil
		}
		return nil, hex.EncodeToString(r), nil
	case protocol.ActionSensorRead:
		if e.cfg.ReadSensor == nil {
			return nil, "", invalid("sensor %q: this device declares no sensors", p.Sensor)
		}
		v, err := e.cfg.ReadSensor(ctx, p.Sensor)
		return v, "", err
	case protocol.ActionAgentRestart:
		// The caller restarts the agent once the result is published.
		return nil, "", nil
	}
	return nil, "", invalid("action %q: not supported by this agent", cmd.Action)
}

func out(pin gpio.PinIO, high bool) error {
	l := gpio.Low
	if high {
		l = gpio.High
	}
	if err := pin.Out(l); err != nil {
		return fmt.Errorf("write %s to %s: %w", l, pin.Name(), err)
	}
	return nil
}
