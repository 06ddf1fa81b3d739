//! Key families, parsing, generation, redaction and digests.

use std::collections::HashSet;

use tower_api_key::key::{
    Alphabet, Environment, FamilyError, KeyDigest, KeyFamilies, KeyFamily, KeyHasher, MalformedKey,
};

const HEX32: &str = "a3f9e2c1b84d7f6e0a2c1d8e9f0b3c4d";

#[test]
fn builtin_families_parse_their_documented_formats() {
    let families = KeyFamilies::builtin();
    let live = format!("forg_live_{HEX32}");
    let test = format!("forg_test_{HEX32}");
    let parsed = families.parse(&live).unwrap();
    assert_eq!(parsed.family(), &KeyFamily::FORG_LIVE);
    assert_eq!(parsed.environment(), Environment::Live);
    assert_eq!(parsed.expose_secret(), live);
    assert_eq!(
        families.parse(&test).unwrap().environment(),
        Environment::Test
    );
    for len in [32, 33, 64, 127, 128] {
        let key = format!("fos_{}", "0".repeat(len));
        let parsed = families
            .parse(&key)
            .unwrap_or_else(|e| panic!("fos_ with {len}: {e}"));
        assert_eq!(parsed.family(), &KeyFamily::FOS);
    }
}

#[test]
fn everything_else_is_rejected_with_a_reason() {
    let families = KeyFamilies::builtin();
    let cases: Vec<(String, MalformedKey)> = vec![
        (String::new(), MalformedKey::Empty),
        (format!("forg_live_{}", &HEX32[..31]), MalformedKey::Length),
        (format!("forg_live_{HEX32}0"), MalformedKey::Length),
        (
            format!("forg_live_{}", HEX32.to_uppercase()),
            MalformedKey::Character,
        ),
        (format!("FORG_LIVE_{HEX32}"), MalformedKey::UnknownPrefix),
        (format!("Forg_live_{HEX32}"), MalformedKey::UnknownPrefix),
        (format!("forg_prod_{HEX32}"), MalformedKey::UnknownPrefix),
        (format!("sk_live_{HEX32}"), MalformedKey::UnknownPrefix),
        (format!(" forg_live_{HEX32}"), MalformedKey::UnknownPrefix),
        (
            format!("forg_live_{}", &HEX32[..31]) + " ",
            MalformedKey::Character,
        ),
        (
            format!("forg_live_{}\n", &HEX32[..31]),
            MalformedKey::Character,
        ),
        (
            format!("forg_live_{}é", &HEX32[..30]),
            MalformedKey::Character,
        ),
        (
            format!("forg_live_{}g", &HEX32[..31]),
            MalformedKey::Character,
        ),
        (format!("forg_live_forg_live_{HEX32}"), MalformedKey::Length),
        (format!("fos_{}", "0".repeat(31)), MalformedKey::Length),
        (format!("fos_{}", "0".repeat(129)), MalformedKey::Length),
        ("fos_".to_owned(), MalformedKey::Length),
        ("x".repeat(64 * 1024), MalformedKey::Length),
        ("é".repeat(10), MalformedKey::UnknownPrefix),
    ];
    for (key, expected) in cases {
        assert_eq!(families.parse(&key).unwrap_err(), expected, "{key:?}");
    }
}

#[test]
fn malformed_key_errors_do_not_repeat_the_input() {
    let families = KeyFamilies::builtin();
    let key = format!("forg_live_{}", HEX32.to_uppercase());
    let error = families.parse(&key).unwrap_err();
    assert!(!error.to_string().contains(&HEX32.to_uppercase()));
    assert!(!format!("{error:?}").contains(&HEX32.to_uppercase()));
}

#[test]
fn generated_keys_match_their_family_and_are_unique() {
    let families = KeyFamilies::builtin();
    let mut seen = HashSet::new();
    for family in [KeyFamily::FORG_LIVE, KeyFamily::FORG_TEST, KeyFamily::FOS] {
        for _ in 0..200 {
            let key = family.generate().unwrap();
            let parsed = families.parse(key.expose_secret()).unwrap();
            assert_eq!(parsed.family(), &family);
            assert_eq!(
                key.expose_secret().len(),
                family.prefix().len() + family.generated_len()
            );
            assert!(
                seen.insert(key.expose_secret().to_owned()),
                "duplicate key generated"
            );
        }
    }
    assert_eq!(KeyFamily::FORG_LIVE.generated_len(), 32); // 128 bits
    assert_eq!(KeyFamily::FOS.generated_len(), 64); // 256 bits
}

#[test]
fn generated_hex_uses_every_digit() {
    // 128 bits per key, 100 keys: every hex digit shows up; a stuck generator would not.
    let mut counts = [0usize; 16];
    for _ in 0..100 {
        let key = KeyFamily::FORG_LIVE.generate().unwrap();
        for c in key.expose_secret()["forg_live_".len()..].chars() {
            counts[c.to_digit(16).unwrap() as usize] += 1;
        }
    }
    assert!(counts.iter().all(|&n| n > 100), "{counts:?}");
}

