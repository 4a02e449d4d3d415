//! Record fingerprints (key and values hashed, 12 bytes a record) and the sink a mapped
//! record's values go into: a JSON map for upload, or only the hash for validation.

use super::mapper::{Record, Reference};
use crate::crm::Entity;
use crate::hash::tagged_hash;
use serde_json::Value;
use std::borrow::Cow;

/// A compact identity of one record: which key it has and what it holds, so "same key,
/// different values" can be checked with 12 bytes per key instead of the record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fingerprint {
    /// Entity and key, 64-bit (a false match needs ~4·10⁹ distinct keys to become likely).
    pub key: u64,
    /// Field values and references; 32 bits are plenty to tell "same" from "different".
    pub values: u32,
}

/// A field's name as the hash takes it: hashed once (when the template is bound), so a value
/// costs one pass over its bytes and no work for its name.
#[derive(Debug, Clone, Copy)]
pub(super) struct FieldName<'a> {
    pub(super) name: &'a str,
    pub(super) tag: u64,
}

impl<'a> FieldName<'a> {
    pub(super) fn new(name: &'a str) -> FieldName<'a> {
        FieldName {
            name,
            tag: crate::hash::fast_one(name),
        }
    }
}

/// What kind of value a field held, mixed into its tag.
const TEXT: u64 = 0;
const NULL: u64 = 0x9e37_79b9_7f4a_7c15;
const OTHER: u64 = 0xc2b2_ae3d_27d4_eb4f;
const REF: u64 = 0x1656_67b1_9e37_79f9;

/// A text value's hash: the same for a built record's field and a streamed one.
#[inline]
fn text_hash(name: FieldName, v: &str) -> u64 {
    tagged_hash(name.tag ^ TEXT, v.as_bytes())
}

/// A reference's hash (its field and the key it points to).
#[inline]
fn ref_hash(field: FieldName, key: &str) -> u64 {
    tagged_hash(field.tag ^ REF, key.as_bytes())
}

fn hash_value(acc: &mut u64, name: FieldName, v: &Value) {
    let h = match v {
        Value::String(s) => text_hash(name, s),
        Value::Null => tagged_hash(name.tag ^ NULL, b""),
        other => tagged_hash(name.tag ^ OTHER, other.to_string().as_bytes()),
    };
    *acc = acc.wrapping_add(h);
}

/// The entity's part of a key's hash.
fn entity_tag(entity: Entity) -> u64 {
    (entity as u64 + 1).wrapping_mul(0xa409_3822_299f_31d0)
}

fn key_hash(entity: Entity, key: &str) -> u64 {
    tagged_hash(entity_tag(entity), key.as_bytes())
}

/// A record's values: the sum of its values' hashes. A field occurs once in a record and its
/// tag is in its value's hash, so the sum tells records apart whatever order their fields
/// and references come in (the streamed order and a built record's need not be the same).
fn values_of(acc: u64) -> u32 {
    (acc ^ (acc >> 32)) as u32
}

/// The fingerprint of a built record (what [`super::mapper::Mapper::map_row_fingerprinted`] computes on the fly).
pub fn fingerprint(r: &Record) -> Fingerprint {
    let mut acc = 0u64;
    for (name, v) in &r.fields {
        match v {
            // An object field is hashed leaf by leaf, as the mapper saw its leaves.
            Value::Object(leaves) => {
                for (leaf, lv) in leaves {
                    hash_value(&mut acc, FieldName::new(&format!("{name}.{leaf}")), lv);
                }
            }
            _ => hash_value(&mut acc, FieldName::new(name), v),
        }
    }
    for x in &r.refs {
        acc = acc.wrapping_add(ref_hash(FieldName::new(&x.field), &x.key));
    }
    Fingerprint {
        key: key_hash(r.entity, &r.key),
        values: values_of(acc),
    }
}

/// Where a record's values go: into a JSON map (upload), or only into a hash (validate).
pub(super) enum Sink {
    Build {
        map: serde_json::Map<String, Value>,
        refs: Vec<Reference>,
    },
    /// The sum of the values' hashes so far (see [`values_of`]).
    Hash(u64),
}

/// A finished record: its fields and references, or only its fingerprint.
pub(super) enum Finished {
    Built(serde_json::Map<String, Value>, Vec<Reference>),
    Print(Fingerprint),
}

// Inlined: called per value of every record, where a call cost about as much as the hashing.
impl Sink {
    #[inline]
    pub(super) fn new(build: bool, n: usize) -> Sink {
        if build {
            Sink::Build {
                map: serde_json::Map::with_capacity(n),
                refs: Vec::new(),
            }
        } else {
            Sink::Hash(0)
        }
    }
    pub(super) fn value(&mut self, name: FieldName, v: &Value) {
        match self {
            Sink::Build { map, .. } => {
                map.insert(name.name.to_string(), v.clone());
            }
            Sink::Hash(acc) => hash_value(acc, name, v),
        }
    }
    #[inline]
    pub(super) fn text(&mut self, name: FieldName, v: Cow<str>) {
        match self {
            Sink::Build { map, .. } => {
                map.insert(name.name.to_string(), Value::String(v.into_owned()));
            }
            Sink::Hash(acc) => *acc = acc.wrapping_add(text_hash(name, &v)),
        }
    }
    #[inline]
    pub(super) fn reference(&mut self, field: FieldName, entity: Entity, key: &str) {
        match self {
            Sink::Build { refs, .. } => refs.push(Reference {
                field: field.name.to_string(),
                entity,
                key: key.to_string(),
            }),
            Sink::Hash(acc) => *acc = acc.wrapping_add(ref_hash(field, key)),
        }
    }
    #[inline]
    pub(super) fn finish(self, entity: Entity, key: &str) -> Finished {
        match self {
            Sink::Build { map, refs } => Finished::Built(nest(map), refs),
            Sink::Hash(acc) => Finished::Print(Fingerprint {
                key: key_hash(entity, key),
                values: values_of(acc),
            }),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(key: &str, fields: &[(String, String)], refs: &[(String, String)]) -> Record {
        Record {
            entity: Entity::Person,
            key: key.to_string(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
            refs: refs
                .iter()
                .map(|(f, k)| Reference {
                    field: f.clone(),
                    entity: Entity::Client,
                    key: k.clone(),
                })
                .collect(),
        }
    }

    proptest! {
        /// A record's fingerprint is the same whatever order its fields and references come
        /// in, and differs when a value, a name, a reference or the key differs.
        #[test]
        fn fingerprints_tell_records_apart_in_any_order(
            vals in prop::collection::vec("[аб ]{0,3}", 4),
            other in "[аб ]{0,3}",
            which in 0usize..4,
            key in "[0-9]{1,12}",
        ) {
            let fields: Vec<(String, String)> = ["a", "b", "c"]
                .iter()
                .zip(&vals)
                .map(|(n, v)| (n.to_string(), v.clone()))
                .collect();
            let refs = vec![("clid".to_string(), vals[3].clone())];
            let base = fingerprint(&record(&key, &fields, &refs));
            let mut rev = fields.clone();
            rev.reverse();
            prop_assert_eq!(fingerprint(&record(&key, &rev, &refs)), base);
            let mut changed = fields.clone();
            let mut changed_refs = refs.clone();
            match which {
                3 => changed_refs[0].1 = other.clone(),
                i => changed[i].1 = other.clone(),
            }
            let same = other == vals[which];
            let print = fingerprint(&record(&key, &changed, &changed_refs));
            prop_assert_eq!(print == base, same);
            // The same text under another field's name, or as a field not a reference.
            changed[0].0 = "z".into();
            prop_assert_ne!(fingerprint(&record(&key, &changed, &refs)).values, base.values);
            prop_assert_ne!(fingerprint(&record(&key, &fields, &[])).values, base.values);
            prop_assert_ne!(fingerprint(&record(&format!("{key}0"), &fields, &refs)).key, base.key);
        }
    }
}
