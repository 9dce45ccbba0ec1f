// Package hal is the hardware abstraction of the agent: named access to GPIO
// lines, I2C buses, SPI ports and 1-wire buses in periph.io's own types.
//
// Only the agent may import it; the hub never does (deps_test.go enforces
// this). The Board interface and its periph and sim backends arrive with the
// hardware issue; until then the agent runs with --hal none.
package hal
