package schedule

import (
	"math"
	"time"
)

// The solar calculation follows NOAA's Solar Calculator (the spreadsheet
// "NOAA_Solar_Calculations_day.xls" of the Global Monitoring Laboratory,
// after Jean Meeus, Astronomical Algorithms): the sun's declination and the
// equation of time from the Julian century, then the hour angle at which
// the sun's centre is 0.833° below the horizon (refraction plus the sun's
// radius), seen from sea level. Its stated accuracy is about a minute for
// latitudes within ±72°, a few minutes nearer the poles, where the sun
// crosses the horizon at a grazing angle.

const degree = math.Pi / 180

// horizonAngle is the zenith angle of sunrise and sunset: 90° plus 0.833°.
const horizonAngle = 90.833 * degree

// julianDay returns the Julian day of an instant.
func julianDay(t time.Time) float64 {
	return float64(t.Unix())/86400 + float64(t.Nanosecond())/86400e9 + 2440587.5
}

// solar returns the sun's declination (radians) and the equation of time
// (minutes) at an instant.
func solar(t time.Time) (decl, eqTime float64) {
	T := (julianDay(t) - 2451545) / 36525 // Julian centuries since J2000.0
	L0 := math.Mod(280.46646+T*(36000.76983+T*0.0003032), 360) * degree
	M := (357.52911 + T*(35999.05029-0.0001537*T)) * degree
	e := 0.016708634 - T*(0.000042037+0.0000001267*T)
	C := (math.Sin(M)*(1.914602-T*(0.004817+0.000014*T)) +
		math.Sin(2*M)*(0.019993-0.000101*T) +
		math.Sin(3*M)*0.000289) * degree
	omega := (125.04 - 1934.136*T) * degree
	lambda := L0 + C - (0.00569+0.00478*math.Sin(omega))*degree // apparent longitude
	eps0 := 23 + (26+(21.448-T*(46.815+T*(0.00059-T*0.001813)))/60)/60
	eps := (eps0 + 0.00256*math.Cos(omega)) * degree // corrected obliquity
	decl = math.Asin(math.Sin(eps) * math.Sin(lambda))
	y := math.Tan(eps/2) * math.Tan(eps/2)
	eqTime = 4 / degree * (y*math.Sin(2*L0) - 2*e*math.Sin(M) + 4*e*y*math.Sin(M)*math.Cos(2*L0) -
		0.5*y*y*math.Sin(4*L0) - 1.25*e*e*math.Sin(2*M))
	return decl, eqTime
}

// minutes converts a float number of minutes to a Duration.
func minutes(m float64) time.Duration {
	return time.Duration(m * float64(time.Minute))
}

// solarNoon returns the solar noon nearest to near at longitude lon
// (degrees, east positive).
func solarNoon(near time.Time, lon float64) time.Time {
	noon := near
	for range 2 {
		_, eq := solar(noon)
		midnight := time.Date(near.UTC().Year(), near.UTC().Month(), near.UTC().Day(), 0, 0, 0, 0, time.UTC)
		noon = midnight.Add(minutes(720 - 4*lon - eq))
		// The formula gives the noon of near's UTC date; pick the one
		// nearest to near (the local date can differ from the UTC date).
		for d := noon.Sub(near); d > 12*time.Hour; d = noon.Sub(near) {
			noon = noon.Add(-24 * time.Hour)
		}
		for d := near.Sub(noon); d > 12*time.Hour; d = near.Sub(noon) {
			noon = noon.Add(24 * time.Hour)
		}
	}
	return noon
}

// sunEvent returns the sunrise (rise) or sunset around the solar noon
// nearest to near, at lat/lon in degrees; false when the sun does not
// cross the horizon that day (polar day or polar night).
func sunEvent(near time.Time, lat, lon float64, rise bool) (time.Time, bool) {
	noon := solarNoon(near, lon)
	sign := 1.0
	if rise {
		sign = -1
	}
	phi := lat * degree
	ev := noon
	// The declination is taken at the event itself: start from noon and
	// iterate (it changes up to 0.4° a day, which moves the event by
	// minutes at high latitudes).
	for range 3 {
		decl, _ := solar(ev)
		den := math.Cos(phi) * math.Cos(decl)
		if math.Abs(den) < 1e-12 {
			return time.Time{}, false
		}
		cosH := math.Cos(horizonAngle)/den - math.Tan(phi)*math.Tan(decl)
		if math.IsNaN(cosH) || cosH < -1 || cosH > 1 {
			return time.Time{}, false
		}
		h := math.Acos(cosH) / degree
		ev = noon.Add(minutes(sign * 4 * h))
	}
	return ev.Truncate(time.Second), true
}
