// Package sim is a simulated hal.Board: GPIO lines with a relay and a push
// button on them, a BME280 on I2C, a DS18B20 on 1-wire and a loopback SPI
// port. The sensors answer their real bus protocols, so periph's own
// drivers (devices/v3/bmxx80, devices/v3/ds18b20) read the values a test
// sets. It backs tests and the agent's --hal sim; anything may import it.
package sim
