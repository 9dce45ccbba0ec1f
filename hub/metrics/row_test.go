package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/alicia-home/alicia/internal/protocol"
)

func TestRowEncoding(t *testing.T) {
	a := seriesID("cpu_usage_ratio", map[string]string{"cpu": "0"})
	b := seriesID("cpu_usage_ratio", map[string]string{"cpu": "1"})
	c := seriesID("load1", nil)
	if a == b || a == c || b == c {
		t.Fatalf("series ids collide: %s %s %s", a, b, c)
	}
	// Label order does not matter; the name/label boundary does.
	if x, y := seriesID("m", map[string]string{"a": "1", "b": "2"}), seriesID("m", map[string]string{"b": "2", "a": "1"}); x != y {
		t.Errorf("label order changed the id: %s %s", x, y)
	}
	if seriesID("ab", nil) == seriesID("a", map[string]string{"b": ""}) {
		t.Error(`"ab" and "a{b=""}" share an id`)
	}
	if got, err := parseSID(a.String()); err != nil || got != a {
		t.Errorf("parseSID(%s) = %s, %v", a, got, err)
	}
	for _, bad := range []string{"", "abc", strings.Repeat("z", 16)} {
		if _, err := parseSID(bad); err == nil {
			t.Errorf("parseSID(%q) accepted", bad)
		}
	}

	// Two points of one series in a batch: the later wins.
	enc := encodeRow([]rowPoint{{c, 3}, {a, 1}, {b, 2}, {a, 1.5}})
	if len(enc) != 1+3*rowPointSize {
		t.Fatalf("row of 3 series is %d bytes, want %d", len(enc), 1+3*rowPointSize)
	}
	r, err := decodeRow("k", enc)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < r.len(); i++ {
		if strings.Compare(r.at(i-1).sid.String(), r.at(i).sid.String()) >= 0 {
			t.Errorf("row not ordered by sid at %d", i)
		}
	}
	for _, tt := range []struct {
		id   sid
		want float64
	}{{a, 1.5}, {b, 2}, {c, 3}} {
		if v, ok := r.find(tt.id); !ok || v != tt.want {
			t.Errorf("find(%s) = %v, %v; want %v", tt.id, v, ok, tt.want)
		}
	}
	if _, ok := r.find(seriesID("absent", nil)); ok {
		t.Error("find of an absent series succeeded")
	}

	for name, bad := range map[string][]byte{
		"empty":         {},
		"wrong version": append([]byte{9}, enc[1:]...),
		"cut point":     enc[:len(enc)-3],
	} {
		if _, err := decodeRow("dev/k", bad); err == nil || !strings.Contains(err.Error(), "corrupt row") || !strings.Contains(err.Error(), "dev/k") {
			t.Errorf("%s: decodeRow = %v, want a corrupt row error naming the key", name, err)
		}
	}

	at := time.UnixMilli(1700000000123).UTC()
	key := rowKey("dev-a", at, "ep.1", 42)
	if got, err := rowTime(key); err != nil || !got.Equal(at) {
		t.Errorf("rowTime(%q) = %v, %v; want %v", key, got, err, at)
	}
	for _, bad := range []string{"dev-a", "dev-a/xyz/ep/1", "dev-a/123/ep/1"} {
		if _, err := rowTime(bad); err == nil {
			t.Errorf("rowTime(%q) accepted", bad)
		}
	}
}

// A series silent for longer than latestWindow before a device's newest
// row has no latest value after a restart; its samples stay queryable.
func TestLatestAfterRestartLooksBackAnHour(t *testing.T) {
	e := newEnv(t, Config{})
	old := &protocol.Metrics{Epoch: "ep", Seq: 1, Time: t0.Add(-2 * time.Hour), Points: []protocol.Point{
		{Name: "usb_disk_free_bytes", Value: 5}, {Name: "load1", Value: 0.5}}}
	recent := &protocol.Metrics{Epoch: "ep", Seq: 2, Time: t0.Add(-30 * time.Minute), Points: []protocol.Point{
		{Name: "temp_celsius", Value: 40}, {Name: "load1", Value: 0.7}}}
	newest := &protocol.Metrics{Epoch: "ep", Seq: 3, Time: t0, Points: []protocol.Point{{Name: "load1", Value: 0.9}}}
	e.ingest(Batch{"dev-a", old}, Batch{"dev-a", recent}, Batch{"dev-a", newest})
	if got := len(e.s.Latest("dev-a")); got != 3 {
		t.Fatalf("before a restart: %d latest values, want 3", got)
	}
	e.reopen()
	want := []Sample{
		{Name: "load1", Labels: map[string]string{}, Time: t0, Value: 0.9},
		{Name: "temp_celsius", Labels: map[string]string{}, Time: t0.Add(-30 * time.Minute), Value: 40},
	}
	if diff := cmp.Diff(want, e.s.Latest("dev-a")); diff != "" {
		t.Errorf("after a restart (-want +got):\n%s", diff)
	}
	got := e.rangeQ(Query{Device: "dev-a", Name: "usb_disk_free_bytes", From: t0.Add(-3 * time.Hour), To: t0})
	if len(got) != 1 || len(got[0].Points) != 1 || got[0].Points[0].Value != 5 {
		t.Errorf("the silent series' sample after a restart: %+v, want its one point", got)
	}
}
