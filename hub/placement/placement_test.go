package placement

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/alicia-home/alicia/internal/protocol"
)

var now = time.Date(2026, 12, 8, 12, 0, 0, 0, time.UTC)

func dev(id, room string) Device {
	return Device{ID: id, Labels: map[string]string{"room": room}, Arch: "arm64", Online: true,
		FreeMemory: 512 * mib, FreeMemoryKnown: true}
}

func with(d Device, f func(*Device)) Device { f(&d); return d }

func inst(id, device string, age time.Duration) Instance {
	return Instance{ID: id, Device: device, Since: now.Add(-age)}
}

// outcome is the part of a Plan the tables compare.
type outcome struct {
	Keep    []string          // instance IDs
	Start   []string          // device IDs, "dev<-instance" when moving
	Stop    []string          // instance IDs
	Waiting []string          // instance IDs
	Reason  string            // Plan.Reason
	Verdict map[string]string // device → verdict
}

func summarize(p Plan) outcome {
	o := outcome{Reason: p.Reason, Verdict: map[string]string{}}
	for _, in := range p.Keep {
		o.Keep = append(o.Keep, in.ID)
	}
	for _, s := range p.Start {
		if s.Replaces != "" {
			o.Start = append(o.Start, s.Device+"<-"+s.Replaces)
		} else {
			o.Start = append(o.Start, s.Device)
		}
	}
	for _, s := range p.Stop {
		o.Stop = append(o.Stop, s.Instance.ID)
	}
	for _, w := range p.Waiting {
		o.Waiting = append(o.Waiting, w.Instance.ID)
	}
	for _, e := range p.Devices {
		o.Verdict[e.Device] = e.Verdict
	}
	return o
}

