//! The sandbox's field settings, configured the way a CRM administrator configures a real
//! install: each entity starts with the fields a fresh SalesMan install lists (`dicts`), and the
//! database's `field_config` table switches more on (`input1` with its title), or off.
//!
//! Like the real server (NOTES §4): `fields` lists only the enabled fields; on add and update a
//! field that is disabled, or that the entity does not have at all, is silently dropped. Values
//! of enabled extra fields (those the fixed tables have no column for) live in `field_value`.

use super::dicts;
use super::SandboxError;
use crate::crm::{Entity, FieldInfo};
use rusqlite::{Connection, OptionalExtension};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::str::FromStr;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS field_config (
    entity TEXT NOT NULL, name TEXT NOT NULL, title TEXT NOT NULL, enabled INTEGER NOT NULL,
    PRIMARY KEY (entity, name)
);
CREATE TABLE IF NOT EXISTS field_value (
    entity TEXT NOT NULL, id INTEGER NOT NULL, name TEXT NOT NULL, value TEXT,
    PRIMARY KEY (entity, id, name)
);
";

/// One field of an entity's field settings: switched on with its title, or off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSpec {
    pub entity: Entity,
    pub name: String,
    pub title: String,
    pub enabled: bool,
}

impl FieldSpec {
    /// An enabled field, as `--field ENTITY.NAME=Title` gives it.
    pub fn enabled(entity: Entity, name: &str, title: &str) -> FieldSpec {
        FieldSpec {
            entity,
            name: name.to_string(),
            title: title.to_string(),
            enabled: true,
        }
    }
}

impl FromStr for FieldSpec {
    type Err = SandboxError;
    /// `person.input1=Дата рождения` (the title may be left out: `person.input1`).
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let bad = |reason: String| SandboxError::BadFieldSpec {
            spec: spec.to_string(),
            reason,
        };
        let (key, title) = spec.split_once('=').unwrap_or((spec, ""));
        let Some((entity, name)) = key.trim().split_once('.') else {
            return Err(bad(
                "expected ENTITY.NAME=Title, e.g. 'person.input1=Дата рождения'".into(),
            ));
        };
        let entity: Entity = entity.trim().parse().map_err(|e| bad(format!("{e}")))?;
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(bad(format!(
                "'{name}' is not a field name (latin letters, digits and _)"
            )));
        }
        let title = title.trim();
        Ok(FieldSpec::enabled(
            entity,
            name,
            if title.is_empty() { name } else { title },
        ))
    }
}

/// The `fields` answer of a fresh install (names and titles, in the server's order; person's
/// `social` group is not a field of its own and is kept out).
pub fn defaults(entity: Entity) -> Vec<(String, String)> {
    let text = match entity {
        Entity::Person => dicts::PERSON_FIELDS,
        Entity::Client => dicts::CLIENT_FIELDS,
        Entity::Deal => dicts::DEAL_FIELDS,
        Entity::Task => dicts::TASK_FIELDS,
        Entity::History => dicts::HISTORY_FIELDS,
        // invoice has no `fields` action.
        Entity::Invoice | Entity::Payment => "{}",
    };
    let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    v["data"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, t)| t.as_str().map(|t| (k.clone(), t.to_string())))
        .collect()
}

/// The settings that make the sandbox list exactly `fetched` (what another CRM's `fields`
/// answered, names as [`crate::crm::CrmClient::fields`] gives them): every field it lists is
/// enabled with its title, every default field it does not list is disabled.
pub fn mirror(entity: Entity, fetched: &[FieldInfo]) -> Vec<FieldSpec> {
    let nested = social();
    let mut out: Vec<FieldSpec> = fetched
        .iter()
        .filter(|f| entity != Entity::Person || nested.get(&f.name).is_none())
        // `fields` lists history's text as `des`; the client renames it `content`.
        .map(|f| FieldSpec::enabled(entity, entity.listed_field(&f.name), &f.title))
        .collect();
    for (name, title) in defaults(entity) {
        if !out.iter().any(|f| f.name == name) {
            out.push(FieldSpec {
                entity,
                name,
                title,
                enabled: false,
            });
        }
    }
    out
}

/// Person's `social` group of a fresh install's `fields` answer (its names are not fields).
fn social() -> Value {
    let mut v: Value = serde_json::from_str(dicts::PERSON_FIELDS).unwrap_or(Value::Null);
    v["data"]["social"].take()
}

/// Store field settings (a later setting of the same field replaces the earlier one).
pub fn save(conn: &Connection, specs: &[FieldSpec]) -> rusqlite::Result<()> {
    let mut st = conn.prepare_cached(
        "INSERT INTO field_config (entity, name, title, enabled) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (entity, name) DO UPDATE SET title = excluded.title, enabled = excluded.enabled",
    )?;
    for f in specs {
        st.execute(rusqlite::params![
            f.entity.as_str(),
            f.name,
            f.title,
            f.enabled as i64
        ])?;
    }
    Ok(())
}

