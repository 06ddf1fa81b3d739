//! `If-Match` (RFC 9110 §13.1.1) against a key's version: the entity tag of every key
//! view is its [`version`](crate::store::KeyRecord::version), compared strongly.

use axum::http::header::IF_MATCH;
use axum::http::HeaderMap;

use super::error::ApiError;
use super::views::etag;
use super::ApiCode;
use crate::scope::Scope;
use crate::store::KeyRecord;

/// The version an update of `record` must still find, from the request's `If-Match`:
/// `None` for an unconditional update (no header, or `*`: the key exists). A list that
/// names no entity tag of `record` (a weak tag never matches, as RFC 9110 says) is 412;
/// no header where the API requires one is 428. The store compares the version again
/// when it writes, so a change between this read and the write is 412 too.
pub(super) fn required_version<S: Scope>(
    headers: &HeaderMap,
    record: &KeyRecord<S>,
    required: bool,
) -> Result<Option<u64>, ApiError> {
    let mut values = headers.get_all(IF_MATCH).iter().peekable();
    if values.peek().is_none() {
        return if required {
            Err(ApiError::from_code(ApiCode::PreconditionRequired))
        } else {
            Ok(None)
        };
    }
    let current = etag(record);
    let mut any = false;
    let mut matched = false;
    for value in values {
        // Unreadable bytes name no tag of ours.
        let Ok(text) = value.to_str() else { continue };
        for tag in text.split(',').map(str::trim) {
            any |= tag == "*";
            matched |= tag == current;
        }
    }
    match (matched, any) {
        (true, _) => Ok(Some(record.version())),
        (false, true) => Ok(None),
        (false, false) => Err(ApiError::from_code(ApiCode::PreconditionFailed)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forg::ForgScope;
    use crate::key::{KeyFamily, KeyHasher};
    use crate::store::NewKey;

    fn record(version: u64) -> KeyRecord<ForgScope> {
        let (_, mut record) = NewKey::new("org_1", "ci", &KeyFamily::FORG_TEST)
            .issue(&KeyHasher::sha256(), std::time::SystemTime::UNIX_EPOCH)
            .unwrap();
        record.set_version(version);
        record
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(IF_MATCH, value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn strong_tags_match_weak_ones_never() {
        let record = record(3);
        let status = |values: &[&str], required| {
            required_version(&headers(values), &record, required).map_err(|error| error.status())
        };
        assert_eq!(status(&[], false), Ok(None));
        assert_eq!(status(&[], true).unwrap_err().as_u16(), 428);
        assert_eq!(status(&["\"3\""], true), Ok(Some(3)));
        assert_eq!(status(&["\"1\", \"3\""], false), Ok(Some(3)));
        assert_eq!(status(&["\"1\"", "\"3\""], false), Ok(Some(3)));
        assert_eq!(status(&["*"], true), Ok(None));
        for stale in ["\"2\"", "W/\"3\"", "3", "\"\"", "garbage"] {
            assert_eq!(
                status(&[stale], false).unwrap_err().as_u16(),
                412,
                "{stale}"
            );
        }
    }
}
