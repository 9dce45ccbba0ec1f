package placement

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/alicia-home/alicia/internal/protocol"
)

// DefaultLostAfter is how long a device may be offline before it is lost
// when a Spec does not say.
const DefaultLostAfter = 5 * time.Minute

// Capabilities a device may offer, as named by Capabilities.
const (
	CapGPIO    = "gpio"
	CapPWM     = "pwm"
	CapI2C     = "i2c"
	CapSPI     = "spi"
	CapOneWire = "onewire"
)

// Spec is what a service asks of its placement.
type Spec struct {
	// Name is the service's name, used in messages.
	Name string
	// Count is how many instances should run; 0 stops them all.
	Count int
	// Constraints select the devices that may run an instance.
	Constraints Constraints
	// Spread, if set, is a label (e.g. "room") whose values the instances
	// are spread over evenly; a device without it does not fit.
	Spread string
	// AllowColocate lets one device run several instances.
	AllowColocate bool
	// Pinned keeps an instance on its device when the device is lost,
	// waiting for it; otherwise (movable) the instance is moved.
	Pinned bool
	// LostAfter is how long a device may be offline before it is lost;
	// 0 means DefaultLostAfter.
	LostAfter time.Duration
}

// Constraints select devices; every one that is set must hold.
type Constraints struct {
	// Labels the device must have, each with this value.
	Labels map[string]string
	// Arch lists the architectures allowed (e.g. "arm64", "arm/v6"); empty
	// allows any.
	Arch []string
	// Capabilities the device must offer (CapGPIO, CapI2C, …).
	Capabilities []string
	// MinFreeMemory is the free memory, in bytes, a device needs to take a
	// new instance; 0 asks none.
	MinFreeMemory uint64
}

// Device is a device as placement sees it.
type Device struct {
	ID     string
	Labels map[string]string
	// Arch is the device's architecture ("arm64", "arm/v6", "amd64").
	Arch string
	// Capabilities the device offers; see Capabilities.
	Capabilities []string
	// FreeMemory is the latest free memory from telemetry, in bytes, when
	// FreeMemoryKnown.
	FreeMemory      uint64
	FreeMemoryKnown bool
	// Online tells whether the device is connected; when it is not,
	// OfflineSince is when it went (zero: unknown, taken as lost).
	Online       bool
	OfflineSince time.Time
}

// Instance is an instance of the service that exists.
type Instance struct {
	ID     string
	Device string
	// Since is when the instance was placed; older instances are kept
	// first.
	Since time.Time
}

// Start is a new instance to start.
type Start struct {
	Device string
	// Replaces is the ID of the instance this one moves, if any.
	Replaces string
}

// Stop is an existing instance to stop, and why.
type Stop struct {
	Instance Instance
	Reason   string
}

// Wait is an instance kept on a lost device, and why.
type Wait struct {
	Instance Instance
	Reason   string
}

// Verdicts of an Explanation.
const (
	VerdictRuns     = "runs"     // keeps an instance it runs
	VerdictChosen   = "chosen"   // a new instance starts on it
	VerdictWaiting  = "waiting"  // lost; an instance waits for it
	VerdictFits     = "fits"     // could take an instance but was not needed
	VerdictExcluded = "excluded" // cannot take an instance; see Reasons
)

// Explanation says what placement decided for one device and why.
type Explanation struct {
	Device  string
	Verdict string
	Reasons []string
}

// Plan is the outcome of Place.
type Plan struct {
	// Keep lists the instances that stay where they are.
	Keep []Instance
	// Start lists the instances to start, in the order chosen.
	Start []Start
	// Stop lists the instances to stop (moved ones among them).
	Stop []Stop
	// Waiting lists instances kept on lost devices.
	Waiting []Wait
	// Placed is len(Keep)+len(Start)+len(Waiting); Wanted is the spec's
	// Count.
	Placed, Wanted int
	// Reason says why Count is not met; empty when it is.
	Reason string
	// Devices explains every device, by ID.
	Devices []Explanation
}

