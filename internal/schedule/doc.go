// Package schedule computes when jobs fire: triggers (cron, interval, once,
// sunrise/sunset), their validation, the next fire time under a defined DST
// rule, previews and missed runs. It is pure computation on time values (no
// clock, no goroutines, no I/O except loading time zones) and is imported by
// both the hub's scheduler and the agent's on-device schedules, so both
// compute the same instants. It depends on the standard library and on
// github.com/robfig/cron/v3, used only to parse cron fields.
//
// This comment is the reference for the rules; user documentation links
// here.
//
// # Triggers
//
// A Trigger sets exactly one of:
//
//   - cron: five fields "minute hour day-of-month month day-of-week", or six
//     with a leading seconds field, or @yearly (= @annually, "0 0 1 1 *"),
//     @monthly ("0 0 1 * *"), @weekly ("0 0 * * 0"), @daily (= @midnight,
//     "0 0 * * *"), @hourly ("0 * * * *"). A field is *, ?, a number, a
//     range a-b, a step */n or a-b/n, or a comma list of these. Months may
//     be jan–dec and weekdays sun–sat; Sunday is 0 (7 is not accepted).
//     Day-of-month and day-of-week combine as in Vixie cron (cronie, the
//     crontab(5) of Linux): if either field starts with * (or ?) a day must
//     match both; if both are restricted a day matching either runs
//     ("0 0 13 * 5" runs on every 13th and every Friday; "0 0 */2 * 1" on
//     Mondays with an odd date). @every and TZ= prefixes are refused: use an
//     interval trigger and the zone field.
//   - every: an interval of whole seconds from 1s to 31 days. It fires at
//     anchor + k·every, k = 0, 1, 2, …, in absolute time: DST does not
//     affect it (a "24h" interval drifts by an hour against the wall clock
//     when clocks change; use cron for "every day at 06:30"). Without an
//     anchor the Unix epoch is the anchor, so "15m" fires at :00, :15, :30
//     and :45 UTC (in zones with a half-hour offset, :15 and :45 local too).
//   - at: once, at an instant. An instant already past is valid but never
//     fires (Next returns false); Schedule.CheckFires tells the API to refuse
//     it when it is stored.
//   - sun: sunrise or sunset plus an offset of at most ±12 hours, at the
//     Location given to Compile (the household's latitude and longitude).
//
// Cron and sun triggers are calendar triggers: they need Zone, an IANA
// time zone name ("Europe/Berlin", "UTC"). "Local" is refused (it means a
// different zone on every machine); an unknown name is an error that names
// it. Interval and once triggers take an optional zone used only to show
// wall times in Preview.
//
// Fire times are whole seconds (interval and once keep the nanoseconds of
// their anchor or instant), from 1970 through 9999: Next treats an instant
// before 1970 as just before 1970 and returns false past 9999.
//
// # DST rule
//
// A cron expression names wall-clock times in its zone. Each named wall
// time w runs at most once, at the first instant at which the zone's clock
// reads w or later. Hence:
//
//   - A wall time that exists once runs then.
//   - A wall time in the spring-forward gap (it does not exist) runs once, at
//     the first valid instant after it, which is the moment the clocks jump:
//     "30 2 * * *" in Europe/Berlin on 2026-03-29 runs at 03:00 CEST;
//     "15 2 * * *" in Australia/Lord_Howe (a 30-minute shift) runs at 02:30;
//     "@daily" in America/Santiago, which skips midnight, runs at 01:00.
//   - Several named wall times in the same gap collapse into that one
//     instant: "*/15 * * * *" runs once at 03:00 CEST for 02:00, 02:15,
//     02:30, 02:45 and 03:00, then at 03:15. Skipped times are never dropped
//     and never run twice. "0 * * * *" fires 23 times on that day.
//   - A wall time in the fall-back repeat (it occurs twice) runs once, at its
//     first occurrence, in the earlier offset. Sub-hourly and hourly
//     expressions are no exception: "0 * * * *" in Europe/Berlin on
//     2026-10-25 runs at 02:00 CEST and not at 02:00 CET, next at 03:00 CET
//     (two hours later); "*/15 * * * *" runs 02:00–02:45 CEST, then nothing
//     during the second pass (02:00–02:59 CET), then 03:00 CET. A job that
//     must run at a steady pace through DST changes is an interval trigger.
//   - The rule is the same in every zone and for the seconds field; zones
//     without DST (UTC) are unaffected.
//
// Sun events are instants; DST only decides which calendar day is "today"
// and how Preview shows the time.
//
// # Sunrise and sunset
//
// The event is computed with NOAA's solar calculator equations (see
// sun.go): sunrise and sunset are when the sun's centre is 0.833° below
// the horizon (refraction and the sun's radius), at sea level; the result
// agrees with published tables within about a minute below 72° of
// latitude. Each calendar day of the zone has at most one sunrise and one
// sunset (around its solar noon). A day on which the sun does not cross the
// horizon (polar night, midnight sun) has no event: the trigger fires on
// the next day that has one (Tromsø's first sunrise after the polar night,
// in mid-January). When no day within 400 days has one, Next returns false.
//
// # Next, Preview, Missed
//
// Schedule.Next(after) returns the first fire strictly after after, or
// false when there is none. Successive calls Next(Next(t)) give strictly
// increasing instants, each fire exactly once.
//
// Schedule.Preview(after, n) returns the next n fires (at most MaxPreview)
// with the instant, the wall time in the zone and a note for the fires the
// DST rule moved ("moved from 02:30: it does not exist on 2026-03-29
// (clocks go forward from 02:00 to 03:00)"), collapsed ("runs once for 03:00
// and for 02:00, 02:15, 02:30 and 02:45, which do not exist …") or kept
// single ("first of two 02:30s on 2026-10-25 (clocks go back from 03:00 to
// 02:00): runs only at the first"), and for sun events after days without
// one.
//
// Schedule.Missed(from, to, limit) returns the fires in (from, to], at most
// limit, and whether there were more: what a runner that was down between
// from and to missed, for its run_once and run_all policies.
//
// # Validation
//
// Trigger.Validate and Compile return an error that says what is wrong and
// where, never panic: a malformed cron field is named with its value
// (`cron "61 * * * *": minute field "61": end of range (61) above maximum
// (59): 61`); an expression that can never fire says why (`never fires:
// February has no 30th`, `never fires: none of April, June has a 31st`);
// intervals, offsets, zones and the choice of kind are checked. Decoding a
// Trigger from JSON refuses unknown fields.
//
// # Jitter
//
// Jitter(jobID, max) is a delay in [0, max) that depends only on the job's
// ID (FNV-1a, 64 bits, modulo max): the runner adds it to each fire so that
// many jobs on the same expression do not all start in the same second,
// while each job keeps the same delay across restarts and machines.
//
// # Time zone data
//
// Zones come from time.LoadLocation: the system's /usr/share/zoneinfo, or
// the copy embedded by importing time/tzdata (about 450 KB) when the system
// has none. The two binaries should not compute different instants for the
// same trigger, so a device image without zoneinfo needs the embedded copy.
package schedule
