//! `--state FILE`: what a nightly job remembers between runs. Per entity, every record exported
//! so far by id, with a 64-bit fingerprint of the row as `list` returned it. The next run lists
//! the entity in full and exports exactly the records whose id is new or whose fingerprint
//! differs; nothing depends on change dates (which some entities lack, deals keep only as a day,
//! and history rows can be back-dated), nor on our clock.
//!
//! State files of the older format (`changed_up_to` + `ids_at_mark`, no fingerprints) still
//! load: that entity's next run exports what changed since the mark, as the old format did, and
//! stores fingerprints from then on.
//!
//! Size: ids are stored as `"id:fingerprint16"` strings, sorted; 100,000 ids of 6 digits take
//! 2.6 MB (`state_for_100k_ids_is_about_2_6_mb`), 1,000,000 about 26 MB.

use super::pager::Row;
use super::ExportError;
use crate::crm::Entity;
use crate::hash::Fnv64;
use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::Hasher;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A record's id as `list` returns it: numeric ids are kept as numbers (8 bytes each).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordId {
    Num(u64),
    Text(String),
}

impl RecordId {
    /// The id of a listed row; `None` when it has none (such rows are exported every time).
    pub fn of(v: Option<&Value>) -> Option<RecordId> {
        match v? {
            Value::Number(n) => Some(
                n.as_u64()
                    .map_or_else(|| RecordId::Text(n.to_string()), RecordId::Num),
            ),
            Value::String(s) if s.trim().is_empty() => None,
            Value::String(s) => Some(RecordId::parse(s.trim())),
            _ => None,
        }
    }

    fn parse(s: &str) -> RecordId {
        match s.parse::<u64>() {
            Ok(n) => RecordId::Num(n),
            Err(_) => RecordId::Text(s.to_string()),
        }
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordId::Num(n) => write!(f, "{n}"),
            RecordId::Text(s) => f.write_str(s),
        }
    }
}

/// The fingerprint of a row as listed: every key with its value; the order of the keys does not
/// matter, and a number and the same digits as text are the same value.
pub fn fingerprint(row: &Row) -> u64 {
    row.iter().fold(0u64, |acc, (k, v)| {
        let mut h = Fnv64::default();
        h.write(k.as_bytes());
        h.write_u8(0xff);
        match v {
            Value::Null => {}
            Value::String(s) => h.write(s.as_bytes()),
            Value::Number(n) => h.write(n.to_string().as_bytes()),
            other => h.write(other.to_string().as_bytes()),
        }
        acc.wrapping_add(h.finish())
    })
}

/// Exported records: id → fingerprint.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prints(pub HashMap<RecordId, u64>);

impl Serialize for Prints {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut v: Vec<(&RecordId, &u64)> = self.0.iter().collect();
        v.sort_unstable();
        s.collect_seq(v.into_iter().map(|(id, fp)| format!("{id}:{fp:016x}")))
    }
}

impl<'de> Deserialize<'de> for Prints {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Prints, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Prints;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of \"id:fingerprint\" strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Prints, A::Error> {
                let mut m = HashMap::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(e) = seq.next_element::<std::borrow::Cow<'de, str>>()? {
                    let parsed = e
                        .rsplit_once(':')
                        .and_then(|(id, fp)| Some((id, u64::from_str_radix(fp, 16).ok()?)));
                    let Some((id, fp)) = parsed.filter(|(id, _)| !id.is_empty()) else {
                        return Err(serde::de::Error::custom(format!(
                            "'{e}' is not \"id:fingerprint\""
                        )));
                    };
                    m.insert(RecordId::parse(id), fp);
                }
                Ok(Prints(m))
            }
        }
        d.deserialize_seq(V)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EntityState {
    /// Older format only: the newest change date seen (`YYYY-MM-DD HH:MM:SS`, CRM time zone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_up_to: Option<String>,
    /// Older format only: ids changed exactly at `changed_up_to`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids_at_mark: Vec<String>,
    /// When that export ran (local clock, for people reading the file).
    pub exported_at: String,
    /// Rows written by that run.
    pub rows: u64,
    /// Every record exported so far, with its fingerprint; `None` in the older format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<Prints>,
    /// Invoices: id → the day a run first saw it paid, for payments the server recorded
    /// without a date (invoice/do never sets one, NOTES §12).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub paid_days: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ExportState {
    #[serde(default)]
    pub entities: BTreeMap<Entity, EntityState>,
}

