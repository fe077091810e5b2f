//! When a job runs: a crontab expression read in a time zone. The fields are checked and
//! expanded here (standard crontab numbering: day-of-week 0 and 7 are Sunday) and matched by the
//! `cron` crate on wall-clock time; the wall-clock times are then placed in the zone, daylight
//! saving included: a time the spring-forward change skips runs once, at the first instant after
//! the gap; a time the fall-back change repeats runs once, at its first occurrence, except for a
//! schedule that runs every hour, which runs at both.

use std::str::FromStr;

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Utc};
use pgkeep_core::Zone;

/// The largest shift of a daylight saving change, with room to spare.
const SHIFT: chrono::TimeDelta = chrono::TimeDelta::hours(3);

/// A job's schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    expr: String,
    zone: Zone,
    /// One cron schedule, or two whose runs are merged (day-of-month OR day-of-week).
    crons: Vec<cron::Schedule>,
    every_hour: bool,
}

/// An expression that cannot be used: what is wrong and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem}\n  fix: {fix}")]
pub struct ScheduleError {
    /// What is wrong.
    pub problem: String,
    /// What to do.
    pub fix: String,
}

const FIELDS_FIX: &str = "write 5 fields: minute hour day-of-month month day-of-week, e.g. `30 2 * * *` (02:30 daily) or `0 3 * * 0` (Sundays 03:00), or @hourly, @daily, @weekly, @monthly";

