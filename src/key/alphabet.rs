//! [`Alphabet`] (the characters a key's secret is made of) and [`Checksum`] (what makes a
//! typo or a made-up key fail to parse before any lookup).

use super::GenerateError;

/// The characters a key's secret part (after the prefix) is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Alphabet {
    /// `0-9a-f`. Upper-case hex is not accepted: keys are case-sensitive.
    LowerHex,
    /// `0-9A-Za-z`.
    Base62,
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `MEMBERS[alphabet][byte]` is 1 when the byte belongs to the alphabet.
const MEMBERS: [[u8; 256]; 2] = {
    let mut table = [[0u8; 256]; 2];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[0][b] = (c.is_ascii_digit() || (c >= b'a' && c <= b'f')) as u8;
        table[1][b] = c.is_ascii_alphanumeric() as u8;
        b += 1;
    }
    table
};

impl Alphabet {
    /// Whether every byte belongs to the alphabet: a table lookup per byte, no branch.
    #[inline]
    pub(super) fn contains_all(self, bytes: &[u8]) -> bool {
        let table = match self {
            Alphabet::LowerHex => &MEMBERS[0],
            Alphabet::Base62 => &MEMBERS[1],
        };
        bytes
            .iter()
            .fold(1u8, |all, &b| all & table[usize::from(b)])
            == 1
    }

    /// Entropy of one character, in thousandths of a bit (integer, so checks stay exact).
    pub(super) const fn millibits_per_char(self) -> usize {
        match self {
            Alphabet::LowerHex => 4000,
            Alphabet::Base62 => 5954,
        }
    }

    pub(super) fn generate(self, len: usize, out: &mut String) -> Result<(), GenerateError> {
        let mut buf = zeroize::Zeroizing::new([0u8; 64]);
        let mut written = 0;
        while written < len {
            getrandom::fill(&mut buf[..]).map_err(GenerateError::new)?;
            for &byte in buf.iter() {
                if written == len {
                    break;
                }
                match self {
                    Alphabet::LowerHex => {
                        // One random nibble per character: exactly 4 bits each.
                        out.push(char::from(b"0123456789abcdef"[usize::from(byte & 0x0f)]));
                        written += 1;
                    }
                    Alphabet::Base62 => {
                        // Rejection sampling keeps the distribution uniform: 248 = 4 * 62.
                        if byte < 248 {
                            out.push(char::from(BASE62[usize::from(byte % 62)]));
                            written += 1;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// A checksum at the end of every key of a family, so that a secret scanner can tell a
/// real key from a look-alike offline and a mistyped key is refused before it is hashed
/// (as GitHub's token format does). Set with [`KeyFamilyBuilder::checksum`](super::KeyFamilyBuilder::checksum); the FORG and
/// ForgeOS families keep their documented formats, without one.
///
/// ```
/// use tower_api_key::key::{Alphabet, Checksum, Environment, KeyFamilies, KeyFamily, MalformedKey};
///
/// let acme = KeyFamily::builder("acme_", Environment::Live)
///     .alphabet(Alphabet::Base62)
///     .secret_len(30..=30)
///     .checksum(Checksum::Crc32Base62)
///     .build()
///     .unwrap();
/// let key = acme.generate().unwrap();
/// assert_eq!(key.expose_secret().len(), "acme_".len() + 30 + 6);
/// let families = KeyFamilies::only([acme.clone()]).unwrap();
/// assert!(families.parse(key.expose_secret()).is_ok());
///
/// // One character changed: refused as malformed, before anything is hashed.
/// let mut typo = key.expose_secret().to_owned();
/// let last = typo.pop().unwrap();
/// typo.push(if last == 'a' { 'b' } else { 'a' });
/// assert_eq!(families.parse(&typo).unwrap_err(), MalformedKey::Checksum);
/// // What a secret scanner matches:
/// assert_eq!(acme.pattern(), "acme_[0-9A-Za-z]{30}[0-9A-Za-z]{6}");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Checksum {
    /// CRC-32 (IEEE) of the prefix and the secret, as 6 base62 characters
    /// (`0-9A-Za-z`, most significant first, zero-padded) after the secret. It detects
    /// every one-character change and is no secret: anyone can compute it.
    Crc32Base62,
}

impl Checksum {
    /// How many characters it adds.
    pub const fn len(self) -> usize {
        match self {
            Checksum::Crc32Base62 => 6,
        }
    }

    /// Never empty; for clippy's `len` without `is_empty` rule.
    pub const fn is_empty(self) -> bool {
        false
    }

    /// The checksum of `body` (prefix and secret).
    pub(super) fn of(self, body: &[u8]) -> [u8; 6] {
        let mut n = crc32fast::hash(body);
        let mut out = [b'0'; 6];
        for slot in out.iter_mut().rev() {
            *slot = BASE62[(n % 62) as usize];
            n /= 62;
        }
        out
    }
}
