// Package sensor reads the sensors the agent samples — a BME280 on I2C, a
// DS18B20 on 1-wire, a digital input — through periph's drivers and returns
// named values in SI units (temperature_celsius, pressure_pascals,
// humidity_ratio). Functions take the narrow periph bus type they need, not
// a hal.Board, and hold no state between calls. Anything may import it.
package sensor