func TestPlace(t *testing.T) {
	threeInTwoRooms := []Device{dev("a", "kitchen"), dev("b", "kitchen"), dev("c", "hall")}
	tests := []struct {
		name    string
		spec    Spec
		devices []Device
		current []Instance
		want    outcome
	}{
		{
			name:    "count 2 spread over room: two rooms",
			spec:    Spec{Name: "web", Count: 2, Spread: "room"},
			devices: threeInTwoRooms,
			want: outcome{Start: []string{"a", "c"},
				Verdict: map[string]string{"a": VerdictChosen, "b": VerdictFits, "c": VerdictChosen}},
		},
		{
			name:    "count 3 spread over room: one room gets two",
			spec:    Spec{Name: "web", Count: 3, Spread: "room"},
			devices: threeInTwoRooms,
			want: outcome{Start: []string{"a", "c", "b"},
				Verdict: map[string]string{"a": VerdictChosen, "b": VerdictChosen, "c": VerdictChosen}},
		},
		{
			name:    "spread counts existing instances",
			spec:    Spec{Name: "web", Count: 2, Spread: "room"},
			devices: threeInTwoRooms,
			current: []Instance{inst("w1", "b", time.Hour)},
			want: outcome{Keep: []string{"w1"}, Start: []string{"c"},
				Verdict: map[string]string{"a": VerdictFits, "b": VerdictRuns, "c": VerdictChosen}},
		},
		{
			name:    "no churn: uneven spread that exists is kept",
			spec:    Spec{Name: "web", Count: 2, Spread: "room"},
			devices: threeInTwoRooms,
			current: []Instance{inst("w1", "a", time.Hour), inst("w2", "b", time.Hour)},
			want: outcome{Keep: []string{"w1", "w2"},
				Verdict: map[string]string{"a": VerdictRuns, "b": VerdictRuns, "c": VerdictFits}},
		},
		{
			name: "no churn: memory dropped under the minimum keeps the instance",
			spec: Spec{Name: "web", Count: 1, Constraints: Constraints{MinFreeMemory: 256 * mib}},
			devices: []Device{with(dev("a", "kitchen"), func(d *Device) { d.FreeMemory = 100 * mib }),
				dev("b", "kitchen")},
			current: []Instance{inst("w1", "a", time.Hour)},
			want: outcome{Keep: []string{"w1"},
				Verdict: map[string]string{"a": VerdictRuns, "b": VerdictFits}},
		},
		{
			name: "label selector, arch and capability constraints",
			spec: Spec{Name: "sensors", Count: 3, Constraints: Constraints{
				Labels: map[string]string{"room": "kitchen"}, Arch: []string{"arm64"}, Capabilities: []string{CapI2C}}},
			devices: []Device{
				with(dev("a", "kitchen"), func(d *Device) { d.Capabilities = []string{CapGPIO, CapI2C} }),
				with(dev("b", "garage"), func(d *Device) { d.Capabilities = []string{CapI2C} }),
				with(dev("c", "kitchen"), func(d *Device) { d.Arch = "arm/v6"; d.Capabilities = []string{CapI2C} }),
				dev("d", "kitchen"),
			},
			want: outcome{Start: []string{"a"}, Reason: "1 of 3 placed: only 1 device fits",
				Verdict: map[string]string{"a": VerdictChosen, "b": VerdictExcluded, "c": VerdictExcluded, "d": VerdictExcluded}},
		},
		{
			name: "capacity: free memory below the minimum excludes, most free memory first",
			spec: Spec{Name: "db", Count: 1, Constraints: Constraints{MinFreeMemory: 256 * mib}},
			devices: []Device{
				with(dev("a", "kitchen"), func(d *Device) { d.FreeMemory = 120 * mib }),
				with(dev("b", "kitchen"), func(d *Device) { d.FreeMemory = 300 * mib }),
				with(dev("c", "kitchen"), func(d *Device) { d.FreeMemory = 900 * mib }),
				with(dev("d", "kitchen"), func(d *Device) { d.FreeMemoryKnown = false }),
			},
			want: outcome{Start: []string{"c"},
				Verdict: map[string]string{"a": VerdictExcluded, "b": VerdictFits, "c": VerdictChosen, "d": VerdictExcluded}},
		},
		{
			name:    "one instance per device: count above devices",
			spec:    Spec{Name: "web", Count: 3},
			devices: []Device{dev("a", "kitchen"), dev("b", "hall")},
			want: outcome{Start: []string{"a", "b"}, Reason: "2 of 3 placed: only 2 devices fit",
				Verdict: map[string]string{"a": VerdictChosen, "b": VerdictChosen}},
		},
		{
			name: "colocate allowed: bounded by free memory",
			spec: Spec{Name: "worker", Count: 4, AllowColocate: true, Constraints: Constraints{MinFreeMemory: 256 * mib}},
			devices: []Device{
				with(dev("a", "kitchen"), func(d *Device) { d.FreeMemory = 600 * mib }),
				with(dev("b", "hall"), func(d *Device) { d.FreeMemory = 300 * mib }),
			},
			want: outcome{Start: []string{"a", "b", "a"}, Reason: "3 of 4 placed: only 2 devices fit, without free memory for more",
				Verdict: map[string]string{"a": VerdictChosen, "b": VerdictChosen}},
		},
		{
			name:    "colocated duplicates stopped when not allowed, the older kept",
			spec:    Spec{Name: "web", Count: 2},
			devices: []Device{dev("a", "kitchen"), dev("b", "hall")},
			current: []Instance{inst("w2", "a", time.Minute), inst("w1", "a", time.Hour)},
			want: outcome{Keep: []string{"w1"}, Start: []string{"b"}, Stop: []string{"w2"},
				Verdict: map[string]string{"a": VerdictRuns, "b": VerdictChosen}},
		},
		{
			name:    "offline, not lost yet: kept, no new instance there",
			spec:    Spec{Name: "web", Count: 2},
			devices: []Device{with(dev("a", "kitchen"), func(d *Device) { d.Online = false; d.OfflineSince = now.Add(-time.Minute) }), dev("b", "hall"), dev("c", "hall")},
			current: []Instance{inst("w1", "a", time.Hour)},
			want: outcome{Keep: []string{"w1"}, Start: []string{"b"},
				Verdict: map[string]string{"a": VerdictRuns, "b": VerdictChosen, "c": VerdictFits}},
		},
		{
			name:    "lost device: movable instance moved",
			spec:    Spec{Name: "web", Count: 2, Spread: "room"},
			devices: []Device{with(dev("a", "kitchen"), func(d *Device) { d.Online = false; d.OfflineSince = now.Add(-10 * time.Minute) }), dev("b", "kitchen"), dev("c", "hall")},
			current: []Instance{inst("w1", "a", time.Hour), inst("w2", "c", time.Hour)},
			want: outcome{Keep: []string{"w2"}, Start: []string{"b<-w1"}, Stop: []string{"w1"},
				Verdict: map[string]string{"a": VerdictExcluded, "b": VerdictChosen, "c": VerdictRuns}},
		},
		{
			name:    "lost device: pinned instance waits",
			spec:    Spec{Name: "web", Count: 2, Spread: "room", Pinned: true},
			devices: []Device{with(dev("a", "kitchen"), func(d *Device) { d.Online = false; d.OfflineSince = now.Add(-10 * time.Minute) }), dev("b", "kitchen"), dev("c", "hall")},
			current: []Instance{inst("w1", "a", time.Hour), inst("w2", "c", time.Hour)},
			want: outcome{Keep: []string{"w2"}, Waiting: []string{"w1"},
				Verdict: map[string]string{"a": VerdictWaiting, "b": VerdictFits, "c": VerdictRuns}},
		},
		{
			name:    "lost device: movable instance waits when nothing can take it",
			spec:    Spec{Name: "web", Count: 2},
			devices: []Device{with(dev("a", "kitchen"), func(d *Device) { d.Online = false; d.OfflineSince = now.Add(-10 * time.Minute) }), dev("c", "hall")},
			current: []Instance{inst("w1", "a", time.Hour), inst("w2", "c", time.Hour)},
			want: outcome{Keep: []string{"w2"}, Waiting: []string{"w1"},
				Verdict: map[string]string{"a": VerdictWaiting, "c": VerdictRuns}},
		},
		{
			name:    "lost_after from the spec",
			spec:    Spec{Name: "web", Count: 1, LostAfter: time.Hour},
			devices: []Device{with(dev("a", "kitchen"), func(d *Device) { d.Online = false; d.OfflineSince = now.Add(-10 * time.Minute) }), dev("b", "hall")},
			current: []Instance{inst("w1", "a", time.Hour)},
			want: outcome{Keep: []string{"w1"},
				Verdict: map[string]string{"a": VerdictRuns, "b": VerdictFits}},
		},
		{
			name:    "device unknown or no longer matching: instance replaced",
			spec:    Spec{Name: "web", Count: 2, Constraints: Constraints{Labels: map[string]string{"room": "kitchen"}}},
			devices: []Device{dev("a", "garage"), dev("b", "kitchen"), dev("c", "kitchen")},
			current: []Instance{inst("w1", "a", time.Hour), inst("w2", "gone", time.Hour)},
			want: outcome{Start: []string{"b", "c"}, Stop: []string{"w1", "w2"},
				Verdict: map[string]string{"a": VerdictExcluded, "b": VerdictChosen, "c": VerdictChosen}},
		},
		{
			name:    "count lowered: lost first, then the crowded room, then the newest",
			spec:    Spec{Name: "web", Count: 2, Spread: "room"},
			devices: []Device{with(dev("a", "kitchen"), func(d *Device) { d.Online = false; d.OfflineSince = now.Add(-time.Hour) }), dev("b", "hall"), dev("c", "hall"), dev("d", "kitchen")},
			current: []Instance{inst("w1", "a", time.Hour), inst("w2", "b", time.Hour), inst("w3", "c", time.Minute), inst("w4", "d", 2*time.Hour)},
			want: outcome{Keep: []string{"w2", "w4"}, Stop: []string{"w1", "w3"},
				Verdict: map[string]string{"a": VerdictExcluded, "b": VerdictRuns, "c": VerdictFits, "d": VerdictRuns}},
		},
		{
			name:    "count 0 stops all",
			spec:    Spec{Name: "web"},
			devices: []Device{dev("a", "kitchen")},
			current: []Instance{inst("w1", "a", time.Hour)},
			want:    outcome{Stop: []string{"w1"}, Verdict: map[string]string{"a": VerdictFits}},
		},
		{
			name:    "no device fits",
			spec:    Spec{Name: "web", Count: 2, Constraints: Constraints{Arch: []string{"amd64"}}},
			devices: []Device{dev("a", "kitchen")},
			want:    outcome{Reason: "0 of 2 placed: no device fits", Verdict: map[string]string{"a": VerdictExcluded}},
		},
		{
			name: "no devices",
			spec: Spec{Name: "web", Count: 1},
			want: outcome{Reason: "0 of 1 placed: no device fits", Verdict: map[string]string{}},
		},
		{
			name:    "spread label missing excludes",
			spec:    Spec{Name: "web", Count: 1, Spread: "room"},
			devices: []Device{with(dev("a", ""), func(d *Device) { d.Labels = nil }), dev("b", "hall")},
			want:    outcome{Start: []string{"b"}, Verdict: map[string]string{"a": VerdictExcluded, "b": VerdictChosen}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Place(tc.spec, tc.devices, tc.current, now)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, summarize(p), cmp.Comparer(func(a, b []string) bool {
				return strings.Join(a, ",") == strings.Join(b, ",")
			})); diff != "" {
				t.Errorf("plan (-want +got):\n%s\nexplanations: %+v", diff, p.Devices)
			}
			if p.Placed != len(p.Keep)+len(p.Start)+len(p.Waiting) || p.Wanted != tc.spec.Count {
				t.Errorf("placed %d wanted %d, want %d and %d", p.Placed, p.Wanted, len(p.Keep)+len(p.Start)+len(p.Waiting), tc.spec.Count)
			}
		})
	}
}

