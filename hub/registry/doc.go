// Package registry is the hub's device registry: every enrolled device with
// its identity, name, labels, hardware facts, first and last seen times and
// availability status, persisted in the hub's store.
//
// It derives a device's status from the agent's messages: the retained
// status (birth and Last Will), the retained registration and periodic
// heartbeats, with a grace period after a hub restart so that healthy
// devices are not marked offline. Only hub packages may import it.
package registry
