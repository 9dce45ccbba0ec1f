// Package hubd is the hub's composition root: it opens the store, the
// registry and the tokens, starts the embedded broker (or connects to an
// external one), the hub's own bus connection and the REST API, and runs
// them until its context ends.
//
// It is the only package that imports every hub component. The alicia-hub
// main package parses flags into a Config and calls Run; end-to-end tests
// run a Hub in-process the same way.
package hubd
