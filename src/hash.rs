//! The crate's hashers, in one place. Two kinds, for two needs:
//!
//! - [`Fnv64`] (64-bit FNV-1a) for anything stored on disk: the journal's input fingerprints and
//!   the `--state` file's row fingerprints. Its output must never change (std's hasher may change
//!   between Rust releases, and journals and state files outlive the binary that wrote them), so
//!   its values are pinned by tests.
//! - [`fast`] (foldhash with a fixed seed) for fingerprints and keys that live only in memory
//!   during one run (validate's record fingerprints, reconcile's probe index, export's seen ids):
//!   several times faster than FNV on long text, deterministic within a build.

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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn in_memory_hashes_are_the_same_within_a_run() {
        assert_eq!(fast_one(("a", 1)), fast_one(("a", 1)));
        assert_ne!(fast_one(("a", 1)), fast_one(("a", 2)));
    }
}
