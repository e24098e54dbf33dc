//! Cron expression syntax and matching on civil (wall-clock) date-times.
//!
//! This module knows nothing about time zones: it parses an expression and finds the next
//! wall-clock second that matches. Mapping wall-clock times to instants (and the DST rules
//! that come with it) lives in [`super::schedule`].
//!
//! # Syntax
//! - Five fields `minute hour day-of-month month day-of-week`, or six with a leading `second`
//!   field (so tests and demos can fire every few seconds). With five fields the second is 0.
//! - Each field is a comma-separated list of `*`, `N`, `A-B`, `*/S`, `A-B/S` or `N/S` (from N
//!   to the field's maximum in steps of S). Ranges never wrap around (`22-2` is an error).
//! - Months accept `JAN`–`DEC`, weekdays `SUN`–`SAT` (case-insensitive). Weekday `0` and `7`
//!   are both Sunday, so `MON-SUN` and `1-7` mean every day.
//! - `?` is accepted as a synonym of `*` in the two day fields (Quartz habit).
//! - Macros: `@hourly`, `@daily`, `@midnight`, `@weekly`, `@monthly`, `@yearly`,
//!   `@annually`.
//! - Day rule (Vixie cron): when both day-of-month and day-of-week are restricted, a day
//!   matching *either* fires. A field counts as unrestricted when it starts with `*` or is
//!   `?` — exactly as in Vixie cron and cronie, so `*/2 * MON` means "odd days that are
//!   Mondays", while `1-31/2 * MON` means "odd days or Mondays".
//! - An expression that can never fire (such as `0 0 30 FEB *`) is rejected at parse time, so
//!   a schedule that parses always has a next fire time.
use std::fmt;
use std::str::FromStr;

use jiff::civil::{Date, DateTime};

/// Why an expression was rejected; the text is meant for users (it ends up in a status
/// condition), so every message names the field and what the field allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    #[error("cron expression is empty")]
    Empty,
    #[error(
        "cron expression {expr:?} has {got} fields; expected 5 (minute hour day-of-month month \
         day-of-week) or 6 (second minute hour day-of-month month day-of-week)"
    )]
    FieldCount { expr: String, got: usize },
    #[error(
        "unknown cron macro {0:?}; allowed: @hourly, @daily, @midnight, @weekly, @monthly, \
         @yearly, @annually"
    )]
    UnknownMacro(String),
    #[error("cron field {field:?}: {message}")]
    Field {
        field: &'static str,
        message: String,
    },
    #[error(
        "cron expression {expr:?} never fires: no selected month has the selected day of month"
    )]
    NeverFires { expr: String },
}

/// A set of small integers (< 64) as a bit mask; cron fields never exceed 0-59.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bits(u64);

impl Bits {
    fn has(self, v: u32) -> bool {
        v < 64 && self.0 & (1 << v) != 0
    }

    fn set(&mut self, v: u32) {
        self.0 |= 1 << v;
    }

    /// Smallest member ≥ `v`: lets the search jump over whole runs of non-matching values.
    fn next_ge(self, v: u32) -> Option<u32> {
        if v >= 64 {
            return None;
        }
        let rest = self.0 >> v;
        (rest != 0).then(|| v + rest.trailing_zeros())
    }
}

struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    /// Names for values `names_base..`, matched case-insensitively.
    names: &'static [&'static str],
    names_base: u32,
    allowed: &'static str,
    /// `?` is a `*` synonym in the day fields only.
    question_mark: bool,
}

const SECOND: FieldSpec = FieldSpec {
    name: "second",
    min: 0,
    max: 59,
    names: &[],
    names_base: 0,
    allowed: "0-59",
    question_mark: false,
};
const MINUTE: FieldSpec = FieldSpec {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
    names_base: 0,
    allowed: "0-59",
    question_mark: false,
};
const HOUR: FieldSpec = FieldSpec {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
    names_base: 0,
    allowed: "0-23",
    question_mark: false,
};
const DAY_OF_MONTH: FieldSpec = FieldSpec {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
    names_base: 0,
    allowed: "1-31 or ?",
    question_mark: true,
};
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
    names_base: 1,
    allowed: "1-12 or JAN-DEC",
    question_mark: false,
};
const DAY_OF_WEEK: FieldSpec = FieldSpec {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
    names_base: 0,
    allowed: "0-7 (0 and 7 are Sunday), SUN-SAT or ?",
    question_mark: true,
};