impl ExportState {
    /// A missing file is an empty state (first run: everything is exported).
    pub fn load(path: &Path) -> Result<ExportState, ExportError> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| ExportError::State {
                path: path.to_path_buf(),
                message: format!("not a valid state file: {e}"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ExportState::default()),
            Err(e) => Err(state_err(path, e)),
        }
    }

    /// Written to a temporary file and renamed, so a crash never leaves half a state file.
    /// One line: with a million ids, indentation alone would add megabytes.
    pub fn save(&self, path: &Path) -> Result<(), ExportError> {
        let mut tmp = PathBuf::from(path);
        tmp.as_mut_os_string().push(".tmp");
        let file = std::fs::File::create(&tmp).map_err(|e| state_err(&tmp, e))?;
        let mut w = std::io::BufWriter::new(file);
        serde_json::to_writer(&mut w, self).map_err(|e| ExportError::State {
            path: tmp.clone(),
            message: e.to_string(),
        })?;
        w.write_all(b"\n").map_err(|e| state_err(&tmp, e))?;
        w.into_inner()
            .map_err(|e| state_err(&tmp, e.into_error()))?
            .sync_all()
            .map_err(|e| state_err(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| state_err(path, e))
    }
}

fn state_err(path: &Path, e: std::io::Error) -> ExportError {
    ExportError::State {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(v: Value) -> Row {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn state_round_trips_and_a_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert_eq!(ExportState::load(&path).unwrap(), ExportState::default());
        let mut s = ExportState::default();
        let prints = Prints(HashMap::from([
            (RecordId::Num(7), 0xdead_beef),
            (RecordId::Text("EXT:1".into()), 1),
        ]));
        s.entities.insert(
            Entity::Person,
            EntityState {
                exported_at: "2026-11-22 23:00:00".into(),
                rows: 3,
                records: Some(prints),
                ..EntityState::default()
            },
        );
        s.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(r#"["7:00000000deadbeef","EXT:1:0000000000000001"]"#),
            "{text}"
        );
        assert_eq!(ExportState::load(&path).unwrap(), s);
        std::fs::write(&path, "{not json").unwrap();
        assert!(ExportState::load(&path).is_err());
        std::fs::write(
            &path,
            r#"{"entities":{"person":{"exported_at":"","rows":0,"records":["7"]}}}"#,
        )
        .unwrap();
        let err = ExportState::load(&path).unwrap_err().to_string();
        assert!(err.contains("'7' is not"), "{err}");
    }

    #[test]
    fn old_state_files_still_load_without_fingerprints() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.json");
        std::fs::write(
            &path,
            r#"{"entities":{"deal":{"changed_up_to":"2026-11-22 00:00:00","ids_at_mark":["3"],"exported_at":"2026-11-22 23:00:00","rows":4}}}"#,
        )
        .unwrap();
        let s = ExportState::load(&path).unwrap();
        let d = &s.entities[&Entity::Deal];
        assert_eq!(d.changed_up_to.as_deref(), Some("2026-11-22 00:00:00"));
        assert_eq!(d.records, None);
    }

    #[test]
    fn fingerprints_see_values_not_key_order_or_number_spelling() {
        let a = fingerprint(&row(json!({"did": 1, "title": "Поставка", "kol": 10})));
        assert_eq!(
            a,
            fingerprint(&row(json!({"kol": "10", "title": "Поставка", "did": "1"})))
        );
        assert_ne!(
            a,
            fingerprint(&row(json!({"did": 1, "title": "Поставка", "kol": 11})))
        );
        assert_ne!(
            a,
            fingerprint(&row(json!({"did": 1, "title": "Поставка 2", "kol": 10})))
        );
        // A value moved to another column is a change.
        assert_ne!(
            fingerprint(&row(json!({"a": "x", "b": ""}))),
            fingerprint(&row(json!({"a": "", "b": "x"})))
        );
        assert_eq!(RecordId::of(Some(&json!("12"))), Some(RecordId::Num(12)));
        assert_eq!(RecordId::of(Some(&json!(""))), None);
        assert_eq!(RecordId::of(None), None);
    }

    #[test]
    fn state_for_100k_ids_is_about_2_6_mb() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.json");
        let prints: HashMap<RecordId, u64> = (100_000..200_000u64)
            .map(|i| (RecordId::Num(i), i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
            .collect();
        let mut s = ExportState::default();
        s.entities.insert(
            Entity::History,
            EntityState {
                records: Some(Prints(prints)),
                ..EntityState::default()
            },
        );
        s.save(&path).unwrap();
        let size = std::fs::metadata(&path).unwrap().len();
        // 100,000 × `"123456:0123456789abcdef",` = 26 bytes an id.
        assert!((2_500_000..2_700_000).contains(&size), "{size}");
        assert_eq!(ExportState::load(&path).unwrap(), s);
    }
}