#[test]
fn plaintext_is_redacted_in_debug_and_display() {
    let key = KeyFamily::FORG_LIVE.generate().unwrap();
    let secret = key.expose_secret();
    let last4 = &secret[secret.len() - 4..];
    assert_eq!(key.to_string(), format!("forg_live_…{last4}"));
    assert_eq!(
        format!("{key:?}"),
        format!("PlaintextKey(\"forg_live_…{last4}\")")
    );
    let families = KeyFamilies::builtin();
    let parsed = families.parse(secret).unwrap();
    let debug = format!("{parsed:?}");
    assert!(!debug.contains(&secret["forg_live_".len()..]), "{debug}");
    assert!(debug.contains(&format!("forg_live_…{last4}")));
}

#[test]
fn digest_is_sha256_of_the_whole_key() {
    // echo -n forg_live_a3f9e2c1b84d7f6e0a2c1d8e9f0b3c4d | sha256sum
    let digest = KeyHasher::sha256().digest(&format!("forg_live_{HEX32}"));
    assert_eq!(
        digest.to_string(),
        "1d7d1e12e6f8e0c8b3ed0c3b436d32dc40fa2c61b404187c13ea602c8fd08209"
    );
}

#[test]
fn digest_text_forms_are_strict_lower_hex() {
    let digest = KeyHasher::sha256().digest("fos_0123");
    let hex = digest.to_string();
    assert_eq!(hex.parse::<KeyDigest>().unwrap(), digest);
    assert!(hex.to_uppercase().parse::<KeyDigest>().is_err());
    assert!(hex[..63].parse::<KeyDigest>().is_err());
    assert!(format!("{hex}0").parse::<KeyDigest>().is_err());
    assert!(format!("{}g", &hex[..63]).parse::<KeyDigest>().is_err());
    assert_eq!(format!("{digest:?}"), format!("KeyDigest({}…)", &hex[..8]));

    let json = serde_json::to_string(&digest).unwrap();
    assert_eq!(json, format!("\"{hex}\""));
    assert_eq!(serde_json::from_str::<KeyDigest>(&json).unwrap(), digest);
    assert!(serde_json::from_str::<KeyDigest>(&json.to_uppercase()).is_err());
}

#[test]
fn digest_equality_compares_every_byte() {
    let base = KeyHasher::sha256().digest("fos_0123");
    assert_eq!(base, KeyDigest::from_bytes(*base.as_bytes()));
    for i in 0..32 {
        for bit in [0x01u8, 0x80] {
            let mut bytes = *base.as_bytes();
            bytes[i] ^= bit;
            assert_ne!(base, KeyDigest::from_bytes(bytes), "byte {i} bit {bit:#x}");
        }
    }
}

#[test]
fn pepper_changes_digests_and_must_be_long_enough() {
    assert!(KeyHasher::peppered(&[1u8; 31]).is_err());
    let a = KeyHasher::peppered(&[1u8; 32]).unwrap();
    let b = KeyHasher::peppered(&[2u8; 32]).unwrap();
    let key = format!("forg_live_{HEX32}");
    assert_ne!(a.digest(&key), KeyHasher::sha256().digest(&key));
    assert_ne!(a.digest(&key), b.digest(&key));
    assert_eq!(a.digest(&key), a.clone().digest(&key));
    assert!(a.is_peppered());
    assert_eq!(
        format!("{a:?}"),
        r#"KeyHasher { algorithm: "HMAC-SHA-256 (pepper redacted)" }"#
    );
}

#[test]
fn custom_family_builder_refuses_bad_configuration() {
    let build = |prefix: &str, alphabet, len: std::ops::RangeInclusive<usize>| {
        KeyFamily::builder(prefix.to_owned(), Environment::Live)
            .alphabet(alphabet)
            .secret_len(len)
            .build()
    };
    assert_eq!(
        build("", Alphabet::LowerHex, 32..=32),
        Err(FamilyError::Prefix)
    );
    assert_eq!(
        build("has space_", Alphabet::LowerHex, 32..=32),
        Err(FamilyError::Prefix)
    );
    assert_eq!(
        build(&"p".repeat(33), Alphabet::LowerHex, 32..=32),
        Err(FamilyError::Prefix)
    );
    assert_eq!(
        build("ok_", Alphabet::LowerHex, 0..=32),
        Err(FamilyError::Length)
    );
    #[allow(clippy::reversed_empty_ranges)]
    let empty = 40..=32;
    assert_eq!(
        build("ok_", Alphabet::LowerHex, empty),
        Err(FamilyError::Length)
    );
    assert_eq!(
        build("ok_", Alphabet::LowerHex, 16..=16),
        Err(FamilyError::WeakKeys)
    );
    assert_eq!(
        build("ok_", Alphabet::Base62, 21..=21),
        Err(FamilyError::WeakKeys)
    );
    assert!(build("ok_", Alphabet::Base62, 22..=22).is_ok());
    assert_eq!(
        KeyFamily::builder("ok_", Environment::Live)
            .secret_len(32..=64)
            .generated_len(65)
            .build(),
        Err(FamilyError::GeneratedLength)
    );
}

