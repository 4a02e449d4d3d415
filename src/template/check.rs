//! Per-row checking for `validate`, on the rayon workers, and the detection of records that share
//! a key but not their values across a whole file, in memory that does not hold the records.

use super::mapper::RowParts;
use super::{Fingerprint, MappedRow, Mapper, Record};
use crate::crm::Entity;
use crate::source::{Row, RowView, SourcePos};
use smallvec::SmallVec;
use std::cell::RefCell;
use std::sync::Arc;

/// A valid record of a checked row: what the key table needs (16 bytes).
#[derive(Debug, Clone, Copy)]
pub struct CheckedRecord {
    key: u64,
    values: u32,
    pub entity: Entity,
}

impl CheckedRecord {
    pub fn print(&self) -> Fingerprint {
        Fingerprint {
            key: self.key,
            values: self.values,
        }
    }
}

/// A row reduced to what `validate` needs downstream. A row that maps cleanly (the common case)
/// holds no heap memory and is small: the consumer thread, which `validate` cannot spread
/// over cores, neither frees what the workers allocated (cross-thread frees were most of its
/// time) nor copies much.
#[derive(Debug)]
pub struct CheckedRow {
    /// The row number as a spreadsheet shows it (the header is row 1).
    pub row: u64,
    /// Nothing in the row (skipped, neither valid nor invalid).
    pub blank: bool,
    /// The valid records with their fingerprints, in upload order.
    pub records: SmallVec<[CheckedRecord; 3]>,
    /// The records' keys one after another, each ended by 0xFF (never a byte of UTF-8), for the
    /// warning when another row gives a key other values; inline up to 48 bytes (three ids with their ends).
    keys: SmallVec<[u8; 48]>,
    /// The whole mapping (problems, invalid entities, position): only for a row with a
    /// problem, a row a report needs, or once the tally finds a conflict in it.
    pub mapped: Option<Box<MappedRow>>,
    /// What a report or `--url` needs besides; `None` for plain validation of a CSV.
    pub extra: Option<Box<RowExtra>>,
}

/// The parts of a checked row only some runs need.
#[derive(Debug, Default)]
pub struct RowExtra {
    /// A workbook's sheet (none for CSV).
    pub sheet: Option<Arc<str>>,
    /// The source row, kept when a report needs its cells.
    pub source: Option<Row>,
    /// The cells of the watched columns (`validate --url`), in the order asked for.
    pub watched: Vec<String>,
}

impl CheckedRow {
    /// The key of `records[i]`.
    pub fn key(&self, i: usize) -> &str {
        let key = self.keys.split(|&b| b == 0xFF).nth(i).unwrap_or_default();
        // Copied from `String`s and cut at bytes that are never in UTF-8: always UTF-8.
        std::str::from_utf8(key).unwrap_or_default()
    }

    /// Where the row came from, in `file`.
    pub fn pos(&self, file: &Arc<str>) -> SourcePos {
        SourcePos {
            file: file.clone(),
            sheet: self.extra.as_ref().and_then(|x| x.sheet.clone()),
            row: self.row,
        }
    }

    /// The row's mapping, built from its records when the worker did not keep one (a clean
    /// row: no problems, nothing rejected; records carry entity and key, as `validate` maps).
    pub fn mapped_mut(&mut self, file: &Arc<str>) -> &mut MappedRow {
        if self.mapped.is_none() {
            let records = (0..self.records.len())
                .map(|i| Record {
                    entity: self.records[i].entity,
                    key: self.key(i).to_string(),
                    fields: serde_json::Map::new(),
                    refs: Vec::new(),
                })
                .collect();
            self.mapped = Some(Box::new(MappedRow {
                pos: self.pos(file),
                records,
                rejected: Vec::new(),
                problems: Vec::new(),
                blank: self.blank,
            }));
        }
        self.mapped.as_deref_mut().expect("just built")
    }
}

thread_local! {
    /// The mapping buffers of the row this worker thread is on.
    static PARTS: RefCell<RowParts> = RefCell::default();
}

