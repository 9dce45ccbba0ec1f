package agentd

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alicia-home/alicia/internal/protocol"
)

// relayHW is hardware with one output line, GPIO17 alias relay.
type relayHW struct{}

func (relayHW) Hardware() *protocol.Hardware {
	return &protocol.Hardware{Backend: "sim", Lines: []protocol.HardwareLine{{Name: "GPIO17", Alias: "relay", Direction: protocol.DirOut}}}
}
func (relayHW) Execute(_ context.Context, c *protocol.Command) protocol.CommandResult {
	return protocol.CommandResult{ID: c.ID, Status: protocol.ResultOK}
}
func (relayHW) Sample(context.Context) []protocol.Point                 { return nil }
func (relayHW) WatchInputs(context.Context, func(protocol.DeviceEvent)) {}

// TestScheduleApplier: the schedule kind's applier refuses what the
// device cannot run, with a reason the hub shows, and changes nothing
// until the change is applied.
func TestScheduleApplier(t *testing.T) {
	const relay = `"action": "gpio.write", "params": {"line": "relay", "level": true}`
	good := `{"jobs": [{"id": "morning", "version": 1, "trigger": {"cron": "30 6 * * *", "zone": "UTC"}, ` + relay + `}]}`
	for _, tc := range []struct {
		name    string
		hw      Hardware
		content string
		err     string // "" accepted
	}{
		{"accepted", relayHW{}, good, ""},
		{"nothing set", relayHW{}, `{}`, ""},
		{"no jobs, no hardware", nil, `{"jobs": []}`, ""},
		{"unknown line", relayHW{}, `{"jobs": [{"id": "a", "trigger": {"every": "1m"}, "action": "gpio.write", "params": {"line": "GPIO4", "level": true}}]}`,
			`job "a": params.line: "GPIO4" is not a line of this device (it has GPIO17 (relay))`},
		{"no hardware", nil, good, `job "morning": action gpio.write: this agent runs without hardware (--hal none)`},
		{"invalid trigger", relayHW{}, `{"jobs": [{"id": "a", "trigger": {"cron": "0 0 30 2 *", "zone": "UTC"}, ` + relay + `}]}`, "never fires: February has no 30th"},
		{"sun without where", relayHW{}, `{"jobs": [{"id": "a", "trigger": {"sun": {"event": "sunrise"}, "zone": "UTC"}, ` + relay + `}]}`,
			"a sun trigger needs where (the home's latitude and longitude)"},
		{"not a schedule", relayHW{}, `{"jobs": {}}`, "not a schedule this agent understands"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			a, err := New(Config{StateDir: dir, Hardware: tc.hw})
			if err != nil {
				t.Fatal(err)
			}
			d := &device{}
			ob, err := a.openJobs(d)
			if err != nil {
				t.Fatal(err)
			}
			defer ob.Close()
			ch, err := a.applySchedule(d)([]byte(tc.content))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("rejected: %v", err)
			}
			if ch.Reconnect {
				t.Error("a schedule asks for a reconnect")
			}
			ch.Apply()
			if _, err := os.Stat(filepath.Join(dir, "jobs.json")); err != nil {
				t.Errorf("the applied schedule is not saved: %v", err)
			}
		})
	}
}
