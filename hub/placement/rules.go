package placement

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

const mib = 1 << 20

// staticReasons says why d does not fit spec, free memory and being online
// aside: the conditions an existing instance must still meet.
func staticReasons(spec *Spec, d *Device) []string {
	var reasons []string
	keys := make([]string, 0, len(spec.Constraints.Labels))
	for k := range spec.Constraints.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		want := spec.Constraints.Labels[k]
		got, ok := d.Labels[k]
		switch {
		case !ok:
			reasons = append(reasons, fmt.Sprintf("no label %s (wants %s=%s)", k, k, want))
		case got != want:
			reasons = append(reasons, fmt.Sprintf("label %s=%s does not match %s=%s", k, got, k, want))
		}
	}
	if len(spec.Constraints.Arch) > 0 && !slices.Contains(spec.Constraints.Arch, d.Arch) {
		arch := d.Arch
		if arch == "" {
			arch = "unknown"
		}
		reasons = append(reasons, fmt.Sprintf("arch %s not in [%s]", arch, strings.Join(spec.Constraints.Arch, " ")))
	}
	for _, c := range spec.Constraints.Capabilities {
		if !slices.Contains(d.Capabilities, c) {
			reasons = append(reasons, "no "+c)
		}
	}
	if spec.Spread != "" {
		if _, ok := d.Labels[spec.Spread]; !ok {
			reasons = append(reasons, fmt.Sprintf("no label %s to spread over", spec.Spread))
		}
	}
	return reasons
}

// memoryReason says why d's free memory is too little for a new instance,
// or "".
func memoryReason(spec *Spec, d *Device) string {
	minFree := spec.Constraints.MinFreeMemory
	switch {
	case minFree == 0:
		return ""
	case !d.FreeMemoryKnown:
		return fmt.Sprintf("free memory unknown (needs %s)", fmtBytes(minFree))
	case d.FreeMemory < minFree:
		return fmt.Sprintf("free memory %s < %s", fmtBytes(d.FreeMemory), fmtBytes(minFree))
	}
	return ""
}

// canTake reports whether d may take one more instance now.
func canTake(spec *Spec, d *device) bool {
	if len(d.static) > 0 || !d.Online {
		return false
	}
	if !spec.AllowColocate && d.hosts() > 0 {
		return false
	}
	minFree := spec.Constraints.MinFreeMemory
	return minFree == 0 || (d.FreeMemoryKnown && d.free >= minFree)
}

// pick returns the device a new instance should start on, or nil: the one
// that can take it with the fewest instances in its spread value, then the
// fewest instances on it, then the most free memory, then the lowest ID.
func pick(spec *Spec, devs map[string]*device, ids []string, groups map[string]int) *device {
	var best *device
	for _, id := range ids {
		d := devs[id]
		if !canTake(spec, d) {
			continue
		}
		if best == nil || better(d, best, groups) {
			best = d
		}
	}
	return best
}

func better(a, b *device, groups map[string]int) bool {
	if ga, gb := groups[a.group], groups[b.group]; ga != gb {
		return ga < gb
	}
	if a.hosts() != b.hosts() {
		return a.hosts() < b.hosts()
	}
	if a.FreeMemoryKnown != b.FreeMemoryKnown {
		return a.FreeMemoryKnown
	}
	if a.free != b.free {
		return a.free > b.free
	}
	return a.ID < b.ID // ids are visited in order; kept for clarity
}

// place starts an instance on d, replacing the instance replaces if any.
func place(spec *Spec, d *device, replaces string, groups map[string]int) Start {
	var why []string
	if spec.Spread != "" {
		why = append(why, fmt.Sprintf("%s=%s had %d instance(s)", spec.Spread, d.group, groups[d.group]))
	}
	if spec.AllowColocate {
		why = append(why, fmt.Sprintf("it ran %d", d.hosts()))
	}
	if d.FreeMemoryKnown {
		why = append(why, "free memory "+fmtBytes(d.free))
	}
	reason := "chosen"
	if replaces != "" {
		reason = "chosen for " + replaces
	}
	if len(why) > 0 {
		reason += ": " + strings.Join(why, ", ")
	}
	s := Start{Device: d.ID, Replaces: replaces}
	d.started = append(d.started, s)
	d.chosen = append(d.chosen, reason)
	groups[d.group]++
	if m := spec.Constraints.MinFreeMemory; d.free >= m {
		d.free -= m
	} else {
		d.free = 0
	}
	return s
}

func countHosted(devs map[string]*device) int {
	n := 0
	for _, d := range devs {
		n += d.hosts()
	}
	return n
}

func spreadCounts(devs map[string]*device) map[string]int {
	groups := make(map[string]int)
	for _, d := range devs {
		groups[d.group] += d.hosts()
	}
	return groups
}

