//! Property tests: the key parser against a regular-expression oracle, generated keys,
//! header spellings, and `ScopeSet` against a naive set model. Failures are persisted in
//! `tests/proptest-regressions/` and replayed first on every run.

use std::collections::BTreeSet;

use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use regex::Regex;
use tower_api_key::key::{KeyFamilies, KeyFamily};
use tower_api_key::scope::Scope;
use tower_api_key::{ForgScope, ScopeSet};

fn oracle() -> Regex {
    Regex::new(r"\A(?:forg_live_[0-9a-f]{32}|forg_test_[0-9a-f]{32}|fos_[0-9a-f]{32,128})\z")
        .unwrap()
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 2_000,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(
                "tests/proptest-regressions/properties.txt",
            ),
        )),
        ..ProptestConfig::default()
    }
}

/// Valid keys of every family, with lengths across the `fos_` range.
fn valid_key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-f]{32}".prop_map(|s| format!("forg_live_{s}")),
        "[0-9a-f]{32}".prop_map(|s| format!("forg_test_{s}")),
        "[0-9a-f]{32,128}".prop_map(|s| format!("fos_{s}")),
    ]
}

#[derive(Clone, Debug)]
enum Mutation {
    Insert(usize, char),
    Delete(usize),
    Replace(usize, char),
    Uppercase(usize),
    Truncate(usize),
    Repeat,
    Surround(String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let ch = prop_oneof![
        proptest::char::range('0', 'z'),
        Just(' '),
        Just('\t'),
        Just('\n'),
        Just('é'),
        Just('\u{0}'),
        any::<char>(),
    ];
    prop_oneof![
        (any::<usize>(), ch.clone()).prop_map(|(i, c)| Mutation::Insert(i, c)),
        any::<usize>().prop_map(Mutation::Delete),
        (any::<usize>(), ch).prop_map(|(i, c)| Mutation::Replace(i, c)),
        any::<usize>().prop_map(Mutation::Uppercase),
        any::<usize>().prop_map(Mutation::Truncate),
        Just(Mutation::Repeat),
        "[ \t]{1,3}".prop_map(Mutation::Surround),
    ]
}

fn apply(key: &str, mutation: &Mutation) -> String {
    let mut chars: Vec<char> = key.chars().collect();
    let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
    match mutation {
        Mutation::Insert(i, c) => chars.insert(at(*i, chars.len() + 1), *c),
        Mutation::Delete(i) => {
            let i = at(*i, chars.len());
            chars.remove(i);
        }
        Mutation::Replace(i, c) => {
            let i = at(*i, chars.len());
            chars[i] = *c;
        }
        Mutation::Uppercase(i) => {
            let i = at(*i, chars.len());
            chars[i] = chars[i].to_ascii_uppercase();
        }
        Mutation::Truncate(i) => chars.truncate(at(*i, chars.len())),
        Mutation::Repeat => return format!("{key}{key}"),
        Mutation::Surround(ws) => return format!("{ws}{key}{ws}"),
    }
    chars.into_iter().collect()
}

/// The session cookie as the `cookie` crate reads it: `Err` when it is there twice.
fn session_by_cookie_crate(header: &str) -> Result<Option<String>, ()> {
    let mut found = None;
    for cookie in cookie::Cookie::split_parse(header).flatten() {
        if cookie.name() == "forge_session" {
            if found.is_some() {
                return Err(());
            }
            found = Some(cookie.value_raw().unwrap_or_default().to_owned());
        }
    }
    Ok(found)
}

fn sessions() -> &'static tower_api_key::session::Sessions<tower_api_key::MemoryKeyStore<ForgScope>>
{
    use std::sync::{Arc, OnceLock};
    static SESSIONS: OnceLock<
        tower_api_key::session::Sessions<tower_api_key::MemoryKeyStore<ForgScope>>,
    > = OnceLock::new();
    SESSIONS.get_or_init(|| {
        tower_api_key::forg::sessions(
            Arc::new(
                tower_api_key::MemoryKeyStore::new().with_policy(tower_api_key::forg::key_policy()),
            ),
            tower_api_key::session::CsrfSecret::from_bytes(&[1; 32]).unwrap(),
        )
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_session_cookie_is_read_as_the_cookie_crate_reads_it(
        pairs in prop::collection::vec(
            (
                prop_oneof![Just("forge_session"), Just(" forge_session"), Just("forge_session "), Just("forge_csrf"), Just("Forge_Session"), Just(""), Just("x=forge_session"), Just("forge_sessionx")],
                prop_oneof![Just("="), Just(""), Just(" = "), Just("==")],
                "[a-z0-9 \t\"=]{0,12}",
            ),
            0..5,
        ),
        separator in prop_oneof![Just(";"), Just("; "), Just(" ;"), Just(";;")],
    ) {
        let header: Vec<String> = pairs.iter().map(|(name, eq, value)| format!("{name}{eq}{value}")).collect();
        let header = header.join(separator);
        let mut headers = HeaderMap::new();
        headers.insert("cookie", HeaderValue::from_str(&header).unwrap());
        let ours = sessions().session_cookie(&headers).map(|v| v.map(str::to_owned)).map_err(|_| ());
        prop_assert_eq!(ours, session_by_cookie_crate(&header), "{:?}", header);
    }

    #[test]
    fn parser_agrees_with_the_oracle_on_arbitrary_strings(s in any::<String>()) {
        let families = KeyFamilies::builtin();
        prop_assert_eq!(families.parse(&s).is_ok(), oracle().is_match(&s));
    }

    #[test]
    fn parser_agrees_with_the_oracle_on_near_misses(
        prefix in prop_oneof![Just("forg_live_"), Just("forg_test_"), Just("fos_"), Just("forg_"), Just("fos"), Just("")],
        secret in "[0-9a-fA-F_ g-z]{0,140}",
    ) {
        let s = format!("{prefix}{secret}");
        prop_assert_eq!(KeyFamilies::builtin().parse(&s).is_ok(), oracle().is_match(&s));
    }

    #[test]
    fn parser_agrees_with_the_oracle_on_mutated_keys(key in valid_key(), mutation in mutation()) {
        let mutated = apply(&key, &mutation);
        let families = KeyFamilies::builtin();
        prop_assert!(families.parse(&key).is_ok());
        prop_assert_eq!(families.parse(&mutated).is_ok(), oracle().is_match(&mutated), "{:?}", mutated);
    }

    #[test]
    fn generated_keys_round_trip(family in prop_oneof![Just(KeyFamily::FORG_LIVE), Just(KeyFamily::FORG_TEST), Just(KeyFamily::FOS)]) {
        let key = family.generate().unwrap();
        let families = KeyFamilies::builtin();
        let parsed = families.parse(key.expose_secret()).unwrap();
        prop_assert_eq!(parsed.family(), &family);
        prop_assert!(oracle().is_match(key.expose_secret()));
        let shown = format!("{:?}{}", key, key);
        prop_assert!(!shown.contains(&key.expose_secret()[family.prefix().len()..]));
    }

    #[test]
    fn every_header_spelling_gives_the_same_key(
        key in valid_key(),
        scheme in "[bB][eE][aA][rR][eE][rR]",
        before in "[ \t]{0,3}",
        between in "[ \t]{1,3}",
        after in "[ \t]{0,3}",
        use_forgeos in any::<bool>(),
    ) {
        let mut headers = HeaderMap::new();
        if use_forgeos {
            headers.insert("x-forgeos-api-key", HeaderValue::from_str(&format!("{before}{key}{after}")).unwrap());
        } else {
            let value = format!("{before}{scheme}{between}{key}{after}");
            headers.insert("authorization", HeaderValue::from_str(&value).unwrap());
        }
        let sources = tower_api_key::forg::credential_sources();
        let credential = sources.extract(&headers).unwrap().unwrap();
        prop_assert_eq!(credential.expose_secret(), key.as_str());
    }

    #[test]
    fn scope_sets_round_trip_through_text_and_serde(bits in any::<u8>()) {
        let set: ScopeSet<ForgScope> = ForgScope::ALL.iter().copied().filter(|s| bits & (1 << s.index()) != 0).collect();
        prop_assert_eq!(set.to_string().parse::<ScopeSet<ForgScope>>().unwrap(), set);
        let json = serde_json::to_string(&set).unwrap();
        prop_assert_eq!(serde_json::from_str::<ScopeSet<ForgScope>>(&json).unwrap(), set);
        prop_assert_eq!(set.len(), bits.count_ones() as usize);
    }

    #[test]
    fn set_operations_agree_with_a_naive_model(granted in any::<u8>(), required in any::<u8>()) {
        let to_set = |bits: u8| -> ScopeSet<ForgScope> { ForgScope::ALL.iter().copied().filter(|s| bits & (1 << s.index()) != 0).collect() };
        let to_model = |bits: u8| -> BTreeSet<&'static str> {
            ForgScope::ALL.iter().filter(|s| bits & (1 << s.index()) != 0).map(|s| s.as_str()).collect()
        };
        let (g, r) = (to_set(granted), to_set(required));
        let (gm, rm) = (to_model(granted), to_model(required));
        let admin = gm.contains("admin");
        prop_assert_eq!(g.contains_all(r), admin || rm.is_subset(&gm));
        prop_assert_eq!(g.contains_any(r), !rm.is_empty() && (admin || !rm.is_disjoint(&gm)));
        for &scope in ForgScope::ALL {
            prop_assert_eq!(g.contains(scope), admin || gm.contains(scope.as_str()));
        }
        let missing: BTreeSet<_> = if admin { BTreeSet::new() } else { rm.difference(&gm).copied().collect() };
        prop_assert_eq!(g.missing(r).iter().map(|s| s.as_str()).collect::<BTreeSet<_>>(), missing);
    }

    #[test]
    fn unknown_scope_names_are_reported(name in "[a-z:_]{1,20}") {
        let known = ForgScope::ALL.iter().any(|s| s.as_str() == name);
        match format!("read:rules {name}").parse::<ScopeSet<ForgScope>>() {
            Ok(_) => prop_assert!(known),
            Err(error) => {
                prop_assert!(!known);
                prop_assert_eq!(error.name(), name.as_str());
            }
        }
    }
}
