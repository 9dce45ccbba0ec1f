package sample

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/alicia-home/alicia/internal/protocol"
)

// The fixture tests check each collector's values against numbers worked
// out by hand from the files under testdata/pi4.

func TestCPUUsageFromTwoReadings(t *testing.T) {
	root := fixture(t, "pi4")
	s := newFixtureSampler(t, root, nil, CPU)

	points, rep := collect(t, s)
	if r := reportFor(t, rep, CPU); r.Status != StatusOK || r.Err != nil {
		t.Fatalf("first collection: %+v", r)
	}
	// No previous reading: no usage at all, rather than a made-up zero.
	want := map[string]float64{"load1": 0.52, "load5": 0.38, "load15": 0.31}
	if diff := cmp.Diff(want, values(points)); diff != "" {
		t.Errorf("first collection (-want +got):\n%s", diff)
	}

	later, err := os.ReadFile("testdata/pi4_stat_later")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, root, "proc/stat", string(later))
	points, _ = collect(t, s)
	// Per core, the change between the two files in ticks (user nice
	// system idle iowait irq softirq steal guest): busy = total − idle −
	// iowait, total without guest (already in user).
	//   cpu0: 60 0 30 880 20 0 10 0 0    → total 1000, busy 100
	//   cpu1: 150 0 40 790 10 0 10 0 40  → total 1000 (1040 − guest 40), busy 200
	//   cpu2: 200 50 40 690 10 5 5 0 0   → total 1000, busy 300
	//   cpu3: 300 0 90 600 0 0 0 10 0    → total 1000, busy 400 (steal is busy)
	//   all:  total 4000, busy 1000
	want = map[string]float64{
		`cpu_usage_ratio{cpu="total"}`: float64(1000) / float64(4000),
		`cpu_usage_ratio{cpu="0"}`:     float64(100) / float64(1000),
		`cpu_usage_ratio{cpu="1"}`:     float64(200) / float64(1000),
		`cpu_usage_ratio{cpu="2"}`:     float64(300) / float64(1000),
		`cpu_usage_ratio{cpu="3"}`:     float64(400) / float64(1000),
		"load1":                        0.52, "load5": 0.38, "load15": 0.31,
	}
	if diff := cmp.Diff(want, values(points)); diff != "" {
		t.Errorf("second collection (-want +got):\n%s", diff)
	}

	// Same file again: no tick passed, so no usage (not 0, not NaN).
	points, _ = collect(t, s)
	if got := withPrefix(values(points), "cpu_"); len(got) != 0 {
		t.Errorf("usage without any tick passing: %v", got)
	}
}

