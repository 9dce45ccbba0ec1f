package health

import "time"

// DefaultRules returns the rules a new hub starts with. They are stored
// once, on the first start; after that the stored rules are the truth
// (a deleted default stays deleted).
//
// They are chosen for Raspberry Pis on SD cards, and hold for other small
// Linux devices:
//
//   - cpu_temperature (critical): temperature_celsius > 80 °C for 2
//     minutes, resolving below 75 °C. The Pi firmware starts throttling
//     the CPU at 80 °C (and caps it hard at 85 °C), so two minutes above
//     80 means the device is running slow for lack of cooling, not that a
//     build briefly warmed it. The 5 °C margin is about the swing of a
//     throttling Pi, so the alert does not flap while it throttles. Every
//     sensor is watched (sensor="cpu_thermal" on a Pi), so x86 packages
//     and SoCs are covered too.
//   - disk_full (warning): filesystem_used_ratio > 0.9 for 5 minutes,
//     resolving below 88 %. A full SD card stops logging, databases and
//     updates; 90 % leaves room to act on an 8–32 GB card. Five minutes
//     skips a large file being copied and removed; the 2-point margin is a
//     few hundred megabytes, more than logs grow between two samples.
//   - disk_filling (warning, trend): filesystem_used_ratio projected
//     past 0.9 within 72 hours by a line fitted over the last 6 hours,
//     for 15 minutes; resolving once the projection is more than 108
//     hours away (margin 0.5) or the disk stops filling. Three days is a
//     long weekend away from home: enough to clear logs or swap the card
//     before disk_full fires. Six hours spans a working day's writes
//     without reaching back to last week's habits, and a one-off copy is
//     a step, not a trend (see Evaluate); fifteen minutes of agreeing
//     fits (five reads of the window) skip a burst. It fires only before
//     the crossing: past 90 %, disk_full speaks.
//   - memory_high (warning): memory_used_ratio > 0.9 for 5 minutes,
//     resolving below 85 %. The ratio counts available memory (page cache
//     is not "used"), so 90 % for minutes means the OOM killer is near on
//     a 512 MB–1 GB Pi. Memory moves in bigger steps than disk, hence the
//     wider margin.
//   - filesystem_readonly (critical): filesystem_readonly > 0.5 for 1
//     minute (the metric is 0 or 1). A Pi's kernel remounts the root
//     filesystem read-only when the SD card fails; this is the earliest
//     sign of a dying card. Disable it for devices that mount read-only
//     on purpose (overlay-root kiosks).
//   - cpu_busy (warning, disabled): cpu_usage_ratio{cpu="total"} > 0.95
//     for 15 minutes. A busy CPU is often a device doing its job, so this
//     ships disabled, ready for devices that should idle.
//   - no_data (critical, absence): no sample of any metric for 5 minutes.
//     Agents send every 10 s; five minutes rides out a Wi-Fi reconnect, an
//     agent upgrade or a reboot, and still tells about a device that lost
//     power or network well before anyone notices. The registry marks a
//     device offline after 30 s of missed heartbeats: that is the fast
//     state on the dashboard, this is the alert.
//   - series_limit (warning): alicia_device_series_limited > 0.5 (the hub
//     sets it to 1 for ten minutes after it refused a new series of the
//     device, see hub/metrics). An agent sends about a hundred series; a
//     device at the hub's per-device limit almost always has a label that
//     changes with every sample (a timestamp, a PID, a request ID) in a
//     custom metric. One minute: data is being dropped.
//
// Rules added to this list in a later version are stored at the first
// start of that version, once (see Engine.seed).
//
// There is no SD-card wear rule: agents send no wear metric. The kernel
// reports wear (life_time, pre_eol_info under /sys/block/mmcblk*/device)
// for eMMC only, from its extended CSD register; SD cards, what almost
// every Pi boots from, have no such register.
//
// There is no swap rule: agents send swap_used_bytes and swap_total_bytes
// but no ratio, and a rule compares one series with a constant (nothing is
// evaluated), so a swap rule would need a byte threshold that fits no
// device. A full swap shows as memory_high anyway.
func DefaultRules() []Rule {
	return []Rule{
		{
			ID: "cpu_temperature", Name: "Temperature", Kind: KindThreshold, Metric: "temperature_celsius",
			Op: ">", Threshold: 80, For: 2 * time.Minute, ResolveMargin: 5, Severity: SeverityCritical, Enabled: true,
			Suggestion: "{label:sensor} on {device_name} is at {value} °C and throttling: check the heatsink, fan and case airflow",
		},
		{
			ID: "disk_full", Name: "Disk full", Kind: KindThreshold, Metric: "filesystem_used_ratio",
			Op: ">", Threshold: 0.9, For: 5 * time.Minute, ResolveMargin: 0.02, Severity: SeverityWarning, Enabled: true,
			Suggestion: "disk {label:mount} on {device_name} is {value_pct} full: clear logs or enlarge the card",
		},
		{
			ID: "disk_filling", Name: "Disk filling", Kind: KindTrend, Metric: "filesystem_used_ratio",
			Op: ">", Threshold: 0.9, Window: 6 * time.Hour, Horizon: 72 * time.Hour, For: 15 * time.Minute, ResolveMargin: 0.5,
			Severity: SeverityWarning, Enabled: true,
			Suggestion: "disk {label:mount} on {device_name} full in {eta} ({threshold_pct} at {projected_at}, {value_pct} now): find what grows (du -xh {label:mount} | sort -h) or enlarge the card",
		},
		{
			ID: "memory_high", Name: "Memory", Kind: KindThreshold, Metric: "memory_used_ratio",
			Op: ">", Threshold: 0.9, For: 5 * time.Minute, ResolveMargin: 0.05, Severity: SeverityWarning, Enabled: true,
			Suggestion: "memory on {device_name} is {value_pct} used: find the process that grows (top -o %MEM) or add swap",
		},
		{
			ID: "filesystem_readonly", Name: "Read-only filesystem", Kind: KindThreshold, Metric: "filesystem_readonly",
			Op: ">", Threshold: 0.5, For: time.Minute, Severity: SeverityCritical, Enabled: true,
			Suggestion: "{label:mount} on {device_name} went read-only: the SD card may be failing; back it up and replace it",
		},
		{
			ID: "cpu_busy", Name: "CPU busy", Kind: KindThreshold, Metric: "cpu_usage_ratio", Match: map[string]string{"cpu": "total"},
			Op: ">", Threshold: 0.95, For: 15 * time.Minute, ResolveMargin: 0.1, Severity: SeverityWarning, Enabled: false,
			Suggestion: "CPU on {device_name} is {value_pct} busy for {for}: look for a runaway process (top)",
		},
		{
			ID: "series_limit", Name: "Too many series", Kind: KindThreshold, Metric: "alicia_device_series_limited",
			Op: ">", Threshold: 0.5, For: time.Minute, Severity: SeverityWarning, Enabled: true,
			Suggestion: "{device_name} sends more distinct series than the hub keeps per device, and new ones are dropped: look for a metric label that changes with every sample",
		},
		{
			ID: "no_data", Name: "No data", Kind: KindAbsence, For: 5 * time.Minute, Severity: SeverityCritical, Enabled: true,
			Suggestion: "no data from {device_name} for {for}: is it powered and on the network?",
		},
	}
}
