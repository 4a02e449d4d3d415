//! The backup a delete writes before its first request: every record it will delete with its
//! full current fields (the CRM row the match pass read), and what the server deletes along with
//! it (a client's history and tasks, a deal's history: NOTES §11). The rows are kept in the
//! journal too, so a run that resumes after an interruption rewrites the file with everything
//! deleted so far, never with less.
//!
//! The XLSX has a sheet per entity with the CRM's field names as headers, and first a `restore`
//! sheet that the backup template (`*.backup.toml`) reads: one row per record, with the columns
//! of the records it references when those are in the backup too, so `smbatch import` re-creates
//! parents first and links the children to their new ids (`ref` + `column`: a parent still in
//! the CRM is linked by its id).

use super::journal::Journal;
use super::UploadError;
use crate::crm::{CrmClient, Entity, RetryPolicy};
use crate::export::{self, Filters};
use crate::report::table::{Cell, XlsxBook};
use crate::report::Progress;
use crate::template::fields::{field_info, written_but_unlisted, FieldKind};
use crate::template::server::OWNER_FIELD;
use crate::values::{value_id, value_text};
use rusqlite::params;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub(super) const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS backup (
        entity TEXT NOT NULL,
        crm_id INTEGER NOT NULL,
        along  TEXT,
        row    TEXT NOT NULL,
        PRIMARY KEY (entity, crm_id)
    );";

/// One backed-up CRM record.
#[derive(Debug, Clone)]
pub struct BackupRow {
    pub entity: Entity,
    pub crm_id: i64,
    /// Deleted by the server along with this record (`client 7`), not by a request of ours.
    pub along: Option<(Entity, i64)>,
    pub row: Map<String, Value>,
}

/// What went into the backup files.
#[derive(Debug, Clone, Default)]
pub struct BackupFiles {
    pub xlsx: PathBuf,
    pub template: PathBuf,
    /// Records per entity in the backup (this run's and earlier runs' of the same journal).
    pub records: BTreeMap<Entity, u64>,
}

/// The template next to a backup: `X.backup.xlsx` → `X.backup.toml`.
pub fn template_path(xlsx: &Path) -> PathBuf {
    xlsx.with_extension("toml")
}

impl Journal {
    /// The records this delete run will delete: matched, pending, with the CRM row read.
    pub fn delete_candidates(&self) -> Result<Vec<BackupRow>, UploadError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT r.entity, r.crm_id, m.current FROM records r
                 JOIN plan p ON p.entity = r.entity AND p.key = r.key
                 JOIN matches m ON m.entity = r.entity AND m.key = r.key
                 WHERE r.state = 'pending' AND r.crm_id IS NOT NULL AND m.crm_id = r.crm_id
                 ORDER BY p.id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (entity, crm_id, current) = row.map_err(|e| self.err(e))?;
            let Ok(entity) = Entity::from_str(&entity) else {
                continue;
            };
            let row = current
                .and_then(|c| serde_json::from_str(&c).ok())
                .unwrap_or_default();
            out.push(BackupRow {
                entity,
                crm_id,
                along: None,
                row,
            });
        }
        Ok(out)
    }

    /// Keep backed-up rows (a row already kept from an earlier run stays as it was read then).
    pub fn keep_backup(&mut self, rows: &[BackupRow]) -> Result<(), UploadError> {
        self.write_with(|tx| {
            let mut put = tx.prepare(
                "INSERT OR IGNORE INTO backup (entity, crm_id, along, row) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for r in rows {
                put.execute(params![
                    r.entity.as_str(),
                    r.crm_id,
                    r.along.map(|(e, id)| format!("{e} {id}")),
                    Value::Object(r.row.clone()).to_string()
                ])?;
            }
            Ok(())
        })
    }

    /// Every backed-up row, by entity in upload order and id.
    pub fn backup_rows(&self) -> Result<Vec<BackupRow>, UploadError> {
        let mut stmt = self
            .conn
            .prepare("SELECT entity, crm_id, along, row FROM backup ORDER BY crm_id")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (entity, crm_id, along, text) = row.map_err(|e| self.err(e))?;
            let Ok(entity) = Entity::from_str(&entity) else {
                continue;
            };
            let along = along.and_then(|a| {
                let (e, id) = a.split_once(' ')?;
                Some((Entity::from_str(e).ok()?, id.parse().ok()?))
            });
            out.push(BackupRow {
                entity,
                crm_id,
                along,
                row: serde_json::from_str(&text).unwrap_or_default(),
            });
        }
        out.sort_by_key(|r| (order(r.entity), r.crm_id));
        Ok(out)
    }
}

