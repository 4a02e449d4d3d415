//! Per-row checking for `validate`, on the rayon workers, and the detection of records that share
//! a key but not their values across a whole file, in memory that does not hold the records.

use super::{Fingerprint, MappedRow, Mapper};
use crate::source::{Row, RowView};

/// A mapped row reduced to what `validate` needs downstream.
pub struct CheckedRow {
    /// The source row, kept only when a report needs its cells.
    pub row: Option<Row>,
    /// Records keep entity and key; their field maps are dropped on the worker (already hashed).
    pub mapped: MappedRow,
    pub prints: Vec<Fingerprint>,
    /// The cells of the watched columns (`validate --url`), in the order asked for.
    pub watched: Vec<String>,
}

/// Map and fingerprint one row: the per-row work of `validate`, run on the rayon pool. The row
/// is borrowed (see [`super::map_file_view`]) and copied only when a report needs it.
pub fn check_row(mapper: &Mapper, row: &RowView, keep_row: bool, watch: &[usize]) -> CheckedRow {
    let (mapped, prints) = mapper.map_view_fingerprinted(row);
    let watched = watch
        .iter()
        .map(|&i| row.cells.get(i).to_string())
        .collect();
    CheckedRow {
        watched,
        row: keep_row.then(|| row.to_row()),
        mapped,
        prints,
    }
}

/// key fingerprint → (values fingerprint << 32 | first row), open addressing with linear
/// probing, 16 bytes a slot. Split into 256 shards that grow by 1.25× on their own, so memory is
/// ~22 bytes per distinct key with no doubling spikes (2M keys ≈ 45 MB; std's HashMap with a
/// doubling rehash needed ~3× that at its peak).
pub struct KeyConflicts {
    shards: Vec<Shard>,
}

#[derive(Default)]
struct Shard {
    /// Key 0 marks an empty slot (a real key 0 is stored as 1).
    slots: Vec<(u64, u64)>,
    len: usize,
}

impl Shard {
    fn slot(key: u64, cap: usize) -> usize {
        ((u128::from(key.rotate_left(8)) * cap as u128) >> 64) as usize
    }

    /// The stored value for `key`, or `None` after inserting `value`.
    fn get_or_insert(&mut self, key: u64, value: u64) -> Option<u64> {
        if (self.len + 1) * 5 > self.slots.len() * 4 {
            self.grow();
        }
        let cap = self.slots.len();
        let mut i = Self::slot(key, cap);
        loop {
            let (k, v) = self.slots[i];
            if k == key {
                return Some(v);
            }
            if k == 0 {
                self.slots[i] = (key, value);
                self.len += 1;
                return None;
            }
            i += 1;
            if i == cap {
                i = 0;
            }
        }
    }

    fn grow(&mut self) {
        let cap = (self.slots.len() + self.slots.len() / 4).max(64);
        let old = std::mem::replace(&mut self.slots, vec![(0, 0); cap]);
        for (k, v) in old.into_iter().filter(|(k, _)| *k != 0) {
            let mut i = Self::slot(k, cap);
            while self.slots[i].0 != 0 {
                i = if i + 1 == cap { 0 } else { i + 1 };
            }
            self.slots[i] = (k, v);
        }
    }
}

impl Default for KeyConflicts {
    fn default() -> Self {
        KeyConflicts {
            shards: (0..256).map(|_| Shard::default()).collect(),
        }
    }
}

impl KeyConflicts {
    /// The value stored for `key`, or `None` after storing `value` (the key's first sighting).
    pub fn get_or_insert(&mut self, key: u64, value: u64) -> Option<u64> {
        let key = key.max(1);
        self.shards[(key & 0xff) as usize].get_or_insert(key, value)
    }

    /// Ask the CPU to fetch `key`'s slot into the cache ahead of its `get_or_insert`. With
    /// millions of keys the table is far bigger than the cache and every lookup is a memory
    /// read (profiled: ~80 % of this table's time in `validate` was that wait); started one
    /// row ahead, it overlaps the current row's work. A hint only: nothing changes if it misses.
    pub fn prefetch(&self, key: u64) {
        let key = key.max(1);
        let shard = &self.shards[(key & 0xff) as usize];
        if shard.slots.is_empty() {
            return;
        }
        let slot = &shard.slots[Shard::slot(key, shard.slots.len())];
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch never faults and does not change memory; the pointer is in bounds.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                (slot as *const (u64, u64)).cast::<i8>(),
            );
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = slot;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_table_grows_and_keeps_every_key() {
        let mut t = KeyConflicts::default();
        for k in 0..100_000u64 {
            let h = k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            assert_eq!(t.get_or_insert(h, k), None);
        }
        for k in 0..100_000u64 {
            let h = k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            assert_eq!(t.get_or_insert(h, 0), Some(k));
        }
    }
}
