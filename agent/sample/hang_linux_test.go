package sample

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// TestFilesystemHungMount: statfs on a dead NFS mount blocks. The mount is
// reported as failed after the mount timeout while the others are
// reported; the next collection does not ask it again (no goroutine pile-up)
// and returns at once; once statfs returns, the mount is asked again.
func TestFilesystemHungMount(t *testing.T) {
	root := fixture(t, "pi4")
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		var mu sync.Mutex
		calls := map[string]int{}
		usage := pi4Usage()
		statfs := func(path string) (FSStat, error) {
			mu.Lock()
			calls[path]++
			mu.Unlock()
			if path == "/mnt/nas" {
				<-release
			}
			return usage[path], nil
		}
		s, err := New(Config{
			ProcRoot: filepath.Join(root, "proc"), SysRoot: filepath.Join(root, "sys"), EtcRoot: filepath.Join(root, "etc"),
			Enabled: []string{Filesystem}, StatFS: statfs, MountTimeout: 2 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		nas := `{fstype="nfs4",mount="/mnt/nas",source="nas.local:/export/media"}`
		rootfs := `{fstype="ext4",mount="/",source="/dev/mmcblk0p2"}`

		start := time.Now()
		points, rep := s.Collect(context.Background())
		if d := time.Since(start); d != 2*time.Second {
			t.Errorf("first collection took %v, want the mount timeout (2s)", d)
		}
		r := reportFor(t, rep, Filesystem)
		if r.Status != StatusOK || r.Err == nil || !strings.Contains(r.Err.Error(), "statfs /mnt/nas: no answer within 2s") {
			t.Errorf("first report = %+v, want ok naming the hung mount", r)
		}
		got := values(points)
		if got["filesystem_device_error"+nas] != 1 || got["filesystem_size_bytes"+rootfs] != 31268536320 {
			t.Errorf("first collection: nas error %v, / size %v", got["filesystem_device_error"+nas], got["filesystem_size_bytes"+rootfs])
		}

		start = time.Now()
		points, rep = s.Collect(context.Background())
		if d := time.Since(start); d != 0 {
			t.Errorf("second collection took %v, want no wait", d)
		}
		r = reportFor(t, rep, Filesystem)
		if r.Err == nil || !strings.Contains(r.Err.Error(), "statfs /mnt/nas: not asked: an earlier statfs has not returned since 2000-01-01T00:00:00Z") {
			t.Errorf("second report = %+v", r)
		}
		if values(points)["filesystem_device_error"+nas] != 1 {
			t.Error("second collection: the hung mount is not flagged")
		}
		mu.Lock()
		if calls["/mnt/nas"] != 1 || calls["/"] != 2 {
			t.Errorf("statfs calls = %v, want /mnt/nas once and / twice", calls)
		}
		mu.Unlock()

		close(release) // the server is back
		synctest.Wait()
		points, rep = s.Collect(context.Background())
		if r := reportFor(t, rep, Filesystem); r.Err != nil {
			t.Errorf("after recovery: %+v", r)
		}
		if got := values(points); got["filesystem_device_error"+nas] != 0 || got["filesystem_size_bytes"+nas] != 4000787030016 {
			t.Errorf("after recovery: nas error %v, size %v", got["filesystem_device_error"+nas], got["filesystem_size_bytes"+nas])
		}
	})
}

// TestStuckCollector: a read that never returns (an I2C hwmon chip that
// hangs; here a FIFO nobody writes to) fails its collector at the deadline
// without holding up the others, and the collector is not started again
// while that read is stuck.
func TestStuckCollector(t *testing.T) {
	root := fixture(t, "pi4")
	fifo := filepath.Join(root, "sys/class/hwmon/hwmon0/temp1_input")
	if err := os.Remove(fifo); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	s, err := New(Config{
		ProcRoot: filepath.Join(root, "proc"), SysRoot: filepath.Join(root, "sys"), EtcRoot: filepath.Join(root, "etc"),
		Enabled: []string{Memory, Thermal}, Timeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}

	// The caller's deadline bounds the collection, not only Config.Timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	points, rep := s.Collect(ctx)
	cancel()
	r := reportFor(t, rep, Thermal)
	if r.Status != StatusFailed || r.Err == nil || !strings.Contains(r.Err.Error(), "context deadline exceeded") {
		t.Errorf("stuck collector: %+v, want failed at the deadline", r)
	}
	if reportFor(t, rep, Memory).Status != StatusOK || len(withPrefix(values(points), "memory_")) != 4 {
		t.Errorf("the other collector was held up: %+v", rep)
	}

	points, rep = s.Collect(context.Background())
	r = reportFor(t, rep, Thermal)
	if r.Status != StatusFailed || r.Err == nil || !strings.Contains(r.Err.Error(), "the previous run has not returned yet") {
		t.Errorf("while stuck: %+v", r)
	}
	if len(points) != 4 {
		t.Errorf("while stuck: %d points, want memory's 4", len(points))
	}

	// Unblock the read: open the FIFO's other end, write, close.
	w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteString("51000\n"); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for s.runners[1].busy.Load() { // the stuck run returns promptly now
		runtime.Gosched()
	}
	if err := os.Remove(fifo); err != nil {
		t.Fatal(err)
	}
	writeFile(t, root, "sys/class/hwmon/hwmon0/temp1_input", "52000\n")
	points, rep = s.Collect(context.Background())
	if r := reportFor(t, rep, Thermal); r.Status != StatusOK {
		t.Errorf("after the read returned: %+v", r)
	}
	if got := values(points)[`temperature_celsius{sensor="cpu_thermal"}`]; got != 52 {
		t.Errorf("temperature = %v, want 52", got)
	}
	st := s.Stats()[1]
	if st.Runs != 3 || st.Failures != 2 {
		t.Errorf("thermal stats = %+v, want 3 runs, 2 failures", st)
	}
}