/// One entity's field settings as a request sees them.
#[derive(Debug, Clone, Default)]
pub struct FieldSet {
    /// Default fields switched off: dropped from writes, left out of `fields`.
    pub disabled: Vec<String>,
    /// Enabled fields that are not defaults, with titles (`fields` lists them after the defaults).
    pub enabled: Vec<(String, String)>,
    /// Enabled fields the entity's table has no column for: their values go to `field_value`.
    pub extra: Vec<String>,
}

impl FieldSet {
    pub fn load(conn: &Connection, entity: Entity) -> rusqlite::Result<FieldSet> {
        let mut st = conn.prepare_cached(
            "SELECT name, title, enabled FROM field_config WHERE entity = ?1 ORDER BY rowid",
        )?;
        let rows: Vec<(String, String, bool)> = st
            .query_map([entity.as_str()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut set = FieldSet::default();
        if rows.is_empty() {
            return Ok(set);
        }
        let defaults = defaults(entity);
        let table = super::store::table(entity);
        let columns: Vec<String> = conn
            .prepare_cached("SELECT name FROM pragma_table_info(?1)")?
            .query_map([table], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for (name, title, enabled) in rows {
            let default = defaults.iter().any(|(n, _)| *n == name);
            if !enabled {
                if default {
                    set.disabled.push(name);
                }
                continue;
            }
            if !columns.contains(&name) && !default {
                set.extra.push(name.clone());
            }
            set.enabled.push((name, title));
        }
        Ok(set)
    }

    /// The `fields` answer: the defaults (titles as configured, disabled ones left out), then
    /// the enabled extra fields; person's `social` group stays last.
    pub fn answer(&self, entity: Entity) -> Value {
        let mut data = Map::new();
        for (name, title) in defaults(entity) {
            if self.disabled.contains(&name) {
                continue;
            }
            let title = self
                .enabled
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, t)| t.clone())
                .unwrap_or(title);
            data.insert(name, Value::String(title));
        }
        for (name, title) in &self.enabled {
            if !data.contains_key(name) {
                data.insert(name.clone(), Value::String(title.clone()));
            }
        }
        if entity == Entity::Person {
            data.insert("social".into(), social());
        }
        let mut out = Map::new();
        out.insert("data".into(), Value::Object(data));
        Value::Object(out)
    }

    /// A written row without its disabled fields (the server drops them silently).
    pub fn accept<'r>(&self, row: &'r Map<String, Value>) -> Cow<'r, Map<String, Value>> {
        if self.disabled.iter().any(|d| row.contains_key(d)) {
            let mut r = row.clone();
            r.retain(|k, _| !self.disabled.contains(k));
            Cow::Owned(r)
        } else {
            Cow::Borrowed(row)
        }
    }

    /// Store the row's values of enabled extra fields for record `id`. `replace`: fields the
    /// row leaves out are blanked (person/update is a full replace).
    pub fn store(
        &self,
        conn: &Connection,
        entity: Entity,
        id: i64,
        row: &Map<String, Value>,
        replace: bool,
    ) -> rusqlite::Result<()> {
        for name in &self.extra {
            let value = match row.get(name) {
                Some(v) => {
                    super::text::value_str(Some(v), ", ").map(|s| super::text::clean_field(&s))
                }
                None if replace => Some(String::new()),
                None => continue,
            };
            conn.prepare_cached(
                "INSERT INTO field_value (entity, id, name, value) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (entity, id, name) DO UPDATE SET value = excluded.value",
            )?
            .execute(rusqlite::params![entity.as_str(), id, name, value])?;
        }
        Ok(())
    }

    /// Record `id`'s values of the enabled extra fields (null where none was stored), to add
    /// to what list and info answer.
    pub fn values(
        &self,
        conn: &Connection,
        entity: Entity,
        id: i64,
    ) -> rusqlite::Result<BTreeMap<String, Value>> {
        let mut out = BTreeMap::new();
        for name in &self.extra {
            let v: Option<Option<String>> = conn
                .prepare_cached(
                    "SELECT value FROM field_value WHERE entity = ?1 AND id = ?2 AND name = ?3",
                )?
                .query_row(rusqlite::params![entity.as_str(), id, name], |r| r.get(0))
                .optional()?;
            out.insert(
                name.clone(),
                v.flatten().map(Value::String).unwrap_or(Value::Null),
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn db() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(super::super::store::SCHEMA).unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        conn
    }

    #[test]
    fn spec_parses_entity_name_and_cyrillic_title_and_names_bad_input() {
        let f: FieldSpec = "person.input1=Дата рождения".parse().unwrap();
        assert_eq!(
            f,
            FieldSpec::enabled(Entity::Person, "input1", "Дата рождения")
        );
        let f: FieldSpec = "deal.input3".parse().unwrap();
        assert_eq!(f.title, "input3");
        let e = "persons.input1=X"
            .parse::<FieldSpec>()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("'persons.input1=X'") && e.contains("persons"),
            "{e}"
        );
        let e = "input1=Дата".parse::<FieldSpec>().unwrap_err().to_string();
        assert!(e.contains("ENTITY.NAME"), "{e}");
    }

    #[test]
    fn fresh_store_answers_the_recorded_fields_exactly() {
        let conn = db();
        let set = FieldSet::load(&conn, Entity::Person).unwrap();
        let recorded: Value = serde_json::from_str(dicts::PERSON_FIELDS).unwrap();
        assert_eq!(set.answer(Entity::Person), recorded);
        assert!(set.extra.is_empty());
    }

    #[test]
    fn configured_field_is_listed_stored_and_read_back() {
        let conn = db();
        save(
            &conn,
            &[FieldSpec::enabled(
                Entity::Person,
                "input1",
                "Дата рождения",
            )],
        )
        .unwrap();
        let set = FieldSet::load(&conn, Entity::Person).unwrap();
        let answer = set.answer(Entity::Person);
        assert_eq!(answer["data"]["input1"], "Дата рождения");
        assert_eq!(answer["data"]["mail"], "Почта", "defaults stay");
        assert_eq!(set.extra, vec!["input1".to_string()]);
        let row = json!({"person": "Я", "input1": "01.02.1990", "input2": "disabled"});
        set.store(&conn, Entity::Person, 7, row.as_object().unwrap(), false)
            .unwrap();
        let v = set.values(&conn, Entity::Person, 7).unwrap();
        assert_eq!(v.get("input1"), Some(&json!("01.02.1990")));
        assert!(
            !v.contains_key("input2"),
            "a field not switched on is not kept"
        );
        let none = set.values(&conn, Entity::Person, 8).unwrap();
        assert_eq!(none.get("input1"), Some(&Value::Null));
        // A later setting of the same field replaces the title.
        save(&conn, &[FieldSpec::enabled(Entity::Person, "input1", "ДР")]).unwrap();
        let set = FieldSet::load(&conn, Entity::Person).unwrap();
        assert_eq!(set.answer(Entity::Person)["data"]["input1"], "ДР");
    }

    #[test]
    fn mirrored_set_disables_defaults_the_other_crm_does_not_list() {
        let conn = db();
        let fetched = vec![
            FieldInfo {
                name: "clid".into(),
                title: "Клиент".into(),
            },
            FieldInfo {
                name: "title".into(),
                title: "Наименование".into(),
            },
            FieldInfo {
                name: "input2".into(),
                title: "ИНН".into(),
            },
        ];
        save(&conn, &mirror(Entity::Client, &fetched)).unwrap();
        let set = FieldSet::load(&conn, Entity::Client).unwrap();
        let answer = set.answer(Entity::Client);
        let names: Vec<&String> = answer["data"].as_object().unwrap().keys().collect();
        assert_eq!(names, ["clid", "title", "input2"]);
        assert_eq!(answer["data"]["title"], "Наименование");
        let row = json!({"title": "ООО", "phone": "123", "input2": "7701"});
        let kept = set.accept(row.as_object().unwrap());
        assert!(!kept.contains_key("phone"), "a disabled field is dropped");
        assert_eq!(kept["input2"], "7701");
    }

    #[test]
    fn mirrored_history_text_keeps_its_column_name() {
        let fetched = vec![FieldInfo {
            name: "content".into(),
            title: "Содержание".into(),
        }];
        let specs = mirror(Entity::History, &fetched);
        assert!(specs.iter().any(|f| f.name == "des" && f.enabled));
        assert!(!specs.iter().any(|f| f.name == "content"));
    }

    #[test]
    fn persons_social_names_are_not_mirrored_and_stay_grouped_in_the_answer() {
        let fetched = vec![
            FieldInfo {
                name: "person".into(),
                title: "Ф.И.О.".into(),
            },
            FieldInfo {
                name: "skype".into(),
                title: "Skype".into(),
            },
        ];
        let specs = mirror(Entity::Person, &fetched);
        assert!(specs.iter().any(|f| f.name == "person" && f.enabled));
        assert!(!specs.iter().any(|f| f.name == "skype"));
        let answer = FieldSet::default().answer(Entity::Person);
        assert_eq!(answer["data"]["social"]["skype"], "Skype");
    }
}
