package health

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkFitTrend fits a full window (fitPoints buckets): the work of
// one trend rule for one series at each read.
func BenchmarkFitTrend(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	pts := make([]point, fitPoints)
	for i := range pts {
		pts[i] = point{x: float64(i-fitPoints) * 180, y: 0.5 + float64(i)*1e-4 + rng.NormFloat64()*1e-3}
	}
	for b.Loop() {
		fitTrend(pts)
	}
}
