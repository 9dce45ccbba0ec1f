// Package textfile gives a device's scripts a way to hand metrics to the
// agent: a drop directory of files in the Prometheus text exposition
// format, like node_exporter's textfile collector. The agent reads the
// directory at each collection and adds the points to the batch it stores
// in its durable outbox, so a custom metric travels, and survives a hub
// outage, exactly as the host metrics do. `alicia-agent push` writes one
// file per series with Write. Only the agent imports it.
//
// # Files
//
// The collector reads the regular files named *.prom of the directory
// (not hidden ones, not symlinks; opened without blocking, so a FIFO is
// refused, not waited on), in name order, at most Config.MaxFiles (64) of
// them and Config.MaxFileBytes (64 KiB) each, and keeps at most
// Config.MaxPoints (256) points in all. A writer replaces a file by
// writing a temporary file in the directory and renaming it over the old
// one (Write does), so the collector never reads half a file.
//
// Each line is a # HELP, a # TYPE, another comment, or a sample:
//
//	# HELP boiler_temperature_celsius Water temperature at the boiler's outlet.
//	# TYPE boiler_temperature_celsius gauge
//	boiler_temperature_celsius{circuit="heating",ha="sensor"} 61.5
//	# TYPE boiler_starts_total counter
//	boiler_starts_total 1234
//
// A value is repeated at every collection until the file changes or is
// removed: remove the file to stop sending the series.
//
// # What is refused
//
// A line that is not valid is left out, the others of its file are kept;
// the agent logs "custom metric refused" with file:line and why, once per
// 10 minutes while the problem lasts. Refused are: names outside
// [a-zA-Z_][a-zA-Z0-9_]* (Prometheus's colon is kept for recording rules
// and the protocol does not carry it) or longer than 128 bytes; invalid
// label names (and the reserved "__" prefix), values longer than 256 bytes,
// with control characters or not UTF-8, more than 16 labels; a label ha
// other than ha="sensor"; values that are not finite numbers (NaN, ±Inf);
// timestamps (the agent times the sample when it collects it); TYPE
// summary and histogram; a counter whose name does not end in _total and
// a gauge whose name does (the hub exposes exactly the _total names as
// counters); a TYPE line after samples of its name or given twice; a
// series given twice (in one file, or in two: the first file's is kept).
//
// Custom metrics are kept apart from the agent's own by name: a name the
// agent sends itself (its host and hardware metrics, Config.Reserved) or
// that starts with agent_, alicia_, go_, process_ or promhttp_ (the hub's
// families in its /metrics) is refused, so a script cannot overwrite
// cpu_usage_ratio or a device's state. Their labels are free, except ha.
//
// # The directory
//
// DefaultDir, /var/lib/alicia-agent-textfile, is outside the agent's state
// directory (/var/lib/alicia-agent, mode 0700: it holds the device's key)
// so that other users can write to it, and persistent (unlike
// /run/alicia-agent, which systemd removes when the agent stops), so that a
// value written by a script while the agent is stopped, or before a
// reboot, is still collected. The package creates it root:alicia-metrics,
// mode 2775: root and the members of alicia-metrics may write there; the
// agent only reads it (files are written 0644).
//
// # Home Assistant
//
// A series with the label ha="sensor" (push --ha-sensor) is announced to
// Home Assistant by the hub as a sensor of the device.
package textfile