func removeInstance(d *device, id string) {
	match := func(in Instance) bool { return in.ID == id }
	d.kept = slices.DeleteFunc(d.kept, match)
	d.waiting = slices.DeleteFunc(d.waiting, match)
}

// leastUseful chooses the instance to stop when there are more than count:
// one on a lost device first, then on an offline one, then in the most
// crowded spread value, then the newest, then the highest ID.
func leastUseful(devs map[string]*device, count int) (Instance, string) {
	groups := spreadCounts(devs)
	type cand struct {
		in     Instance
		d      *device
		rank   int // 0 lost, 1 offline, 2 online
		reason string
	}
	var best *cand
	consider := func(c cand) {
		if best == nil {
			best = &c
			return
		}
		b := best
		switch {
		case c.rank != b.rank:
			if c.rank < b.rank {
				best = &c
			}
		case groups[c.d.group] != groups[b.d.group]:
			if groups[c.d.group] > groups[b.d.group] {
				best = &c
			}
		case !c.in.Since.Equal(b.in.Since):
			if c.in.Since.After(b.in.Since) {
				best = &c
			}
		case c.in.ID > b.in.ID:
			best = &c
		}
	}
	for _, d := range devs {
		for _, in := range d.waiting {
			consider(cand{in, d, 0, ""})
		}
		for _, in := range d.kept {
			rank := 2
			if !d.Online {
				rank = 1
			}
			consider(cand{in, d, rank, ""})
		}
	}
	reason := fmt.Sprintf("more instances than count %d", count)
	switch best.rank {
	case 0:
		reason += fmt.Sprintf("; device %s is lost", best.d.ID)
	case 1:
		reason += fmt.Sprintf("; device %s is offline", best.d.ID)
	}
	return best.in, reason
}

// explain says what was decided for d, and why.
func explain(spec *Spec, d *device) Explanation {
	e := Explanation{Device: d.ID}
	for _, in := range d.kept {
		e.Reasons = append(e.Reasons, "runs "+in.ID)
	}
	e.Reasons = append(e.Reasons, d.chosen...)
	for _, w := range d.waiting {
		e.Reasons = append(e.Reasons, fmt.Sprintf("%s waits: %s", w.ID, d.offline))
	}
	for _, s := range d.stopped {
		e.Reasons = append(e.Reasons, fmt.Sprintf("stops %s: %s", s.Instance.ID, s.Reason))
	}
	switch {
	case len(d.started) > 0:
		e.Verdict = VerdictChosen
	case len(d.kept) > 0:
		e.Verdict = VerdictRuns
	case len(d.waiting) > 0:
		e.Verdict = VerdictWaiting
	default:
		why := whyNot(spec, d)
		if len(why) == 0 {
			e.Verdict = VerdictFits
			e.Reasons = append(e.Reasons, "fits; not needed")
		} else {
			e.Verdict = VerdictExcluded
			e.Reasons = append(e.Reasons, why...)
		}
	}
	return e
}

// whyNot lists why d cannot take a new instance.
func whyNot(spec *Spec, d *device) []string {
	why := slices.Clone(d.static)
	if d.offline != "" {
		why = append(why, d.offline)
	}
	if d.memory != "" {
		why = append(why, d.memory)
	} else if m := spec.Constraints.MinFreeMemory; m > 0 && d.free < m {
		why = append(why, fmt.Sprintf("free memory left %s < %s", fmtBytes(d.free), fmtBytes(m)))
	}
	if !spec.AllowColocate && d.hosts() > 0 {
		why = append(why, "already runs an instance")
	}
	return why
}

// unmetReason says why only placed of spec.Count instances are placed.
func unmetReason(spec *Spec, devs map[string]*device, ids []string, placed int) string {
	fit := 0
	for _, id := range ids {
		d := devs[id]
		if len(d.static) == 0 && d.Online && d.memory == "" {
			fit++
		}
	}
	head := fmt.Sprintf("%d of %d placed: ", placed, spec.Count)
	switch {
	case fit == 0:
		return head + "no device fits"
	case spec.AllowColocate:
		return head + fmt.Sprintf("only %s fit%s, without free memory for more", plural(fit, "device"), verbS(fit))
	default:
		return head + fmt.Sprintf("only %s fit%s", plural(fit, "device"), verbS(fit))
	}
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func verbS(n int) string {
	if n == 1 {
		return "s"
	}
	return ""
}

func fmtBytes(b uint64) string {
	if b%mib == 0 {
		return fmt.Sprintf("%d MiB", b/mib)
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/mib)
}

// fmtDuration writes 5m rather than 5m0s.
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
