//! Parsing, hashing and verifying one key; `MemoryKeyStore` lookups with 1k and 1M keys.
//! The baseline is one SHA-256 of a 42-byte key (`sha256/forg_live`), measured in the
//! same run.

use futures_util::FutureExt;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower_api_key::key::{KeyDigest, KeyFamilies, KeyFamily, KeyHasher};
use tower_api_key::store::ManageKeys;
use tower_api_key::{ForgScope, KeyStore, MemoryKeyStore, NewKey};

const LIVE: &str = "forg_live_a3f9e2c1b84d7f6e0a2c1d8e9f0b3c4d";

fn baseline(c: &mut Criterion) {
    c.bench_function("sha256/forg_live", |b| {
        b.iter(|| Sha256::digest(black_box(LIVE.as_bytes())))
    });
}

fn parse(c: &mut Criterion) {
    let families = KeyFamilies::builtin();
    let mut group = c.benchmark_group("parse");
    group.bench_function("valid", |b| {
        b.iter(|| families.parse(black_box(LIVE)).is_ok())
    });
    group.bench_function("malformed_early", |b| {
        b.iter(|| {
            families
                .parse(black_box("sk_live_a3f9e2c1b84d7f6e0a2c1d8e9f0b3c4d"))
                .is_err()
        })
    });
    group.bench_function("malformed_late", |b| {
        b.iter(|| {
            families
                .parse(black_box("forg_live_a3f9e2c1b84d7f6e0a2c1d8e9f0b3c4D"))
                .is_err()
        })
    });
    group.finish();
}

fn digest(c: &mut Criterion) {
    let plain = KeyHasher::sha256();
    let peppered = KeyHasher::peppered(&[7u8; 32]).expect("pepper");
    let mut group = c.benchmark_group("digest");
    group.bench_function("sha256", |b| b.iter(|| plain.digest(black_box(LIVE))));
    group.bench_function("hmac_sha256", |b| {
        b.iter(|| peppered.digest(black_box(LIVE)))
    });
    let a = plain.digest(LIVE);
    let other = plain.digest("fos_0123");
    group.bench_function("ct_eq", |b| {
        b.iter(|| black_box(&a).ct_eq(black_box(&other)))
    });
    group.finish();
}

fn store_with(n: usize) -> (MemoryKeyStore<ForgScope>, Vec<KeyDigest>) {
    let store = MemoryKeyStore::new().with_policy(
        tower_api_key::forg::key_policy().max_active_per_owner(std::num::NonZeroUsize::MAX),
    );
    let digests = (0..n)
        .map(|i| {
            let new = NewKey::new(format!("o{}", i / 10), "k", &KeyFamily::FORG_LIVE)
                .scopes(ForgScope::ReadRules);
            *store
                .issue(new)
                .now_or_never()
                .expect("the memory store answers at once")
                .expect("issue")
                .record()
                .digest()
        })
        .collect();
    (store, digests)
}

fn verify(c: &mut Criterion) {
    // Parse, hash, look up, compare: what the layer does per request before attaching the
    // identity.
    let store = MemoryKeyStore::new().with_policy(tower_api_key::forg::key_policy());
    let issued = store
        .issue(NewKey::new("o", "k", &KeyFamily::FORG_LIVE).scopes(ForgScope::ReadRules))
        .now_or_never()
        .expect("the memory store answers at once")
        .expect("issue");
    let known = issued.key().expose_secret().to_owned();
    let families = KeyFamilies::builtin();
    let verify = |key: &str| {
        let parsed = families.parse(key).ok()?;
        let digest = store.hasher().digest(parsed.expose_secret());
        let record = store.lookup_now(&digest)?.ok()??;
        bool::from(record.digest().ct_eq(&digest)).then_some(record)
    };
    let mut group = c.benchmark_group("verify");
    group.bench_function("hit", |b| b.iter(|| verify(black_box(&known)).is_some()));
    group.bench_function("miss", |b| b.iter(|| verify(black_box(LIVE)).is_none()));
    group.finish();
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("store_lookup");
    for n in [1_000usize, 1_000_000] {
        let (store, digests) = store_with(n);
        let mut i = 0usize;
        group.bench_function(format!("memory_{n}"), |b| {
            b.iter_batched(
                || {
                    i = (i + 7919) % digests.len();
                    digests[i]
                },
                |digest| store.lookup_now(&digest),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, baseline, parse, digest, verify, lookup);
criterion_main!(benches);
