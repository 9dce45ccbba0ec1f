package sim

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/conn/v3/pin"

	"github.com/alicia-home/alicia/hal"
)

// defaultPWMFrequency is what PWM records when asked for frequency 0 ("the
// pin's preferred value").
const defaultPWMFrequency = 1 * physic.KiloHertz

// maxPendingEdges bounds the edges a line accumulates between two
// WaitForEdge calls, like the kernel's event FIFO; further edges are dropped.
const maxPendingEdges = 64

type lineMode int

const (
	modeUnset lineMode = iota
	modeIn
	modeOut
	modePWM
)

// line is one simulated GPIO line. It implements gpio.PinIO. Levels follow
// a small model of the wire: an output drives its own level; an input reads
// what something outside drives onto it (a pressed button pulls to ground)
// and otherwise its pull resistor, floating low when there is none.
type line struct {
	board  *Board
	name   string
	number int
	canPWM bool
	defPul gpio.Pull

	// mu guards the fields below.
	mu       sync.Mutex
	mode     lineMode
	pull     gpio.Pull
	edge     gpio.Edge
	out      gpio.Level
	duty     gpio.Duty
	freq     physic.Frequency
	driven   bool       // something outside drives the line
	extLevel gpio.Level // the level it drives, when driven
	pending  int        // edges not yet consumed by WaitForEdge
	wake     chan struct{}
	gen      uint64 // bumped by In, Out, Halt and Close to abort waiters
}

var (
	_ gpio.PinIO  = (*line)(nil)
	_ pin.PinFunc = (*line)(nil)
)

func newLine(b *Board, name string, number int, canPWM bool, defPull gpio.Pull) *line {
	return &line{
		board: b, name: name, number: number, canPWM: canPWM, defPul: defPull,
		pull: defPull, wake: make(chan struct{}),
	}
}

// String implements conn.Resource.
func (l *line) String() string { return l.name }

// Name implements pin.Pin.
func (l *line) Name() string { return l.name }

// Number implements pin.Pin.
func (l *line) Number() int { return l.number }

// Function implements pin.Pin.
func (l *line) Function() string { return string(l.Func()) }

// Func implements pin.PinFunc.
func (l *line) Func() pin.Func {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch l.mode {
	case modeIn:
		return gpio.IN
	case modeOut:
		return gpio.OUT
	case modePWM:
		return gpio.PWM
	}
	return pin.FuncNone
}

// SupportedFuncs implements pin.PinFunc.
func (l *line) SupportedFuncs() []pin.Func {
	if l.canPWM {
		return []pin.Func{gpio.IN, gpio.OUT, gpio.PWM}
	}
	return []pin.Func{gpio.IN, gpio.OUT}
}

// SetFunc implements pin.PinFunc.
func (l *line) SetFunc(f pin.Func) error {
	switch f {
	case gpio.IN:
		return l.In(gpio.PullNoChange, gpio.NoEdge)
	case gpio.OUT:
		return l.Out(gpio.Low)
	case gpio.PWM:
		return l.PWM(gpio.DutyHalf, 0)
	}
	return fmt.Errorf("sim: %s: unsupported function %q", l.name, f)
}

// Halt implements conn.Resource: it interrupts a pending WaitForEdge.
func (l *line) Halt() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.abortWaitersLocked()
	return nil
}

