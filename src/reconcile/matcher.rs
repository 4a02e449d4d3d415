//! Matching source records with CRM records, entity by entity in reference order, so a person's
//! `clid` can be compared with the CRM id its client matched.

use super::fields::Fields;
use crate::crm::Entity;
use crate::source::SourcePos;
use crate::template::Reference;
use crate::values::{norm_field, norm_phone, norm_text, norm_title};
use rayon::prelude::*;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

/// The source rows a record came from: row numbers in one file (and sheet), turned into labels
/// ("file row N") only for the records a report shows — a label kept per record cost more than
/// the record's fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    /// Where the rows are (its `row` is not used).
    at: Arc<SourcePos>,
    numbers: Vec<u64>,
}

impl Rows {
    pub fn new(at: Arc<SourcePos>, numbers: Vec<u64>) -> Rows {
        Rows { at, numbers }
    }

    /// Add a row, unless it is the last one already.
    pub fn push(&mut self, row: u64) {
        if self.numbers.last() != Some(&row) {
            self.numbers.push(row);
        }
    }

    /// Every row as messages label it: file [sheet] row N.
    pub fn labels(&self) -> Vec<String> {
        self.numbers
            .iter()
            .map(|&row| {
                SourcePos {
                    row,
                    ..(*self.at).clone()
                }
                .to_string()
            })
            .collect()
    }
}

/// One record the source says should exist (records of one key merged across rows).
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRecord {
    pub entity: Entity,
    pub key: String,
    pub fields: Fields,
    /// Fields that hold another record's CRM id, e.g. `clid` of client "ООО Ромашка".
    pub refs: Vec<Reference>,
    /// Where it came from.
    pub rows: Rows,
}

