package sample

import "slices"

// names are the metric names the collectors send (see the package
// documentation); TestNamesListsEveryCollectorMetric keeps it complete.
var names = []string{
	"agent_cpu_seconds_total", "agent_goroutines", "agent_resident_memory_bytes",
	"cpu_usage_ratio", "load1", "load5", "load15",
	"disk_io_time_seconds_total", "disk_read_bytes_total", "disk_reads_completed_total", "disk_writes_completed_total", "disk_written_bytes_total",
	"filesystem_available_bytes", "filesystem_device_error", "filesystem_inodes_used_ratio", "filesystem_readonly",
	"filesystem_size_bytes", "filesystem_used_bytes", "filesystem_used_ratio",
	"memory_available_bytes", "memory_total_bytes", "memory_used_bytes", "memory_used_ratio",
	"network_receive_bytes_total", "network_receive_drop_total", "network_receive_errs_total", "network_receive_packets_total",
	"network_transmit_bytes_total", "network_transmit_drop_total", "network_transmit_errs_total", "network_transmit_packets_total",
	"swap_total_bytes", "swap_used_bytes",
	"system_boot_time_seconds", "system_processes", "system_processes_blocked", "system_processes_running", "system_uptime_seconds",
	"temperature_celsius",
}

// IsHostMetric reports whether a collector of this package sends metrics
// named name (whether or not it is enabled): custom metrics may not take
// these names.
func IsHostMetric(name string) bool { return slices.Contains(names, name) }
