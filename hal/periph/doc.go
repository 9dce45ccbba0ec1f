// Package periph is the real hal.Board of a Linux single-board computer,
// built on periph.io: GPIO through the character device (/dev/gpiochipN,
// periph's gpioioctl), I2C through /dev/i2c-N, SPI through /dev/spidevB.C
// and 1-wire through the kernel's w1 bus masters over the w1 netlink
// connector (periph's host/v3/netlink). Only the agent's composition root
// imports it.
//
// What exists is detected from /dev, /sys/bus/w1 and the device tree's
// model; the root of those trees is configurable so tests use fixtures.
// A missing node is hal.ErrNotPresent; a node the process may not open is a
// *hal.PermissionError naming the group (gpio, i2c, spi) that grants it.
package periph
