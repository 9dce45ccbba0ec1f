package sample

import (
	"context"
	"errors"
	"fmt"

	"github.com/shirou/gopsutil/v4/sensors"
)

// thermalCollector reports temperatures. gopsutil reads the hwmon
// temp*_input files under SysRoot/class/hwmon and, only when there are none,
// the thermal zones under SysRoot/class/thermal (older Raspberry Pi
// kernels). A sensor is named after its hwmon chip and label
// ("coretemp_core_0") or its thermal zone type ("cpu_thermal").
type thermalCollector struct {
	class string // SysRoot/class, for messages
}

var _ collector = thermalCollector{}

func (c thermalCollector) collect(ctx context.Context, b *batch) error {
	temps, err := sensors.TemperaturesWithContext(ctx)
	// gopsutil's Warnings.Error only counts the failed readings; name them.
	if w := (*sensors.Warnings)(nil); errors.As(err, &w) {
		err = errors.Join(w.List...)
	}
	if len(temps) == 0 {
		if err != nil {
			return err
		}
		return skipf("no temperature sensors (no hwmon temp*_input and no thermal zones under %s)", c.class)
	}
	if err != nil {
		b.problem(err)
	}
	// Chips without labels repeat a name (two "acpitz" inputs); number
	// the repeats in reading order.
	seen := make(map[string]int, len(temps))
	for _, t := range temps {
		name := t.SensorKey
		seen[name]++
		if n := seen[name]; n > 1 {
			name = fmt.Sprintf("%s_%d", name, n)
		}
		b.add("temperature_celsius", t.Temperature, "sensor", name)
	}
	return nil
}