/// One crontab field: its name, range and names.
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const SECOND: Field = Field {
    name: "second",
    min: 0,
    max: 59,
    names: &[],
};
const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY: Field = Field {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const WEEKDAY: Field = Field {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};
const CRON_DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl Field {
    fn value(&self, text: &str, expr: &str) -> Result<u32, ScheduleError> {
        let lower = text.to_ascii_lowercase();
        if let Some(i) = self.names.iter().position(|n| *n == lower) {
            // Months count from 1 (jan), days of the week from 0 (sun).
            return Ok(i as u32 + self.min);
        }
        let bad = |problem: String| ScheduleError {
            problem: format!("`{expr}`: {problem}"),
            fix: format!(
                "the {} field takes {}..{}{}, `*`, lists (`1,15`), ranges (`1-5`) and steps (`*/15`)",
                self.name,
                self.min,
                self.max,
                match self.names.is_empty() {
                    true => String::new(),
                    false => format!(" or names ({})", self.names.join(", ")),
                }
            ),
        };
        let n: u32 = text
            .parse()
            .map_err(|_| bad(format!("`{text}` is not a {} value", self.name)))?;
        if !(self.min..=self.max).contains(&n) {
            return Err(bad(format!("{n} is out of range for the {}", self.name)));
        }
        Ok(n)
    }

    /// The values the field matches.
    fn expand(&self, text: &str, expr: &str) -> Result<Vec<u32>, ScheduleError> {
        let mut out = Vec::new();
        for item in text.split(',') {
            let (range, step) = match item.split_once('/') {
                Some((r, s)) => {
                    let step: u32 =
                        s.parse()
                            .ok()
                            .filter(|s| *s > 0)
                            .ok_or_else(|| ScheduleError {
                                problem: format!("`{expr}`: `{item}` has no usable step"),
                                fix: "a step is a whole number of 1 or more, e.g. `*/15`".into(),
                            })?;
                    (r, step)
                }
                None => (item, 1),
            };
            let (lo, hi) = match range {
                "*" => (
                    self.min,
                    self.max.min(if self.max == 7 { 6 } else { self.max }),
                ),
                _ => match range.split_once('-') {
                    Some((a, b)) => (self.value(a, expr)?, self.value(b, expr)?),
                    None if step > 1 => (self.value(range, expr)?, self.max),
                    None => {
                        let v = self.value(range, expr)?;
                        (v, v)
                    }
                },
            };
            if lo > hi {
                return Err(ScheduleError {
                    problem: format!("`{expr}`: the range `{range}` runs backwards"),
                    fix: format!("write the smaller {} first", self.name),
                });
            }
            out.extend((lo..=hi).step_by(step as usize));
        }
        if self.max == 7 {
            // 7 is Sunday, as 0 is.
            out.iter_mut().filter(|d| **d == 7).for_each(|d| *d = 0);
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// The field as the `cron` crate reads it.
    fn to_cron(&self, values: &[u32]) -> String {
        let list: Vec<String> = match self.max {
            7 => values
                .iter()
                .map(|d| CRON_DAYS[*d as usize].to_string())
                .collect(),
            _ => values.iter().map(u32::to_string).collect(),
        };
        list.join(",")
    }
}

fn macro_form(expr: &str) -> Option<Result<&'static str, ScheduleError>> {
    let name = expr.strip_prefix('@')?;
    Some(match name.to_ascii_lowercase().as_str() {
        "hourly" => Ok("0 * * * *"),
        "daily" | "midnight" => Ok("0 0 * * *"),
        "weekly" => Ok("0 0 * * 0"),
        "monthly" => Ok("0 0 1 * *"),
        "yearly" | "annually" => Ok("0 0 1 1 *"),
        _ => Err(ScheduleError {
            problem: format!("`{expr}` is not a schedule pgkeep knows"),
            fix: FIELDS_FIX.into(),
        }),
    })
}

impl Schedule {
    /// Reads 5-field crontab syntax (minute hour day-of-month month day-of-week), an @-form
    /// (`@hourly`, `@daily`, `@midnight`, `@weekly`, `@monthly`, `@yearly`), or — for tests — a
    /// 6-field form whose first field is seconds, to be run in `zone`.
    pub fn parse(expr: &str, zone: Zone) -> Result<Schedule, ScheduleError> {
        let text = expr.trim();
        let spelled = match macro_form(text) {
            Some(form) => form?,
            None => text,
        };
        let fields: Vec<&str> = spelled.split_whitespace().collect();
        let (second, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            n => {
                return Err(ScheduleError {
                    problem: format!("`{expr}` has {n} field(s)"),
                    fix: FIELDS_FIX.into(),
                });
            }
        };
        let seconds = SECOND.expand(second, expr)?;
        let minutes = MINUTE.expand(rest[0], expr)?;
        let hours = HOUR.expand(rest[1], expr)?;
        let days = DAY.expand(rest[2], expr)?;
        let months = MONTH.expand(rest[3], expr)?;
        let weekdays = WEEKDAY.expand(rest[4], expr)?;
        let head = format!(
            "{} {} {}",
            SECOND.to_cron(&seconds),
            MINUTE.to_cron(&minutes),
            HOUR.to_cron(&hours)
        );
        let month = MONTH.to_cron(&months);
        let (day, weekday) = (DAY.to_cron(&days), WEEKDAY.to_cron(&weekdays));
        // Standard cron: with both day fields restricted, a day matching either one runs.
        let both = !rest[2].starts_with('*') && !rest[4].starts_with('*');
        let texts = match both {
            true => vec![
                format!("{head} {day} {month} *"),
                format!("{head} * {month} {weekday}"),
            ],
            false => vec![format!("{head} {day} {month} {weekday}")],
        };
        let crons = texts
            .iter()
            .map(|t| {
                cron::Schedule::from_str(t).map_err(|e| ScheduleError {
                    problem: format!("`{expr}`: {e}"),
                    fix: FIELDS_FIX.into(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let schedule = Schedule {
            expr: text.to_string(),
            zone,
            crons,
            every_hour: hours.len() == 24,
        };
        if schedule.next_after(Utc::now()).is_none() {
            return Err(ScheduleError {
                problem: format!(
                    "`{expr}` never comes (a day that does not exist, such as 30 February)"
                ),
                fix: "give a day that exists in the months named".into(),
            });
        }
        Ok(schedule)
    }

    /// The expression as written.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The zone it is read in.
    pub fn zone(&self) -> Zone {
        self.zone
    }

    /// The wall-clock times the expression matches, strictly after `naive`, in order.
    fn matching_after(&self, naive: NaiveDateTime) -> impl Iterator<Item = NaiveDateTime> + '_ {
        let from = Utc.from_utc_datetime(&naive);
        let mut iters: Vec<_> = self
            .crons
            .iter()
            .map(|c| c.after(&from).peekable())
            .collect();
        std::iter::from_fn(move || {
            let t = iters.iter_mut().filter_map(|it| it.peek().copied()).min()?;
            for it in iters.iter_mut() {
                while it.peek().is_some_and(|o| *o == t) {
                    it.next();
                }
            }
            Some(t.naive_utc())
        })
    }

    /// The instants wall-clock time `naive` runs at: none, one, or (every-hour schedules in the
    /// repeated hour) two.
    fn instants(&self, naive: NaiveDateTime) -> Vec<DateTime<Utc>> {
        match self.zone.instants(&naive) {
            LocalResult::Single(t) => vec![t],
            LocalResult::Ambiguous(a, b) if self.every_hour => vec![a, b],
            LocalResult::Ambiguous(a, _) => vec![a],
            LocalResult::None => {
                // Skipped by a spring-forward change: the first instant after the gap, which is
                // the first wall-clock minute after it that exists.
                (1..=SHIFT.num_minutes())
                    .find_map(|m| {
                        match self.zone.instants(&(naive + chrono::TimeDelta::minutes(m))) {
                            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Some(t),
                            LocalResult::None => None,
                        }
                    })
                    .into_iter()
                    .collect()
            }
        }
    }

    /// The first run strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Mostly no daylight saving change is near: the first match after `t` is the answer.
        let first = self
            .matching_after(self.zone.local(t))
            .find_map(|naive| self.instants(naive).into_iter().find(|i| *i > t))?;
        let offset = |x: DateTime<Utc>| self.zone.local(x) - x.naive_utc();
        if offset(t - SHIFT) == offset(first + SHIFT) {
            return Some(first);
        }
        // Around a change the wall clock is not monotonic: start before it and take the least.
        let start = self.zone.local(t) - SHIFT;
        let mut best: Option<DateTime<Utc>> = None;
        for naive in self.matching_after(start) {
            if let Some(b) = best
                && naive > self.zone.local(b) + SHIFT
            {
                break;
            }
            for i in self.instants(naive).into_iter().filter(|i| *i > t) {
                best = Some(best.map_or(i, |b| b.min(i)));
            }
        }
        best
    }

    /// The next `n` runs strictly after `t`.
    pub fn upcoming(&self, t: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n);
        let mut from = t;
        while out.len() < n
            && let Some(next) = self.next_after(from)
        {
            out.push(next);
            from = next;
        }
        out
    }

    /// The latest run at or before `t`, not before `not_before` (the slot a missed run had).
    pub fn latest_between(
        &self,
        not_before: DateTime<Utc>,
        t: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let mut from = not_before - chrono::TimeDelta::nanoseconds(1);
        let mut latest = None;
        while let Some(next) = self.next_after(from).filter(|n| *n <= t) {
            latest = Some(next);
            from = next;
        }
        latest
    }
}
