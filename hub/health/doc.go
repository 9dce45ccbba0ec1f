// Package health is the hub's health monitor: alert rules evaluated
// against the devices' latest samples, the alerts they fire (active ones
// and a bounded history, kept in the hub's store), a per-device health
// state, and a webhook notifier. Only the hub imports it; it imports no
// agent, hal or periph package.
//
// # Rules
//
// A Rule is a threshold ("temperature_celsius > 80 for 2m, resolve below
// 75"), an absence ("no sample from a device for 5m", the deadman alert),
// a trend ("filesystem_used_ratio projected past 0.9 within 72h by a line
// fitted over 6h": robust Theil–Sen slope, Mann–Kendall significance, a
// steadiness check, hysteresis on the projected time) or a rate ("the
// change of temperature_celsius over 10m > 5"), with selectors on series labels (Match) and on device labels
// (Devices), a severity and a one-line suggestion whose placeholders
// ({device_name}, {value_pct}, {label:mount}, …) are filled in by plain
// substitution: rules are data, nothing in them is evaluated. DecodeRule
// reads a rule strictly from JSON; Rule.Validate names the wrong field.
// DefaultRules, stored on a hub's first start, explain their numbers.
//
// # Evaluation
//
// Engine.Evaluate runs one pass (Engine.Run every Interval) over the
// registry's accepted devices and the metrics store's latest values (and,
// for trend and rate rules, a window of each series read with
// Config.Range, at most once per 1/120 of the window); see
// Evaluate for the exact semantics of For, hysteresis, stale samples and
// the absence grace period after a start. An alert is identified by rule,
// device and series labels. Fired and resolved alerts are written with
// synced transactions before their Event reaches Config.OnEvent, so a hub
// restart keeps active alerts and does not fire them again.
//
// # Device state
//
// DeviceState combines the registry status with the active alerts:
// online, degraded (online with a firing alert), offline, or unknown
// (pending, rejected, revoked, never seen).
//
// # Notifications
//
// A Webhook posts each Event as JSON to a URL from a bounded queue, with
// retries and exponential backoff on network errors and 5xx answers.
package health
