//! [`Quota`] (how many requests per window) and [`ClassName`] (which budget), the two
//! values a per-key override names.

use std::borrow::Cow;
use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A request quota: `requests` per `window`, both non-zero, so a quota that allows nothing
/// or divides by zero cannot be written.
///
/// Serde form: `{"requests": 1000, "window_secs": 60}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Quota {
    requests: NonZeroU32,
    window_secs: NonZeroU32,
}

impl Quota {
    /// `requests` per `window_secs` seconds.
    pub const fn new(requests: NonZeroU32, window_secs: NonZeroU32) -> Self {
        Self {
            requests,
            window_secs,
        }
    }

    /// `requests` per minute.
    pub const fn per_minute(requests: NonZeroU32) -> Self {
        Self::new(requests, NonZeroU32::MIN.saturating_add(59))
    }

    /// `n` per minute, for `const` items: a zero there fails to compile, as governor's
    /// `nonzero!` does. Outside a `const` a zero panics, so take `per_minute` with a
    /// checked `NonZeroU32` for a number read at run time.
    ///
    /// ```
    /// use tower_api_key::rate_limit::{ClassName, Quota, RateClass};
    ///
    /// const SEARCH: RateClass =
    ///     RateClass::per_key(ClassName::from_static("search"), Quota::per_minute_const(30));
    /// assert_eq!(SEARCH.quota().requests().get(), 30);
    /// ```
    ///
    /// ```compile_fail
    /// use tower_api_key::rate_limit::Quota;
    /// const NOTHING: Quota = Quota::per_minute_const(0);
    /// fn main() {
    ///     let _ = NOTHING;
    /// }
    /// ```
    pub const fn per_minute_const(n: u32) -> Self {
        match NonZeroU32::new(n) {
            Some(n) => Self::per_minute(n),
            None => panic!("a quota is never zero"),
        }
    }

    /// Requests allowed per window.
    pub const fn requests(&self) -> NonZeroU32 {
        self.requests
    }

    /// The window.
    pub const fn window(&self) -> Duration {
        Duration::from_secs(self.window_secs.get() as u64)
    }

    /// Whether this quota allows no more than `other`: no more requests at once, and none
    /// faster over time (exact, in whole numbers).
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use tower_api_key::rate_limit::Quota;
    ///
    /// let per_minute = |n| Quota::per_minute(NonZeroU32::new(n).unwrap());
    /// assert!(per_minute(10).at_most(&per_minute(60)));
    /// assert!(!per_minute(61).at_most(&per_minute(60)));
    /// // 60 per minute as 1 per second: as fast, but a burst of 60 is more than 1.
    /// let per_second = Quota::new(NonZeroU32::MIN, NonZeroU32::MIN);
    /// assert!(per_second.at_most(&per_minute(60)));
    /// assert!(!per_minute(60).at_most(&per_second));
    /// ```
    pub fn at_most(&self, other: &Self) -> bool {
        let (requests, window) = (
            u64::from(self.requests.get()),
            u64::from(self.window_secs.get()),
        );
        let (other_requests, other_window) = (
            u64::from(other.requests.get()),
            u64::from(other.window_secs.get()),
        );
        requests <= other_requests && requests * other_window <= other_requests * window
    }

    /// The time one request takes to earn back: `window / requests`.
    pub(crate) fn interval(&self) -> Duration {
        self.window() / self.requests.get()
    }
}

/// The name of a rate-limit class: 1 to 32 characters of `a-z 0-9 _ -`.
///
/// It appears in `RateLimit` headers and keys per-key overrides on
/// [`KeyRecord::rate_limits`](crate::store::KeyRecord::rate_limits); being validated, a
/// name that could never match a class (`"AI"`, `"ai "`) is an error where it is written,
/// not an override silently ignored.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClassName(Cow<'static, str>);

/// A class name is empty, longer than 32 bytes, or not `a-z 0-9 _ -`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a rate class name is 1 to 32 characters of a-z 0-9 _ -")]
pub struct InvalidClassName;

impl ClassName {
    /// Validates `name`.
    ///
    /// # Errors
    /// [`InvalidClassName`] unless `name` is 1 to 32 characters of `a-z 0-9 _ -`.
    pub fn new(name: impl Into<Cow<'static, str>>) -> Result<Self, InvalidClassName> {
        let name = name.into();
        if Self::is_valid(&name) {
            Ok(Self(name))
        } else {
            Err(InvalidClassName)
        }
    }

    /// A name known at compile time; a bad one fails the build where it is used in a
    /// `const`.
    ///
    /// # Panics
    /// When `name` is not a valid class name.
    pub const fn from_static(name: &'static str) -> Self {
        assert!(Self::is_valid(name), "invalid rate class name");
        Self(Cow::Borrowed(name))
    }

    const fn is_valid(name: &str) -> bool {
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() > 32 {
            return false;
        }
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if !(b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-') {
                return false;
            }
            i += 1;
        }
        true
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClassName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ClassName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClassName({})", self.0)
    }
}

impl std::str::FromStr for ClassName {
    type Err = InvalidClassName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s.to_owned())
    }
}

impl TryFrom<String> for ClassName {
    type Error = InvalidClassName;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<ClassName> for String {
    fn from(name: ClassName) -> Self {
        name.0.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_are_validated_everywhere_they_enter() {
        assert!(ClassName::new("ai").is_ok());
        for bad in ["", "AI", "ai ", "a".repeat(33).as_str(), "é"] {
            assert_eq!(
                ClassName::new(bad.to_owned()),
                Err(InvalidClassName),
                "{bad:?}"
            );
        }
        assert!(serde_json::from_str::<ClassName>("\"Standard\"").is_err());
        assert_eq!(
            serde_json::from_str::<ClassName>("\"standard\"").unwrap(),
            ClassName::from_static("standard")
        );
    }
}
