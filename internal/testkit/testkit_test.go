package testkit_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/alicia-home/alicia/internal/testkit"
)

func TestLogBuffer(t *testing.T) {
	logger, logs := testkit.NewLogger()
	if got := logs.Lines(); got != nil {
		t.Errorf("Lines of an empty buffer = %q, want nil", got)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() { logger.Debug("written", "writer", i) })
	}
	wg.Wait()
	lines := logs.Lines()
	if len(lines) != 8 {
		t.Fatalf("Lines = %q, want 8 lines", lines)
	}
	for _, l := range lines {
		if !strings.Contains(l, "level=DEBUG msg=written writer=") {
			t.Errorf("line %q: want a debug record with its writer", l)
		}
	}
	if got := logs.Take(); got != strings.Join(lines, "\n")+"\n" {
		t.Errorf("Take = %q, want the %d lines", got, len(lines))
	}
	if got := logs.String(); got != "" {
		t.Errorf("String after Take = %q, want empty", got)
	}
	logger.Info("again")
	if got := logs.Take(); !strings.Contains(got, "msg=again") || strings.Contains(got, "written") {
		t.Errorf("second Take = %q, want only the record written since the first", got)
	}
}

func TestClock(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	c := testkit.NewClock(t0)
	var got []time.Time
	got = append(got, c.Now())
	got = append(got, c.Advance(time.Minute))
	got = append(got, c.Now())
	c.Set(t0.Add(-time.Hour))
	got = append(got, c.Now())
	want := []time.Time{t0, t0.Add(time.Minute), t0.Add(time.Minute), t0.Add(-time.Hour)}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("readings (-want +got):\n%s", d)
	}

	// Concurrent moves all count.
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() { c.Advance(time.Second); _ = c.Now() })
	}
	wg.Wait()
	if got, want := c.Now(), t0.Add(-time.Hour+100*time.Second); !got.Equal(want) {
		t.Errorf("after 100 concurrent Advance(1s): %v, want %v", got, want)
	}
	var zero testkit.Clock
	if !zero.Now().IsZero() {
		t.Errorf("zero Clock reads %v, want the zero time", zero.Now())
	}
}