// Capabilities names what a device's hardware offers: CapGPIO when it has
// GPIO lines, CapPWM when one has hardware PWM, CapI2C, CapSPI and
// CapOneWire when it has such a bus. A nil h offers nothing.
func Capabilities(h *protocol.Hardware) []string {
	if h == nil {
		return nil
	}
	var caps []string
	if len(h.Lines) > 0 {
		caps = append(caps, CapGPIO)
	}
	if slices.ContainsFunc(h.Lines, func(l protocol.HardwareLine) bool { return l.PWM }) {
		caps = append(caps, CapPWM)
	}
	if len(h.I2C) > 0 {
		caps = append(caps, CapI2C)
	}
	if len(h.SPI) > 0 {
		caps = append(caps, CapSPI)
	}
	if len(h.OneWire) > 0 {
		caps = append(caps, CapOneWire)
	}
	return caps
}

// Validate reports the first thing wrong with s.
func (s *Spec) Validate() error {
	if s.Name == "" {
		return errors.New("spec: name is empty")
	}
	if s.Count < 0 {
		return fmt.Errorf("spec %s: count %d is negative", s.Name, s.Count)
	}
	if s.LostAfter < 0 {
		return fmt.Errorf("spec %s: lost_after %s is negative", s.Name, s.LostAfter)
	}
	for k := range s.Constraints.Labels {
		if k == "" {
			return fmt.Errorf("spec %s: constraints.labels: empty key", s.Name)
		}
	}
	for i, a := range s.Constraints.Arch {
		if a == "" {
			return fmt.Errorf("spec %s: constraints.arch[%d] is empty", s.Name, i)
		}
	}
	for i, c := range s.Constraints.Capabilities {
		if c == "" {
			return fmt.Errorf("spec %s: constraints.capabilities[%d] is empty", s.Name, i)
		}
	}
	return nil
}

// device is a device's state during Place.
type device struct {
	Device
	static  []string // reasons it does not fit, free memory aside
	memory  string   // why its free memory is not enough, if it is not
	offline string   // "offline since …", if offline
	lost    bool
	group   string // its spread value
	free    uint64 // free memory left for new instances

	kept, waiting []Instance
	started       []Start
	stopped       []Stop
	chosen        []string // why it was chosen, per started instance
}

func (d *device) hosts() int { return len(d.kept) + len(d.waiting) + len(d.started) }