func TestCapabilities(t *testing.T) {
	tests := []struct {
		name string
		hw   *protocol.Hardware
		want []string
	}{
		{"nil", nil, nil},
		{"none", &protocol.Hardware{Backend: "sim"}, nil},
		{"gpio", &protocol.Hardware{Lines: []protocol.HardwareLine{{Name: "GPIO17"}}}, []string{CapGPIO}},
		{"all", &protocol.Hardware{Lines: []protocol.HardwareLine{{Name: "GPIO17"}, {Name: "GPIO18", PWM: true}},
			I2C: []string{"1"}, SPI: []string{"0.0"}, OneWire: []string{"w1"}},
			[]string{CapGPIO, CapPWM, CapI2C, CapSPI, CapOneWire}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, Capabilities(tc.hw)); diff != "" {
				t.Errorf("Capabilities (-want +got):\n%s", diff)
			}
		})
	}
}

// TestExplanations checks the words a person reads in GET …/placement.
func TestExplanations(t *testing.T) {
	spec := Spec{Name: "sensors", Count: 3, Constraints: Constraints{
		Labels: map[string]string{"room": "kitchen"}, Arch: []string{"arm64"},
		Capabilities: []string{CapI2C}, MinFreeMemory: 256 * mib}}
	i2c := func(d *Device) { d.Capabilities = []string{CapI2C} }
	devices := []Device{
		with(dev("a", "kitchen"), i2c),
		with(dev("b", "garage"), i2c),
		with(dev("c", "kitchen"), func(d *Device) { i2c(d); d.Arch = "arm/v6" }),
		dev("d", "kitchen"),
		with(dev("e", "kitchen"), func(d *Device) { i2c(d); d.FreeMemory = 120 * mib }),
		with(dev("f", "kitchen"), func(d *Device) { i2c(d); d.Online = false; d.OfflineSince = now.Add(-time.Hour) }),
		with(dev("g", "kitchen"), i2c),
		with(dev("h", ""), func(d *Device) { i2c(d); d.Labels = nil }),
	}
	current := []Instance{inst("s1", "g", time.Hour)}
	p, err := Place(spec, devices, current, now)
	if err != nil {
		t.Fatal(err)
	}
	want := []Explanation{
		{"a", VerdictChosen, []string{"chosen: free memory 512 MiB"}},
		{"b", VerdictExcluded, []string{"label room=garage does not match room=kitchen"}},
		{"c", VerdictExcluded, []string{"arch arm/v6 not in [arm64]"}},
		{"d", VerdictExcluded, []string{"no i2c"}},
		{"e", VerdictExcluded, []string{"free memory 120 MiB < 256 MiB"}},
		{"f", VerdictExcluded, []string{"offline since 2026-12-08T11:00:00Z (lost after 5m)"}},
		{"g", VerdictRuns, []string{"runs s1"}},
		{"h", VerdictExcluded, []string{"no label room (wants room=kitchen)"}},
	}
	if diff := cmp.Diff(want, p.Devices); diff != "" {
		t.Errorf("explanations (-want +got):\n%s", diff)
	}
	if want := "2 of 3 placed: only 2 devices fit"; p.Reason != want {
		t.Errorf("reason %q, want %q", p.Reason, want)
	}

	// The same devices again with a's instance running: a is not chosen twice.
	p, err = Place(spec, devices, append(current, inst("s2", "a", 0)), now)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Devices[0]; got.Verdict != VerdictRuns || !cmp.Equal(got.Reasons, []string{"runs s2"}) {
		t.Errorf("a: %+v, want runs s2", got)
	}
}

