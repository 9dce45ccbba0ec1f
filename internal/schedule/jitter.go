package schedule

import (
	"hash/fnv"
	"time"
)

// Jitter returns a delay in [0, max) that depends only on jobID: the
// 64-bit FNV-1a hash of the ID's bytes, modulo max in nanoseconds. A job
// keeps its delay across restarts, machines and versions (changing the
// formula would move every job: treat it as part of the contract), while
// jobs that share a fire time spread over max. It is 0 when max ≤ 0.
func Jitter(jobID string, max time.Duration) time.Duration {
	if max <= 0 {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(jobID))
	return time.Duration(h.Sum64() % uint64(max))
}
