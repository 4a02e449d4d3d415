//! The crate's hashers, in one place. Two kinds, for two needs:
//!
//! - [`Fnv64`] (64-bit FNV-1a) for anything stored on disk: the journal's input fingerprints and
//!   the `--state` file's row fingerprints. Its output must never change (std's hasher may change
//!   between Rust releases, and journals and state files outlive the binary that wrote them), so
//!   its values are pinned by tests.
//! - [`fast`] (foldhash with a fixed seed) for fingerprints and keys that live only in memory
//!   during one run (reconcile's probe index, export's seen ids): several times faster than FNV
//!   on long text, deterministic within a build. [`tagged_hash`], foldhash's construction
//!   written out for one short value, for what is hashed per cell (validate's
//!   record fingerprints).

use std::hash::{BuildHasher, Hasher};
use std::io::Read;

/// 64-bit FNV-1a as a [`Hasher`]: stable across Rust releases and runs.
#[derive(Debug, Clone, Copy)]
pub struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv64 {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A stable fingerprint of some bytes: FNV-1a and the length, `"{hash:016x}-{len}"`.
pub fn fingerprint(bytes: &[u8]) -> String {
    let mut h = Fnv64::default();
    h.write(bytes);
    format!("{:016x}-{}", h.finish(), bytes.len())
}

/// [`fingerprint`] of everything `r` yields, read in blocks so big inputs do not sit in memory.
pub fn fingerprint_reader(mut r: impl Read) -> std::io::Result<String> {
    let mut h = Fnv64::default();
    let mut len = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        len += n as u64;
        h.write(&buf[..n]);
    }
    Ok(format!("{:016x}-{len}", h.finish()))
}

/// The in-memory hasher's state: foldhash with a fixed seed.
pub type FastState = foldhash::quality::FixedState;
/// The in-memory hasher.
pub type FastHasher = foldhash::quality::FoldHasher<'static>;

/// The fixed-seed state every in-memory fingerprint of a run starts from.
pub const FAST: FastState = FastState::with_seed(0x5eed_5a1e);

/// A fresh in-memory hasher.
pub fn fast() -> FastHasher {
    FAST.build_hasher()
}

/// One value's in-memory hash.
pub fn fast_one(v: impl std::hash::Hash) -> u64 {
    FAST.hash_one(v)
}

/// Arbitrary constants (digits of π) for the multiplications.
const K0: u64 = 0x243f_6a88_85a3_08d3;
const K1: u64 = 0x1319_8a2e_0370_7344;

/// The 128-bit product's halves folded into 64 bits (foldhash's and wyhash's mixing step).
#[inline(always)]
fn fold_mul(x: u64, y: u64) -> u64 {
    let full = u128::from(x) * u128::from(y);
    full as u64 ^ (full >> 64) as u64
}

#[inline(always)]
fn word(v: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(v[at..at + 8].try_into().expect("8 bytes"))
}

/// One value's 64-bit in-memory hash under `tag` (for a record's fingerprint: its field, kind
/// and, for a key, entity). The same construction as foldhash's for short input, written out
/// so that a value costs a few multiplications and no hasher state: every field of every record
/// is hashed on `validate`'s per-row path (foldhash's streaming `Hasher` cost ~60 instructions
/// a value there).
#[inline(always)] // a call and its register saves cost a third of a short value's hash
pub fn tagged_hash(tag: u64, v: &[u8]) -> u64 {
    let len = v.len();
    // The length picks the seed, so overlapping reads of different lengths do not line up.
    let seed = fold_mul(tag ^ len as u64, K0);
    let (lo, hi) = if len >= 8 {
        if len > 16 {
            let mut acc = seed;
            let mut at = 0;
            while len - at > 16 {
                acc = fold_mul(word(v, at) ^ acc, word(v, at + 8) ^ K1);
                at += 16;
            }
            return fold_mul(word(v, len - 16) ^ acc, word(v, len - 8) ^ K1);
        }
        (word(v, 0), word(v, len - 8))
    } else if len >= 4 {
        let w = |at: usize| u64::from(u32::from_le_bytes(v[at..at + 4].try_into().expect("4")));
        (w(0), w(len - 4))
    } else if len > 0 {
        (
            u64::from(v[0]),
            u64::from(v[len / 2]) << 8 | u64::from(v[len - 1]),
        )
    } else {
        (0, 0)
    };
    fold_mul(lo ^ seed, hi ^ K1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn stored_fingerprints_never_change() {
        // Values journals and state files already hold: changing them breaks old files.
        assert_eq!(fingerprint(b""), "cbf29ce484222325-0");
        assert_eq!(fingerprint(b"hello"), "a430d84680aabd0b-5");
        let mut h = Fnv64::default();
        h.write("Иванов".as_bytes());
        assert_eq!(h.finish(), 0x8e64_0e44_87dc_6fe4);
        assert_eq!(
            fingerprint_reader(&b"hello"[..]).unwrap(),
            fingerprint(b"hello")
        );
    }

    /// Text from a small alphabet, often equal to another draw or a byte away from it.
    fn near_text() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(prop::sample::select(b"a \xd0\x96\x00\xff1".to_vec()), 0..40)
    }

    proptest! {
        /// Values hash equal exactly when they are equal (over every length path: empty,
        /// 1–3, 4–7, 8–16 and longer bytes), and the tag (a field, a kind of value) tells
        /// equal bytes apart.
        #[test]
        fn values_hash_equal_only_when_equal(a in near_text(), b in near_text(), flip in 0usize..40, tag: u64) {
            prop_assert_eq!(tagged_hash(tag, &a) == tagged_hash(tag, &b), a == b);
            let mut c = a.clone();
            if let Some(x) = c.get_mut(flip) {
                *x ^= 1;
                prop_assert_ne!(tagged_hash(tag, &a), tagged_hash(tag, &c));
            }
            c.truncate(flip);
            prop_assert_eq!(tagged_hash(tag, &a) == tagged_hash(tag, &c), a == c);
            prop_assert_ne!(tagged_hash(tag, &a), tagged_hash(tag ^ 1, &a));
        }
    }

    #[test]
    fn in_memory_hashes_are_the_same_within_a_run() {
        assert_eq!(fast_one(("a", 1)), fast_one(("a", 1)));
        assert_ne!(fast_one(("a", 1)), fast_one(("a", 2)));
    }
}
