//! Each entity's key, chosen from the data: the first candidate (a column or the smallest
//! combination, most wanted first: an old system's id, an INN, an e-mail, …) that is filled
//! wherever the entity is and never puts two records whose values disagree under one key.

use super::linked::{cell, Ent, Field, SourceRow};
use crate::crm::Entity;
use crate::template::matching::norm_part;
use std::collections::HashMap;

/// A part of a key candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    Field(&'static str),
    /// The key of this row's record of another entity (the person's client).
    Parent(Entity),
    /// A source-system id column.
    Id(usize),
}

/// The candidates of an entity's key, most wanted first.
fn candidates(ent: &Ent) -> Vec<(Vec<Part>, &'static str)> {
    use Part::{Field as F, Parent as P};
    let mut c: Vec<(Vec<Part>, &'static str)> = Vec::new();
    if let Some(i) = ent.id_col {
        c.push((vec![Part::Id(i)], "the old system's id"));
    }
    let more: Vec<(Vec<Part>, &'static str)> = match ent.entity {
        Entity::Client => vec![
            (
                vec![F("recv.castInn")],
                "an INN identifies a company, however its name is spelled",
            ),
            (vec![F("title")], "the company name is unique per company"),
            (
                vec![F("title"), F("phone")],
                "name and phone together are unique",
            ),
            (
                vec![F("title"), F("address")],
                "name and address together are unique",
            ),
        ],
        Entity::Person => vec![
            (vec![F("mail")], "the e-mail is unique per contact"),
            (vec![F("tel")], "the phone is unique per contact"),
            (vec![F("mob")], "the mobile is unique per contact"),
            (
                vec![F("person"), P(Entity::Client)],
                "name within the company is unique",
            ),
            (
                vec![F("person"), F("mail")],
                "name and e-mail together are unique",
            ),
            (
                vec![F("person"), F("tel")],
                "name and phone together are unique",
            ),
            (
                vec![F("person"), F("mob")],
                "name and mobile together are unique",
            ),
            (
                vec![F("person"), P(Entity::Client), F("mail")],
                "name, company and e-mail together are unique",
            ),
            (
                vec![F("person"), P(Entity::Client), F("tel")],
                "name, company and phone together are unique",
            ),
        ],
        Entity::Deal => vec![
            (vec![F("title")], "the deal title is unique"),
            (
                vec![F("title"), P(Entity::Client)],
                "title within the company is unique",
            ),
            (
                vec![F("title"), F("datum_plan"), P(Entity::Client)],
                "title, date and company together are unique",
            ),
        ],
        Entity::Task => vec![
            (vec![F("title"), F("datum")], "title and date are unique"),
            (
                vec![F("title"), F("datum"), P(Entity::Client)],
                "title, date and company are unique",
            ),
            (
                vec![F("title"), F("datum"), P(Entity::Person)],
                "title, date and contact are unique",
            ),
        ],
        _ => vec![
            (vec![F("datum"), F("content")], "date and text are unique"),
            (
                vec![F("datum"), F("content"), P(Entity::Person)],
                "date, text and contact are unique",
            ),
            (
                vec![F("datum"), F("content"), P(Entity::Client)],
                "date, text and company are unique",
            ),
            (
                vec![
                    F("datum"),
                    F("content"),
                    P(Entity::Person),
                    P(Entity::Client),
                ],
                "date, text, contact and company are unique",
            ),
            (vec![F("content")], "the text is unique"),
            (
                vec![F("content"), P(Entity::Person)],
                "text and contact are unique",
            ),
        ],
    };
    c.extend(more);
    c
}

/// Choose the key: the first candidate that is filled wherever the entity is and never puts two
/// records whose values disagree under one key. Returns the key's columns, the report line and
/// the match probes.
pub(super) fn choose_key(
    ent: &Ent,
    parents: &HashMap<Entity, Vec<usize>>,
    rows: &[SourceRow],
    headers: &[String],
) -> (Vec<usize>, String, Vec<String>) {
    let e = ent.entity;
    let own: Vec<&Field> = ent
        .fields
        .iter()
        .filter(|f| !f.cols.is_empty() && f.name != "user")
        .collect();
    let value = |r: &SourceRow, f: &Field| {
        let raw: Vec<&str> = f.cols.iter().map(|&c| cell(r, c)).collect();
        let mut text = raw.join(" ");
        if matches!(f.name, "mail" | "tel" | "mob" | "phone") {
            text = crate::template::rules::Transform::First.apply(&text);
        }
        norm_part(e, f.name, &text)
    };
    let parent_val = |r: &SourceRow, p: Entity| -> String {
        parents
            .get(&p)
            .map(|cols| {
                cols.iter()
                    .map(|&c| cell(r, c))
                    .collect::<Vec<_>>()
                    .join("\u{1}")
            })
            .unwrap_or_default()
    };
    let present: Vec<&SourceRow> = rows
        .iter()
        .filter(|r| {
            own.iter()
                .any(|f| f.cols.iter().any(|&c| !cell(r, c).is_empty()))
        })
        .collect();
    // The record's values (its own fields and its parents' keys), compared for disagreement.
    let parent_ents: Vec<Entity> = ent
        .fields
        .iter()
        .filter(|f| f.cols.is_empty())
        .filter_map(|f| match f.name {
            "clid" => Some(Entity::Client),
            "pid" => Some(Entity::Person),
            "did" => Some(Entity::Deal),
            _ => None,
        })
        .filter(|p| parents.contains_key(p))
        .collect();
    let labels: Vec<String> = own
        .iter()
        .map(|f| headers[f.cols[0]].clone())
        .chain(parent_ents.iter().map(|p| format!("its {p}")))
        .collect();
    let tuple = |r: &SourceRow| -> Vec<String> {
        own.iter()
            .map(|f| value(r, f))
            .chain(parent_ents.iter().map(|p| parent_val(r, *p)))
            .collect()
    };
    let mut rejected: Vec<String> = Vec::new();
    for (parts, why) in candidates(ent) {
        let fields: Option<Vec<&Field>> = parts
            .iter()
            .filter_map(|p| match p {
                Part::Field(n) => Some(*n),
                _ => None,
            })
            .map(|n| own.iter().copied().find(|f| f.name == n))
            .collect();
        let Some(fields) = fields else { continue };
        if parts
            .iter()
            .any(|p| matches!(p, Part::Parent(x) if !parent_ents.contains(x)))
        {
            continue;
        }
        let label = key_label(&parts, &fields, headers, parents);
        let keyval = |r: &SourceRow| -> Vec<String> {
            let mut fi = fields.iter();
            parts
                .iter()
                .map(|p| match p {
                    Part::Field(_) => fi.next().map(|f| value(r, f)).unwrap_or_default(),
                    Part::Parent(x) => parent_val(r, *x),
                    Part::Id(c) => cell(r, *c).to_string(),
                })
                .collect()
        };
        if let Some(r) = present
            .iter()
            .find(|r| keyval(r).iter().any(String::is_empty))
        {
            let n = present
                .iter()
                .filter(|r| keyval(r).iter().any(String::is_empty))
                .count();
            rejected.push(format!("{label} is empty in {n} rows (first: row {})", r.0));
            continue;
        }
        // Under INN, the company's other values may be spelled differently: reported, not refused.
        let tolerant = |i: usize| {
            e == Entity::Client
                && parts == [Part::Field("recv.castInn")]
                && i < own.len()
                && matches!(own[i].name, "title" | "address" | "phone" | "site_url")
        };
        let mut seen: HashMap<Vec<String>, (u64, Vec<String>)> = HashMap::new();
        let mut conflict: Option<String> = None;
        let mut spellings: Vec<String> = Vec::new();
        for r in &present {
            let t = tuple(r);
            match seen.get_mut(&keyval(r)) {
                None => {
                    seen.insert(keyval(r), (r.0, t));
                }
                Some((first, have)) => {
                    for (i, (a, b)) in have.iter_mut().zip(&t).enumerate() {
                        if a.is_empty() {
                            a.clone_from(b);
                        } else if !b.is_empty() && a != b {
                            if tolerant(i) {
                                let s = format!(
                                    "row {} '{}' vs row {first}",
                                    r.0,
                                    cell(r, own[i].cols[0])
                                );
                                if spellings.len() < 3 {
                                    spellings.push(s);
                                }
                            } else if conflict.is_none() {
                                conflict = Some(format!(
                                    "{label} would merge rows {first} and {} whose {} differ",
                                    r.0, labels[i]
                                ));
                            }
                        }
                    }
                }
            }
            if conflict.is_some() {
                break;
            }
        }
        if let Some(c) = conflict {
            rejected.push(c);
            continue;
        }
        let cols: Vec<usize> = parts
            .iter()
            .zip(0..)
            .flat_map(|(p, _)| match p {
                Part::Field(n) => fields
                    .iter()
                    .find(|f| f.name == *n)
                    .map(|f| f.cols.clone())
                    .unwrap_or_default(),
                Part::Parent(x) => parents.get(x).cloned().unwrap_or_default(),
                Part::Id(c) => vec![*c],
            })
            .collect();
        let mut line = format!(
            "  {e}: key {label} — {why}; {} {e} records from {} rows",
            seen.len(),
            present.len()
        );
        if !spellings.is_empty() {
            line.push_str(&format!(
                " (names spelled differently under one INN, the first row's is sent: {})",
                spellings.join("; ")
            ));
        }
        if !rejected.is_empty() {
            line.push_str(&format!("; not chosen: {}", rejected.join("; ")));
        }
        let probe: Vec<&str> = parts
            .iter()
            .filter_map(|p| match p {
                Part::Field(n) => Some(*n),
                Part::Parent(Entity::Client) => Some("clid"),
                Part::Parent(Entity::Person) => Some("pid"),
                _ => None,
            })
            .collect();
        let probes = if e == Entity::Client && parts == [Part::Field("recv.castInn")] {
            vec!["uid".to_string(), "recv.castInn".to_string()]
        } else if probe.len() == parts.len() && !matches!(e, Entity::History | Entity::Task) {
            vec![probe.join("+")]
        } else {
            Vec::new()
        };
        return (cols, line, probes);
    }
    // Nothing identifies a record: all its columns together.
    let mut cols: Vec<usize> = own.iter().flat_map(|f| f.cols.clone()).collect();
    for p in &parent_ents {
        cols.extend(parents.get(p).cloned().unwrap_or_default());
    }
    cols.dedup();
    let line = format!("  {e}: key = all its columns — no column or combination identifies one {e} ({}); rows that differ in any of them are different records", rejected.join("; "));
    (cols, line, Vec::new())
}

fn key_label(
    parts: &[Part],
    fields: &[&Field],
    headers: &[String],
    parents: &HashMap<Entity, Vec<usize>>,
) -> String {
    let mut fi = fields.iter();
    let names: Vec<String> = parts
        .iter()
        .map(|p| match p {
            Part::Field(_) => fi
                .next()
                .map(|f| {
                    f.cols
                        .iter()
                        .map(|&c| format!("{{{}}}", headers[c]))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default(),
            Part::Parent(x) => parents
                .get(x)
                .map(|cols| {
                    cols.iter()
                        .map(|&c| format!("{{{}}}", headers[c]))
                        .collect::<Vec<_>>()
                        .join("+")
                })
                .map(|k| format!("{k} (its {x})"))
                .unwrap_or_default(),
            Part::Id(c) => format!("{{{}}}", headers[*c]),
        })
        .collect();
    names.join(" + ")
}