#[test]
fn overlapping_prefixes_are_refused() {
    let forg = KeyFamily::builder("forg_", Environment::Live)
        .build()
        .unwrap();
    assert_eq!(
        KeyFamilies::builtin().with(forg),
        Err(FamilyError::OverlappingPrefix("forg_".to_owned()))
    );
    let fos_x = KeyFamily::builder("fos_x_", Environment::Live)
        .build()
        .unwrap();
    assert!(KeyFamilies::builtin().with(fos_x).is_err());
    let only = KeyFamilies::only([KeyFamily::FOS]).unwrap();
    assert!(only.parse(&format!("forg_live_{HEX32}")).is_err());
    assert!(KeyFamilies::only([]).is_err());
}

#[test]
fn base62_family_round_trips() {
    let family = KeyFamily::builder("acme_sk_", Environment::Test)
        .alphabet(Alphabet::Base62)
        .secret_len(30..=48)
        .generated_len(40)
        .build()
        .unwrap();
    let families = KeyFamilies::builtin().with(family.clone()).unwrap();
    for _ in 0..100 {
        let key = family.generate().unwrap();
        assert_eq!(key.expose_secret().len(), "acme_sk_".len() + 40);
        assert_eq!(
            families.parse(key.expose_secret()).unwrap().family(),
            &family
        );
    }
    assert!(families
        .parse(&format!("acme_sk_{}", "a-".repeat(20)))
        .is_err());
}

/// A checksummed family (issue 25.6): generated keys carry a CRC-32 in six base62
/// characters and parse; every one-character change anywhere after the prefix is refused
/// as malformed (checksum, or character for a change outside the alphabet), so the layer
/// answers 401 without a lookup; and each family's documented pattern matches its keys.
#[test]
fn checksummed_families_refuse_every_one_character_change() {
    use tower_api_key::key::Checksum;
    let acme = KeyFamily::builder("acme_", Environment::Live)
        .alphabet(Alphabet::Base62)
        .secret_len(30..=30)
        .checksum(Checksum::Crc32Base62)
        .build()
        .unwrap();
    let families = KeyFamilies::only([acme.clone()]).unwrap();
    let alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    for _ in 0..20 {
        let key = acme.generate().unwrap();
        let key = key.expose_secret();
        assert_eq!(key.len(), 5 + 30 + 6);
        assert!(families.parse(key).is_ok());
        for position in 5..key.len() {
            for replacement in alphabet.chars().chain(['_', '-', ' ']) {
                let mut changed: Vec<char> = key.chars().collect();
                if changed[position] == replacement {
                    continue;
                }
                changed[position] = replacement;
                let changed: String = changed.into_iter().collect();
                let refused = families.parse(&changed).unwrap_err();
                assert!(
                    matches!(refused, MalformedKey::Checksum | MalformedKey::Character),
                    "{position}: {refused:?}"
                );
            }
        }
        // Truncated or extended: the length is checked first.
        assert_eq!(
            families.parse(&key[..key.len() - 1]).unwrap_err(),
            MalformedKey::Length
        );
        assert_eq!(
            families.parse(&format!("{key}0")).unwrap_err(),
            MalformedKey::Length
        );
    }
    // Without a checksum, a one-character change is another well-formed key: the reason
    // for checksums.
    let plain = KeyFamily::FORG_LIVE.generate().unwrap();
    let mut changed = plain.expose_secret().to_owned();
    let last = changed.pop().unwrap();
    changed.push(if last == '0' { '1' } else { '0' });
    assert!(KeyFamilies::builtin().parse(&changed).is_ok());
}

/// The regular expressions the README documents for secret scanners, one per family,
/// match every generated key in full.
#[test]
fn each_familys_pattern_matches_its_keys() {
    use tower_api_key::key::Checksum;
    let acme = KeyFamily::builder("acme.v1_", Environment::Live)
        .alphabet(Alphabet::Base62)
        .secret_len(30..=30)
        .checksum(Checksum::Crc32Base62)
        .build()
        .unwrap();
    for (family, documented) in [
        (KeyFamily::FORG_LIVE, "forg_live_[0-9a-f]{32}"),
        (KeyFamily::FORG_TEST, "forg_test_[0-9a-f]{32}"),
        (KeyFamily::FOS, "fos_[0-9a-f]{32,128}"),
        (acme, r"acme\.v1_[0-9A-Za-z]{30}[0-9A-Za-z]{6}"),
    ] {
        assert_eq!(family.pattern(), documented);
        let whole = regex::Regex::new(&format!("^{documented}$")).unwrap();
        for _ in 0..50 {
            let key = family.generate().unwrap();
            assert!(whole.is_match(key.expose_secret()), "{documented}");
        }
    }
}