/// One record as the CRM's `list` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct CrmRecord {
    pub id: i64,
    pub fields: Fields,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntitySummary {
    pub in_source: u64,
    pub matched: u64,
    pub missing: u64,
    pub only_in_crm: u64,
    /// Matched records with at least one differing field.
    pub different: u64,
    /// Source keys with more than one CRM record.
    pub duplicated: u64,
    pub in_crm: u64,
    /// Created (the journal has its id) and still there by `info`, but not in `list`: the API
    /// user cannot see it (owner 0, another owner). Not missing, never re-sent.
    pub invisible: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Missing {
    pub entity: Entity,
    pub key: String,
    pub rows: Vec<String>,
    pub fields: Fields,
    /// The id the journal recorded, when the record was created once and is gone now.
    pub journal_id: Option<i64>,
}

/// A record the journal knows as created that `list` does not show but `info` still finds.
#[derive(Debug, Clone, PartialEq)]
pub struct Invisible {
    pub entity: Entity,
    pub key: String,
    pub rows: Vec<String>,
    pub id: i64,
    /// The owner as `info` reports it (a login, an id, or empty for owner 0).
    pub owner: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FieldDiff {
    pub entity: Entity,
    pub key: String,
    pub id: i64,
    pub rows: Vec<String>,
    pub field: String,
    pub source: String,
    pub crm: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Duplicate {
    pub entity: Entity,
    pub key: String,
    pub rows: Vec<String>,
    pub ids: Vec<i64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reconciliation {
    pub summaries: Vec<(Entity, EntitySummary)>,
    pub missing: Vec<Missing>,
    pub different: Vec<FieldDiff>,
    pub duplicates: Vec<Duplicate>,
    pub only_in_crm: Vec<(Entity, CrmRecord)>,
    pub invisible: Vec<Invisible>,
    /// (entity, source key) → the CRM id it matched.
    pub matched: HashMap<(Entity, String), i64>,
}

impl Reconciliation {
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty()
            && self.different.is_empty()
            && self.duplicates.is_empty()
            && self.only_in_crm.is_empty()
            && self.invisible.is_empty()
    }

    /// Records that looked missing but `info` found (id → owner): they move from `missing` to
    /// `invisible`, so `--fix` never sends them again.
    pub fn mark_invisible(&mut self, found: &HashMap<(Entity, i64), String>) {
        let (gone, still): (Vec<Missing>, Vec<Missing>) = std::mem::take(&mut self.missing)
            .into_iter()
            .partition(|m| {
                m.journal_id
                    .is_some_and(|id| found.contains_key(&(m.entity, id)))
            });
        self.missing = still;
        for m in gone {
            let id = m.journal_id.unwrap_or_default();
            if let Some((_, s)) = self.summaries.iter_mut().find(|(e, _)| *e == m.entity) {
                s.missing -= 1;
                s.invisible += 1;
            }
            self.invisible.push(Invisible {
                owner: found.get(&(m.entity, id)).cloned().unwrap_or_default(),
                entity: m.entity,
                key: m.key,
                rows: m.rows,
                id,
            });
        }
    }
}

/// Ways to recognise a record without an id, most specific first. Source and CRM records go
/// through the same function, so both sides produce the same strings.
fn probes(entity: Entity, key: Option<&str>, f: &Fields) -> Vec<u64> {
    let get = |name: &str| f.get(name).unwrap_or_default();
    let id_of = |name: &str| {
        f.get(name)
            .filter(|s| !s.is_empty() && *s != "0")
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    // Probes are hashed as (kind, parts...) directly: no string is built for them.
    let mut push = |kind: &str, parts: &[&str]| {
        if parts.first().is_some_and(|p| !p.is_empty()) {
            out.push(hash_probe(kind, parts));
        }
    };
    match entity {
        Entity::Client | Entity::Deal => {
            // The import writes the record key into `uid` when the template sets none.
            let uid = get("uid");
            push(
                "uid",
                &[if uid.is_empty() {
                    key.unwrap_or("")
                } else {
                    uid
                }],
            );
            let title = norm_title(&strip_deal_prefix(entity, get("title")));
            push("title", &[&title, id_of("clid")]);
        }
        Entity::Person => {
            push("mail", &[&get("mail").trim().to_lowercase()]);
            push("tel", &[&norm_phone(get("tel"))]);
            push("mob", &[&norm_phone(get("mob"))]);
            push("name", &[&norm_text(get("person")), id_of("clid")]);
        }
        Entity::History => {
            let datum = norm_field("datum", get("datum"));
            push("hist", &[&norm_text(get("content")), id_of("clid"), &datum]);
        }
        Entity::Task => {
            push(
                "task",
                &[&norm_text(get("title")), id_of("clid"), get("datum").trim()],
            );
        }
        Entity::Invoice => push("invoice", &[get("invoice").trim(), id_of("did")]),
        Entity::Payment => push("payment", &[get("invoice").trim(), get("summa").trim()]),
    }
    out
}

/// The real server prefixes deal titles (e.g. "СД2: "); compare without it.
fn strip_deal_prefix(entity: Entity, title: &str) -> String {
    if entity == Entity::Deal {
        if let Some((head, rest)) = title.split_once(": ") {
            if !head.is_empty() && head.len() <= 12 && !head.contains(' ') {
                return rest.to_string();
            }
        }
    }
    title.to_string()
}

/// Inputs of one entity's matching.
pub struct EntityInput<'a> {
    pub entity: Entity,
    pub source: &'a [SourceRecord],
    pub crm: &'a [CrmRecord],
    /// key → CRM id from an import journal, when one is given.
    pub journal: Option<&'a HashMap<String, i64>>,
}

/// Match every entity; `inputs` must come in reference order (clients first).
pub fn reconcile(inputs: &[EntityInput<'_>]) -> Reconciliation {
    let mut out = Reconciliation::default();
    // (entity, key) → CRM id of the matched record, also for resolving references.
    let mut matched_ids: HashMap<(Entity, String), i64> = HashMap::new();
    for input in inputs {
        let summary = reconcile_entity(input, &mut matched_ids, &mut out);
        out.summaries.push((input.entity, summary));
    }
    out.matched = matched_ids;
    out
}

/// A probe as a 64-bit hash: 400,000 probes of 100,000 records take a few MB this way instead
/// of a string map. A collision can only make two different values look alike, which the field
/// comparison then shows as a difference.
fn hash_probe(kind: &str, parts: &[&str]) -> u64 {
    crate::hash::fast_one((kind, parts))
}

/// CRM records by probe hash: a sorted vector, searched by range.
struct ProbeIndex(Vec<(u64, u32)>);

impl ProbeIndex {
    fn build(entity: Entity, crm: &[CrmRecord]) -> ProbeIndex {
        let per_record: Vec<Vec<u64>> = crm
            .par_iter()
            .map(|r| probes(entity, None, &r.fields))
            .collect();
        let mut entries: Vec<(u64, u32)> = per_record
            .into_iter()
            .enumerate()
            .flat_map(|(i, hs)| hs.into_iter().map(move |h| (h, i as u32)))
            .collect();
        entries.par_sort_unstable();
        ProbeIndex(entries)
    }

    fn get(&self, h: u64) -> impl Iterator<Item = usize> + '_ {
        let from = self.0.partition_point(|(x, _)| *x < h);
        self.0[from..]
            .iter()
            .take_while(move |(x, _)| *x == h)
            .map(|(_, i)| *i as usize)
    }
}

/// A source record with its references resolved to CRM ids, and its probes.
struct Prepared<'a> {
    fields: Cow<'a, Fields>,
    probes: Vec<u64>,
}

/// Field-level differences between a source record and the CRM record it matched.
fn diffs(entity: Entity, rec: &SourceRecord, fields: &Fields, crm: &CrmRecord) -> Vec<FieldDiff> {
    let mut out = Vec::new();
    for (field, want) in fields.iter() {
        // Only what the list shows can be compared.
        let Some(have) = crm.fields.get(field) else {
            continue;
        };
        let reference = rec.refs.iter().find(|r| r.field == field);
        let same = if want == have {
            true
        } else if reference.is_some() {
            // A link compares as the CRM id its record matched; history may link several
            // persons ("3;7"). An empty or 0 link is no link.
            want.parse::<i64>().is_ok() && have.split([';', ',']).any(|id| id.trim() == want)
        } else if field == "title" {
            norm_title(&strip_deal_prefix(entity, want))
                == norm_title(&strip_deal_prefix(entity, have))
        } else {
            norm_field(field, want) == norm_field(field, have)
        };
        if !same {
            out.push(FieldDiff {
                entity,
                key: rec.key.clone(),
                id: crm.id,
                rows: rec.rows.labels(),
                field: field.to_string(),
                // A link says which record it should point at, not only its id.
                source: match reference {
                    Some(r) => format!("{want} ({} {})", r.entity, r.key),
                    None => want.to_string(),
                },
                crm: have.to_string(),
            });
        }
    }
    out
}

fn reconcile_entity(
    input: &EntityInput<'_>,
    matched_ids: &mut HashMap<(Entity, String), i64>,
    out: &mut Reconciliation,
) -> EntitySummary {
    let entity = input.entity;
    let mut summary = EntitySummary {
        in_source: input.source.len() as u64,
        in_crm: input.crm.len() as u64,
        ..Default::default()
    };
    let by_id: HashMap<i64, usize> = input
        .crm
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id, i))
        .collect();
    let index = ProbeIndex::build(entity, input.crm);

    // References resolve to the CRM ids their records matched (earlier entities are done).
    let ids: &HashMap<(Entity, String), i64> = matched_ids;
    let prepared: Vec<Prepared<'_>> = input
        .source
        .par_iter()
        .map(|rec| {
            let mut fields = Cow::Borrowed(&rec.fields);
            for r in &rec.refs {
                if let Some(id) = ids.get(&(r.entity, r.key.clone())) {
                    fields.to_mut().set(&r.field, id.to_string());
                }
            }
            let probes = probes(entity, Some(&rec.key), &fields);
            Prepared { fields, probes }
        })
        .collect();

    // Claiming is sequential: the first source record to reach a CRM record gets it.
    let mut claimed = vec![false; input.crm.len()];
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    for (si, (rec, prep)) in input.source.iter().zip(&prepared).enumerate() {
        let journal_id = input.journal.and_then(|j| j.get(&rec.key).copied());
        // The journal's id is the strongest evidence; otherwise the first probe that hits.
        let mut hit: Option<usize> = journal_id.and_then(|id| by_id.get(&id).copied());
        let mut candidates: Vec<usize> = Vec::new();
        for &p in &prep.probes {
            let free: Vec<usize> = index.get(p).filter(|i| !claimed[*i]).collect();
            if free.is_empty() {
                continue;
            }
            if hit.is_none_or(|h| free.contains(&h)) {
                candidates = free;
                break;
            }
        }
        if journal_id.is_none() {
            hit = candidates.iter().copied().min_by_key(|i| input.crm[*i].id);
        }
        let Some(found) = hit else {
            summary.missing += 1;
            out.missing.push(Missing {
                entity,
                key: rec.key.clone(),
                rows: rec.rows.labels(),
                fields: prep.fields.clone().into_owned(),
                journal_id,
            });
            continue;
        };
        summary.matched += 1;
        claimed[found] = true;
        let crm = &input.crm[found];
        matched_ids.insert((entity, rec.key.clone()), crm.id);
        pairs.push((si, found));

        candidates.retain(|i| *i != found);
        if !candidates.is_empty() {
            let mut dup_ids: Vec<i64> = vec![crm.id];
            for &i in &candidates {
                claimed[i] = true;
                dup_ids.push(input.crm[i].id);
            }
            dup_ids.sort_unstable();
            summary.duplicated += 1;
            out.duplicates.push(Duplicate {
                entity,
                key: rec.key.clone(),
                rows: rec.rows.labels(),
                ids: dup_ids,
            });
        }
    }

    let found_diffs: Vec<Vec<FieldDiff>> = pairs
        .par_iter()
        .map(|&(si, ci)| {
            diffs(
                entity,
                &input.source[si],
                &prepared[si].fields,
                &input.crm[ci],
            )
        })
        .collect();
    for d in found_diffs {
        if !d.is_empty() {
            summary.different += 1;
            out.different.extend(d);
        }
    }

    for (i, r) in input.crm.iter().enumerate() {
        if !claimed[i] {
            summary.only_in_crm += 1;
            out.only_in_crm.push((entity, r.clone()));
        }
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::Names;
    use serde_json::{json, Value};

    fn src(entity: Entity, key: &str, fields: Value) -> SourceRecord {
        let at = SourcePos {
            file: "in.csv".into(),
            sheet: None,
            row: 0,
        };
        SourceRecord {
            entity,
            key: key.into(),
            fields: Fields::from_map(fields.as_object().unwrap(), &mut Names::default()),
            refs: vec![],
            rows: Rows::new(Arc::new(at), vec![2]),
        }
    }
    fn crm(id: i64, fields: Value) -> CrmRecord {
        CrmRecord {
            id,
            fields: Fields::from_map(fields.as_object().unwrap(), &mut Names::default()),
        }
    }

    #[test]
    fn finds_missing_different_duplicates_and_extras() {
        let clients = vec![src(Entity::Client, "C1", json!({"title": "ООО «Ромашка»"}))];
        let crm_clients = vec![crm(
            1,
            json!({"clid": 1, "uid": "C1", "title": "Ромашка, ООО"}),
        )];
        let mut p1 = src(
            Entity::Person,
            "P1",
            json!({"person": "Иван Петров", "mail": "ivan@x.ru"}),
        );
        p1.refs.push(Reference {
            field: "clid".into(),
            entity: Entity::Client,
            key: "C1".into(),
        });
        let p2 = src(
            Entity::Person,
            "P2",
            json!({"person": "Анна", "tel": "8 (342) 200-00-00"}),
        );
        let p3 = src(
            Entity::Person,
            "P3",
            json!({"person": "Нет Такого", "mail": "no@x.ru"}),
        );
        let persons = vec![p1, p2, p3];
        let crm_persons = vec![
            crm(
                10,
                json!({"pid": 10, "person": "Иван Петров", "mail": "IVAN@x.ru", "clid": 1}),
            ),
            crm(
                11,
                json!({"pid": 11, "person": "Анна", "tel": "+7(342)200-00-00", "clid": 0}),
            ),
            crm(
                12,
                json!({"pid": 12, "person": "Анна Изменённая", "tel": "+7 342 200 00 00"}),
            ),
            crm(
                13,
                json!({"pid": 13, "person": "Чужой", "mail": "other@x.ru"}),
            ),
        ];
        let r = reconcile(&[
            EntityInput {
                entity: Entity::Client,
                source: &clients,
                crm: &crm_clients,
                journal: None,
            },
            EntityInput {
                entity: Entity::Person,
                source: &persons,
                crm: &crm_persons,
                journal: None,
            },
        ]);
        assert_eq!(r.summaries[0].1.matched, 1);
        assert!(r.summaries[0].1.missing == 0 && r.summaries[0].1.only_in_crm == 0);
        let p = &r.summaries[1].1;
        assert_eq!(
            (p.matched, p.missing, p.only_in_crm, p.duplicated),
            (2, 1, 1, 1)
        );
        assert_eq!(r.missing[0].key, "P3");
        assert_eq!(r.duplicates[0].ids, vec![11, 12]);
        assert_eq!(r.only_in_crm[0].1.id, 13);
        assert!(r.different.is_empty(), "{:?}", r.different);
    }

    #[test]
    fn journal_ids_win_and_deleted_records_are_missing() {
        let persons = vec![
            src(
                Entity::Person,
                "P1",
                json!({"person": "Иван", "ptitle": "Директор"}),
            ),
            src(Entity::Person, "P2", json!({"person": "Пётр"})),
        ];
        let crm_persons = vec![crm(
            5,
            json!({"pid": 5, "person": "Иван", "ptitle": "Бухгалтер"}),
        )];
        let journal: HashMap<String, i64> = [("P1".to_string(), 5), ("P2".to_string(), 6)].into();
        let r = reconcile(&[EntityInput {
            entity: Entity::Person,
            source: &persons,
            crm: &crm_persons,
            journal: Some(&journal),
        }]);
        assert_eq!(r.missing.len(), 1);
        assert_eq!(r.missing[0].journal_id, Some(6));
        assert_eq!(r.different.len(), 1);
        assert_eq!(
            (
                r.different[0].field.as_str(),
                r.different[0].source.as_str(),
                r.different[0].crm.as_str()
            ),
            ("ptitle", "Директор", "Бухгалтер")
        );
    }

    #[test]
    fn deal_prefix_and_history_line_breaks_are_not_differences() {
        let deals = vec![src(Entity::Deal, "D1", json!({"title": "Поставка"}))];
        let crm_deals = vec![crm(
            1,
            json!({"did": 1, "uid": "D1", "title": "СД2: Поставка"}),
        )];
        let hist = vec![src(
            Entity::History,
            "H1",
            json!({"content": "Звонок\n\"Договорились\"", "datum": "2024-06-25 14:25"}),
        )];
        let crm_hist = vec![crm(
            7,
            json!({"cid": 7, "content": "Звонок<br />\nДоговорились", "datum": "2024-06-25 14:25:00", "clid": 0}),
        )];
        let r = reconcile(&[
            EntityInput {
                entity: Entity::Deal,
                source: &deals,
                crm: &crm_deals,
                journal: None,
            },
            EntityInput {
                entity: Entity::History,
                source: &hist,
                crm: &crm_hist,
                journal: None,
            },
        ]);
        assert!(r.is_clean(), "{r:?}");
    }

    #[test]
    fn unlinked_history_differs_on_pid_and_invisible_records_are_not_missing() {
        let persons = vec![src(
            Entity::Person,
            "EXT-1001",
            json!({"person": "Петрова"}),
        )];
        let crm_persons = vec![crm(30, json!({"pid": 30, "person": "Петрова"}))];
        let link = |key: &str| Reference {
            field: "pid".into(),
            entity: Entity::Person,
            key: key.into(),
        };
        let mut h1 = src(
            Entity::History,
            "EXT-1001/1",
            json!({"content": "Встреча", "datum": "2024-02-04 10:07:00"}),
        );
        h1.refs.push(link("EXT-1001"));
        let mut h2 = src(
            Entity::History,
            "EXT-1001/2",
            json!({"content": "Звонок", "datum": "2024-02-05 10:07:00"}),
        );
        h2.refs.push(link("EXT-1001"));
        let hist = vec![h1, h2];
        // The person was deleted (pid cleared on its history) and re-created as pid 30.
        let crm_hist = vec![
            crm(
                1,
                json!({"cid": 1, "content": "Встреча", "datum": "2024-02-04 10:07:00", "pid": ""}),
            ),
            crm(
                2,
                json!({"cid": 2, "content": "Звонок", "datum": "2024-02-05 10:07:00", "pid": "12;30"}),
            ),
        ];
        let journal: HashMap<String, i64> = [("EXT-1002".to_string(), 31)].into();
        let mut persons2 = persons.clone();
        persons2.push(src(
            Entity::Person,
            "EXT-1002",
            json!({"person": "Скрытый"}),
        ));
        let mut r = reconcile(&[
            EntityInput {
                entity: Entity::Person,
                source: &persons2,
                crm: &crm_persons,
                journal: Some(&journal),
            },
            EntityInput {
                entity: Entity::History,
                source: &hist,
                crm: &crm_hist,
                journal: None,
            },
        ]);
        assert_eq!(r.different.len(), 1, "{:?}", r.different);
        let d = &r.different[0];
        assert_eq!(
            (
                d.key.as_str(),
                d.field.as_str(),
                d.source.as_str(),
                d.crm.as_str()
            ),
            ("EXT-1001/1", "pid", "30 (person EXT-1001)", "")
        );
        assert_eq!(r.summaries[1].1.different, 1);
        // EXT-1002 looked missing; info found it with owner 0.
        assert_eq!(r.missing.len(), 1);
        r.mark_invisible(&[((Entity::Person, 31), String::new())].into());
        assert!(r.missing.is_empty());
        assert_eq!(r.invisible[0].key, "EXT-1002");
        assert_eq!(
            (r.summaries[0].1.missing, r.summaries[0].1.invisible),
            (0, 1)
        );
        assert!(!r.is_clean());
    }
}