fn order(e: Entity) -> usize {
    Entity::ALL
        .iter()
        .position(|x| *x == e)
        .unwrap_or(usize::MAX)
}

/// What the server deletes along with the records to delete: the history and tasks (those not
/// linked to a contact) of each client, the history of each deal (read through `list` filtered
/// by the link).
pub async fn dependants(
    client: &CrmClient,
    deleting: &[BackupRow],
    policy: &RetryPolicy,
) -> crate::Result<Vec<BackupRow>> {
    let mut out = Vec::new();
    let progress = Progress::new("backup", None, true);
    for parent in deleting {
        let reads: &[Entity] = match parent.entity {
            Entity::Client => &[Entity::History, Entity::Task],
            Entity::Deal => &[Entity::History],
            _ => &[],
        };
        for &entity in reads {
            let mut filters = Filters::default();
            if parent.entity == Entity::Client {
                filters.client = Some(parent.crm_id);
            } else {
                filters.deal = Some(parent.crm_id);
            }
            let id_field = entity.id_field();
            export::fetch_all(
                client,
                entity,
                &filters,
                None,
                1,
                policy,
                &progress,
                |row| {
                    if let Some(id) = value_id(row.get(id_field)) {
                        out.push(BackupRow {
                            entity,
                            crm_id: id,
                            along: Some((parent.entity, parent.crm_id)),
                            row,
                        });
                    }
                },
            )
            .await?;
        }
    }
    // A client's task linked to a contact survives its delete (the CRM only unlinks it, NOTES
    // §11); task/list does not show the contact, task/info does.
    let mut kept = Vec::with_capacity(out.len());
    for r in out {
        if r.entity == Entity::Task && r.along.is_some_and(|(e, _)| e == Entity::Client) {
            let info = client.info(Entity::Task, r.crm_id, &[], policy).await?;
            let pid = info
                .get("data")
                .and_then(|d| d.get("person"))
                .and_then(Value::as_array)
                .and_then(|p| p.iter().find_map(|x| value_id(x.get("pid"))))
                .unwrap_or(0);
            if pid > 0 {
                continue;
            }
        }
        kept.push(r);
    }
    Ok(kept)
}

/// Names of fields the CRM lists per entity (what the restore may write).
pub async fn known_fields(
    client: &CrmClient,
    entities: &BTreeSet<Entity>,
    policy: &RetryPolicy,
) -> crate::Result<HashMap<Entity, Vec<String>>> {
    let mut out = HashMap::new();
    for &e in entities {
        let names = client
            .fields(e, policy)
            .await?
            .into_iter()
            .map(|f| f.name)
            .collect();
        out.insert(e, names);
    }
    Ok(out)
}

/// A CRM row's fields as text, flattened (`recv.castInn`), in the row's order, without what the
/// server fills itself. History's linked person (`person: [{pid}]`) becomes `pid`; its
/// `content` loses the `<br />` that history/list adds.
pub fn flat_fields(entity: Entity, row: &Map<String, Value>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, v) in row {
        match v {
            Value::Object(m) => {
                for (leaf, x) in m {
                    out.push((format!("{k}.{leaf}"), value_text(x)));
                }
            }
            Value::Array(items) if entity == Entity::History && k == "person" => {
                let pid = items.iter().find_map(|p| value_id(p.get("pid")));
                if let Some(pid) = pid {
                    out.push(("pid".into(), pid.to_string()));
                }
            }
            Value::Array(items) => out.push((
                k.clone(),
                items.iter().map(value_text).collect::<Vec<_>>().join(", "),
            )),
            Value::Null => out.push((k.clone(), String::new())),
            other => {
                let mut t = value_text(other);
                if entity == Entity::History && k == "content" {
                    t = t.replace("<br />\n", "\n").replace("<br />", "\n");
                }
                out.push((k.clone(), t));
            }
        }
    }
    out
}

