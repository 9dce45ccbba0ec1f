// Package hal is the hardware abstraction of the agent: named access to GPIO
// lines, I2C buses, SPI ports and 1-wire buses in periph.io's own types,
// through the Board interface.
//
// Backends: hal/periph drives the real board (GPIO through the character
// device, I2C and SPI through /dev, 1-wire through the kernel's w1 driver);
// hal/sim simulates a board with a few devices on it, for tests and
// --hal sim. hal/haltest is the conformance suite both must pass.
//
// Only the agent may import it; the hub never does (deps_test.go enforces
// this).
package hal
