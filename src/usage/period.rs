//! [`Period`]: the calendar window a budget is counted in, in UTC, or none at all.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::key::Environment;
use crate::support::timestamp::LATEST;

/// How long a budget lasts before it is whole again: calendar windows in UTC, so every
/// instance (and Redis) agrees on when a period ends whatever its time zone; or never
/// ([`Lifetime`](Self::Lifetime): one-time credits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Period {
    /// From the top of one UTC hour to the next (the FORG sandbox: "budget counters reset
    /// every hour").
    Hourly,
    /// From 00:00 UTC to the next midnight.
    Daily,
    /// From the first of a UTC month, 00:00, to the first of the next.
    Monthly,
    /// One window that never ends: the budget is a total that is never whole again
    /// (one-time credits, e.g. 1,000 units for a trial key). Its 402 has no `Retry-After`
    /// and no `resets_at`.
    Lifetime,
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
                    end: Some((index + 1) * 3600),
                }
            }
            Self::Daily => {
                let index = secs / 86_400;
                Window {
                    index,
                    start: index * 86_400,
                    end: Some((index + 1) * 86_400),
                }
            }
            Self::Lifetime => Window {
                index: 0,
                start: 0,
                end: None,
            },
            Self::Monthly => {
                // Up to 9999-12-31T23:59:59Z, the last second RFC 3339 writes; that month
                // ends at 10000-01-01T00:00:00Z.
                let day = secs.min(LATEST) / 86_400;
                let month = LastMonth::get(day).unwrap_or_else(|| LastMonth::set(day));
                Window {
                    index: month.index,
                    start: month.start * 86_400,
                    end: Some((month.start + month.days) * 86_400),
                }
            }
        }
    }

    /// A short name: `"hour"`, `"day"`, `"month"` or `"lifetime"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Hourly => "hour",
            Self::Daily => "day",
            Self::Monthly => "month",
            Self::Lifetime => "lifetime",
        }
    }

    /// Whether the budget is whole again at the end of each window (every period but
    /// [`Lifetime`](Self::Lifetime)).
    pub const fn resets(self) -> bool {
        !matches!(self, Self::Lifetime)
    }

    pub(crate) const ALL: [Self; 4] = [Self::Hourly, Self::Daily, Self::Monthly, Self::Lifetime];

    /// The position in [`ALL`](Self::ALL).
    pub(crate) const fn slot(self) -> usize {
        match self {
            Self::Hourly => 0,
            Self::Daily => 1,
            Self::Monthly => 2,
            Self::Lifetime => 3,
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
    /// The first second of the next window; `None` when there is none
    /// ([`Period::Lifetime`]).
    pub end: Option<u64>,
}

impl Window {
    /// When the next window starts (`None`: never).
    pub fn resets_at(&self) -> Option<SystemTime> {
        self.end.map(|end| UNIX_EPOCH + Duration::from_secs(end))
    }

    /// Time from `now` to the reset (zero once past it; `None`: never).
    pub fn reset_after(&self, now: SystemTime) -> Option<Duration> {
        self.resets_at()
            .map(|at| at.duration_since(now).unwrap_or_default())
    }
}

/// A calendar month: its index (`year × 12 + month − 1`), first day since the epoch and
/// length in days.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Month {
    index: u64,
    start: u64,
    days: u64,
}

impl Month {
    /// The month of day `day` since the epoch: integer calendar arithmetic, the same as
    /// the Redis script's (no date type on the request path).
    fn of(day: u64) -> Self {
        let (year, month) = civil_from_days(day);
        let (next_year, next_month) = if month == 12 {
            (year + 1, 1)
        } else {
            (year, month + 1)
        };
        let start = days_from_civil(year, month);
        Self {
            index: year * 12 + (month - 1),
            start,
            days: days_from_civil(next_year, next_month) - start,
        }
    }
}

/// The month last computed, for the whole process (months are UTC, the same for every
/// budget): computing one is most of a spend-cap charge's own work, and almost every
/// request falls in the month before it. One word, so no reader sees half of an update:
/// the first day (22 bits: up to year 10,000), the length (5 bits), the index (17 bits);
/// 0 is empty.
struct LastMonth;

static LAST_MONTH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl LastMonth {
    fn get(day: u64) -> Option<Month> {
        let packed = LAST_MONTH.load(std::sync::atomic::Ordering::Relaxed);
        let month = Month {
            start: packed & 0x3F_FFFF,
            days: (packed >> 22) & 0x1F,
            index: packed >> 27,
        };
        (month.days != 0 && (month.start..month.start + month.days).contains(&day)).then_some(month)
    }

    fn set(day: u64) -> Month {
        let month = Month::of(day);
        let packed = month.start | month.days << 22 | month.index << 27;
        LAST_MONTH.store(packed, std::sync::atomic::Ordering::Relaxed);
        month
    }
}

/// The year and month (1 to 12) of day `days` since 1970-01-01, in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`, for days from the epoch on).
fn civil_from_days(days: u64) -> (u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month)
}