// Place decides where spec's instances run, given the devices there are
// and the instances that exist, at time now. It is deterministic: the same
// input gives the same Plan, whatever the order of devices and current.
// It fails only on bad input: an invalid spec, devices or instances
// without an ID or with the same ID twice.
func Place(spec Spec, devices []Device, current []Instance, now time.Time) (Plan, error) {
	if err := spec.Validate(); err != nil {
		return Plan{}, err
	}
	lostAfter := spec.LostAfter
	if lostAfter == 0 {
		lostAfter = DefaultLostAfter
	}
	devs := make(map[string]*device, len(devices))
	ids := make([]string, 0, len(devices))
	for i, d := range devices {
		if d.ID == "" {
			return Plan{}, fmt.Errorf("placement of %s: devices[%d]: id is empty", spec.Name, i)
		}
		if devs[d.ID] != nil {
			return Plan{}, fmt.Errorf("placement of %s: devices[%d]: device %s is listed twice", spec.Name, i, d.ID)
		}
		st := &device{Device: d, free: d.FreeMemory}
		st.static = staticReasons(&spec, &d)
		st.memory = memoryReason(&spec, &d)
		if spec.Spread != "" {
			st.group = d.Labels[spec.Spread]
		}
		if !d.Online {
			if d.OfflineSince.IsZero() {
				st.offline = fmt.Sprintf("offline since an unknown time (lost after %s)", fmtDuration(lostAfter))
				st.lost = true
			} else {
				st.offline = fmt.Sprintf("offline since %s (lost after %s)", d.OfflineSince.UTC().Format(time.RFC3339), fmtDuration(lostAfter))
				st.lost = now.Sub(d.OfflineSince) >= lostAfter
			}
		}
		devs[d.ID] = st
		ids = append(ids, d.ID)
	}
	sort.Strings(ids)

	insts := slices.Clone(current)
	seen := make(map[string]bool, len(insts))
	for i, in := range insts {
		if in.ID == "" {
			return Plan{}, fmt.Errorf("placement of %s: instances[%d]: id is empty", spec.Name, i)
		}
		if seen[in.ID] {
			return Plan{}, fmt.Errorf("placement of %s: instances[%d]: instance %s is listed twice", spec.Name, i, in.ID)
		}
		seen[in.ID] = true
	}
	// Oldest first, so an older instance keeps its device over a newer one.
	sort.Slice(insts, func(i, j int) bool {
		if !insts[i].Since.Equal(insts[j].Since) {
			return insts[i].Since.Before(insts[j].Since)
		}
		return insts[i].ID < insts[j].ID
	})

	var plan Plan
	plan.Wanted = spec.Count
	stop := func(in Instance, reason string) {
		plan.Stop = append(plan.Stop, Stop{Instance: in, Reason: reason})
		if d := devs[in.Device]; d != nil {
			d.stopped = append(d.stopped, Stop{Instance: in, Reason: reason})
		}
	}

	// Classify the instances there are.
	var lostMovable []Instance
	for _, in := range insts {
		d := devs[in.Device]
		switch {
		case d == nil:
			stop(in, fmt.Sprintf("device %s is not known", in.Device))
		case len(d.static) > 0:
			stop(in, fmt.Sprintf("device %s no longer fits: %s", in.Device, strings.Join(d.static, "; ")))
		case !spec.AllowColocate && d.hosts() > 0:
			stop(in, fmt.Sprintf("device %s already runs an older instance", in.Device))
		case d.lost && spec.Pinned:
			d.waiting = append(d.waiting, in)
		case d.lost:
			lostMovable = append(lostMovable, in)
			d.waiting = append(d.waiting, in) // until it is moved
		default:
			d.kept = append(d.kept, in)
		}
	}

	// Too many: stop the least useful ones.
	for total := countHosted(devs); total > spec.Count; total-- {
		in, reason := leastUseful(devs, spec.Count)
		removeInstance(devs[in.Device], in.ID)
		lostMovable = slices.DeleteFunc(lostMovable, func(x Instance) bool { return x.ID == in.ID })
		stop(in, reason)
	}

	groups := spreadCounts(devs)

	// Move the movable instances of lost devices.
	for _, in := range lostMovable {
		from := devs[in.Device]
		to := pick(&spec, devs, ids, groups)
		if to == nil {
			continue // it stays waiting
		}
		removeInstance(from, in.ID)
		groups[from.group]--
		plan.Start = append(plan.Start, place(&spec, to, in.ID, groups))
		stop(in, fmt.Sprintf("device %s is lost (%s); moved to %s", from.ID, from.offline, to.ID))
	}

	// Fill up to Count.
	for countHosted(devs) < spec.Count {
		to := pick(&spec, devs, ids, groups)
		if to == nil {
			break
		}
		plan.Start = append(plan.Start, place(&spec, to, "", groups))
	}

	// Gather the plan, device by device.
	lostIDs := make(map[string]bool, len(lostMovable))
	for _, in := range lostMovable {
		lostIDs[in.ID] = true
	}
	for _, id := range ids {
		d := devs[id]
		plan.Keep = append(plan.Keep, d.kept...)
		for _, in := range d.waiting {
			reason := fmt.Sprintf("pinned to device %s, which is lost (%s)", id, d.offline)
			if lostIDs[in.ID] {
				reason = fmt.Sprintf("device %s is lost (%s) and no other device can take it", id, d.offline)
			}
			plan.Waiting = append(plan.Waiting, Wait{Instance: in, Reason: reason})
		}
		plan.Devices = append(plan.Devices, explain(&spec, d))
	}
	plan.Placed = len(plan.Keep) + len(plan.Start) + len(plan.Waiting)
	if plan.Placed < spec.Count {
		plan.Reason = unmetReason(&spec, devs, ids, plan.Placed)
	}
	sort.SliceStable(plan.Keep, func(i, j int) bool { return plan.Keep[i].ID < plan.Keep[j].ID })
	return plan, nil
}
