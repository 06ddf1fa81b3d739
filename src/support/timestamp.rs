//! Times on the wire: RFC 3339 in UTC (`2026-12-01T00:00:00Z`), wherever a client reads or
//! sends a time: the management API's records and activity, and the 402 body's
//! `resets_at`. Whole seconds print without a fraction; anything finer is cut to
//! milliseconds. Storage formats (records in Redis and SQL) keep their integer
//! milliseconds.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use time::format_description::well_known::Rfc3339 as Format;
use time::OffsetDateTime;

/// The latest time RFC 3339 can write: 9999-12-31T23:59:59Z.
pub(crate) const LATEST: u64 = 253_402_300_799;

/// [`LATEST`] as a time: where configured durations that would pass it saturate.
pub(crate) fn latest() -> SystemTime {
    UNIX_EPOCH + std::time::Duration::from_secs(LATEST)
}

/// `at`, formatted as RFC 3339 in UTC. Times before 1970 print as the epoch, times past
/// [`LATEST`] as it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rfc3339(pub(crate) SystemTime);

impl Rfc3339 {
    fn utc(self) -> OffsetDateTime {
        let since = self.0.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs().min(LATEST);
        let millis = if secs == LATEST {
            0
        } else {
            since.subsec_millis()
        };
        OffsetDateTime::from_unix_timestamp(secs as i64)
            .map(|at| at + time::Duration::milliseconds(i64::from(millis)))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// Parses an RFC 3339 time (any offset) between the epoch and [`LATEST`].
    #[cfg(any(test, feature = "axum"))]
    pub(crate) fn parse(text: &str) -> Option<SystemTime> {
        let at = OffsetDateTime::parse(text, &Format).ok()?;
        let secs = u64::try_from(at.unix_timestamp()).ok()?;
        (secs <= LATEST).then(|| UNIX_EPOCH + std::time::Duration::new(secs, at.nanosecond()))
    }
}

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.utc().format(&Format).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

impl serde::Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// `#[serde(serialize_with = "crate::support::timestamp::rfc3339")]` for `SystemTime` fields.
pub(crate) fn rfc3339<S: serde::Serializer>(at: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    serde::Serialize::serialize(&Rfc3339(*at), s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    #[test]
    fn formats_utc_to_the_millisecond_and_clamps_the_range() {
        assert_eq!(Rfc3339(at(0, 0)).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(
            Rfc3339(at(1_798_761_599, 0)).to_string(),
            "2026-12-31T23:59:59Z"
        );
        assert_eq!(
            Rfc3339(at(1_798_761_599, 250)).to_string(),
            "2026-12-31T23:59:59.25Z"
        );
        assert_eq!(
            Rfc3339(UNIX_EPOCH - Duration::from_secs(5)).to_string(),
            "1970-01-01T00:00:00Z"
        );
        assert_eq!(Rfc3339(at(LATEST, 999)).to_string(), "9999-12-31T23:59:59Z");
        assert_eq!(
            Rfc3339(at(u64::MAX / 2, 0)).to_string(),
            "9999-12-31T23:59:59Z"
        );
    }

    #[test]
    fn parses_any_offset_within_range_only() {
        assert_eq!(
            Rfc3339::parse("2026-12-31T23:59:59Z"),
            Some(at(1_798_761_599, 0))
        );
        assert_eq!(
            Rfc3339::parse("2027-01-01T01:59:59+02:00"),
            Some(at(1_798_761_599, 0))
        );
        assert_eq!(
            Rfc3339::parse("2026-12-31T23:59:59.5Z"),
            Some(at(1_798_761_599, 500))
        );
        for refused in [
            "1969-12-31T23:59:59Z",
            "2026-13-01T00:00:00Z",
            "1798761599",
            "",
            "2026-12-31",
        ] {
            assert_eq!(Rfc3339::parse(refused), None, "{refused}");
        }
        let text = Rfc3339(at(1_798_761_599, 0)).to_string();
        assert_eq!(Rfc3339::parse(&text), Some(at(1_798_761_599, 0)));
    }
}