/// Days from 1970-01-01 to the first of `month` (1 to 12) in `year` (1970 and later).
fn days_from_civil(year: u64, month: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let yoe = year - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + (153 * mp + 2) / 5;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn end(window: Window) -> u64 {
        window.end.expect("calendar windows end")
    }

    fn rfc3339(secs: u64) -> String {
        crate::support::timestamp::Rfc3339(at(secs)).to_string()
    }

    /// The process-wide last month gives what computing gives, for days met in any order
    /// (forwards, backwards, far apart, the last month RFC 3339 writes), and the packing
    /// holds every month up to then.
    #[test]
    fn the_remembered_month_is_the_computed_month() {
        let last_day = LATEST / 86_400;
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut day = 20_000;
        for step in 0..200_000u64 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            day = match step % 4 {
                0 => state % (last_day + 1),
                1 => day.saturating_sub(state % 40),
                2 => (day + state % 40).min(last_day),
                _ => last_day - state % 400,
            };
            let month = LastMonth::get(day).unwrap_or_else(|| LastMonth::set(day));
            assert_eq!(month, Month::of(day), "day {day}");
            let window = Period::Monthly.window(at(day * 86_400 + state % 86_400));
            assert_eq!(
                (window.index, window.start),
                (month.index, month.start * 86_400)
            );
        }
        let latest = Month::of(last_day);
        assert!(
            latest.start < 1 << 22 && latest.index < 1 << 17,
            "{latest:?}"
        );
    }

    #[test]
    fn months_end_on_the_first_of_the_next_in_utc() {
        // 2026-01-31T23:59:59Z: a 31-day month ends at February's first second.
        let january = Period::Monthly.window(at(1_769_903_999));
        assert_eq!(rfc3339(january.start), "2026-01-01T00:00:00Z");
        assert_eq!(rfc3339(end(january)), "2026-02-01T00:00:00Z");
        let february = Period::Monthly.window(at(end(january)));
        assert_ne!(february.index, january.index);
        assert_eq!(end(february) - february.start, 28 * 86_400);
        assert_eq!(rfc3339(end(february)), "2026-03-01T00:00:00Z");
        // A leap February, and December into January.
        let leap = Period::Monthly.window(at(1_709_164_800)); // 2024-02-29T00:00:00Z
        assert_eq!(end(leap) - leap.start, 29 * 86_400);
        let december = Period::Monthly.window(at(1_798_761_599)); // 2026-12-31T23:59:59Z
        assert_eq!(rfc3339(end(december)), "2027-01-01T00:00:00Z");
        assert_eq!(
            Period::Monthly.window(at(end(december))).index,
            december.index + 1
        );
    }

    #[test]
    fn hours_end_at_the_top_of_the_next() {
        let window = Period::Hourly.window(at(1_767_225_600 + 3599));
        assert_eq!(rfc3339(window.start), "2026-01-01T00:00:00Z");
        assert_eq!(rfc3339(end(window)), "2026-01-01T01:00:00Z");
        assert_eq!(
            window.reset_after(at(1_767_225_600 + 3599)),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn days_end_at_the_next_utc_midnight() {
        // 2026-03-01T00:00:00Z, and the last second of 2026-02-28.
        let march_first = Period::Daily.window(at(1_772_323_200));
        assert_eq!(rfc3339(march_first.start), "2026-03-01T00:00:00Z");
        assert_eq!(rfc3339(end(march_first)), "2026-03-02T00:00:00Z");
        let before = Period::Daily.window(at(1_772_323_199));
        assert_eq!(rfc3339(end(before)), "2026-03-01T00:00:00Z");
        assert_eq!(before.index + 1, march_first.index);
        assert_eq!(
            before.reset_after(at(1_772_323_199)),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn a_lifetime_is_one_window_that_never_ends() {
        let first = Period::Lifetime.window(at(0));
        let much_later = Period::Lifetime.window(at(u64::MAX / 4));
        assert_eq!(first, much_later);
        assert_eq!(first.resets_at(), None);
        assert_eq!(first.reset_after(at(12)), None);
        assert!(!Period::Lifetime.resets());
        assert!(Period::ALL
            .iter()
            .enumerate()
            .all(|(slot, period)| period.slot() == slot));
    }

    #[test]
    fn every_month_of_four_centuries_follows_the_last() {
        let mut window = Period::Monthly.window(at(0));
        for _ in 0..12 * 400 {
            let next = Period::Monthly.window(at(end(window)));
            assert_eq!(next.start, end(window));
            assert_eq!(next.index, window.index + 1);
            assert!((28 * 86_400..=31 * 86_400).contains(&(end(next) - next.start)));
            window = next;
        }
        assert_eq!(rfc3339(window.start), "2370-01-01T00:00:00Z");
    }

    #[test]
    fn the_integer_calendar_agrees_with_the_time_crate() {
        use time::{Date, Month, OffsetDateTime};
        // Every first of a month from 1970 to 9999, and the day before it.
        for year in 1970..=9999 {
            for month in 1..=12u8 {
                let date = Date::from_calendar_date(year, Month::try_from(month).unwrap(), 1);
                let first = date.unwrap().midnight().assume_utc().unix_timestamp() as u64;
                let days = first / 86_400;
                assert_eq!(days_from_civil(year as u64, u64::from(month)), days);
                assert_eq!(civil_from_days(days), (year as u64, u64::from(month)));
                if days > 0 {
                    let before = OffsetDateTime::from_unix_timestamp(first as i64 - 1).unwrap();
                    let expected = (before.year() as u64, u64::from(u8::from(before.month())));
                    assert_eq!(civil_from_days(days - 1), expected);
                }
            }
        }
    }

    #[test]
    fn the_last_month_rfc_3339_writes_has_an_end() {
        let last = Period::Monthly.window(at(u64::MAX / 4));
        assert_eq!(rfc3339(last.start), "9999-12-01T00:00:00Z");
        assert_eq!(last.end, Some(LATEST + 1));
    }

    #[test]
    fn times_before_the_epoch_are_clamped() {
        let window = Period::Monthly.window(UNIX_EPOCH - Duration::from_secs(10));
        assert_eq!(window.start, 0);
        assert_eq!(rfc3339(end(window)), "1970-02-01T00:00:00Z");
    }
}