// In implements gpio.PinIn.
func (l *line) In(pull gpio.Pull, edge gpio.Edge) error {
	if err := l.board.checkOpen(); err != nil {
		return fmt.Errorf("sim: %s: %w", l.name, err)
	}
	switch pull {
	case gpio.Float, gpio.PullDown, gpio.PullUp, gpio.PullNoChange:
	default:
		return fmt.Errorf("sim: %s: invalid pull %v", l.name, pull)
	}
	switch edge {
	case gpio.NoEdge, gpio.RisingEdge, gpio.FallingEdge, gpio.BothEdges:
	default:
		return fmt.Errorf("sim: %s: invalid edge %v", l.name, edge)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mode = modeIn
	if pull != gpio.PullNoChange {
		l.pull = pull
	}
	l.edge = edge
	l.pending = 0 // In flushes accumulated edges.
	l.abortWaitersLocked()
	return nil
}

// Read implements gpio.PinIn.
func (l *line) Read() gpio.Level {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.levelLocked()
}

// WaitForEdge implements gpio.PinIn. It returns at once if an edge happened
// since the previous call; each call consumes one edge. A negative timeout
// waits without limit, 0 only checks for a pending edge. It returns false on
// timeout, when In, Out, Halt or the board's Close interrupts it, and when
// the line is not an input with edge detection.
func (l *line) WaitForEdge(timeout time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	// Close marks the board closed before it aborts each line's waiters
	// under l.mu, so checking here, under l.mu, cannot miss it.
	if l.board.checkOpen() != nil || l.mode != modeIn || l.edge == gpio.NoEdge {
		return false
	}
	gen := l.gen
	var expired <-chan time.Time
	if timeout >= 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	for l.pending == 0 {
		if timeout == 0 {
			return false
		}
		wake := l.wake
		l.mu.Unlock()
		timedOut := false
		select {
		case <-wake:
		case <-expired:
			timedOut = true
		}
		l.mu.Lock()
		if l.gen != gen || (timedOut && l.pending == 0) {
			return false
		}
	}
	l.pending--
	return true
}

// Pull implements gpio.PinIn.
func (l *line) Pull() gpio.Pull {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pull
}

// DefaultPull implements gpio.PinIn.
func (l *line) DefaultPull() gpio.Pull { return l.defPul }

// Out implements gpio.PinOut.
func (l *line) Out(level gpio.Level) error {
	if err := l.board.checkOpen(); err != nil {
		return fmt.Errorf("sim: %s: %w", l.name, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mode = modeOut
	l.out = level
	l.edge = gpio.NoEdge
	l.pending = 0
	l.duty, l.freq = 0, 0
	l.abortWaitersLocked()
	return nil
}

// PWM implements gpio.PinOut on the lines that support it. Frequency 0
// selects 1 kHz.
func (l *line) PWM(duty gpio.Duty, f physic.Frequency) error {
	if err := l.board.checkOpen(); err != nil {
		return fmt.Errorf("sim: %s: %w", l.name, err)
	}
	if !l.canPWM {
		return fmt.Errorf("sim: %s: PWM not supported on this line", l.name)
	}
	if duty < 0 || duty > gpio.DutyMax {
		return fmt.Errorf("sim: %s: duty %d out of range [0, %d]", l.name, duty, gpio.DutyMax)
	}
	if f < 0 {
		return fmt.Errorf("sim: %s: negative frequency %v", l.name, f)
	}
	if f == 0 {
		f = defaultPWMFrequency
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mode = modePWM
	l.duty, l.freq = duty, f
	l.out = duty > 0
	l.edge = gpio.NoEdge
	l.pending = 0
	l.abortWaitersLocked()
	return nil
}

// levelLocked is the level on the wire.
func (l *line) levelLocked() gpio.Level {
	switch l.mode {
	case modeOut, modePWM:
		return l.out
	}
	if l.driven {
		return l.extLevel
	}
	return l.pull == gpio.PullUp
}

// drive sets (driven true) or removes what drives the line from outside and
// records an edge if the level changes and the line watches that edge.
func (l *line) drive(driven bool, level gpio.Level) {
	l.mu.Lock()
	defer l.mu.Unlock()
	before := l.levelLocked()
	l.driven, l.extLevel = driven, level
	after := l.levelLocked()
	if l.mode != modeIn || before == after {
		return
	}
	rising := after == gpio.High
	if l.edge == gpio.BothEdges || (rising && l.edge == gpio.RisingEdge) || (!rising && l.edge == gpio.FallingEdge) {
		if l.pending < maxPendingEdges {
			l.pending++
		}
		close(l.wake)
		l.wake = make(chan struct{})
	}
}

// abortWaitersLocked makes pending WaitForEdge calls return false.
func (l *line) abortWaitersLocked() {
	l.gen++
	close(l.wake)
	l.wake = make(chan struct{})
}

// state is a snapshot for the Board's inspection methods.
func (l *line) state() (mode lineMode, level gpio.Level, duty gpio.Duty, f physic.Frequency) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mode, l.levelLocked(), l.duty, l.freq
}

// errNotPWM is returned by Board.PWM for a line that is not generating PWM.
var errNotPWM = errors.New("line is not in PWM mode")

func notPresent(kind, name string) error {
	return fmt.Errorf("sim: %s %q: %w", kind, name, hal.ErrNotPresent)
}
