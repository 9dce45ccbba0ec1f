// Package sample collects the agent's host metrics (CPU, memory, swap,
// filesystems, disk and network I/O, temperatures, uptime and processes,
// and the agent's own footprint) as protocol.Points, with gopsutil doing
// the readings. Only the agent imports it.
//
// Each collector lives in its own file behind a one-method interface and is
// timed and counted; a Sampler runs the enabled ones concurrently under one
// deadline and returns the points sorted by name and labels together with a
// Report that says, per collector, "ok", "skipped: not here" (no swap, no
// thermal sensors, …) or "failed" and why. The /proc, /sys and /etc roots
// are configurable (gopsutil reads them from its context EnvMap), so tests
// point the Sampler at fixture trees under testdata/.
//
// # Metrics
//
// Names follow Prometheus conventions without a "node_" prefix (the hub
// knows which device sent them); counters end in _total. Labels are in
// braces. As in docs/protocol.md, cpu_usage_ratio carries both the total
// and the cores: select cpu="total", or exclude it before aggregating.
//
//	cpu         cpu_usage_ratio{cpu}                     busy share since the previous collection (none on the first),
//	                                                     of all CPUs (cpu="total") and of each core (cpu="0", "1", …)
//	            load1, load5, load15                     load averages
//	memory      memory_total_bytes, memory_available_bytes
//	            memory_used_bytes                        total − available
//	            memory_used_ratio                        used / total
//	swap        swap_total_bytes, swap_used_bytes        skipped when no swap is configured
//	filesystem  filesystem_size_bytes{mount,source,fstype}
//	            filesystem_used_bytes{…}, filesystem_available_bytes{…}
//	            filesystem_used_ratio{…}                 used / (used + available), as df(1) computes Use%
//	            filesystem_inodes_used_ratio{…}          absent when the filesystem reports no inodes (vfat, btrfs)
//	            filesystem_readonly{…}                   1 when mounted read-only
//	            filesystem_device_error{…}               1 when statfs failed or did not answer in time
//	diskio      disk_reads_completed_total{disk}, disk_writes_completed_total{disk}
//	            disk_read_bytes_total{disk}, disk_written_bytes_total{disk}
//	            disk_io_time_seconds_total{disk}
//	network     network_receive_bytes_total{interface}, network_transmit_bytes_total{interface}
//	            network_receive_packets_total{interface}, network_transmit_packets_total{interface}
//	            network_receive_errs_total{interface}, network_transmit_errs_total{interface}
//	            network_receive_drop_total{interface}, network_transmit_drop_total{interface}
//	thermal     temperature_celsius{sensor}              hwmon inputs, else thermal zones (sensor="cpu_thermal" on a Pi)
//	system      system_uptime_seconds, system_boot_time_seconds
//	            system_processes                         processes (numeric /proc entries)
//	            system_processes_running                 runnable tasks (procs_running in /proc/stat)
//	            system_processes_blocked                 tasks blocked on I/O (procs_blocked)
//	self        agent_resident_memory_bytes, agent_cpu_seconds_total, agent_goroutines
//
// # What is left out, and why
//
// A host running containers or VMs has dozens of virtual interfaces and
// container filesystems; each would become a series, and a Home Assistant
// entity. Config.Filters changes what is left out (the agent's
// --net-exclude, --net-include-virtual, --fs-exclude-types and
// --fs-exclude-mounts).
//
// Filesystems: like node_exporter's defaults, pseudo and image filesystems
// are skipped by type (DefaultFSExcludeTypes: autofs, binfmt_misc, bpf,
// cgroup, cgroup2, configfs, debugfs, devpts, devtmpfs, fusectl, hugetlbfs,
// iso9660, mqueue, nsfs, overlay, proc, procfs, pstore, rpc_pipefs,
// securityfs, selinuxfs, squashfs, sysfs, tracefs) and by mount point
// (DefaultFSExcludeMounts: /dev, /proc, /sys, /snap and what is below them,
// everything below /run — per-user and runtime tmpfs, credentials, network
// namespaces —, /var/lib/docker/…, /var/lib/containers/storage/… and
// /var/lib/kubelet/…, the volumes of Kubernetes pods).
// tmpfs is otherwise kept (a full /run breaks a system) and so are network
// filesystems (nfs, cifs, fuse), whose statfs may hang: each statfs runs
// with its own timeout, and a mount whose statfs has not returned is not
// asked again until it does, so a dead NFS server costs one goroutine per
// mount, never a stuck collection. Bind mounts of a subdirectory are skipped
// (they repeat a filesystem already reported); when one mount point is
// mounted over, the topmost mount is reported.
//
// Disk I/O: whole disks only. Partitions (sda1, mmcblk0p2, nvme0n1p1, …)
// are skipped because their disk already counts their I/O, and so are
// loop, ram, zram and floppy devices, as node_exporter does (plus mmcblk
// partitions, which its default misses).
//
// Network: every physical interface. lo is always left out, and so, by
// default, are the virtual interfaces — those the kernel lists under
// /sys/devices/virtual/net: bridges (docker0, br-…, virbr…), veth pairs,
// tun/tap, WireGuard, VLANs, bonds, ifb, dummy — whose traffic the physical
// interfaces count too. An agent in a container with its own network
// namespace sees only a veth: give it Filters.NetIncludeVirtual.
package sample
