// Package clocksync says whether this machine's clock can be trusted for
// calendar work (a job at 06:30), so that a device with no real-time
// clock, which boots in 1970 or at the time it last shut down, fires
// nothing until its clock is set.
//
// The clock is trusted when the kernel says it is synchronised (the NTP
// discipline has cleared STA_UNSYNC: chrony, ntpd and systemd-timesyncd
// all do this once synchronised), or when systemd-timesyncd has marked it
// synchronised (/run/systemd/timesync/synchronized). A machine whose
// clock is kept by other means (a real-time clock, no NTP) can be told to
// trust it (Policy Trust). An agent may also trust its clock when it agrees
// with its hub's (see Agrees).
package clocksync
