//! dudect timing test of `KeyDigest` equality (not a CI gate: timing is noisy).
//!
//! ```text
//! cargo run --release --example timing_digest                      # one pass of each
//! cargo run --release --example timing_digest -- --continuous digest_ct_eq
//! ```
//!
//! Left: equal digests. Right: digests that differ in their first byte, where an early-exit
//! comparison would return soonest. `|t|` below about 5 means no timing difference was
//! found; `naive_slice_eq` is the control that the tool does find one for a byte-wise `==`.

use std::hint::black_box;

use dudect_bencher::{ctbench_main, BenchRng, Class, CtRunner};
use subtle::ConstantTimeEq;
use tower_api_key::key::KeyDigest;

/// xorshift64*: the inputs need variety, not cryptographic quality.
struct Inputs(u64);

impl Inputs {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn digest(&mut self) -> [u8; 32] {
        let mut bytes = [0u8; 32];
        for chunk in bytes.chunks_mut(8) {
            chunk.copy_from_slice(&self.next().to_le_bytes());
        }
        bytes
    }
}

fn pairs() -> Vec<(Class, [u8; 32], [u8; 32])> {
    let mut inputs = Inputs(0x9E37_79B9_7F4A_7C15);
    (0..200_000)
        .map(|_| {
            let a = inputs.digest();
            if inputs.next() & 1 == 0 {
                (Class::Left, a, a)
            } else {
                let mut b = a;
                b[0] ^= 0x80;
                (Class::Right, a, b)
            }
        })
        .collect()
}

fn digest_ct_eq(runner: &mut CtRunner, _rng: &mut BenchRng) {
    for (class, a, b) in pairs() {
        let (a, b) = (KeyDigest::from_bytes(a), KeyDigest::from_bytes(b));
        runner.run_one(class, || bool::from(black_box(&a).ct_eq(black_box(&b))));
    }
}

fn naive_slice_eq(runner: &mut CtRunner, _rng: &mut BenchRng) {
    for (class, a, b) in pairs() {
        let (a, b) = (a.to_vec(), b.to_vec());
        runner.run_one(class, || black_box(&a) == black_box(&b));
    }
}

ctbench_main!(digest_ct_eq, naive_slice_eq);
