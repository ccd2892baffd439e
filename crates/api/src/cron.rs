//! The cron expressions of `spec.renewal.windows`, read as cert-manager reads them (Go's
//! robfig/cron with its standard five fields and descriptors) and evaluated in an IANA
//! time zone.
//!
//! Written here rather than taken from a crate: the Rust cron crates are built on chrono,
//! while certwright already has jiff (through k8s-openapi) for time zones, and the rules
//! to match are robfig's, not another dialect's (`?` as `*`, day-of-week 0-6 only, the
//! day-of-month/day-of-week OR rule, no seconds field).

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// A parsed five-field schedule in a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    minutes: u64,
    hours: u32,
    days_of_month: u32,
    months: u16,
    days_of_week: u8,
    /// Day of month or day of week written as `*` / `?`: then both must match; otherwise
    /// either one does (robfig's rule, from Vixie cron).
    dom_star: bool,
    dow_star: bool,
    tz: TimeZone,
}

impl PartialEq for Schedule {
    fn eq(&self, o: &Self) -> bool {
        (
            self.minutes,
            self.hours,
            self.days_of_month,
            self.months,
            self.days_of_week,
            self.dom_star,
            self.dow_star,
        ) == (
            o.minutes,
            o.hours,
            o.days_of_month,
            o.months,
            o.days_of_week,
            o.dom_star,
            o.dow_star,
        ) && self.tz.iana_name() == o.tz.iana_name()
    }
}

impl Eq for Schedule {}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// How far the searches look (the windows of a certificate's lifetime are searched; a
/// schedule that matches nothing in this span, such as 31 February, never matches).
const SEARCH_DAYS: i32 = 5 * 366;

/// Why an expression or a time zone cannot be used. `unsupported` marks expressions
/// cert-manager accepts that certwright does not evaluate (`@every`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronError {
    pub message: String,
    pub unsupported: bool,
}

fn err(message: impl Into<String>) -> CronError {
    CronError {
        message: message.into(),
        unsupported: false,
    }
}

/// Looks up an IANA time zone (empty: UTC).
pub fn time_zone(name: &str) -> Result<TimeZone, String> {
    if name.is_empty() || name == "UTC" {
        return Ok(TimeZone::UTC);
    }
    TimeZone::get(name).map_err(|e| format!("{name:?} is not an IANA time zone: {e}"))
}

/// One field: a bit set of the allowed values, and whether it was `*` / `?`.
fn field(text: &str, min: u32, max: u32, names: &[&str]) -> Result<(u64, bool), CronError> {
    let mut bits = 0u64;
    let mut star = false;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let s: u32 = s
                    .parse()
                    .map_err(|_| err(format!("step {s:?} is not a number")))?;
                if s == 0 {
                    return Err(err(format!("step of zero in {part:?}")));
                }
                (r, Some(s))
            }
            None => (part, None),
        };
        let value = |v: &str| -> Result<u32, CronError> {
            if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(v)) {
                return Ok(i as u32 + if names.len() == 12 { 1 } else { 0 });
            }
            v.parse::<u32>()
                .map_err(|_| err(format!("{v:?} is not a number or a name")))
        };
        let (start, end) = if range == "*" || range == "?" {
            star = step.is_none_or(|s| s == 1);
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let v = value(range)?;
            // `5/15` runs from 5 to the end, as in robfig.
            (v, if step.is_some() { max } else { v })
        };
        if start < min || end > max {
            return Err(err(format!("{part:?} is out of range {min}-{max}")));
        }
        if start > end {
            return Err(err(format!("{part:?}: the range ends before it starts")));
        }
        let step = step.unwrap_or(1);
        let mut v = start;
        while v <= end {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, star))
}

