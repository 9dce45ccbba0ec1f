package sample

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicia-home/alicia/internal/protocol"
)

// fixedTime is the collection time of the batches built in tests.
var fixedTime = time.Date(2026, 11, 27, 6, 30, 0, 0, time.UTC)

// fixture copies the tree testdata/<name> into a temporary directory and
// returns the copy's root, so that tests can change files between
// collections. As the kernel does for the agent, it links proc/self to the
// PID in testdata/<name>/selfpid, if there is one (links are not committed:
// module zips leave them out).
func fixture(t testing.TB, name string) string {
	t.Helper()
	src := filepath.Join("testdata", name)
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(to, data, 0o644)
	})
	if err != nil {
		t.Fatalf("copy fixture %s: %v", name, err)
	}
	if pid, err := os.ReadFile(filepath.Join(dst, "selfpid")); err == nil {
		if err := os.Symlink(strings.TrimSpace(string(pid)), filepath.Join(dst, "proc", "self")); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// writeFile replaces the file at root/rel (creating its directory).
func writeFile(t testing.TB, root, rel, content string) {
	t.Helper()
	path := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// breakFile replaces the file at root/rel with a directory: reading it
// fails with EISDIR even for root, for whom no file mode is unreadable.
func breakFile(t testing.TB, root, rel string) {
	t.Helper()
	path := filepath.Join(root, rel)
	if err := os.RemoveAll(path); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(path, 0o755); err != nil {
		t.Fatal(err)
	}
}

// fakeStatFS answers statfs from a table and counts the calls.
type fakeStatFS struct {
	mu    sync.Mutex
	usage map[string]FSStat
	errs  map[string]error
	calls map[string]int
}

func (f *fakeStatFS) statfs(path string) (FSStat, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	f.calls[path]++
	if err := f.errs[path]; err != nil {
		return FSStat{}, err
	}
	st, ok := f.usage[path]
	if !ok {
		return FSStat{}, errors.New("fake statfs: no such mount in the test's table")
	}
	return st, nil
}

func (f *fakeStatFS) called() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for k, v := range f.calls {
		out[k] = v
	}
	return out
}

// pi4Usage is the fake statfs table for testdata/pi4.
func pi4Usage() map[string]FSStat {
	return map[string]FSStat{
		"/":                {Size: 31268536320, Used: 6253707264, Avail: 23406641152, Inodes: 1896832, InodesFree: 1701234},
		"/boot/firmware":   {Size: 535805952, Used: 66519040, Avail: 469286912},
		"/media/ro-backup": {Size: 535805952, Used: 66519040, Avail: 469286912},
		"/mnt/usb disk":    {Size: 1000203087872, Used: 412345678848, Avail: 536870912000, Inodes: 61054976, InodesFree: 60000000},
		"/mnt/nas":         {Size: 4000787030016, Used: 3600708327014, Avail: 400078703002, Inodes: 244191232, InodesFree: 243000000},
		"/run":             {Size: 795516928, Used: 2097152, Avail: 793419776, Inodes: 970985, InodesFree: 970000},
		"/run/lock":        {Size: 5242880, Used: 4096, Avail: 5238784, Inodes: 970985, InodesFree: 970982},
		"/run/user/1000":   {Size: 397758464, Used: 16384, Avail: 397742080, Inodes: 97109, InodesFree: 97080},
		"/var/lib/kubelet/pods/0c1d2e3f/volumes/kubernetes.io~projected/kube-api-access-x7k2p": {Size: 3977584640, Used: 12288, Avail: 3977572352, Inodes: 971090, InodesFree: 971081},
	}
}

// pi4Reported are the mount points of testdata/pi4 the default filters
// keep: not /run/lock, /run/user/1000 (below /run) nor the Kubernetes
// volume, though pi4Usage knows them.
func pi4Reported() []string {
	return []string{"/", "/boot/firmware", "/media/ro-backup", "/mnt/usb disk", "/mnt/nas", "/run"}
}

// newFixtureSampler returns a Sampler reading the tree at root, with a
// fake statfs.
func newFixtureSampler(t testing.TB, root string, fake *fakeStatFS, enabled ...string) *Sampler {
	t.Helper()
	return newFilteredSampler(t, root, fake, Filters{}, enabled...)
}

// newFilteredSampler is newFixtureSampler with filters.
func newFilteredSampler(t testing.TB, root string, fake *fakeStatFS, filters Filters, enabled ...string) *Sampler {
	t.Helper()
	if fake == nil {
		fake = &fakeStatFS{usage: pi4Usage()}
	}
	s, err := New(Config{
		ProcRoot: filepath.Join(root, "proc"),
		SysRoot:  filepath.Join(root, "sys"),
		EtcRoot:  filepath.Join(root, "etc"),
		Enabled:  enabled,
		StatFS:   fake.statfs,
		Filters:  filters,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// collect runs one collection and fails the test on a point that breaks
// the protocol's rules.
func collect(t testing.TB, s *Sampler) ([]protocol.Point, Report) {
	t.Helper()
	points, rep := s.Collect(context.Background())
	for i := range points {
		m := protocol.Metrics{Epoch: "e", Seq: 1, Time: fixedTime, Points: points[i : i+1]}
		if err := m.Validate(); err != nil {
			t.Errorf("point %d invalid: %v", i, err)
		}
	}
	return points, rep
}

// values maps each series, written name{k="v",…}, to its value.
func values(points []protocol.Point) map[string]float64 {
	out := make(map[string]float64, len(points))
	for _, p := range points {
		out[printableKey(seriesKey(p.Name, p.Labels))] = p.Value
	}
	return out
}

// withPrefix keeps the series whose name starts with one of prefixes.
func withPrefix(m map[string]float64, prefixes ...string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		for _, p := range prefixes {
			if strings.HasPrefix(k, p) {
				out[k] = v
			}
		}
	}
	return out
}

// reportFor returns the report of the named collector.
func reportFor(t testing.TB, rep Report, name string) CollectorReport {
	t.Helper()
	for _, c := range rep.Collectors {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no report for collector %s in %+v", name, rep)
	return CollectorReport{}
}
