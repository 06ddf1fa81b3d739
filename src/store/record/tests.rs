use super::*;
use crate::forg::ForgScope;
use crate::key::KeyHasher;

fn issued(family: &KeyFamily) -> (PlaintextKey, KeyRecord<ForgScope>) {
    let at = UNIX_EPOCH + Duration::from_millis(1_796_169_600_123);
    NewKey::new("org_1", "ci", family)
        .issue(&KeyHasher::sha256(), at)
        .unwrap()
}

#[test]
fn the_layout_is_compact() {
    // Counted, not timed: a field added to every record shows here first (the version,
    // for `ETag`s, took it from 160 to 168).
    assert_eq!(std::mem::size_of::<KeyRecord<ForgScope>>(), 168);
    let (_, record) = issued(&KeyFamily::FORG_LIVE);
    assert!(record.rare.is_none(), "nothing rare: no allocation for it");
    assert!(matches!(record.prefix, Cow::Borrowed("forg_live_")));
}

#[test]
fn the_hint_is_rebuilt_from_the_prefix_and_the_tail() {
    for family in [KeyFamily::FORG_LIVE, KeyFamily::FORG_TEST, KeyFamily::FOS] {
        let (key, record) = issued(&family);
        assert_eq!(record.hint(), key.redacted());
        assert!(record.rare.is_none());
    }
}

#[test]
fn a_hint_of_another_form_is_kept_as_given() {
    let (_, record) = issued(&KeyFamily::FORG_LIVE);
    for hint in [
        "forg_live_…",
        "forg_live_…ab",
        "legacy-****-9f3a",
        "forg_live_…abcde",
    ] {
        let mut json = serde_json::to_value(&record).unwrap();
        json["hint"] = hint.into();
        let read: KeyRecord<ForgScope> = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(read.hint(), hint);
        assert_eq!(
            serde_json::to_value(&read).unwrap(),
            json,
            "the same serde form"
        );
    }
}

#[test]
fn rare_parts_are_absent_again_once_all_are_empty() {
    let (_, mut record) = issued(&KeyFamily::FORG_LIVE);
    let metadata = Metadata::new([("team", "billing")]).unwrap();
    record.set_metadata(metadata.clone());
    record.set_allowed_networks(AllowedNetworks::new(["10.0.0.0/8"]).unwrap());
    assert_eq!(record.metadata(), &metadata);
    assert!(record.rare.is_some());
    record.set_metadata(Metadata::default());
    assert!(record.rare.is_some(), "the networks are still set");
    record.set_allowed_networks(AllowedNetworks::default());
    assert!(record.rare.is_none());
    assert!(record.metadata().is_empty() && record.rate_limits().is_empty());
}

#[test]
fn times_are_kept_to_the_millisecond_over_any_range_a_client_can_send() {
    let (_, mut record) = issued(&KeyFamily::FORG_LIVE);
    let fine = UNIX_EPOCH + Duration::new(1_796_169_600, 123_456_789);
    record.set_expires_at(Some(fine));
    assert_eq!(
        record.expires_at(),
        Some(UNIX_EPOCH + Duration::from_millis(1_796_169_600_123))
    );
    // The last second RFC 3339 can write (the management API's latest expiry).
    let latest = UNIX_EPOCH + Duration::from_secs(253_402_300_799);
    record.set_revoked_at(Some(latest));
    assert_eq!(record.revoked_at(), Some(latest));
    assert_eq!(
        record.refused_since(),
        Some(fine.min(latest) - Duration::from_nanos(456_789))
    );
    record.set_last_used_at(Some(UNIX_EPOCH - Duration::from_secs(1)));
    assert_eq!(
        record.last_used_at(),
        Some(UNIX_EPOCH),
        "before 1970: the epoch"
    );
    record.set_expires_at(None);
    assert_eq!(record.expires_at(), None);
    assert_eq!(record.refused_since(), Some(latest));
}

#[test]
fn status_compares_times_at_millisecond_precision() {
    let (_, mut record) = issued(&KeyFamily::FORG_LIVE);
    let at = UNIX_EPOCH + Duration::from_millis(1_796_170_000_000);
    record.set_expires_at(Some(at));
    assert_eq!(
        record.status_at(at - Duration::from_nanos(1)),
        KeyStatus::Active
    );
    assert_eq!(record.status_at(at), KeyStatus::Expired);
    record.set_revoked_at(Some(at - Duration::from_secs(1)));
    assert_eq!(record.status_at(at), KeyStatus::Revoked);
}
