// Package homeassistant makes the hub's devices appear in Home Assistant
// through HA's MQTT device-based discovery: one retained discovery config
// per accepted device, its availability tied to the registry's status, one
// retained state document with every value, and switches whose commands
// go through the hub's command service. Only the hub imports it; it
// publishes and receives through functions the hub gives it (Config) and
// starts no goroutines.
//
// # Topics
//
// The Bridge publishes, all with QoS 1 and retained:
//
//	<prefix>/device/alicia_<id>/config   the device's discovery config (JSON, below); empty = removed
//	alicia/v1/ha/<id>/availability       "online" or "offline" (the registry's status)
//	alicia/v1/ha/<id>/state              {"cpu":25,"memory":41.2,"gpio_relay":1,…}
//
// and handles (see Subscriptions):
//
//	<prefix>/status                      HA's birth message: "online" re-announces everything
//	alicia/v1/ha/<id>/<line>/set         "ON" or "OFF" from a switch: gpio.write through the command service
//
// <prefix> is HA's discovery prefix ("homeassistant"), <id> the device ID
// and <line> the line's alias, or its name when it has none.
//
// Text a person reads in HA (the device's name, model, area, version and
// entity names, which hold mount points and interface names from the
// device) goes through protocol.SafeText: a control or bidirectional
// character becomes U+FFFD. The JSON escapes <, > and &.
//
// # Entities
//
// Each device's config lists its components (cmps), keyed by a stable
// entity key that is also the key of its value in the state document and
// the end of its unique_id ("alicia_<id>_<key>"):
//
//	cpu                  sensor, %     cpu_usage_ratio{cpu="total"} × 100         diagnostic
//	memory               sensor, %     memory_used_ratio × 100                    diagnostic
//	fs_<mount>           sensor, %     filesystem_used_ratio{mount} × 100         diagnostic ("/" is fs_root)
//	temp_<sensor>        sensor, °C    temperature_celsius{sensor}                diagnostic
//	load1                sensor        load1                                      diagnostic
//	uptime               sensor, s     system_uptime_seconds                      diagnostic
//	net_<iface>_rx|_tx   sensor, B     network_{receive,transmit}_bytes_total     diagnostic, total_increasing
//	gpio_<line>          switch        gpio_level{line} of an output line (0/1 → OFF/ON)
//	gpio_<line>          binary_sensor gpio_level{line} of an input line
//	sensor_<name>_temperature  °C      sensor_temperature_celsius{sensor}         ds18b20, bme280, bmp280
//	sensor_<name>_pressure     hPa     sensor_pressure_pascals{sensor} / 100      bme280, bmp280
//	sensor_<name>_humidity     %       sensor_humidity_ratio{sensor} × 100        bme280
//	custom_<metric>[_<label value>…]   a custom metric with the label ha="sensor" (alicia-agent push --ha-sensor):
//	                   sensor          unit from the name's suffix (_celsius °C, _ratio % × 100, _bytes B,
//	                                   _seconds s, _volts, _amperes, _watts, _hertz, _meters, _pascals);
//	                                   total_increasing when the name ends in _total
//
// Host and custom entities appear once the device has sent the metric; hardware
// entities come from the device's registered hardware. Characters outside
// [A-Za-z0-9_-] in keys become "_"; keys that would then collide get a
// short hash of their source. A value the hub has not seen yet is left out
// of the state document, and the templates turn a missing key into
// "unknown" in HA.
//
// # Concurrency
//
// A Bridge is safe for concurrent use. Its calls are serialized: Publish,
// Devices and Latest are called with the bridge's lock held, so that each
// device's messages go out in order (a removal is never overtaken by an
// announcement), and each publication is bounded to a few seconds.
// Command is called without the lock: HandleMessage blocks while the
// device executes the command, other calls do not wait for it.
//
// MetricsUpdated publishes at most one state per device and StateInterval;
// an update within the interval is not deferred but dropped, and the next
// update after it carries its values (agents send metrics periodically).
// A state identical to the last one published is not published again,
// except when HA comes online.
package homeassistant