/// Map and fingerprint one row: the per-row work of `validate`, run on the rayon pool. The row
/// is borrowed (see [`super::map_file_view`]) and copied only when a report needs it.
pub fn check_row(mapper: &Mapper, row: &RowView, keep_row: bool, watch: &[usize]) -> CheckedRow {
    PARTS.with_borrow_mut(|parts| {
        mapper.map_parts(row, false, parts);
        let mut keys = SmallVec::new();
        let mut records = SmallVec::new();
        for (r, print) in parts.records.iter().zip(&parts.prints) {
            keys.extend_from_slice(r.key.as_bytes());
            keys.push(0xFF);
            records.push(CheckedRecord {
                key: print.key,
                values: print.values,
                entity: r.entity,
            });
        }
        let detailed = keep_row || !parts.problems.is_empty() || !parts.rejected.is_empty();
        let mapped = detailed.then(|| {
            Box::new(MappedRow {
                pos: row.pos.clone(),
                records: std::mem::take(&mut parts.records),
                rejected: std::mem::take(&mut parts.rejected),
                problems: std::mem::take(&mut parts.problems),
                blank: parts.blank,
            })
        });
        let extra = (keep_row || !watch.is_empty() || row.pos.sheet.is_some()).then(|| {
            Box::new(RowExtra {
                sheet: row.pos.sheet.clone(),
                source: keep_row.then(|| row.to_row()),
                watched: watch
                    .iter()
                    .map(|&i| row.cells.get(i).to_string())
                    .collect(),
            })
        });
        CheckedRow {
            row: row.pos.row,
            blank: parts.blank,
            records,
            keys,
            mapped,
            extra,
        }
    })
}

/// key fingerprint → (values fingerprint << 32 | first row), open addressing with linear
/// probing, 16 bytes a slot. Split into 256 shards that grow by 1.25× on their own, so memory is
/// ~22 bytes per distinct key with no doubling spikes (2M keys ≈ 45 MB; std's HashMap with a
/// doubling rehash needed ~3× that at its peak). A caller that knows about how many keys are
/// coming reserves them at once ([`KeyConflicts::reserve`]) and skips the growing.
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
        self.grow_to((self.slots.len() + self.slots.len() / 4).max(64));
    }

    fn grow_to(&mut self, cap: usize) {
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
    #[inline]
    pub fn get_or_insert(&mut self, key: u64, value: u64) -> Option<u64> {
        let key = key.max(1);
        self.shards[(key & 0xff) as usize].get_or_insert(key, value)
    }

    /// Make room for `keys` distinct keys in all, so that the table does not grow step by step
    /// to that size (each step moves every key: the moves and zeroing were 60 % of this table's
    /// instructions in `validate`). Memory is taken at once, ~20 bytes a key.
    pub fn reserve(&mut self, keys: usize) {
        if keys == 0 {
            return;
        }
        let mean = keys.div_ceil(self.shards.len());
        // Shards get keys unevenly (by their hashes): room for four standard deviations more
        // than the mean, up to a load of 0.8, where a shard would grow.
        let per_shard = mean + 4 * mean.isqrt() + 8;
        let cap = per_shard + per_shard / 4 + 1;
        for shard in &mut self.shards {
            if cap > shard.slots.len() {
                shard.grow_to(cap);
            }
        }
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

    #[test]
    fn reserving_keeps_what_is_stored_and_makes_room() {
        let mut t = KeyConflicts::default();
        let h = |k: u64| k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for k in 0..1_000u64 {
            assert_eq!(t.get_or_insert(h(k), k), None);
        }
        t.reserve(50_000);
        let room: usize = t.shards.iter().map(|s| s.slots.len()).sum();
        assert!(
            room >= 50_000 * 5 / 4,
            "room for 50,000 keys at 0.8: {room}"
        );
        for k in 0..50_000u64 {
            assert_eq!(t.get_or_insert(h(k), k), (k < 1_000).then_some(k));
        }
        let after: usize = t.shards.iter().map(|s| s.slots.len()).sum();
        assert_eq!(after, room, "no shard had to grow");
        t.reserve(10);
        let small: usize = t.shards.iter().map(|s| s.slots.len()).sum();
        assert_eq!(small, room, "a smaller reservation shrinks nothing");
    }
}