/// A parsed cron expression. Compare and print it freely; `Display` gives back the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronSchedule {
    source: String,
    seconds: Bits,
    minutes: Bits,
    hours: Bits,
    days_of_month: Bits,
    months: Bits,
    /// Sunday = 0.
    days_of_week: Bits,
    dom_unrestricted: bool,
    dow_unrestricted: bool,
}

/// How far the civil search looks ahead. The Gregorian calendar repeats every 400 years, so
/// a pattern that does not match within 400 years never matches.
const SEARCH_YEARS: i32 = 400;

impl CronSchedule {
    /// Parses a 5- or 6-field expression or a macro; see the module documentation.
    ///
    /// # Errors
    /// A [`CronError`] naming the offending field and what it allows, or saying that the
    /// expression can never fire.
    pub fn parse(expr: &str) -> Result<CronSchedule, CronError> {
        let source = expr.trim();
        if source.is_empty() {
            return Err(CronError::Empty);
        }
        let expanded = if source.starts_with('@') {
            match source.to_ascii_lowercase().as_str() {
                "@hourly" => "0 * * * *",
                "@daily" | "@midnight" => "0 0 * * *",
                "@weekly" => "0 0 * * 0",
                "@monthly" => "0 0 1 * *",
                "@yearly" | "@annually" => "0 0 1 1 *",
                _ => return Err(CronError::UnknownMacro(source.to_owned())),
            }
        } else {
            source
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let (seconds, rest) = match fields.len() {
            5 => (Bits(1), &fields[..]),
            6 => (parse_field(fields[0], &SECOND)?.0, &fields[1..]),
            got => {
                return Err(CronError::FieldCount {
                    expr: source.to_owned(),
                    got,
                });
            }
        };
        let (minutes, _) = parse_field(rest[0], &MINUTE)?;
        let (hours, _) = parse_field(rest[1], &HOUR)?;
        let (days_of_month, dom_unrestricted) = parse_field(rest[2], &DAY_OF_MONTH)?;
        let (months, _) = parse_field(rest[3], &MONTH)?;
        let (mut days_of_week, dow_unrestricted) = parse_field(rest[4], &DAY_OF_WEEK)?;
        if days_of_week.has(7) {
            days_of_week.0 &= !(1 << 7);
            days_of_week.set(0);
        }
        let schedule = CronSchedule {
            source: source.to_owned(),
            seconds,
            minutes,
            hours,
            days_of_month,
            months,
            days_of_week,
            dom_unrestricted,
            dow_unrestricted,
        };
        let probe = Date::constant(2000, 1, 1).at(0, 0, 0, 0);
        if schedule.next_civil_at_or_after(probe).is_none() {
            return Err(CronError::NeverFires {
                expr: source.to_owned(),
            });
        }
        Ok(schedule)
    }

    /// The expression as written (trimmed), for status and messages.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the wall-clock time matches every field (sub-second part ignored).
    #[must_use]
    pub fn matches(&self, dt: DateTime) -> bool {
        self.seconds.has(to_u32(dt.second()))
            && self.minutes.has(to_u32(dt.minute()))
            && self.hours.has(to_u32(dt.hour()))
            && self.months.has(to_u32(dt.month()))
            && self.day_matches(dt.date())
    }

    fn day_matches(&self, date: Date) -> bool {
        let dom = self.days_of_month.has(to_u32(date.day()));
        let dow = self
            .days_of_week
            .has(to_u32(date.weekday().to_sunday_zero_offset()));
        if self.dom_unrestricted || self.dow_unrestricted {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first matching wall-clock second at or after `start` (sub-second part of `start`
    /// rounds up), or `None` if there is none before year 9999 or within 400 years.
    ///
    /// Field-wise: a month, day, hour or minute that cannot match is skipped as a whole, so a
    /// yearly schedule costs a handful of steps, not a scan of every minute.
    #[must_use]
    pub fn next_civil_at_or_after(&self, start: DateTime) -> Option<DateTime> {
        let mut y = i32::from(start.year());
        let mut mo = to_u32(start.month());
        let mut d = to_u32(start.day());
        let mut h = to_u32(start.hour());
        let mut mi = to_u32(start.minute());
        let mut s = to_u32(start.second()) + u32::from(start.subsec_nanosecond() > 0);
        let limit = (y + SEARCH_YEARS).min(9999);
        loop {
            // Carries cascade: a second overflow can ripple up to the year in one pass.
            if s > 59 {
                s = 0;
                mi += 1;
            }
            if mi > 59 {
                mi = 0;
                h += 1;
            }
            if h > 23 {
                h = 0;
                d += 1;
            }
            if d > days_in_month(y, mo) {
                d = 1;
                mo += 1;
            }
            if mo > 12 {
                mo = 1;
                y += 1;
            }
            if y > limit {
                return None;
            }
            match self.months.next_ge(mo) {
                None => {
                    (y, mo, d, h, mi, s) = (y + 1, 1, 1, 0, 0, 0);
                    continue;
                }
                Some(m) if m != mo => {
                    (mo, d, h, mi, s) = (m, 1, 0, 0, 0);
                    continue;
                }
                Some(_) => {}
            }
            let date = Date::new(
                i16::try_from(y).ok()?,
                i8::try_from(mo).ok()?,
                i8::try_from(d).ok()?,
            )
            .ok()?;
            if !self.day_matches(date) {
                (d, h, mi, s) = (d + 1, 0, 0, 0);
                continue;
            }
            match self.hours.next_ge(h) {
                None => {
                    (d, h, mi, s) = (d + 1, 0, 0, 0);
                    continue;
                }
                Some(x) if x != h => (h, mi, s) = (x, 0, 0),
                Some(_) => {}
            }
            match self.minutes.next_ge(mi) {
                None => {
                    (h, mi, s) = (h + 1, 0, 0);
                    continue;
                }
                Some(x) if x != mi => (mi, s) = (x, 0),
                Some(_) => {}
            }
            match self.seconds.next_ge(s) {
                None => {
                    (mi, s) = (mi + 1, 0);
                    continue;
                }
                Some(x) => s = x,
            }
            return Some(date.at(
                i8::try_from(h).ok()?,
                i8::try_from(mi).ok()?,
                i8::try_from(s).ok()?,
                0,
            ));
        }
    }
}

impl FromStr for CronSchedule {
    type Err = CronError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CronSchedule::parse(s)
    }
}

impl fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn to_u32(v: i8) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

fn days_in_month(y: i32, mo: u32) -> u32 {
    match mo {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn field_error(spec: &FieldSpec, message: String) -> CronError {
    CronError::Field {
        field: spec.name,
        message,
    }
}

/// Returns the set and whether the field counts as unrestricted for the Vixie day rule.
fn parse_field(text: &str, spec: &FieldSpec) -> Result<(Bits, bool), CronError> {
    if spec.question_mark && text == "?" {
        let mut bits = Bits(0);
        for v in spec.min..=spec.max {
            bits.set(v);
        }
        return Ok((bits, true));
    }
    let mut bits = Bits(0);
    for part in text.split(',') {
        if part.is_empty() {
            return Err(field_error(
                spec,
                format!("empty element in list {text:?}; allowed: {}", spec.allowed),
            ));
        }
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => (range, Some(parse_step(step, spec)?)),
            None => (part, None),
        };
        let (lo, hi) = if range == "*" {
            (spec.min, spec.max)
        } else if let Some((a, b)) = range.split_once('-') {
            let lo = parse_value(a, spec)?;
            let mut hi = parse_value(b, spec)?;
            // `FRI-SUN` reads naturally; Sunday is also 7, so let it close a range.
            if spec.max == 7 && hi == 0 && lo > 0 {
                hi = 7;
            }
            if lo > hi {
                return Err(field_error(
                    spec,
                    format!(
                        "range {range:?} is reversed; ranges go from low to high and do not \
                         wrap around (split it, e.g. \"22-23,0-2\")"
                    ),
                ));
            }
            (lo, hi)
        } else {
            let v = parse_value(range, spec)?;
            if step.is_some() {
                (v, spec.max)
            } else {
                (v, v)
            }
        };
        let step = step.unwrap_or(1);
        let mut v = lo;
        while v <= hi {
            bits.set(v);
            v += step;
        }
    }
    let unrestricted = text.starts_with('*');
    Ok((bits, unrestricted))
}

fn parse_step(text: &str, spec: &FieldSpec) -> Result<u32, CronError> {
    match text.parse::<u32>() {
        Ok(0) => Err(field_error(
            spec,
            "step 0 is not allowed; a step must be at least 1".to_owned(),
        )),
        Ok(step) if text.bytes().all(|b| b.is_ascii_digit()) => Ok(step.min(64)),
        _ => Err(field_error(
            spec,
            format!("step {text:?} is not a positive whole number"),
        )),
    }
}

fn parse_value(text: &str, spec: &FieldSpec) -> Result<u32, CronError> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<u32>() {
            Ok(v) if (spec.min..=spec.max).contains(&v) => Ok(v),
            _ => Err(field_error(
                spec,
                format!("{text} is out of range {}-{}", spec.min, spec.max),
            )),
        };
    }
    let position = spec
        .names
        .iter()
        .position(|name| name.eq_ignore_ascii_case(text));
    match position.and_then(|p| u32::try_from(p).ok()) {
        Some(p) => Ok(spec.names_base + p),
        None => Err(field_error(
            spec,
            format!("{text:?} is not a valid value; allowed: {}", spec.allowed),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn err(expr: &str) -> String {
        CronSchedule::parse(expr)
            .expect_err("expression should be rejected")
            .to_string()
    }

    fn set(bits: Bits) -> Vec<u32> {
        (0..64).filter(|&v| bits.has(v)).collect()
    }

    #[test]
    fn five_fields_fire_on_second_zero() {
        let c = CronSchedule::parse("*/15 * * * *").unwrap();
        assert_eq!(set(c.seconds), vec![0]);
        assert_eq!(set(c.minutes), vec![0, 15, 30, 45]);
        assert_eq!(c.as_str(), "*/15 * * * *");
    }

    #[test]
    fn six_fields_have_a_leading_second() {
        let c = CronSchedule::parse("*/20 5 * * * *").unwrap();
        assert_eq!(set(c.seconds), vec![0, 20, 40]);
        assert_eq!(set(c.minutes), vec![5]);
    }

    #[test]
    fn lists_ranges_and_steps() {
        let cases: &[(&str, &FieldSpec, Vec<u32>)] = &[
            ("1,2,3", &MINUTE, vec![1, 2, 3]),
            ("1-10/2", &MINUTE, vec![1, 3, 5, 7, 9]),
            ("50/4", &MINUTE, vec![50, 54, 58]),
            ("*/7", &HOUR, vec![0, 7, 14, 21]),
            ("5-5", &HOUR, vec![5]),
            ("0-3,22-23", &HOUR, vec![0, 1, 2, 3, 22, 23]),
            ("1-31/100", &DAY_OF_MONTH, vec![1]),
            ("jan,Mar-may", &MONTH, vec![1, 3, 4, 5]),
            ("JAN-DEC/3", &MONTH, vec![1, 4, 7, 10]),
            ("MON-FRI", &DAY_OF_WEEK, vec![1, 2, 3, 4, 5]),
        ];
        for (text, spec, want) in cases {
            let (bits, _) = parse_field(text, spec).unwrap();
            assert_eq!(&set(bits), want, "{text}");
        }
    }

    #[test]
    fn sunday_is_zero_and_seven() {
        for expr in ["0 0 * * 0", "0 0 * * 7", "0 0 * * SUN", "0 0 * * sun"] {
            let c = CronSchedule::parse(expr).unwrap();
            assert_eq!(set(c.days_of_week), vec![0], "{expr}");
        }
        let c = CronSchedule::parse("0 0 * * FRI-SUN").unwrap();
        assert_eq!(set(c.days_of_week), vec![0, 5, 6]);
        let c = CronSchedule::parse("0 0 * * 1-7").unwrap();
        assert_eq!(set(c.days_of_week), vec![0, 1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn macros_expand() {
        let cases = [
            ("@hourly", "0 * * * *"),
            ("@daily", "0 0 * * *"),
            ("@midnight", "0 0 * * *"),
            ("@weekly", "0 0 * * 0"),
            ("@monthly", "0 0 1 * *"),
            ("@yearly", "0 0 1 1 *"),
            ("@ANNUALLY", "0 0 1 1 *"),
        ];
        for (name, expansion) in cases {
            let a = CronSchedule::parse(name).unwrap();
            let b = CronSchedule::parse(expansion).unwrap();
            assert_eq!(
                (a.seconds, a.minutes, a.hours, a.days_of_month, a.months),
                (b.seconds, b.minutes, b.hours, b.days_of_month, b.months),
                "{name}"
            );
            assert_eq!(a.days_of_week, b.days_of_week, "{name}");
            assert_eq!(a.as_str(), name, "Display keeps what the user wrote");
        }
    }

    #[test]
    fn errors_name_the_field_and_what_it_allows() {
        let cases = [
            ("0 25 * * *", "cron field \"hour\": 25 is out of range 0-23"),
            (
                "60 * * * *",
                "cron field \"minute\": 60 is out of range 0-59",
            ),
            (
                "61 0 * * * *",
                "cron field \"second\": 61 is out of range 0-59",
            ),
            (
                "0 0 0 * *",
                "cron field \"day-of-month\": 0 is out of range 1-31",
            ),
            (
                "0 0 * 13 *",
                "cron field \"month\": 13 is out of range 1-12",
            ),
            (
                "0 0 * * 8",
                "cron field \"day-of-week\": 8 is out of range 0-7",
            ),
            (
                "0 0 * FOO *",
                "cron field \"month\": \"FOO\" is not a valid value; allowed: 1-12 or JAN-DEC",
            ),
            (
                "0 0 * * MONDAY",
                "cron field \"day-of-week\": \"MONDAY\" is not a valid value; allowed: 0-7 (0 \
                 and 7 are Sunday), SUN-SAT or ?",
            ),
            (
                "*/0 * * * *",
                "cron field \"minute\": step 0 is not allowed; a step must be at least 1",
            ),
            (
                "*/x * * * *",
                "cron field \"minute\": step \"x\" is not a positive whole number",
            ),
            (
                "*/-1 * * * *",
                "cron field \"minute\": step \"-1\" is not a positive whole number",
            ),
            (
                "0 22-2 * * *",
                "cron field \"hour\": range \"22-2\" is reversed; ranges go from low to high \
                 and do not wrap around (split it, e.g. \"22-23,0-2\")",
            ),
            (
                "1,,2 * * * *",
                "cron field \"minute\": empty element in list \"1,,2\"; allowed: 0-59",
            ),
            (
                "-1 * * * *",
                "cron field \"minute\": \"\" is not a valid value; allowed: 0-59",
            ),
            (
                "? * * * *",
                "cron field \"minute\": \"?\" is not a valid value; allowed: 0-59",
            ),
            (
                "99999999999 * * * *",
                "cron field \"minute\": 99999999999 is out of range 0-59",
            ),
            ("", "cron expression is empty"),
            ("   ", "cron expression is empty"),
            (
                "* * * *",
                "cron expression \"* * * *\" has 4 fields; expected 5 (minute hour \
                 day-of-month month day-of-week) or 6 (second minute hour day-of-month month \
                 day-of-week)",
            ),
            (
                "@reboot",
                "unknown cron macro \"@reboot\"; allowed: @hourly, @daily, @midnight, @weekly, \
                 @monthly, @yearly, @annually",
            ),
            (
                "0 0 30 FEB *",
                "cron expression \"0 0 30 FEB *\" never fires: no selected month has the \
                 selected day of month",
            ),
            (
                "0 0 31 4,6,9,11 *",
                "cron expression \"0 0 31 4,6,9,11 *\" never fires: no selected month has the \
                 selected day of month",
            ),
        ];
        for (expr, want) in cases {
            assert_eq!(err(expr), want, "{expr}");
        }
    }

    #[test]
    fn rare_but_possible_days_parse() {
        // February 29 exists; with both day fields restricted the weekday alone also fires.
        assert!(CronSchedule::parse("0 0 29 2 *").is_ok());
        assert!(CronSchedule::parse("0 0 30 2 MON").is_ok());
        assert!(CronSchedule::parse("0 0 ? * MON").is_ok());
    }

    #[test]
    fn vixie_day_rule() {
        // 2024-06-03 is a Monday; 2024-06-15 a Saturday.
        let monday = date(2024, 6, 3).at(0, 0, 0, 0);
        let the_15th = date(2024, 6, 15).at(0, 0, 0, 0);
        let other = date(2024, 6, 4).at(0, 0, 0, 0);
        let both = CronSchedule::parse("0 0 15 * MON").unwrap();
        assert!(both.matches(monday) && both.matches(the_15th) && !both.matches(other));
        let dom_only = CronSchedule::parse("0 0 15 * *").unwrap();
        assert!(!dom_only.matches(monday) && dom_only.matches(the_15th));
        let dow_only = CronSchedule::parse("0 0 ? * MON").unwrap();
        assert!(dow_only.matches(monday) && !dow_only.matches(the_15th));
        // A star-prefixed field keeps AND semantics, as in Vixie cron.
        let stepped = CronSchedule::parse("0 0 */2 * MON").unwrap();
        assert!(stepped.matches(monday), "3rd is odd and a Monday");
        assert!(
            !stepped.matches(date(2024, 6, 10).at(0, 0, 0, 0)),
            "10th is even"
        );
        assert!(
            !stepped.matches(date(2024, 6, 5).at(0, 0, 0, 0)),
            "5th is no Monday"
        );
        let restricted = CronSchedule::parse("0 0 1-31/2 * MON").unwrap();
        assert!(
            restricted.matches(date(2024, 6, 10).at(0, 0, 0, 0)),
            "Monday"
        );
        assert!(
            restricted.matches(date(2024, 6, 5).at(0, 0, 0, 0)),
            "odd day"
        );
    }

    #[test]
    fn next_civil_is_field_wise() {
        let c = CronSchedule::parse("@yearly").unwrap();
        let start = date(2024, 1, 1).at(0, 0, 0, 1);
        assert_eq!(
            c.next_civil_at_or_after(start),
            Some(date(2025, 1, 1).at(0, 0, 0, 0))
        );
        let leap = CronSchedule::parse("0 12 29 2 *").unwrap();
        assert_eq!(
            leap.next_civil_at_or_after(date(2097, 1, 1).at(0, 0, 0, 0)),
            Some(date(2104, 2, 29).at(12, 0, 0, 0)),
            "2100 is not a leap year"
        );
        let at = date(2024, 12, 31).at(23, 59, 59, 0);
        let every = CronSchedule::parse("* * * * * *").unwrap();
        assert_eq!(every.next_civil_at_or_after(at), Some(at));
        assert_eq!(
            every.next_civil_at_or_after(
                at.checked_add(jiff::SignedDuration::from_millis(1))
                    .unwrap()
            ),
            Some(date(2025, 1, 1).at(0, 0, 0, 0)),
            "a sub-second start rounds up, carrying into the next year"
        );
        let eom = CronSchedule::parse("30 18 31 * *").unwrap();
        assert_eq!(
            eom.next_civil_at_or_after(date(2024, 4, 1).at(0, 0, 0, 0)),
            Some(date(2024, 5, 31).at(18, 30, 0, 0)),
            "April has no 31st"
        );
    }

    #[test]
    fn next_civil_stops_at_the_end_of_time() {
        let c = CronSchedule::parse("@yearly").unwrap();
        assert_eq!(
            c.next_civil_at_or_after(date(9999, 6, 1).at(0, 0, 0, 0)),
            None
        );
    }
}