func TestUsageRatio(t *testing.T) {
	for _, tc := range []struct {
		name      string
		prev, cur cpuTicks
		want      float64
		ok        bool
	}{
		{"quarter busy", cpuTicks{total: 100, busy: 10}, cpuTicks{total: 200, busy: 35}, 0.25, true},
		{"idle", cpuTicks{total: 100, busy: 10}, cpuTicks{total: 200, busy: 10}, 0, true},
		{"no tick", cpuTicks{total: 100, busy: 10}, cpuTicks{total: 100, busy: 10}, 0, false},
		{"counters went back", cpuTicks{total: 100, busy: 10}, cpuTicks{total: 50, busy: 5}, 0, false},
		{"busy went back (iowait)", cpuTicks{total: 100, busy: 50}, cpuTicks{total: 200, busy: 40}, 0, true},
		{"busy beyond total", cpuTicks{total: 100, busy: 10}, cpuTicks{total: 110, busy: 30}, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := usageRatio(tc.prev, tc.cur)
			if got != tc.want || ok != tc.ok {
				t.Errorf("usageRatio = %v, %v; want %v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
	if got := newCPUTicks("cpu0", 10, 0, 5, 80, 5, 0, 0, 0); got.total != 100 || got.busy != 15 {
		t.Errorf("newCPUTicks = %+v, want total 100, busy 15", got)
	}
}

func TestCPUMalformedLoadavgKeepsUsage(t *testing.T) {
	root := fixture(t, "pi4")
	writeFile(t, root, "proc/loadavg", "") // gopsutil indexes the fields unchecked
	s := newFixtureSampler(t, root, nil, CPU)
	collect(t, s)
	later, _ := os.ReadFile("testdata/pi4_stat_later")
	writeFile(t, root, "proc/stat", string(later))
	points, rep := collect(t, s)
	r := reportFor(t, rep, CPU)
	if r.Status != StatusOK || r.Err == nil || !strings.Contains(r.Err.Error(), "load average") {
		t.Errorf("report = %+v, want ok with a load average error", r)
	}
	if got := values(points)[`cpu_usage_ratio{cpu="total"}`]; got != 0.25 {
		t.Errorf("usage = %v, want 0.25 despite the broken loadavg", got)
	}
}

func TestMemory(t *testing.T) {
	s := newFixtureSampler(t, fixture(t, "pi4"), nil, Memory, Swap)
	points, rep := collect(t, s)
	// meminfo: MemTotal 3884360 kB, MemAvailable 3011044 kB;
	// SwapTotal 102396 kB, SwapFree 81916 kB.
	const total, avail = 3884360 * 1024, 3011044 * 1024
	want := map[string]float64{
		"memory_total_bytes":     total,
		"memory_available_bytes": avail,
		"memory_used_bytes":      total - avail,
		"memory_used_ratio":      float64(total-avail) / float64(total),
		"swap_total_bytes":       102396 * 1024,
		"swap_used_bytes":        (102396 - 81916) * 1024,
	}
	if diff := cmp.Diff(want, values(points)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, r := range rep.Collectors {
		if r.Status != StatusOK || r.Err != nil {
			t.Errorf("report: %+v", r)
		}
	}
}

func TestFilesystem(t *testing.T) {
	fake := &fakeStatFS{usage: pi4Usage()}
	s := newFixtureSampler(t, fixture(t, "pi4"), fake, Filesystem)
	points, rep := collect(t, s)
	if r := reportFor(t, rep, Filesystem); r.Status != StatusOK || r.Err != nil {
		t.Fatalf("report: %+v", r)
	}

	// Only real filesystems are asked, once each: not /dev, /proc, /sys
	// and what is under them, not what is below /run, not cgroup2,
	// squashfs (a snap), overlay (docker), a Kubernetes volume or the bind
	// mount /var/lib/photos.
	wantCalls := map[string]int{}
	for _, mp := range pi4Reported() {
		wantCalls[mp] = 1
	}
	if diff := cmp.Diff(wantCalls, fake.called()); diff != "" {
		t.Errorf("statfs calls (-want +got):\n%s", diff)
	}

	got := values(points)
	root := `{fstype="ext4",mount="/",source="/dev/mmcblk0p2"}`
	boot := `{fstype="vfat",mount="/boot/firmware",source="/dev/mmcblk0p1"}`
	usb := `{fstype="ext4",mount="/mnt/usb disk",source="/dev/sda1"}` // \040 in mountinfo
	backup := `{fstype="vfat",mount="/media/ro-backup",source="/dev/mmcblk0p1"}`
	want := map[string]float64{
		"filesystem_size_bytes" + root:        31268536320,
		"filesystem_used_bytes" + root:        6253707264,
		"filesystem_available_bytes" + root:   23406641152,
		"filesystem_used_ratio" + root:        float64(6253707264) / float64(6253707264+23406641152),
		"filesystem_inodes_used_ratio" + root: float64(1896832-1701234) / float64(1896832),
		"filesystem_readonly" + root:          0,
		"filesystem_device_error" + root:      0,
		// vfat reports no inodes: no inode ratio rather than 0 or NaN.
		"filesystem_size_bytes" + boot:      535805952,
		"filesystem_used_bytes" + boot:      66519040,
		"filesystem_available_bytes" + boot: 469286912,
		"filesystem_used_ratio" + boot:      float64(66519040) / float64(66519040+469286912),
		"filesystem_readonly" + boot:        0,
		"filesystem_device_error" + boot:    0,
		"filesystem_used_ratio" + usb:       float64(412345678848) / float64(412345678848+536870912000),
		"filesystem_readonly" + backup:      1,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	for k := range got {
		if _, ok := got[strings.Replace(k, "filesystem_size_bytes", "filesystem_readonly", 1)]; !ok {
			t.Errorf("%s has no filesystem_readonly twin", k)
		}
		if strings.Contains(k, "inodes") && strings.Contains(k, "vfat") {
			t.Errorf("inode ratio for vfat: %s", k)
		}
		for _, bad := range []string{`mount="/dev`, `mount="/sys`, `mount="/proc`, `mount="/run/`, "cgroup", "squashfs", "overlay", "/var/lib/photos", "kubelet"} {
			if strings.Contains(k, bad) {
				t.Errorf("excluded mount reported: %s", k)
			}
		}
	}
	if n := len(withPrefix(got, "filesystem_readonly")); n != len(pi4Reported()) {
		t.Errorf("%d filesystems reported, want %d", n, len(pi4Reported()))
	}
}

func TestFilesystemStatfsError(t *testing.T) {
	fake := &fakeStatFS{usage: pi4Usage(), errs: map[string]error{"/mnt/usb disk": errors.New("input/output error")}}
	s := newFixtureSampler(t, fixture(t, "pi4"), fake, Filesystem)
	points, rep := collect(t, s)
	r := reportFor(t, rep, Filesystem)
	if r.Status != StatusOK || r.Err == nil || !strings.Contains(r.Err.Error(), "statfs /mnt/usb disk: input/output error") {
		t.Errorf("report = %+v, want ok naming the failed mount", r)
	}
	got := values(points)
	usb := `{fstype="ext4",mount="/mnt/usb disk",source="/dev/sda1"}`
	if got["filesystem_device_error"+usb] != 1 {
		t.Errorf("device error for the failed mount = %v, want 1", got["filesystem_device_error"+usb])
	}
	if _, ok := got["filesystem_size_bytes"+usb]; ok {
		t.Error("size reported for a mount whose statfs failed")
	}
	if got[`filesystem_device_error{fstype="ext4",mount="/",source="/dev/mmcblk0p2"}`] != 0 || got[`filesystem_size_bytes{fstype="ext4",mount="/",source="/dev/mmcblk0p2"}`] == 0 {
		t.Error("the other mounts suffered from one failing")
	}
}

func TestRealMountsRules(t *testing.T) {
	for _, tc := range []struct {
		mount, fstype string
		ignored       bool
	}{
		{"/", "ext4", false},
		{"/run", "tmpfs", false}, // a full /run breaks a system
		{"/runner", "ext4", false},
		{"/run/user/1000", "tmpfs", true},
		{"/run/lock", "tmpfs", true},
		{"/run/netns/ns1", "nsfs", true},
		{"/snap", "ext4", true},
		{"/snapshots", "btrfs", false},
		{"/var/lib/kubelet/pods/0c1d/volumes/kubernetes.io~secret/token", "tmpfs", true},
		{"/var/lib/kubelet", "ext4", false},
		{"/mnt/nas", "nfs4", false},
		{"/home/pi/remote", "fuse.sshfs", false},
		{"/devices", "ext4", false}, // only /dev itself and below
		{"/dev", "devtmpfs", true},
		{"/dev/shm", "tmpfs", true},
		{"/sys/fs/cgroup", "cgroup2", true},
		{"/run/credentials/systemd-journald.service", "ramfs", true},
		{"/var/lib/docker/overlay2/x/merged", "overlay", true},
		{"/var/lib/containers/storage/overlay", "xfs", true},
		{"/snap/core22/1122", "squashfs", true},
		{"/media/cdrom", "iso9660", true},
	} {
		got := defaultFSExcludeMounts.MatchString(tc.mount) || defaultFSExcludeTypes.MatchString(tc.fstype)
		if got != tc.ignored {
			t.Errorf("%s (%s): ignored = %v, want %v", tc.mount, tc.fstype, got, tc.ignored)
		}
	}
}

func TestDiskIO(t *testing.T) {
	s := newFixtureSampler(t, fixture(t, "pi4"), nil, DiskIO)
	points, rep := collect(t, s)
	if r := reportFor(t, rep, DiskIO); r.Status != StatusOK || r.Err != nil {
		t.Fatalf("report: %+v", r)
	}
	// diskstats: reads, sectors read, writes, sectors written (512 bytes
	// each), ms doing I/O. Partitions, loop, ram and zram are left out.
	want := map[string]float64{
		`disk_reads_completed_total{disk="mmcblk0"}`:  48213,
		`disk_writes_completed_total{disk="mmcblk0"}`: 121456,
		`disk_read_bytes_total{disk="mmcblk0"}`:       3571934 * 512,
		`disk_written_bytes_total{disk="mmcblk0"}`:    5287312 * 512,
		`disk_io_time_seconds_total{disk="mmcblk0"}`:  398712.0 / 1000,
		`disk_reads_completed_total{disk="sda"}`:      15321,
		`disk_writes_completed_total{disk="sda"}`:     8765,
		`disk_read_bytes_total{disk="sda"}`:           2456780 * 512,
		`disk_written_bytes_total{disk="sda"}`:        1234568 * 512,
		`disk_io_time_seconds_total{disk="sda"}`:      67890.0 / 1000,
	}
	if diff := cmp.Diff(want, values(points)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestIgnoredDisks(t *testing.T) {
	for name, ignored := range map[string]bool{
		"mmcblk0": false, "mmcblk0p1": true, "mmcblk0boot0": false,
		"sda": false, "sda1": true, "sdaa": false, "sdaa3": true,
		"nvme0n1": false, "nvme0n1p2": true, "vda": false, "vda1": true, "xvdb1": true,
		"dm-0": false, "md0": false,
		"loop0": true, "ram15": true, "zram0": true, "fd0": true,
	} {
		if got := ignoredDisks.MatchString(name); got != ignored {
			t.Errorf("%s: ignored = %v, want %v", name, got, ignored)
		}
	}
}

// TestNetwork: lo and the virtual interfaces (those testdata/pi4 lists
// under sys/devices/virtual/net: docker0, a veth and a bridge) are left
// out by default; Filters bring the virtual ones back or leave out more.
func TestNetwork(t *testing.T) {
	counters := map[string][8]float64{
		// rx bytes, packets, errs, drop; tx bytes, packets, errs, drop
		"eth0":            {987654321, 1234567, 3, 12, 123456789, 876543, 1, 2},
		"wlan0":           {456789, 3456, 0, 7, 98765, 1234, 0, 0},
		"docker0":         {5242880, 4096, 0, 0, 10485760, 8192, 0, 0},
		"veth1a2b3c4":     {1048576, 512, 0, 0, 2097152, 1024, 0, 0},
		"br-5d6e7f809a1b": {204800, 200, 0, 1, 409600, 400, 0, 0},
	}
	for _, tc := range []struct {
		name    string
		filters Filters
		want    []string
	}{
		{"default", Filters{}, []string{"eth0", "wlan0"}},
		{"virtual included", Filters{NetIncludeVirtual: true}, []string{"eth0", "wlan0", "docker0", "veth1a2b3c4", "br-5d6e7f809a1b"}},
		{"excluded by name", Filters{NetExclude: regexp.MustCompile(`^wlan`)}, []string{"eth0"}},
		{"virtual included, veth excluded", Filters{NetIncludeVirtual: true, NetExclude: regexp.MustCompile(`^veth`)}, []string{"eth0", "wlan0", "docker0", "br-5d6e7f809a1b"}},
		{"lo never", Filters{NetIncludeVirtual: true, NetExclude: regexp.MustCompile(`^$`)}, []string{"eth0", "wlan0", "docker0", "veth1a2b3c4", "br-5d6e7f809a1b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newFilteredSampler(t, fixture(t, "pi4"), nil, tc.filters, Network)
			points, rep := collect(t, s)
			if r := reportFor(t, rep, Network); r.Status != StatusOK || r.Err != nil {
				t.Errorf("report: %+v", r)
			}
			want := map[string]float64{}
			for _, dev := range tc.want {
				for i, name := range []string{"receive_bytes", "receive_packets", "receive_errs", "receive_drop", "transmit_bytes", "transmit_packets", "transmit_errs", "transmit_drop"} {
					want[fmt.Sprintf("network_%s_total{interface=%q}", name, dev)] = counters[dev][i]
				}
			}
			if diff := cmp.Diff(want, values(points)); diff != "" {
				t.Errorf("(-want +got; lo must never appear):\n%s", diff)
			}
		})
	}
}

// TestFilesystemFilters: the filters replace the default types and mount
// points left out.
func TestFilesystemFilters(t *testing.T) {
	mounts := func(points []protocol.Point) []string {
		var out []string
		for _, p := range points {
			if p.Name == "filesystem_readonly" {
				out = append(out, p.Labels["mount"])
			}
		}
		slices.Sort(out)
		return out
	}
	for _, tc := range []struct {
		name    string
		filters Filters
		want    []string
	}{
		{"default", Filters{}, []string{"/", "/boot/firmware", "/media/ro-backup", "/mnt/nas", "/mnt/usb disk", "/run"}},
		{"only the types of the default, no mount points",
			Filters{FSExcludeMounts: regexp.MustCompile(`^$`)},
			[]string{"/", "/boot/firmware", "/dev/shm", "/media/ro-backup", "/mnt/nas", "/mnt/usb disk", "/run", "/run/lock", "/run/user/1000",
				"/var/lib/kubelet/pods/0c1d2e3f/volumes/kubernetes.io~projected/kube-api-access-x7k2p"}},
		{"tmpfs and nfs by type", Filters{FSExcludeTypes: regexp.MustCompile(`^(tmpfs|nfs4?)$`)}, []string{"/", "/boot/firmware", "/media/ro-backup", "/mnt/usb disk"}},
		// The expression replaces the default mount points: /dev/shm, below
		// /run and the Kubernetes volume come back.
		{"mounts under /mnt", Filters{FSExcludeMounts: regexp.MustCompile(`^/mnt/`)}, []string{"/", "/boot/firmware", "/dev/shm", "/media/ro-backup", "/run", "/run/lock", "/run/user/1000",
			"/var/lib/kubelet/pods/0c1d2e3f/volumes/kubernetes.io~projected/kube-api-access-x7k2p"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			usage := pi4Usage()
			usage["/dev/shm"] = usage["/run"]
			s := newFilteredSampler(t, fixture(t, "pi4"), &fakeStatFS{usage: usage}, tc.filters, Filesystem)
			points, rep := collect(t, s)
			if r := reportFor(t, rep, Filesystem); r.Status != StatusOK || r.Err != nil {
				t.Errorf("report: %+v", r)
			}
			if diff := cmp.Diff(tc.want, mounts(points)); diff != "" {
				t.Errorf("mounts reported (-want +got):\n%s", diff)
			}
		})
	}
}

func TestThermal(t *testing.T) {
	t.Run("hwmon", func(t *testing.T) {
		// The Pi 4 has both; gopsutil reads hwmon and ignores the zone.
		points, _ := collect(t, newFixtureSampler(t, fixture(t, "pi4"), nil, Thermal))
		want := map[string]float64{`temperature_celsius{sensor="cpu_thermal"}`: 45.764}
		if diff := cmp.Diff(want, values(points)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("thermal zones only", func(t *testing.T) {
		root := fixture(t, "pi4")
		if err := os.RemoveAll(filepath.Join(root, "sys/class/hwmon")); err != nil {
			t.Fatal(err)
		}
		writeFile(t, root, "sys/class/thermal/thermal_zone1/type", "gpu_thermal\n")
		writeFile(t, root, "sys/class/thermal/thermal_zone1/temp", "-1500\n")
		points, rep := collect(t, newFixtureSampler(t, root, nil, Thermal))
		want := map[string]float64{`temperature_celsius{sensor="cpu_thermal"}`: 45.277, `temperature_celsius{sensor="gpu_thermal"}`: -1.5}
		if diff := cmp.Diff(want, values(points)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
		if r := reportFor(t, rep, Thermal); r.Status != StatusOK || r.Err != nil {
			t.Errorf("report: %+v", r)
		}
	})
	t.Run("unlabelled inputs of one chip", func(t *testing.T) {
		root := fixture(t, "pi4")
		writeFile(t, root, "sys/class/hwmon/hwmon2/name", "acpitz\n")
		writeFile(t, root, "sys/class/hwmon/hwmon2/temp1_input", "27800\n")
		writeFile(t, root, "sys/class/hwmon/hwmon2/temp2_input", "29800\n")
		writeFile(t, root, "sys/class/hwmon/hwmon3/name", "coretemp\n")
		writeFile(t, root, "sys/class/hwmon/hwmon3/temp1_input", "52000\n")
		writeFile(t, root, "sys/class/hwmon/hwmon3/temp1_label", "Package id 0\n")
		points, _ := collect(t, newFixtureSampler(t, root, nil, Thermal))
		want := map[string]float64{
			`temperature_celsius{sensor="cpu_thermal"}`:           45.764,
			`temperature_celsius{sensor="acpitz"}`:                27.8,
			`temperature_celsius{sensor="acpitz_2"}`:              29.8,
			`temperature_celsius{sensor="coretemp_package_id_0"}`: 52,
		}
		if diff := cmp.Diff(want, values(points)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("one sensor unreadable", func(t *testing.T) {
		root := fixture(t, "pi4")
		writeFile(t, root, "sys/class/hwmon/hwmon2/name", "nvme\n")
		breakFile(t, root, "sys/class/hwmon/hwmon2/temp1_input")
		points, rep := collect(t, newFixtureSampler(t, root, nil, Thermal))
		r := reportFor(t, rep, Thermal)
		if r.Status != StatusOK || r.Err == nil || !strings.Contains(r.Err.Error(), filepath.Join(root, "sys/class/hwmon/hwmon2/temp1_input")) {
			t.Errorf("report = %+v, want ok naming the unreadable input", r)
		}
		if len(points) != 1 {
			t.Errorf("points = %v, want cpu_thermal only", values(points))
		}
	})
}

func TestSystem(t *testing.T) {
	s := newFixtureSampler(t, fixture(t, "pi4"), nil, System)
	points, rep := collect(t, s)
	// uptime 352417.83; btime 1764224000; /proc holds 1, 87, 455, 612,
	// 1234; stat says procs_running 2, procs_blocked 1.
	want := map[string]float64{
		"system_uptime_seconds":    352417.83,
		"system_boot_time_seconds": 1764224000,
		"system_processes":         5,
		"system_processes_running": 2,
		"system_processes_blocked": 1,
	}
	if diff := cmp.Diff(want, values(points)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if r := reportFor(t, rep, System); r.Status != StatusOK || r.Err != nil {
		t.Errorf("report: %+v", r)
	}
}

func TestSystemParsers(t *testing.T) {
	if v, err := parseUptime("12.5 40.00\n"); v != 12.5 || err != nil {
		t.Errorf("parseUptime = %v, %v", v, err)
	}
	for _, bad := range []string{"", "x 1", "-3 1", "NaN 1", "+Inf 2"} {
		if _, err := parseUptime(bad); err == nil {
			t.Errorf("parseUptime(%q): no error", bad)
		}
	}
	if v, err := parseBootTime("cpu 1 2 3\nbtime 1764224000\nprocesses 3\n"); v != 1764224000 || err != nil {
		t.Errorf("parseBootTime = %v, %v", v, err)
	}
	for _, bad := range []string{"", "cpu 1\n", "btime -1\n", "btime x\n"} {
		if _, err := parseBootTime(bad); err == nil {
			t.Errorf("parseBootTime(%q): no error", bad)
		}
	}
}

func TestSelf(t *testing.T) {
	root := fixture(t, "pi4")
	points, rep := collect(t, newFixtureSampler(t, root, nil, Self))
	if r := reportFor(t, rep, Self); r.Status != StatusOK || r.Err != nil {
		t.Fatalf("report: %+v", r)
	}
	got := values(points)
	// proc/self → 1234; statm: 5120 resident pages; stat: utime 1234,
	// stime 567 ticks of 1/100 s.
	if want := float64(5120 * os.Getpagesize()); got["agent_resident_memory_bytes"] != want {
		t.Errorf("resident memory = %v, want %v", got["agent_resident_memory_bytes"], want)
	}
	utime, stime := 1234.0, 567.0 // as gopsutil adds them: 12.34 + 5.67
	if want := utime/100 + stime/100; got["agent_cpu_seconds_total"] != want {
		t.Errorf("cpu seconds = %v, want %v", got["agent_cpu_seconds_total"], want)
	}
	if got["agent_goroutines"] < 1 {
		t.Errorf("goroutines = %v", got["agent_goroutines"])
	}

	// Without the link, the agent's own PID (absent from the tree): the
	// goroutines still, and the two readings named as failed.
	if err := os.Remove(filepath.Join(root, "proc/self")); err != nil {
		t.Fatal(err)
	}
	points, rep = collect(t, newFixtureSampler(t, root, nil, Self))
	r := reportFor(t, rep, Self)
	if r.Status != StatusOK || r.Err == nil || !strings.Contains(r.Err.Error(), fmt.Sprintf("%d/statm", os.Getpid())) {
		t.Errorf("report = %+v, want ok naming the missing statm of pid %d", r, os.Getpid())
	}
	if len(points) != 1 || points[0].Name != "agent_goroutines" {
		t.Errorf("points = %v, want agent_goroutines only", values(points))
	}
}

// TestSkipped: a collector that does not apply on a board says so, with a
// reason, and is not a failure.
func TestSkipped(t *testing.T) {
	for _, tc := range []struct {
		collector string
		prepare   func(t *testing.T, root string)
		reason    string
	}{
		{Swap, func(t *testing.T, root string) {
			writeFile(t, root, "proc/meminfo", "MemTotal: 3884360 kB\nMemFree: 2104532 kB\nMemAvailable: 3011044 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n")
		}, "no swap configured"},
		{Thermal, func(t *testing.T, root string) {
			if err := os.RemoveAll(filepath.Join(root, "sys/class")); err != nil {
				t.Fatal(err)
			}
		}, "no temperature sensors"},
		{DiskIO, func(t *testing.T, root string) {
			writeFile(t, root, "proc/diskstats", "   7       0 loop0 912 0 37406 301 0 0 0 0 0 456 301 0 0 0 0 0 0\n 179       1 mmcblk0p1 391 2100 24356 1234 2 0 2 3 0 1450 1237 0 0 0 0 0 0\n")
		}, "no disks with I/O"},
		{Network, func(t *testing.T, root string) {
			writeFile(t, root, "proc/net/dev", "Inter-|   Receive |  Transmit\n face |bytes packets|bytes\n    lo:  8123456   54321    0    0    0     0          0         0  8123456   54321    0    0    0     0       0          0\n")
		}, "no network interfaces but lo"},
		{Filesystem, func(t *testing.T, root string) {
			writeFile(t, root, "proc/1/mountinfo", "22 1 0:5 / /dev rw - devtmpfs udev rw\n32 1 0:20 / /proc rw - proc proc rw\n33 1 0:21 / / rw - overlay overlay rw\n")
		}, "no real filesystems among the 3 mounts"},
	} {
		t.Run(tc.collector, func(t *testing.T) {
			root := fixture(t, "pi4")
			tc.prepare(t, root)
			s := newFixtureSampler(t, root, nil, tc.collector)
			points, rep := collect(t, s)
			r := reportFor(t, rep, tc.collector)
			if r.Status != StatusSkipped || r.Err != nil || !strings.Contains(r.Reason, tc.reason) || len(points) != 0 {
				t.Errorf("report = %+v with %d points, want skipped: %q…", r, len(points), tc.reason)
			}
			if st := s.Stats()[0]; st.Skips != 1 || st.Failures != 0 {
				t.Errorf("stats = %+v, want one skip", st)
			}
		})
	}
}

// TestUnreadableFileFails: a collector that can read nothing fails, and
// its error names the file.
func TestUnreadableFileFails(t *testing.T) {
	for _, tc := range []struct {
		collector string
		break_    []string // files replaced by directories
		want      string   // in the error, relative to the root
	}{
		{CPU, []string{"proc/stat"}, "proc/stat"},
		{Memory, []string{"proc/meminfo"}, "proc/meminfo"},
		{Swap, []string{"proc/meminfo"}, "proc/meminfo"},
		{DiskIO, []string{"proc/diskstats"}, "proc/diskstats"},
		{Network, []string{"proc/net/dev"}, "proc/net/dev"},
		{Filesystem, []string{"proc/1/mountinfo"}, "proc/1/mountinfo: is a directory"},
		{System, []string{"proc/uptime", "proc/stat"}, "proc/uptime"},
	} {
		t.Run(tc.collector, func(t *testing.T) {
			root := fixture(t, "pi4")
			for _, f := range tc.break_ {
				breakFile(t, root, f)
			}
			s := newFixtureSampler(t, root, nil, tc.collector)
			points, rep := collect(t, s)
			r := reportFor(t, rep, tc.collector)
			if r.Status != StatusFailed || r.Err == nil || !strings.Contains(r.Err.Error(), filepath.Join(root, tc.want)) {
				t.Errorf("report = %+v, want failed naming %s", r, tc.want)
			}
			if len(points) != 0 || r.Points != 0 {
				t.Errorf("a failed collector contributed %d points", len(points))
			}
			if st := s.Stats()[0]; st.Failures != 1 || st.Runs != 1 {
				t.Errorf("stats = %+v, want one failed run", st)
			}
		})
	}
	t.Run(Thermal, func(t *testing.T) {
		root := fixture(t, "pi4")
		if err := os.RemoveAll(filepath.Join(root, "sys/class/hwmon")); err != nil {
			t.Fatal(err)
		}
		breakFile(t, root, "sys/class/thermal/thermal_zone0/temp")
		_, rep := collect(t, newFixtureSampler(t, root, nil, Thermal))
		r := reportFor(t, rep, Thermal)
		if r.Status != StatusFailed || r.Err == nil || !strings.Contains(r.Err.Error(), filepath.Join(root, "sys/class/thermal/thermal_zone0/temp")) {
			t.Errorf("report = %+v, want failed naming thermal_zone0/temp", r)
		}
	})
}
