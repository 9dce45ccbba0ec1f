package jobs

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"time"

	"github.com/alicia-home/alicia/internal/protocol"
	"github.com/alicia-home/alicia/internal/schedule"
)

// Missed-run policies, as the hub's scheduler has them.
const (
	MissedSkip    = "skip"
	MissedRunOnce = "run_once"
	MissedRunAll  = "run_all"
)

// Defaults and limits of a job's missed-run policy (the hub's).
const (
	DefaultMissedLimit = 10
	MaxMissedLimit     = 100
	DefaultGrace       = time.Hour
	MaxGrace           = 31 * 24 * time.Hour
	// MaxJobs bounds the jobs of one device.
	MaxJobs = 256
)

// jobID is the shape of a job ID: a run ID "<job>.<unix seconds>" must
// pass protocol.JobRun's check.
var jobID = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,39}$`)

// Job is one checked on-device job, ready to run.
type Job struct {
	protocol.DeviceJob
	sched *schedule.Schedule
	grace time.Duration
	// key names the trigger and place: a job whose key is unchanged keeps
	// its Done across a new schedule.
	key string
}

// calendar reports whether the job fires at wall-clock times (cron, at,
// sun), which need a trustworthy clock.
func (j *Job) calendar() bool { return j.sched.Kind() != schedule.KindInterval }

// Schedule is a device's checked jobs, as Parse returns them for SetJobs.
type Schedule struct {
	jobs []*Job // by ID
}

// Len returns the number of jobs.
func (s *Schedule) Len() int { return len(s.jobs) }

// Parse checks a "schedule" configuration's content whole (a
// protocol.DeviceSchedule; "{}" is no jobs) against the device's hardware
// hw (nil: the agent runs without a HAL) and returns its jobs. The error
// names the job and the field.
func Parse(content []byte, hw *protocol.Hardware) (*Schedule, error) {
	var ds protocol.DeviceSchedule
	dec := json.NewDecoder(bytes.NewReader(content))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ds); err != nil {
		return nil, fmt.Errorf("not a schedule this agent understands: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("not a schedule: data after the object")
	}
	if len(ds.Jobs) > MaxJobs {
		return nil, fmt.Errorf("jobs: %d, at most %d", len(ds.Jobs), MaxJobs)
	}
	s := &Schedule{}
	seen := map[string]bool{}
	for i, dj := range ds.Jobs {
		j, err := check(dj, hw)
		if err != nil {
			name := fmt.Sprintf("jobs[%d]", i)
			if dj.ID != "" {
				name = fmt.Sprintf("job %q", dj.ID)
			}
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if seen[j.ID] {
			return nil, fmt.Errorf("job %q: the ID appears twice", j.ID)
		}
		seen[j.ID] = true
		s.jobs = append(s.jobs, j)
	}
	slices.SortFunc(s.jobs, func(a, b *Job) int { return cmp.Compare(a.ID, b.ID) })
	return s, nil
}

// check checks one job and fills its policy's defaults.
func check(dj protocol.DeviceJob, hw *protocol.Hardware) (*Job, error) {
	if !jobID.MatchString(dj.ID) {
		return nil, fmt.Errorf("id %q: want 1 to 40 of a-z, 0-9, _ and -, starting with a letter or digit", dj.ID)
	}
	var t schedule.Trigger
	if err := json.Unmarshal(dj.Trigger, &t); err != nil {
		return nil, fmt.Errorf("trigger: %w", err)
	}
	var where *schedule.Location
	if dj.Where != nil {
		where = &schedule.Location{Latitude: dj.Where[0], Longitude: dj.Where[1]}
	}
	sched, err := schedule.Compile(t, where)
	if err != nil {
		if t.Kind() == schedule.KindSun && where == nil {
			return nil, fmt.Errorf("trigger: a sun trigger needs where (the home's latitude and longitude): %w", err)
		}
		return nil, fmt.Errorf("trigger: %w", err)
	}
	if err := checkCommand(dj.Action, dj.Params, hw); err != nil {
		return nil, err
	}
	switch dj.Missed {
	case "":
		dj.Missed = MissedRunOnce
	case MissedSkip, MissedRunOnce, MissedRunAll:
	default:
		return nil, fmt.Errorf("missed %q: want skip, run_once or run_all", dj.Missed)
	}
	if dj.MissedLimit == 0 {
		dj.MissedLimit = DefaultMissedLimit
	}
	if dj.MissedLimit < 1 || dj.MissedLimit > MaxMissedLimit {
		return nil, fmt.Errorf("missed_limit %d: want 1 to %d", dj.MissedLimit, MaxMissedLimit)
	}
	grace := DefaultGrace
	if dj.GraceS != 0 {
		grace = time.Duration(dj.GraceS) * time.Second
	}
	if grace < time.Second || grace > MaxGrace {
		return nil, fmt.Errorf("grace_s %d: want 1 to %d", dj.GraceS, int64(MaxGrace/time.Second))
	}
	key, _ := json.Marshal(struct {
		T schedule.Trigger   `json:"t"`
		W *schedule.Location `json:"w,omitempty"`
	}{t, where})
	return &Job{DeviceJob: dj, sched: sched, grace: grace, key: string(key)}, nil
}

// checkCommand checks a job's command: its parameters, and the line, bus
// or sensor it names against the device's hardware (as the hub's command
// service does for remote commands).
func checkCommand(action string, p protocol.CommandParams, hw *protocol.Hardware) error {
	c := protocol.Command{Action: action, Params: p}
	if err := c.ValidateAction(); err != nil {
		return err
	}
	if action == protocol.ActionAgentRestart {
		return errors.New("action: agent.restart is not an on-device job's action (the hub may run it)")
	}
	if hw == nil {
		return fmt.Errorf("action %s: this agent runs without hardware (--hal none)", action)
	}
	if p.Line != "" {
		i := slices.IndexFunc(hw.Lines, func(l protocol.HardwareLine) bool { return l.Name == p.Line || l.Alias == p.Line })
		if i < 0 {
			return fmt.Errorf("params.line: %q is not a line of this device (it has %s)", p.Line, lineNames(hw.Lines))
		}
		l := hw.Lines[i]
		if action != protocol.ActionGPIORead && l.Direction == protocol.DirIn {
			return fmt.Errorf("params.line: %q (%s) is an input; %s writes", p.Line, l.Name, action)
		}
		if action == protocol.ActionPWMSet && !l.PWM {
			return fmt.Errorf("params.line: %q (%s) has no hardware PWM", p.Line, l.Name)
		}
	}
	if p.Bus != "" && !slices.Contains(hw.I2C, p.Bus) {
		return fmt.Errorf("params.bus: %q is not an I2C bus of this device (it has %v)", p.Bus, hw.I2C)
	}
	if p.Sensor != "" && !slices.ContainsFunc(hw.Sensors, func(s protocol.HardwareSensor) bool { return s.Name == p.Sensor }) {
		return fmt.Errorf("params.sensor: %q is not a sensor of this device", p.Sensor)
	}
	return nil
}

// lineNames lists lines as "GPIO17 (relay), GPIO27", at most 16 of them.
func lineNames(lines []protocol.HardwareLine) string {
	if len(lines) == 0 {
		return "none"
	}
	var b bytes.Buffer
	for i, l := range lines {
		if i == 16 {
			fmt.Fprintf(&b, ", … %d more", len(lines)-i)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(l.Name)
		if l.Alias != "" {
			fmt.Fprintf(&b, " (%s)", l.Alias)
		}
	}
	return b.String()
}
