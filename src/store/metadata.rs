//! [`Metadata`]: a small, validated string map a key carries (team, purpose, agent id...).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

const MAX_ENTRIES: usize = Metadata::MAX_ENTRIES;
const MAX_NAME_LEN: usize = Metadata::MAX_NAME_LEN;
const MAX_VALUE_LEN: usize = Metadata::MAX_VALUE_LEN;

/// A key's metadata: at most [`MAX_ENTRIES`](Self::MAX_ENTRIES) entries, names of `a-z 0-9 _ - .` (at most
/// [`MAX_NAME_LEN`](Self::MAX_NAME_LEN)), values of at most
/// [`MAX_VALUE_LEN`](Self::MAX_VALUE_LEN) bytes of plain text (no control, bidi or
/// invisible characters, see [`is_plain_text`]).
/// Bounded so that a record stays small in every store and safe to show in a dashboard;
/// validated wherever it is built or read (serde too). Never put a secret in it: it is
/// shown to handlers through the [`Principal`](crate::Principal) and listed with the key.
///
/// ```
/// use tower_api_key::store::Metadata;
///
/// let metadata = Metadata::new([("team", "billing"), ("ticket", "OPS-42")]).unwrap();
/// assert_eq!(metadata.get("team"), Some("billing"));
/// assert!(Metadata::new([("Team", "x")]).is_err());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    try_from = "BTreeMap<String, String>",
    into = "BTreeMap<String, String>"
)]
pub struct Metadata(BTreeMap<String, String>);

/// Why a metadata map was refused; names the offending entry, cut to
/// [`Metadata::MAX_NAME_LEN`] characters.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidMetadata {
    /// More than [`Metadata::MAX_ENTRIES`] entries.
    #[error("metadata has more than {MAX_ENTRIES} entries")]
    TooManyEntries,
    /// A name is empty, too long or has a character outside `a-z 0-9 _ - .`.
    #[error("metadata name `{0}` is not 1 to {MAX_NAME_LEN} characters of a-z 0-9 _ - .")]
    Name(String),
    /// A value is too long or is not plain text ([`is_plain_text`]).
    #[error("metadata value of `{0}` is over {MAX_VALUE_LEN} bytes or has a control, bidi or invisible character")]
    Value(String),
}

impl Metadata {
    /// At most this many entries.
    pub const MAX_ENTRIES: usize = 16;
    /// Names: 1 to 64 characters of `a-z 0-9 _ - .`.
    pub const MAX_NAME_LEN: usize = 64;
    /// Values: at most 256 bytes of UTF-8 plain text ([`is_plain_text`]).
    pub const MAX_VALUE_LEN: usize = 256;

    /// No entries.
    pub(crate) const EMPTY: Self = Self(BTreeMap::new());

    /// Validates `entries`.
    ///
    /// # Errors
    /// [`InvalidMetadata`] naming the first entry that breaks a bound.
    pub fn new<K: Into<String>, V: Into<String>>(
        entries: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, InvalidMetadata> {
        Self::try_from(
            entries
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect::<BTreeMap<_, _>>(),
        )
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// The entries, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl TryFrom<BTreeMap<String, String>> for Metadata {
    type Error = InvalidMetadata;

    fn try_from(entries: BTreeMap<String, String>) -> Result<Self, Self::Error> {
        if entries.len() > MAX_ENTRIES {
            return Err(InvalidMetadata::TooManyEntries);
        }
        let shown = |name: &str| name.chars().take(MAX_NAME_LEN).collect::<String>();
        for (name, value) in &entries {
            let valid_name = !name.is_empty()
                && name.len() <= MAX_NAME_LEN
                && name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
                });
            if !valid_name {
                return Err(InvalidMetadata::Name(shown(name)));
            }
            if value.len() > MAX_VALUE_LEN || !is_plain_text(value) {
                return Err(InvalidMetadata::Value(shown(name)));
            }
        }
        Ok(Self(entries))
    }
}

/// Whether `text` can be shown as it is: no control characters, no bidirectional
/// controls (U+202A–U+202E, U+2066–U+2069, U+200E, U+200F, U+061C) and no invisible
/// characters (zero-width spaces and joiners, word joiner, BOM, soft hyphen, invisible
/// operators, Mongolian vowel separator, tag characters). With those, a key's name or
/// metadata could display as another key's in a dashboard (Trojan Source, CVE-2021-42574).
///
/// ```
/// use tower_api_key::store::is_plain_text;
///
/// assert!(is_plain_text("production — eu-west"));
/// assert!(!is_plain_text("prod\u{202E}tset"));
/// assert!(!is_plain_text("ci\u{200B}"));
/// ```
pub fn is_plain_text(text: &str) -> bool {
    !text.chars().any(|c| {
        c.is_control()
            || matches!(
                c,
                '\u{00AD}'
                    | '\u{061C}'
                    | '\u{180E}'
                    | '\u{200B}'..='\u{200F}'
                    | '\u{202A}'..='\u{202E}'
                    | '\u{2060}'..='\u{2064}'
                    | '\u{2066}'..='\u{2069}'
                    | '\u{FEFF}'
                    | '\u{E0000}'..='\u{E007F}'
            )
    })
}

impl From<Metadata> for BTreeMap<String, String> {
    fn from(metadata: Metadata) -> Self {
        metadata.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_enforced_on_every_way_in() {
        assert!(Metadata::new([("team", "billing")]).is_ok());
        let too_many = (0..=MAX_ENTRIES).map(|i| (format!("k{i}"), "v".to_owned()));
        assert_eq!(
            Metadata::new(too_many),
            Err(InvalidMetadata::TooManyEntries)
        );
        for name in ["", "Team", "a b", "ключ", &"n".repeat(MAX_NAME_LEN + 1)] {
            assert!(
                matches!(Metadata::new([(name, "v")]), Err(InvalidMetadata::Name(_))),
                "{name:?}"
            );
        }
        for value in [
            "line\nbreak",
            "nul\0",
            "rtl\u{202E}",
            "zero\u{200B}width",
            "isolate\u{2067}",
            &"v".repeat(MAX_VALUE_LEN + 1),
        ] {
            assert!(matches!(
                Metadata::new([("k", value)]),
                Err(InvalidMetadata::Value(_))
            ));
        }
        assert!(serde_json::from_str::<Metadata>(r#"{"Bad":"x"}"#).is_err());
        let long = "x".repeat(500);
        let message = Metadata::new([(long.as_str(), "v")])
            .unwrap_err()
            .to_string();
        assert!(message.len() < 200, "the error never repeats a huge input");
    }

    #[test]
    fn empty_and_full_maps_keep_their_serde_form() {
        let empty: Metadata = serde_json::from_str("{}").unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty, Metadata::default(), "an empty map is the default");
        assert_eq!(
            Metadata::new::<&str, &str>([]).unwrap(),
            Metadata::default()
        );
        assert_eq!(serde_json::to_string(&empty).unwrap(), "{}");
        let full = Metadata::new([("team", "billing"), ("a", "b")]).unwrap();
        assert_eq!(
            serde_json::to_string(&full).unwrap(),
            r#"{"a":"b","team":"billing"}"#
        );
        assert_eq!(full.iter().count(), 2);
        assert_eq!(empty.get("team"), None);
        assert_eq!(empty.iter().count(), 0);
    }
}