/// The field a restore writes back, if it is one: not the id, not what the server fills, and
/// one the CRM lists (or takes without listing). The owner goes back as its login (`user`).
fn restorable(entity: Entity, name: &str, known: Option<&Vec<String>>) -> bool {
    if name == entity.id_field() || name == "iduser" {
        return false;
    }
    if name == OWNER_FIELD {
        return true;
    }
    if super::change::READ_ONLY.contains(&name) {
        return false;
    }
    let top = name.split('.').next().unwrap_or(name);
    let listed = known.is_none_or(|k| k.iter().any(|n| n == top));
    listed || written_but_unlisted(entity).contains(&name)
}

/// The entity a field links to (`clid` → client), if it is a link.
fn link_of(entity: Entity, name: &str) -> Option<Entity> {
    match field_info(entity, name).map(|i| i.kind) {
        Some(FieldKind::Ref(t)) => Some(t),
        _ => None,
    }
}

/// Write the backup XLSX and its template from every row the journal keeps. The file is written
/// next to its final name and renamed, so a crash never leaves half a backup.
pub fn write_files(
    rows: &[BackupRow],
    known: &HashMap<Entity, Vec<String>>,
    xlsx: &Path,
) -> crate::Result<BackupFiles> {
    // Per entity: its restorable fields in first-seen order, and each record's values.
    let mut fields: BTreeMap<usize, (Entity, Vec<String>)> = BTreeMap::new();
    let mut values: HashMap<(Entity, i64), HashMap<String, String>> = HashMap::new();
    let mut all_fields: BTreeMap<usize, (Entity, Vec<String>)> = BTreeMap::new();
    for r in rows {
        let flat = flat_fields(r.entity, &r.row);
        let (_, names) = fields
            .entry(order(r.entity))
            .or_insert_with(|| (r.entity, Vec::new()));
        let (_, every) = all_fields
            .entry(order(r.entity))
            .or_insert_with(|| (r.entity, Vec::new()));
        for (k, _) in &flat {
            if restorable(r.entity, k, known.get(&r.entity)) && !names.contains(k) {
                names.push(k.clone());
            }
            if !every.contains(k) {
                every.push(k.clone());
            }
        }
        values.insert((r.entity, r.crm_id), flat.into_iter().collect());
    }
    let in_backup: BTreeSet<Entity> = fields.values().map(|(e, _)| *e).collect();

    let tmp = xlsx.with_extension("xlsx.tmp");
    let mut book = XlsxBook::create(&tmp);
    // The restore sheet: `entity.id` (the old id: the record's key) and `entity.field`.
    let mut headers: Vec<String> = Vec::new();
    for (e, names) in fields.values() {
        headers.push(format!("{e}.id"));
        headers.extend(names.iter().map(|n| format!("{e}.{n}")));
    }
    let col: HashMap<&str, usize> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| (h.as_str(), i))
        .collect();
    let sheet = book.add_sheet("restore", &headers)?;
    for r in rows {
        let mut cells = vec![String::new(); headers.len()];
        fill(r.entity, r.crm_id, &values, &fields, &col, &mut cells, 0);
        let cells: Vec<Cell> = cells.into_iter().map(Cell::Text).collect();
        book.write_row(sheet, &cells)?;
    }
    // A sheet per entity, as the CRM shows the records, and what each was deleted with.
    for (e, names) in all_fields.values() {
        let mut h = names.clone();
        h.push("deleted along with".into());
        let sheet = book.add_sheet(e.as_str(), &h)?;
        for r in rows.iter().filter(|r| r.entity == *e) {
            let v = &values[&(r.entity, r.crm_id)];
            let mut cells: Vec<Cell> = names
                .iter()
                .map(|n| Cell::Text(v.get(n).cloned().unwrap_or_default()))
                .collect();
            cells.push(Cell::Text(
                r.along
                    .map(|(e, id)| format!("{e} {id}"))
                    .unwrap_or_default(),
            ));
            book.write_row(sheet, &cells)?;
        }
    }
    book.close()?;
    std::fs::rename(&tmp, xlsx).map_err(|e| crate::report::ReportError::io(xlsx, e))?;

    let template = template_path(xlsx);
    let text = template_text(xlsx, &fields, &in_backup);
    std::fs::write(&template, text).map_err(|e| crate::report::ReportError::io(&template, e))?;
    let mut records = BTreeMap::new();
    for r in rows {
        *records.entry(r.entity).or_insert(0) += 1;
    }
    Ok(BackupFiles {
        xlsx: xlsx.to_path_buf(),
        template,
        records,
    })
}

