//! Record fingerprints (key and values hashed, 12 bytes a record) and the sink a mapped
//! record's values go into: a JSON map for upload, or only the hash for validation.

use super::mapper::{Record, Reference};
use crate::crm::Entity;
use serde_json::Value;
use std::borrow::Cow;
use std::hash::{BuildHasher, Hasher};

/// A compact identity of one record: which key it has and what it holds, so "same key,
/// different values" can be checked with 12 bytes per key instead of the record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fingerprint {
    /// Entity and key, 64-bit (a false match needs ~4·10⁹ distinct keys to become likely).
    pub key: u64,
    /// Field values and references; 32 bits are plenty to tell "same" from "different".
    pub values: u32,
}

use crate::hash::{FastHasher as FpHasher, FAST as SEED};

/// A field's name as the hash takes it: hashed once (when the template is bound), so a value
/// costs two hasher calls (its field's tag with its length, then its bytes), not five.
#[derive(Debug, Clone, Copy)]
pub(super) struct FieldName<'a> {
    pub(super) name: &'a str,
    pub(super) tag: u64,
}

impl<'a> FieldName<'a> {
    pub(super) fn new(name: &'a str) -> FieldName<'a> {
        FieldName {
            name,
            tag: SEED.hash_one(name),
        }
    }
}

/// What kind of value a field held, mixed into its tag.
const TEXT: u64 = 0;
const NULL: u64 = 0x9e37_79b9_7f4a_7c15;
const OTHER: u64 = 0xc2b2_ae3d_27d4_eb4f;
const REF: u64 = 0x1656_67b1_9e37_79f9;

fn hash_bytes(h: &mut FpHasher, tag: u64, kind: u64, v: &[u8]) {
    // The length makes a value's end unambiguous (no separator needed).
    h.write_u64(tag ^ kind ^ (v.len() as u64).rotate_left(40));
    h.write(v);
}

fn hash_text(h: &mut FpHasher, name: FieldName, v: &str) {
    hash_bytes(h, name.tag, TEXT, v.as_bytes());
}

fn hash_value(h: &mut FpHasher, name: FieldName, v: &Value) {
    match v {
        Value::String(s) => hash_text(h, name, s),
        Value::Null => h.write_u64(name.tag ^ NULL),
        other => hash_bytes(h, name.tag, OTHER, other.to_string().as_bytes()),
    }
}

fn hash_ref(h: &mut FpHasher, field: FieldName, key: &str) {
    hash_bytes(h, field.tag, REF, key.as_bytes());
}

fn key_hash(entity: Entity, key: &str) -> u64 {
    let mut k = SEED.build_hasher();
    k.write_u8(entity as u8);
    k.write(key.as_bytes());
    k.finish()
}

fn combine(fields: &FpHasher, refs: &FpHasher) -> u32 {
    (fields.finish() ^ refs.finish().rotate_left(32)) as u32
}

/// The fingerprint of a built record (what [`Mapper::map_row_fingerprinted`] computes on the fly).
pub fn fingerprint(r: &Record) -> Fingerprint {
    let mut f = SEED.build_hasher();
    let mut rh = SEED.build_hasher();
    for (name, v) in &r.fields {
        match v {
            // An object field is hashed leaf by leaf, as the mapper saw its leaves.
            Value::Object(leaves) => {
                for (leaf, lv) in leaves {
                    hash_value(&mut f, FieldName::new(&format!("{name}.{leaf}")), lv);
                }
            }
            _ => hash_value(&mut f, FieldName::new(name), v),
        }
    }
    for x in &r.refs {
        hash_ref(&mut rh, FieldName::new(&x.field), &x.key);
    }
    Fingerprint {
        key: key_hash(r.entity, &r.key),
        values: combine(&f, &rh),
    }
}

/// Where a record's values go: into a JSON map (upload), or only into a hash (validate).
pub(super) enum Sink {
    Build {
        map: serde_json::Map<String, Value>,
        refs: Vec<Reference>,
    },
    Hash {
        fields: FpHasher,
        refs: FpHasher,
    },
}

/// A finished record: its fields and references, or only its fingerprint.
pub(super) enum Finished {
    Built(serde_json::Map<String, Value>, Vec<Reference>),
    Print(Fingerprint),
}

impl Sink {
    pub(super) fn new(build: bool, n: usize) -> Sink {
        if build {
            Sink::Build {
                map: serde_json::Map::with_capacity(n),
                refs: Vec::new(),
            }
        } else {
            Sink::Hash {
                fields: SEED.build_hasher(),
                refs: SEED.build_hasher(),
            }
        }
    }
    pub(super) fn value(&mut self, name: FieldName, v: &Value) {
        match self {
            Sink::Build { map, .. } => {
                map.insert(name.name.to_string(), v.clone());
            }
            Sink::Hash { fields, .. } => hash_value(fields, name, v),
        }
    }
    pub(super) fn text(&mut self, name: FieldName, v: Cow<str>) {
        match self {
            Sink::Build { map, .. } => {
                map.insert(name.name.to_string(), Value::String(v.into_owned()));
            }
            Sink::Hash { fields, .. } => hash_text(fields, name, &v),
        }
    }
    /// A value the CRM takes as text, written by its `Display` (a date): hashed from a stack
    /// buffer when it fits, so a row's date costs no allocation on the validate path.
    pub(super) fn display(&mut self, name: FieldName, v: &dyn std::fmt::Display) {
        match self {
            Sink::Build { map, .. } => {
                map.insert(name.name.to_string(), Value::String(v.to_string()));
            }
            Sink::Hash { fields, .. } => {
                use std::fmt::Write;
                let mut t = StackText::default();
                match write!(t, "{v}") {
                    Ok(()) => hash_bytes(fields, name.tag, TEXT, &t.buf[..t.len]),
                    Err(_) => hash_text(fields, name, &v.to_string()),
                }
            }
        }
    }
    pub(super) fn reference(&mut self, field: FieldName, entity: Entity, key: &str) {
        match self {
            Sink::Build { refs, .. } => refs.push(Reference {
                field: field.name.to_string(),
                entity,
                key: key.to_string(),
            }),
            Sink::Hash { refs, .. } => hash_ref(refs, field, key),
        }
    }
    pub(super) fn finish(self, entity: Entity, key: &str) -> Finished {
        match self {
            Sink::Build { map, refs } => Finished::Built(nest(map), refs),
            Sink::Hash { fields, refs } => Finished::Print(Fingerprint {
                key: key_hash(entity, key),
                values: combine(&fields, &refs),
            }),
        }
    }
}

/// Text written into a fixed buffer; an error when it does not fit.
#[derive(Default)]
struct StackText {
    buf: [u8; 32],
    len: usize,
}

impl std::fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Leaves of object fields (`recv.castInn`) become one object (`recv: {castInn: …}`), where the
/// first leaf was; a record whose leaves were all empty has no such field at all.
fn nest(map: serde_json::Map<String, Value>) -> serde_json::Map<String, Value> {
    if !map.keys().any(|k| k.contains('.')) {
        return map;
    }
    let mut out = serde_json::Map::with_capacity(map.len());
    for (k, v) in map {
        match k.split_once('.') {
            Some((parent, leaf)) => {
                let slot = out
                    .entry(parent.to_string())
                    .or_insert_with(|| Value::Object(serde_json::Map::new()));
                if let Value::Object(o) = slot {
                    o.insert(leaf.to_string(), v);
                }
            }
            None => {
                out.insert(k, v);
            }
        }
    }
    out
}
