//! [`Period`]: the calendar window a budget is counted in, in UTC.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::key::Environment;

/// How long a budget lasts before it is whole again: calendar windows in UTC, so every
/// instance (and Redis) agrees on when a period ends whatever its time zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Period {
    /// From the top of one UTC hour to the next (the FORG sandbox: "budget counters reset
    /// every hour").
    Hourly,
    /// From the first of a UTC month, 00:00, to the first of the next.
    Monthly,
}

impl Period {
    /// The FORG default for keys of `environment`: monthly for live, hourly for test.
    pub const fn default_for(environment: Environment) -> Self {
        match environment {
            Environment::Live => Self::Monthly,
            Environment::Test => Self::Hourly,
        }
    }

    /// The window `at` falls in.
    pub fn window(self, at: SystemTime) -> Window {
        let secs = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        match self {
            Self::Hourly => {
                let index = secs / 3600;
                Window {
                    index,
                    start: index * 3600,
                    end: (index + 1) * 3600,
                }
            }
            Self::Monthly => {
                let (year, month, _) = civil_from_days(secs / 86_400);
                let (next_year, next_month) = if month == 12 {
                    (year + 1, 1)
                } else {
                    (year, month + 1)
                };
                Window {
                    index: year * 12 + u64::from(month - 1),
                    start: days_from_civil(year, month) * 86_400,
                    end: days_from_civil(next_year, next_month) * 86_400,
                }
            }
        }
    }

    /// A short name: `"hour"` or `"month"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Hourly => "hour",
            Self::Monthly => "month",
        }
    }
}

/// One period: `[start, end)` in Unix seconds, and an index that differs between any two
/// windows of the same [`Period`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Window {
    /// Identifies the window among those of its period.
    pub index: u64,
    /// The first second, since the Unix epoch.
    pub start: u64,
    /// The first second of the next window.
    pub end: u64,
}

impl Window {
    /// When the next window starts.
    pub fn resets_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.end)
    }

    /// Time from `now` to the reset (zero once past it).
    pub fn reset_after(&self, now: SystemTime) -> Duration {
        self.resets_at().duration_since(now).unwrap_or_default()
    }
}

/// A time as RFC 3339 in UTC, to the second (`2026-12-01T00:00:00Z`).
pub(crate) struct Rfc3339(pub(crate) SystemTime);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self
            .0
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let (year, month, day) = civil_from_days(secs / 86_400);
        let of_day = secs % 86_400;
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            of_day / 3600,
            of_day % 3600 / 60,
            of_day % 60
        )
    }
}

// Howard Hinnant's civil-calendar algorithms, for days since 1970-01-01 (never negative
// here: earlier times are clamped to the epoch).
fn civil_from_days(days: u64) -> (u64, u32, u32) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of the first of `month` in `year` (1970 or later).
fn days_from_civil(year: u64, month: u32) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let yoe = year - era * 400;
    let mp = u64::from(if month > 2 { month - 3 } else { month + 9 });
    let doy = (153 * mp + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn rfc3339(secs: u64) -> String {
        Rfc3339(at(secs)).to_string()
    }

    #[test]
    fn months_end_on_the_first_of_the_next_in_utc() {
        // 2026-01-31T23:59:59Z: a 31-day month ends at February's first second.
        let january = Period::Monthly.window(at(1_769_903_999));
        assert_eq!(rfc3339(january.start), "2026-01-01T00:00:00Z");
        assert_eq!(rfc3339(january.end), "2026-02-01T00:00:00Z");
        let february = Period::Monthly.window(at(january.end));
        assert_ne!(february.index, january.index);
        assert_eq!(february.end - february.start, 28 * 86_400);
        assert_eq!(rfc3339(february.end), "2026-03-01T00:00:00Z");
        // A leap February, and December into January.
        let leap = Period::Monthly.window(at(1_709_164_800)); // 2024-02-29T00:00:00Z
        assert_eq!(leap.end - leap.start, 29 * 86_400);
        let december = Period::Monthly.window(at(1_798_761_599)); // 2026-12-31T23:59:59Z
        assert_eq!(rfc3339(december.end), "2027-01-01T00:00:00Z");
        assert_eq!(
            Period::Monthly.window(at(december.end)).index,
            december.index + 1
        );
    }

    #[test]
    fn hours_end_at_the_top_of_the_next() {
        let window = Period::Hourly.window(at(1_767_225_600 + 3599));
        assert_eq!(rfc3339(window.start), "2026-01-01T00:00:00Z");
        assert_eq!(rfc3339(window.end), "2026-01-01T01:00:00Z");
        assert_eq!(
            window.reset_after(at(1_767_225_600 + 3599)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn the_calendar_agrees_with_day_counts_for_four_centuries() {
        let mut previous = None;
        for days in (0..146_097 * 2).step_by(13) {
            let (year, month, day) = civil_from_days(days);
            assert_eq!(days_from_civil(year, month) + u64::from(day - 1), days);
            if let Some(previous) = previous {
                assert!((year, month, day) > previous);
            }
            previous = Some((year, month, day));
        }
    }

    #[test]
    fn times_before_the_epoch_are_clamped() {
        let window = Period::Monthly.window(UNIX_EPOCH - Duration::from_secs(10));
        assert_eq!(window.start, 0);
        assert_eq!(rfc3339(window.end), "1970-02-01T00:00:00Z");
    }
}