impl Schedule {
    /// Parses `expr` (five fields, or `@yearly`, `@annually`, `@monthly`, `@weekly`,
    /// `@daily`, `@midnight`, `@hourly`) in time zone `tz` (IANA name, empty for UTC).
    pub fn parse(expr: &str, tz: &str) -> Result<Schedule, CronError> {
        let tz = time_zone(tz).map_err(err)?;
        let expr = expr.trim();
        let expanded = match expr {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            e if e.starts_with("@every") => {
                return Err(CronError {
                    message: "@every schedules are not supported by certwright; write the window's start as five cron fields".into(),
                    unsupported: true,
                })
            }
            e if e.starts_with('@') => return Err(err(format!("unknown descriptor {e:?}"))),
            e => e,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [mi, h, dom, mo, dow] = fields[..] else {
            return Err(err(format!(
                "{expr:?} has {} fields; five are expected (minute hour day-of-month month day-of-week)",
                fields.len()
            )));
        };
        let (minutes, _) = field(mi, 0, 59, &[])?;
        let (hours, _) = field(h, 0, 23, &[])?;
        let (days_of_month, dom_star) = field(dom, 1, 31, &[])?;
        let (months, _) = field(mo, 1, 12, &MONTHS)?;
        let (days_of_week, dow_star) = field(dow, 0, 6, &DAYS)?;
        Ok(Schedule {
            minutes,
            hours: hours as u32,
            days_of_month: days_of_month as u32,
            months: months as u16,
            days_of_week: days_of_week as u8,
            dom_star,
            dow_star,
            tz,
        })
    }

    fn day_matches(&self, d: Date) -> bool {
        if self.months & (1 << d.month()) == 0 {
            return false;
        }
        let dom = self.days_of_month & (1 << d.day()) != 0;
        let dow = self.days_of_week & (1 << d.weekday().to_sunday_zero_offset()) != 0;
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The start times of one local day, in order, as Unix seconds.
    fn starts_on(&self, d: Date) -> impl DoubleEndedIterator<Item = i64> + '_ {
        let matches = self.day_matches(d);
        (0..24i8)
            .filter(move |h| matches && self.hours & (1 << h) != 0)
            .flat_map(move |h| {
                (0..60i8)
                    .filter(|m| self.minutes & (1 << m) != 0)
                    .map(move |m| (h, m))
            })
            .filter_map(move |(h, m)| {
                let dt = DateTime::new(d.year(), d.month(), d.day(), h, m, 0, 0).ok()?;
                Some(
                    self.tz
                        .to_ambiguous_zoned(dt)
                        .compatible()
                        .ok()?
                        .timestamp()
                        .as_second(),
                )
            })
    }

    fn local_date(&self, unix: i64) -> Option<Date> {
        let ts = Timestamp::from_second(unix).ok()?;
        Some(ts.to_zoned(self.tz.clone()).date())
    }

    /// The first start at or after `t` (Unix seconds), if one comes within five years.
    pub fn next_at_or_after(&self, t: i64) -> Option<i64> {
        let mut d = self.local_date(t)?;
        for _ in 0..SEARCH_DAYS {
            if let Some(s) = self.starts_on(d).find(|s| *s >= t) {
                return Some(s);
            }
            d = d.tomorrow().ok()?;
        }
        None
    }

    /// The last start at or before `t` and not before `min`.
    pub fn last_at_or_before(&self, t: i64, min: i64) -> Option<i64> {
        let mut d = self.local_date(t)?;
        let first = self.local_date(min)?;
        while d >= first {
            if let Some(s) = self.starts_on(d).rev().find(|s| *s <= t) {
                return (s >= min).then_some(s);
            }
            d = d.yesterday().ok()?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        s.parse::<Timestamp>().expect("timestamp").as_second()
    }

    #[test]
    fn robfigs_syntax() {
        let s = Schedule::parse("30 2 * * mon-fri", "").expect("parses");
        // Friday 2026-11-27 02:30 UTC, then Monday 2026-11-30.
        assert_eq!(
            s.next_at_or_after(at("2026-11-27T00:00:00Z")),
            Some(at("2026-11-27T02:30:00Z"))
        );
        assert_eq!(
            s.next_at_or_after(at("2026-11-27T02:31:00Z")),
            Some(at("2026-11-30T02:30:00Z"))
        );
        assert_eq!(
            s.last_at_or_before(at("2026-11-29T12:00:00Z"), at("2026-11-01T00:00:00Z")),
            Some(at("2026-11-27T02:30:00Z"))
        );
        assert_eq!(
            s.last_at_or_before(at("2026-11-29T12:00:00Z"), at("2026-11-28T00:00:00Z")),
            None
        );
        // Steps, lists, names, descriptors, `?`.
        let s = Schedule::parse("*/15 9,17 ? JAN *", "").expect("parses");
        assert_eq!(
            s.next_at_or_after(at("2026-12-01T00:00:00Z")),
            Some(at("2027-01-01T09:00:00Z"))
        );
        assert_eq!(
            s.next_at_or_after(at("2027-01-01T09:01:00Z")),
            Some(at("2027-01-01T09:15:00Z"))
        );
        let s = Schedule::parse("@weekly", "").expect("parses");
        assert_eq!(
            s.next_at_or_after(at("2026-11-27T00:00:00Z")),
            Some(at("2026-11-29T00:00:00Z"))
        );
        // Day of month OR day of week when both are restricted.
        let s = Schedule::parse("0 0 1 * 3", "").expect("parses");
        assert_eq!(
            s.next_at_or_after(at("2026-11-27T00:00:00Z")),
            Some(at("2026-12-01T00:00:00Z"))
        );
        assert_eq!(
            s.next_at_or_after(at("2026-12-01T00:01:00Z")),
            Some(at("2026-12-02T00:00:00Z"))
        );
    }

    #[test]
    fn time_zones_move_the_start() {
        let s = Schedule::parse("0 9 * * *", "Europe/Amsterdam").expect("parses");
        // 09:00 in Amsterdam is 08:00 UTC in winter.
        assert_eq!(
            s.next_at_or_after(at("2026-11-29T00:00:00Z")),
            Some(at("2026-11-29T08:00:00Z"))
        );
        assert!(Schedule::parse("0 9 * * *", "Mars/Olympus").is_err());
    }

    #[test]
    fn bad_expressions_are_named() {
        for (expr, frag) in [
            ("0 0 * *", "has 4 fields"),
            ("60 0 * * *", "out of range"),
            ("0 0 * * 7", "out of range"),
            ("0 0 * * 5-1", "ends before it starts"),
            ("*/0 * * * *", "step of zero"),
            ("0 0 * foo *", "not a number or a name"),
            ("@fortnightly", "unknown descriptor"),
        ] {
            let e = Schedule::parse(expr, "").expect_err(expr);
            assert!(e.message.contains(frag) && !e.unsupported, "{expr}: {e:?}");
        }
        assert!(
            Schedule::parse("@every 1h", "")
                .expect_err("every")
                .unsupported
        );
    }
}
