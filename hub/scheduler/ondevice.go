package scheduler

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/alicia-home/alicia/internal/protocol"
	"github.com/alicia-home/alicia/internal/store"
)

// ScheduleSchema is the JSON Schema of the configuration kind "schedule",
// which the scheduler alone writes (hub/spec RegisterOwned, owner Author).
//
//go:embed schedule.schema.json
var ScheduleSchema []byte

// Author is who the scheduler writes device schedules as.
const Author = "scheduler"

// DeviceSchedules gives a device its own jobs: the hub's configuration
// kind "schedule" (protocol.KindSchedule) at the device's scope, delivered,
// saved and confirmed by the device like any configuration.
type DeviceSchedules interface {
	// SetSchedule makes s device dev's schedule; unchanged content is not
	// written again.
	SetSchedule(dev string, s protocol.DeviceSchedule) error
}

// deviceSchedule is device dev's schedule: its enabled on-device jobs.
// s.mu must be held.
func (s *Scheduler) deviceSchedule(dev string) protocol.DeviceSchedule {
	out := protocol.DeviceSchedule{Jobs: []protocol.DeviceJob{}}
	for _, e := range s.jobs {
		c := e.job.Action.Command
		if !e.job.OnDevice || e.job.Disabled || e.st.Paused || c == nil || c.Device != dev {
			continue
		}
		trig, err := json.Marshal(e.job.Trigger)
		if err != nil {
			continue // a stored trigger always marshals
		}
		dj := protocol.DeviceJob{ID: e.job.ID, Version: e.v.Number, Trigger: trig, Action: c.Action, Params: c.Params,
			Missed: e.job.Missed, MissedLimit: e.job.MissedLimit, GraceS: int64(time.Duration(e.job.Grace) / time.Second)}
		if e.sched.Kind() == "sun" && s.cfg.Location != nil {
			dj.Where = &[2]float64{s.cfg.Location.Latitude, s.cfg.Location.Longitude}
		}
		out.Jobs = append(out.Jobs, dj)
	}
	slices.SortFunc(out.Jobs, func(a, b protocol.DeviceJob) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// deviceOf returns the device an on-device job runs on, or "".
func deviceOf(j Job) string {
	if j.OnDevice && j.Action.Command != nil {
		return j.Action.Command.Device
	}
	return ""
}

// markSchedules notes that the schedules of the devices of jobs a and b
// (before and after a change) must be given again. s.mu must be held.
func (s *Scheduler) markSchedules(jobs ...Job) {
	for _, j := range jobs {
		if dev := deviceOf(j); dev != "" {
			s.dirty[dev] = true
		}
	}
	s.poke()
}

// syncSchedules gives every device marked its schedule; a device whose
// schedule cannot be set stays marked and is tried again at the next pass.
func (s *Scheduler) syncSchedules() {
	if s.cfg.Schedules == nil {
		return
	}
	s.mu.Lock()
	due := map[string]protocol.DeviceSchedule{}
	for dev := range s.dirty {
		due[dev] = s.deviceSchedule(dev)
	}
	clear(s.dirty)
	s.mu.Unlock()
	for dev, sch := range due {
		if err := s.cfg.Schedules.SetSchedule(dev, sch); err != nil {
			s.log.Warn("a device's schedule not set; tried again", "device", dev, "err", err)
			s.mu.Lock()
			s.dirty[dev] = true
			s.mu.Unlock()
			continue
		}
		s.log.Info("device schedule given", "device", dev, "jobs", len(sch.Jobs))
	}
}

// RecordDeviceRun stores the run of an on-device job that device dev
// reports. A run is stored once, however often it arrives (its ID names
// the job and the fire). A run of a job that is not dev's on-device job
// (deleted since, or never) is stored under the job's ID if the job ever
// existed, and refused otherwise.
func (s *Scheduler) RecordDeviceRun(dev string, jr *protocol.JobRun) error {
	s.mu.Lock()
	e := s.jobs[jr.Job]
	s.mu.Unlock()
	if e != nil && deviceOf(e.job) != dev {
		return fmt.Errorf("scheduler: job %s is not an on-device job of %s", jr.Job, dev)
	}
	if e == nil {
		if _, err := s.Versions(jr.Job); err != nil {
			return fmt.Errorf("scheduler: a run of job %s, which does not exist: %w", jr.Job, err)
		}
	}
	r := Run{ID: jr.Run, Job: jr.Job, Version: jr.Version, Scheduled: jr.Scheduled, Started: jr.Started, Ended: jr.Ended,
		Cause: jr.Cause, Status: jr.Status, Attempts: jr.Attempts, Error: jr.Error, Result: jr.Result}
	if r.Cause == "schedule" || r.Cause == "missed" {
		r.Cause = "device " + r.Cause
	}
	err := s.db.Update(func(tx *store.Tx) error {
		var old Run
		switch err := getJSON(tx, s.ks.runs, runKey(r), &old); {
		case err == nil:
			return errDuplicate
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		return s.ks.putRun(tx, r, true)
	})
	if errors.Is(err, errDuplicate) {
		return nil
	}
	if err != nil {
		return err
	}
	s.event(r, dev)
	return nil
}

// errDuplicate ends the storing of a run stored before.
var errDuplicate = errors.New("stored before")
