package sample

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/alicia-home/alicia/internal/protocol"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// golden is what testdata/golden_pi4.json holds: the report without
// durations, and the points.
type golden struct {
	Collectors []goldenReport   `json:"collectors"`
	Points     []protocol.Point `json:"points"`
}

type goldenReport struct {
	Name   string `json:"name"`
	Status Status `json:"status"`
	Points int    `json:"points"`
	Err    string `json:"err,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// TestGoldenPi4 runs two full collections on the Raspberry Pi 4 tree, the
// second after /proc/stat moved on, and compares the second with
// testdata/golden_pi4.json (go test -run Golden -update rewrites it). The
// self collector's points depend on this process (goroutines) and this
// machine (page size); they are left out here and checked by TestSelf.
func TestGoldenPi4(t *testing.T) {
	root := fixture(t, "pi4")
	s := newFixtureSampler(t, root, nil)
	collect(t, s)
	later, err := os.ReadFile("testdata/pi4_stat_later")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, root, "proc/stat", string(later))
	points, rep := collect(t, s)

	for i := 1; i < len(points); i++ {
		a, b := seriesKey(points[i-1].Name, points[i-1].Labels), seriesKey(points[i].Name, points[i].Labels)
		if a >= b {
			t.Errorf("points out of order or repeated: %s then %s", printableKey(a), printableKey(b))
		}
	}
	var g golden
	for _, c := range rep.Collectors {
		gr := goldenReport{Name: c.Name, Status: c.Status, Points: c.Points, Reason: c.Reason}
		if c.Err != nil {
			gr.Err = strings.ReplaceAll(c.Err.Error(), root, "<root>")
		}
		g.Collectors = append(g.Collectors, gr)
	}
	g.Points = slices.DeleteFunc(points, func(p protocol.Point) bool { return strings.HasPrefix(p.Name, "agent_") })
	got, err := json.MarshalIndent(g, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", "golden_pi4.json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run Golden -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		var w golden
		if err := json.Unmarshal(want, &w); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		var gg golden
		_ = json.Unmarshal(got, &gg)
		t.Errorf("collection differs from %s (-want +got; -update rewrites it):\n%s", path, cmp.Diff(w, gg))
	}
}

// TestCollectionOnTheWire: every point of a full collection survives the
// protocol's encoder and its strict decoder unchanged.
func TestCollectionOnTheWire(t *testing.T) {
	root := fixture(t, "pi4")
	// A mount point and a sensor name that need cleaning.
	writeFile(t, root, "proc/1/mountinfo", "21 1 179:2 / / rw - ext4 /dev/mmcblk0p2 rw\n40 21 8:1 / /mnt/odd\\012name\\011x rw - ext4 /dev/sda1 rw\n")
	writeFile(t, root, "sys/class/hwmon/hwmon0/name", "cpu\x1b[31mthermal\n")
	usage := pi4Usage()
	usage["/mnt/odd\nname\tx"] = usage["/"]
	s := newFixtureSampler(t, root, &fakeStatFS{usage: usage})
	collect(t, s)
	later, _ := os.ReadFile("testdata/pi4_stat_later")
	writeFile(t, root, "proc/stat", string(later))
	points, rep := collect(t, s)
	for _, r := range rep.Collectors {
		if r.Status != StatusOK || r.Err != nil {
			t.Errorf("report: %+v", r)
		}
	}
	if _, ok := values(points)[`filesystem_size_bytes{fstype="ext4",mount="/mnt/odd name x",source="/dev/sda1"}`]; !ok {
		t.Errorf("the odd mount point is not reported cleaned: %v", withPrefix(values(points), "filesystem_size"))
	}
	if _, ok := values(points)[`temperature_celsius{sensor="cpu [31mthermal"}`]; !ok {
		t.Errorf("the odd sensor name is not reported cleaned: %v", withPrefix(values(points), "temperature"))
	}

	sent := &protocol.Metrics{Epoch: "e7c1d2a9b3f40516", Seq: 1, Time: fixedTime, Points: points}
	data, err := protocol.Encode("kitchen-pi", fixedTime, sent)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	_, received, err := protocol.DecodeAs[*protocol.Metrics](data)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if diff := cmp.Diff(points, received.Points); diff != "" {
		t.Errorf("points changed on the wire (-sent +received):\n%s", diff)
	}
}