/// Put a record's values into its restore row, and, for each record it links to that is in the
/// backup too, that record's (so the import re-creates it and links to its new id); a link to a
/// record not in the backup stays its CRM id.
fn fill(
    entity: Entity,
    id: i64,
    values: &HashMap<(Entity, i64), HashMap<String, String>>,
    fields: &BTreeMap<usize, (Entity, Vec<String>)>,
    col: &HashMap<&str, usize>,
    cells: &mut [String],
    depth: usize,
) {
    let (Some(v), Some((_, names))) = (values.get(&(entity, id)), fields.get(&order(entity)))
    else {
        return;
    };
    if let Some(&i) = col.get(format!("{entity}.id").as_str()) {
        cells[i] = id.to_string();
    }
    for n in names {
        let text = v.get(n).cloned().unwrap_or_default();
        let linked = link_of(entity, n).and_then(|t| Some((t, text.trim().parse::<i64>().ok()?)));
        match linked {
            Some((t, pid)) if depth < 4 && values.contains_key(&(t, pid)) => {
                fill(t, pid, values, fields, col, cells, depth + 1);
            }
            _ => {
                if let Some(&i) = col.get(format!("{entity}.{n}").as_str()) {
                    cells[i] = if linked.is_some_and(|(_, p)| p <= 0) {
                        String::new()
                    } else {
                        text
                    };
                }
            }
        }
    }
}

fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The template that reads the restore sheet back: each entity keyed by its old CRM id, every
/// field from its column, links as `ref` + `column` where the linked entity is in the backup.
fn template_text(
    xlsx: &Path,
    fields: &BTreeMap<usize, (Entity, Vec<String>)>,
    in_backup: &BTreeSet<Entity>,
) -> String {
    let name = xlsx
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut t = format!(
        "# Written by `smbatch delete`: puts back the records it deleted.\n\
         #   smbatch import {name} -t {}\n\
         # Records are keyed by their old CRM id; links to records restored with them point to\n\
         # their new ids, links to records still in the CRM keep their ids.\n\
         name = {}\n\n[source]\nsheet = \"restore\"\n",
        template_path(Path::new(&name)).display(),
        quoted(&format!("Restore from {name}"))
    );
    for (e, names) in fields.values() {
        t.push_str(&format!(
            "\n[[entity]]\ntype = \"{e}\"\nkey = {}\n[entity.fields]\n",
            quoted(&format!("{{{e}.id}}"))
        ));
        for n in names {
            let column = quoted(&format!("{e}.{n}"));
            match link_of(*e, n) {
                Some(target) if in_backup.contains(&target) && order(target) < order(*e) => {
                    t.push_str(&format!(
                        "{} = {{ ref = \"{target}\", column = {column} }}\n",
                        quoted(n)
                    ));
                }
                _ => t.push_str(&format!("{} = {{ column = {column} }}\n", quoted(n))),
            }
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn history_rows_are_flattened_as_they_are_written() {
        let row = json!({"cid": 3, "datum": "2026-11-29 12:00:00", "content": "a<br />\nb",
                         "person": [{"pid": 7, "person": "Иван"}], "did": 0})
        .as_object()
        .unwrap()
        .clone();
        let flat: HashMap<String, String> =
            flat_fields(Entity::History, &row).into_iter().collect();
        assert_eq!(flat["content"], "a\nb");
        assert_eq!(flat["pid"], "7");
        assert!(!restorable(Entity::History, "cid", None));
        assert!(!restorable(Entity::History, "dogovor", None));
        assert!(restorable(Entity::History, "content", None));
    }
}
