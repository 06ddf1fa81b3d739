//! The serde form of a [`KeyRecord`]: timestamps as Unix milliseconds, scopes as names,
//! the digest as hex; written from the record's parts and read back into them.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::*;
use crate::support::unix_millis;

/// The serde form, written from a record's parts.
#[derive(Serialize)]
#[serde(bound = "")]
struct WireOut<'a, S: Scope> {
    id: &'a KeyId,
    digest: &'a KeyDigest,
    owner: &'a str,
    name: &'a str,
    prefix: &'a str,
    environment: Environment,
    hint: String,
    scopes: ScopeSet<S>,
    #[serde(with = "unix_millis")]
    created_at: SystemTime,
    #[serde(with = "unix_millis::option")]
    expires_at: Option<SystemTime>,
    #[serde(with = "unix_millis::option")]
    revoked_at: Option<SystemTime>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    revoked: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    disabled: bool,
    #[serde(skip_serializing_if = "Metadata::is_empty")]
    metadata: &'a Metadata,
    #[serde(skip_serializing_if = "AllowedNetworks::is_empty")]
    allowed_networks: &'a AllowedNetworks,
    #[serde(with = "unix_millis::option", skip_serializing_if = "Option::is_none")]
    last_used_at: Option<SystemTime>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    rate_limits: &'a BTreeMap<ClassName, Quota>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lineage: Option<&'a KeyId>,
    #[serde(skip_serializing_if = "is_zero")]
    version: u64,
}

fn is_zero(version: &u64) -> bool {
    *version == 0
}

/// The serde form, read.
#[derive(Deserialize)]
#[serde(bound = "")]
struct WireIn<S: Scope> {
    id: KeyId,
    digest: KeyDigest,
    owner: String,
    name: String,
    prefix: String,
    environment: Environment,
    hint: String,
    scopes: ScopeSet<S>,
    #[serde(with = "unix_millis")]
    created_at: SystemTime,
    #[serde(default, with = "unix_millis::option")]
    expires_at: Option<SystemTime>,
    #[serde(default, with = "unix_millis::option")]
    revoked_at: Option<SystemTime>,
    #[serde(default)]
    revoked: bool,
    #[serde(default)]
    disabled: bool,
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    allowed_networks: AllowedNetworks,
    #[serde(default, with = "unix_millis::option")]
    last_used_at: Option<SystemTime>,
    #[serde(default)]
    rate_limits: BTreeMap<ClassName, Quota>,
    #[serde(default)]
    lineage: Option<KeyId>,
    #[serde(default)]
    version: u64,
}

impl<S: Scope> Serialize for KeyRecord<S> {
    fn serialize<Ser: serde::Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        WireOut {
            id: &self.id,
            digest: &self.digest,
            owner: self.owner(),
            name: self.name(),
            prefix: self.prefix(),
            environment: self.environment,
            hint: self.hint(),
            scopes: self.scopes,
            created_at: self.created_at(),
            expires_at: self.expires_at(),
            revoked_at: self.revoked_at(),
            revoked: self.revoked,
            disabled: self.disabled,
            metadata: self.metadata(),
            allowed_networks: self.allowed_networks(),
            last_used_at: self.last_used_at(),
            rate_limits: self.rate_limits(),
            lineage: self.rare().lineage.as_ref(),
            version: self.version,
        }
        .serialize(serializer)
    }
}

impl<'de, S: Scope> Deserialize<'de> for KeyRecord<S> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = WireIn::<S>::deserialize(deserializer)?;
        let mut record = Self {
            id: wire.id,
            digest: wire.digest,
            owner: wire.owner.into(),
            name: wire.name.into(),
            prefix: prefix_of(&wire.prefix),
            scopes: wire.scopes,
            created_at: At::new(wire.created_at),
            expires_at: At::from_option(wire.expires_at),
            revoked_at: At::from_option(wire.revoked_at),
            last_used_at: At::from_option(wire.last_used_at),
            rare: None,
            version: wire.version,
            hint_tail: [0; 4],
            environment: wire.environment,
            revoked: wire.revoked,
            disabled: wire.disabled,
        };
        record.set_hint(wire.hint);
        record.set_metadata(wire.metadata);
        record.set_allowed_networks(wire.allowed_networks);
        record.set_rate_limits(wire.rate_limits);
        if let Some(lineage) = wire.lineage {
            record.set_lineage(lineage);
        }
        Ok(record)
    }
}
