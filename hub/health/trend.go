package health

import (
	"math"
	"slices"
	"time"

	"github.com/alicia-home/alicia/hub/metrics"
)

// Trend and rate rules read a window of each series with metrics' Range,
// in about fitPoints buckets (the bucket averages), and refit a rule for a
// device only once a bucket's time has passed since its last fit: a 6-hour
// trend reads its window every 3 minutes, not at every evaluation.
const (
	fitPoints = 120
	// minTrendPoints is the fewest buckets a trend is fitted to, and
	// minRatePoints the fewest a change is measured on.
	minTrendPoints = 10
	minRatePoints  = 3
	// trendZ is the Mann–Kendall score a trend must reach: the chance
	// that independent noise around a flat line reaches it is 0.3 %.
	trendZ = 3.0
	// steadyShare is how much of the whole window's slope each half of
	// the window must show: a one-off step (a large file copied) is not
	// a trend.
	steadyShare = 0.25
)

// fitStep is the bucket width of rule r's window: Window/fitPoints, in
// whole seconds (at least one).
func fitStep(r Rule) time.Duration {
	return max((r.Window / fitPoints).Truncate(time.Second), time.Second)
}

// point is a bucket of a window: x in seconds relative to the evaluation
// (≤ 0), y its average.
type point struct{ x, y float64 }

// windowPoints turns the buckets of a Range answer into points, placing
// each bucket at its middle (but not after now). ok is false when the
// window is not covered well enough to decide anything: fewer than min
// buckets, buckets spanning less than half the window, or a newest bucket
// older than stale.
func windowPoints(pts []metrics.Point, step, window, stale time.Duration, now time.Time, min int) (out []point, ok bool) {
	if len(pts) < min {
		return nil, false
	}
	first, last := pts[0].Time, pts[len(pts)-1].Time
	if last.Sub(first) < window/2 || now.Sub(last.Add(step)) > stale {
		return nil, false
	}
	out = make([]point, len(pts))
	for i, p := range pts {
		t := p.Time.Add(step / 2)
		if t.After(now) {
			t = now
		}
		out[i] = point{x: t.Sub(now).Seconds(), y: p.Value}
	}
	return out, true
}

// trendFit is a line fitted to a window.
type trendFit struct {
	// slope is the Theil–Sen slope, per second.
	slope float64
	// level is the line's value now, anchored on the window's last tenth
	// (so a level that just dropped, a disk just cleaned, counts as it is
	// now, at the window's slope).
	level float64
	// z is the Mann–Kendall score of the window: positive for a rising
	// series, about normally distributed around 0 for noise.
	z float64
	// steady is true when each half of the window has a slope of the
	// same sign and at least steadyShare of the whole's.
	steady bool
}

// fitTrend fits a line to pts (in time order) robustly: the median of
// the slopes between every two points (Theil–Sen), which a few outliers
// do not move, and a Mann–Kendall score that says whether the series
// moves one way at all.
func fitTrend(pts []point) trendFit {
	f := trendFit{slope: theilSen(pts), z: mannKendall(pts)}
	k := max(3, len(pts)/10)
	tail := pts[max(len(pts)-k, 0):]
	at := make([]float64, len(tail))
	for i, p := range tail {
		at[i] = p.y - f.slope*p.x
	}
	f.level = median(at)
	h := len(pts) / 2
	a, b := theilSen(pts[:h]), theilSen(pts[h:])
	f.steady = f.slope != 0 && a*f.slope > 0 && b*f.slope > 0 &&
		math.Abs(a) >= steadyShare*math.Abs(f.slope) && math.Abs(b) >= steadyShare*math.Abs(f.slope)
	return f
}

// theilSen returns the median of the slopes between every two points of
// distinct x; 0 for fewer than two.
func theilSen(pts []point) float64 {
	slopes := make([]float64, 0, len(pts)*(len(pts)-1)/2)
	for i := range pts {
		for j := i + 1; j < len(pts); j++ {
			if dx := pts[j].x - pts[i].x; dx != 0 {
				slopes = append(slopes, (pts[j].y-pts[i].y)/dx)
			}
		}
	}
	if len(slopes) == 0 {
		return 0
	}
	return median(slopes)
}

// mannKendall returns the Mann–Kendall trend score of pts (in time
// order): S, the count of rising pairs minus falling ones, over its
// standard deviation under the hypothesis of no trend (corrected for tied
// values and for continuity).
func mannKendall(pts []point) float64 {
	n := len(pts)
	var s float64
	for i := range pts {
		for j := i + 1; j < n; j++ {
			switch d := pts[j].y - pts[i].y; {
			case d > 0:
				s++
			case d < 0:
				s--
			}
		}
	}
	ys := make([]float64, n)
	for i, p := range pts {
		ys[i] = p.y
	}
	slices.Sort(ys)
	v := float64(n*(n-1)*(2*n+5)) / 18
	for i := 0; i < n; {
		j := i
		for j < n && ys[j] == ys[i] {
			j++
		}
		if t := float64(j - i); t > 1 {
			v -= t * (t - 1) * (2*t + 5) / 18
		}
		i = j
	}
	switch {
	case v <= 0:
		return 0
	case s > 0:
		return (s - 1) / math.Sqrt(v)
	case s < 0:
		return (s + 1) / math.Sqrt(v)
	}
	return 0
}

// windowChange is the change across a window: the median of its last
// tenth of points minus the median of its first tenth (one point each at
// least), so that one odd sample at either end does not decide it.
func windowChange(pts []point) float64 {
	k := max(1, len(pts)/10)
	first, last := make([]float64, k), make([]float64, k)
	for i := range k {
		first[i], last[i] = pts[i].y, pts[len(pts)-k+i].y
	}
	return median(last) - median(first)
}

// median returns the median of v, which it reorders; v is not empty.
func median(v []float64) float64 {
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

// crossing returns how many seconds from now a trend rule's line crosses
// its threshold in the rule's direction, and whether it does at all (the
// line heads that way). A level already past the threshold crosses at 0.
func (r Rule) crossing(f trendFit) (secs float64, ok bool) {
	up := r.Op == ">" || r.Op == ">="
	gap := r.Threshold - f.level
	if !up {
		gap = -gap
	}
	slope := f.slope
	if !up {
		slope = -slope
	}
	switch {
	case slope <= 0:
		return 0, false
	case gap <= 0:
		return 0, true
	}
	return gap / slope, true
}