// TestAcceptance is issue 16's: count 2, spread room, over three agents in
// two rooms runs two instances in different rooms.
func TestAcceptance(t *testing.T) {
	devices := []Device{dev("pi-1", "kitchen"), dev("pi-2", "kitchen"), dev("pi-3", "living")}
	p, err := Place(Spec{Name: "web", Count: 2, Spread: "room"}, devices, nil, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Start) != 2 || p.Reason != "" {
		t.Fatalf("plan %+v, want two starts", p)
	}
	rooms := map[string]bool{}
	for _, s := range p.Start {
		for _, d := range devices {
			if d.ID == s.Device {
				rooms[d.Labels["room"]] = true
			}
		}
	}
	if len(rooms) != 2 {
		t.Errorf("rooms %v, want two different rooms", rooms)
	}
}

// TestNoChurn applies each plan and places again: the second plan keeps
// everything and starts or stops nothing.
func TestNoChurn(t *testing.T) {
	specs := []Spec{
		{Name: "web", Count: 2, Spread: "room"},
		{Name: "web", Count: 5, Spread: "room", AllowColocate: true},
		{Name: "db", Count: 3, Constraints: Constraints{MinFreeMemory: 256 * mib}},
	}
	devices := []Device{dev("a", "kitchen"), dev("b", "kitchen"), dev("c", "hall"),
		with(dev("d", "hall"), func(d *Device) { d.FreeMemory = 100 * mib })}
	for _, spec := range specs {
		t.Run(spec.Name, func(t *testing.T) {
			p, err := Place(spec, devices, nil, now)
			if err != nil {
				t.Fatal(err)
			}
			var current []Instance
			for i, s := range p.Start {
				current = append(current, Instance{ID: fmt.Sprintf("i%d", i), Device: s.Device, Since: now})
			}
			again, err := Place(spec, devices, current, now.Add(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			if len(again.Start) != 0 || len(again.Stop) != 0 || len(again.Keep) != len(current) {
				t.Errorf("second plan starts %v, stops %v, keeps %d of %d", again.Start, again.Stop, len(again.Keep), len(current))
			}
		})
	}
}

// TestDeterministic: the order of devices and instances does not change
// the plan.
func TestDeterministic(t *testing.T) {
	spec := Spec{Name: "web", Count: 4, Spread: "room"}
	devices := []Device{dev("a", "kitchen"), dev("b", "kitchen"), dev("c", "hall"), dev("d", "hall"),
		dev("e", "attic"), with(dev("f", "attic"), func(d *Device) { d.Online = false; d.OfflineSince = now.Add(-time.Hour) })}
	current := []Instance{inst("w1", "f", time.Hour), inst("w2", "a", time.Hour), inst("w3", "b", time.Hour)}
	first, err := Place(spec, devices, current, now)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		d, c := slices.Clone(devices), slices.Clone(current)
		r.Shuffle(len(d), func(i, j int) { d[i], d[j] = d[j], d[i] })
		r.Shuffle(len(c), func(i, j int) { c[i], c[j] = c[j], c[i] })
		got, err := Place(spec, d, c, now)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(first, got); diff != "" {
			t.Fatalf("plan depends on input order (-first +got):\n%s", diff)
		}
	}
}

func TestPlaceBadInput(t *testing.T) {
	tests := []struct {
		name    string
		spec    Spec
		devices []Device
		current []Instance
		want    string
	}{
		{"no name", Spec{Count: 1}, nil, nil, "spec: name is empty"},
		{"negative count", Spec{Name: "web", Count: -1}, nil, nil, "spec web: count -1 is negative"},
		{"negative lost_after", Spec{Name: "web", LostAfter: -time.Second}, nil, nil, "spec web: lost_after -1s is negative"},
		{"empty arch", Spec{Name: "web", Constraints: Constraints{Arch: []string{""}}}, nil, nil, "spec web: constraints.arch[0] is empty"},
		{"device without id", Spec{Name: "web"}, []Device{{}}, nil, "placement of web: devices[0]: id is empty"},
		{"device twice", Spec{Name: "web"}, []Device{{ID: "a"}, {ID: "a"}}, nil, "placement of web: devices[1]: device a is listed twice"},
		{"instance without id", Spec{Name: "web"}, nil, []Instance{{Device: "a"}}, "placement of web: instances[0]: id is empty"},
		{"instance twice", Spec{Name: "web"}, nil, []Instance{{ID: "x"}, {ID: "x"}}, "placement of web: instances[1]: instance x is listed twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Place(tc.spec, tc.devices, tc.current, now)
			if err == nil || err.Error() != tc.want {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestMoveAndWaitReasons(t *testing.T) {
	lost := with(dev("a", "kitchen"), func(d *Device) { d.Online = false; d.OfflineSince = now.Add(-10 * time.Minute) })
	current := []Instance{inst("w1", "a", time.Hour)}

	p, err := Place(Spec{Name: "web", Count: 1}, []Device{lost, dev("b", "hall")}, current, now)
	if err != nil {
		t.Fatal(err)
	}
	want := []Stop{{current[0], "device a is lost (offline since 2026-12-08T11:50:00Z (lost after 5m)); moved to b"}}
	if diff := cmp.Diff(want, p.Stop); diff != "" {
		t.Errorf("movable: stops (-want +got):\n%s", diff)
	}

	p, err = Place(Spec{Name: "web", Count: 1, Pinned: true}, []Device{lost, dev("b", "hall")}, current, now)
	if err != nil {
		t.Fatal(err)
	}
	wantWait := []Wait{{current[0], "pinned to device a, which is lost (offline since 2026-12-08T11:50:00Z (lost after 5m))"}}
	if diff := cmp.Diff(wantWait, p.Waiting); diff != "" {
		t.Errorf("pinned: waiting (-want +got):\n%s", diff)
	}
}
