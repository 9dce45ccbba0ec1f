// Package placement is the hub's scheduler of services: a pure function,
// Place, that decides on which devices a service's instances run, and
// explains why for every device. It does no I/O and keeps no state; the
// orchestrator (not wired yet) gives it the service's Spec, the devices
// (from the registry and their telemetry) and the instances that exist,
// and carries out the Plan. Only the hub's orchestrator and REST API are
// meant to import it; it imports the standard library and
// internal/protocol only.
//
// # The rules
//
// A device fits a spec when it has every label of the selector with the
// same value, its architecture is in the spec's list (if any), it has every
// required capability (Capabilities names them from a device's
// protocol.Hardware: "gpio", "pwm", "i2c", "spi", "onewire"), it carries
// the spread label (if the spec spreads), and its free memory (from
// telemetry) is at least the spec's minimum. A new instance is started
// only on a device that fits and is online.
//
// Existing instances are kept as they are (no churn): an instance whose
// device still fits the spec's labels, architecture and capabilities stays
// where it is, even if the spread is uneven or the device's free memory
// has dropped since (its own instance uses that memory). Free memory is a
// condition of new placements only. An instance is stopped when its device
// is unknown or no longer fits, when it shares a device with an older
// instance of the service and AllowColocate is off, or when there are more
// instances than Count (lost ones first, then offline ones, then those in
// the most crowded spread value, then the newest).
//
// A device offline for LostAfter or longer is lost. An instance on a lost
// device is moved when the spec is movable: it is stopped and a new one
// starts on another device (Start.Replaces names it); if no device can
// take it, it waits. A pinned spec's instance on a lost device waits for
// its device and keeps its place in the count. An offline device that is
// not lost yet keeps its instances.
//
// New instances (to reach Count, or replacing moved ones) are placed one
// at a time on the fitting, online device that comes first by: fewest
// instances in its spread value, then fewest instances of the service on
// it, then most free memory, then device ID. Unless AllowColocate is on, a
// device runs at most one instance of a service; when it is on, every
// instance placed on a device takes MinFreeMemory from its free memory for
// the next choice, so capacity bounds colocation.
//
// Every device gets an Explanation: the instance it runs or was chosen
// for, or each reason it was not chosen. When Count cannot be met the
// Plan's Reason says how many were placed and why no more could be.
package placement
