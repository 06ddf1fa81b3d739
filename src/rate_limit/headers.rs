//! The IETF `RateLimit-Policy` / `RateLimit` headers (draft-ietf-httpapi-ratelimit-headers-11).

use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

use super::{Quota, RateClass};
use crate::support::header_text::HeaderText;

/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers-11).
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit` (draft-ietf-httpapi-ratelimit-headers-11).
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

pub(crate) fn policy_header(class: &RateClass, quota: Quota) -> HeaderValue {
    let value = format!(
        "\"{}\";q={};w={}",
        class.name(),
        quota.requests(),
        quota.window().as_secs()
    );
    // Class names are validated to a-z 0-9 _ -, so this is always a valid header value.
    shared(HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("")))
}

/// `value`, cloned once so that its bytes are shared: a value made from a copied buffer
/// allocates the shared counter at its first clone, which would otherwise fall on the
/// first request to use it.
fn shared(value: HeaderValue) -> HeaderValue {
    drop(value.clone());
    value
}

/// Written per request, on the stack, when no precomputed value fits (past
/// [`PRECOMPUTED_STATES`] requests used, a refusal, a per-key quota override).
pub(crate) fn state_header(
    class: &RateClass,
    remaining: u32,
    reset_after: Duration,
) -> Option<HeaderValue> {
    // Rounded up: a custom backend may report any `Duration`, up to `Duration::MAX`.
    let reset = reset_after
        .as_secs()
        .saturating_add(u64::from(reset_after.subsec_nanos() > 0));
    HeaderText::new()
        .text("\"")
        .text(class.name().as_str())
        .text("\";r=")
        .number(remaining.into())
        .text(";t=")
        .number(reset)
        .value()
}

/// How many requests used get their `RateLimit` values made once, at start, whatever the
/// quota: all of a quota up to this size, and the first this many of a larger one (a
/// class's table is at most ~330 KB).
const PRECOMPUTED_STATES: u32 = 4096;

/// The `RateLimit` value of an allowed request by requests used (`quota - remaining`),
/// under the class's own quota, when the reset time follows from it (`used` request
/// periods).
pub(crate) fn state_headers(class: &RateClass) -> Vec<HeaderValue> {
    let quota = class.quota();
    let requests = quota.requests().get();
    let period = quota.interval();
    (0..=requests.min(PRECOMPUTED_STATES))
        .map_while(|used| state_header(class, requests - used, period * used))
        .map(shared)
        .collect()
}

/// Adds one class's values; a route limited by several classes lists each (the headers
/// are structured-field lists), the class further in first.
pub(crate) fn add_headers(headers: &mut HeaderMap, values: Option<[HeaderValue; 2]>) {
    if let Some([policy, state]) = values {
        // One insert each for the usual single class; a second class's values join the
        // list the first one left.
        if let Some(inner) = headers.insert(RATELIMIT_POLICY, policy) {
            join(headers, RATELIMIT_POLICY, &inner);
        }
        if let Some(inner) = headers.insert(RATELIMIT, state) {
            join(headers, RATELIMIT, &inner);
        }
    }
}

/// `inner, <name's value>` as `name`'s value.
#[cold]
fn join(headers: &mut HeaderMap, name: HeaderName, inner: &HeaderValue) {
    let Some(outer) = headers.get(&name) else {
        return;
    };
    let listed = [inner.as_bytes(), b", ", outer.as_bytes()].concat();
    if let Ok(listed) = HeaderValue::from_bytes(&listed) {
        headers.insert(name, listed);
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::time::Duration;

    use super::*;
    use crate::rate_limit::ClassName;

    #[test]
    fn longest_rate_limit_value_fits_the_stack_buffer() {
        let name = "abcdefghijklmnopqrstuvwxyz-0_123";
        let quota = Quota::new(NonZeroU32::MIN, NonZeroU32::MIN);
        let class = RateClass::per_key(ClassName::from_static(name), quota);
        let value = state_header(&class, u32::MAX, Duration::MAX).expect("formatted");
        assert_eq!(
            value.to_str().unwrap(),
            format!("\"{name}\";r={};t={}", u32::MAX, u64::MAX)
        );
    }
}
