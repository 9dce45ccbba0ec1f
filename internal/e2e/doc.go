// Package e2e holds Alicia's end-to-end tests: the hub and agents run
// together in one process, and the built binaries run as real processes on
// loopback ports and against a real Mosquitto.
//
// It contains no code but tests. As a test-only package it is exempt from the
// import directions that deps_test.go enforces on the binaries, since it
// must import both sides.
package e2e
