// Package hubd is the hub's composition root: it builds every part of the
// hub and runs them until its context ends. It only wires: each part is a
// package of its own (hub/registry, hub/metrics, hub/broker, hub/ingest,
// hub/api…).
//
// Run is build, then run. build (build.go) makes the parts in dependency
// order, one step per concern: state (store, hub ID, admin token,
// integrations, registry), identity (CA, server certificates), listeners,
// the broker side (embedded or external, brokerside.go), the hub's bus
// connection, configurations, metrics, commands, Home Assistant, ingest, health, the API
// and mDNS. Every step that can fail does so before any goroutine starts,
// and what was acquired is released. run (serve.go) starts every part in
// one errgroup and returns once all have stopped: the HTTP server first
// (event streams end with it), then the hub's connection says goodbye,
// then the embedded broker stops; close then closes the store.
//
// It is the only package that imports every hub component (checked by
// internal/archtest). The alicia-hub main package parses flags into a
// Config and calls Run; end-to-end tests run a Hub in-process the same
// way.
package hubd
