// Package agentd is the agent's composition root: it loads or creates the
// device identity, enrols with the hub once, learns the broker address from
// the hub, and keeps the device visible on the bus (retained registration
// and status, Last Will, heartbeats, a clean "offline" on stop).
//
// The alicia-agent main package parses flags into a Config and calls Run;
// end-to-end tests run an Agent in-process the same way. It never imports
// hub packages or the broker (deps_test.go enforces this).
package agentd
