//! `template init --from FILE` without an entity: a whole linked template (client, person, deal,
//! task, history) from a flat file, with each entity's key chosen from the data and owners mapped
//! to the CRM's users. [`propose`] returns the template text and the report of what every column
//! became and why every key was chosen.

use super::owners::{distinct_owners, match_owners, OwnerMatch};
use super::presets::{role_of, Preset, Role};
use super::profile::Profile;
use crate::crm::{CrmUser, Entity};
use crate::template::matching::norm_part;
use std::collections::HashMap;

/// What [`propose`] needs besides the file.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options<'a> {
    /// The file's name, for the template's comments.
    pub file: &'a str,
    pub preset: Option<Preset>,
    /// The CRM's users (`user/list`), when a CRM was named.
    pub users: Option<&'a [CrmUser]>,
}

/// A proposed template and the report on it.
#[derive(Debug, Clone)]
pub struct Proposal {
    pub text: String,
    /// Lines: every column, every key, the owners.
    pub report: Vec<String>,
    /// Owners with no login yet (the user must fill them in).
    pub unmatched_owners: usize,
}

/// One field of a proposed entity.
#[derive(Debug, Clone)]
struct Field {
    name: &'static str,
    /// The columns its value is made of (several: a name from its parts).
    cols: Vec<usize>,
    /// The inside of its `{ ... }` in the template.
    spec: String,
}

/// A part of a key candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Field(&'static str),
    /// The key of this row's record of another entity (the person's client).
    Parent(Entity),
    /// A source-system id column.
    Id(usize),
}

struct Ent {
    entity: Entity,
    fields: Vec<Field>,
    id_col: Option<usize>,
    key: Vec<usize>,
    probes: Vec<String>,
}

type SourceRow = (u64, Vec<String>);

/// A row's cell, trimmed ("" past the row's end).
fn cell(r: &SourceRow, c: usize) -> &str {
    r.1.get(c).map(|s| s.trim()).unwrap_or("")
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn field_key(name: &str) -> String {
    if name.contains('.') {
        toml_str(name)
    } else {
        name.to_string()
    }
}

/// The spec of a field read from one column, from what its values are.
fn spec_for(entity: Entity, name: &str, header: &str, p: &Profile) -> String {
    let col = format!("column = {}", toml_str(header));
    let first = if p.multi > 0 { "\"first\", " } else { "" };
    let required = matches!(
        (entity, name),
        (Entity::Client, "title")
            | (Entity::Person, "person")
            | (Entity::Deal, "title")
            | (Entity::Task, "title")
            | (Entity::History, "content")
    );
    let mut s = match name {
        "mail" | "mail_url" => {
            format!("{col}, transform = [{first}\"trim\", \"lower\"], check = \"email\"")
        }
        "tel" | "mob" | "phone" | "fax" => format!("{col}, transform = [{first}\"phone\"]"),
        "recv.castInn" | "recv.castKpp" | "uid" => format!("{col}, transform = [\"digits\"]"),
        "datum" | "datum_plan" | "date_create" => format!("{col}{}", p.date_spec()),
        "content" | "des" | "kol" => col,
        _ => format!("{col}, transform = [\"collapse_spaces\"]"),
    };
    if required {
        s.push_str(", required = true");
    }
    s
}

/// Propose a linked template for a file's `headers` and data `rows` (row number, cells).
pub fn propose(headers: &[String], rows: &[(u64, Vec<String>)], opts: &Options) -> Proposal {
    let profiles: Vec<Profile> = (0..headers.len())
        .map(|c| Profile::of(rows.iter().map(|r| cell(r, c))))
        .collect();
    let mut report = Vec::new();
    let mut col_notes: Vec<Option<String>> = vec![None; headers.len()];
    // 1. What each column names, by its title, then by its values.
    let mut roles: Vec<Option<Role>> = headers.iter().map(|h| role_of(h, opts.preset)).collect();
    for (c, r) in roles.iter_mut().enumerate() {
        if r.is_none() && profiles[c].filled > 0 {
            if profiles[c].is_email() {
                *r = Some(Role::Field(Entity::Person, "mail"));
            } else if profiles[c].is_phone() && profiles[c].digits < profiles[c].filled {
                *r = Some(Role::Field(Entity::Person, "tel"));
            }
        }
    }
    let has = |roles: &[Option<Role>], e: Entity, f: &'static str| {
        roles.iter().any(|r| *r == Some(Role::Field(e, f)))
    };
    let name_parts: Vec<(u8, usize)> = {
        let mut v: Vec<(u8, usize)> = roles
            .iter()
            .enumerate()
            .filter_map(|(c, r)| match r {
                Some(Role::NamePart(i)) => Some((*i, c)),
                _ => None,
            })
            .collect();
        v.sort_unstable();
        v
    };
    let person_from_parts = !has(&roles, Entity::Person, "person") && !name_parts.is_empty();
    let present = |e: Entity| match e {
        Entity::Client => has(&roles, e, "title"),
        Entity::Person => has(&roles, e, "person") || person_from_parts,
        Entity::History => has(&roles, e, "content"),
        Entity::Deal | Entity::Task => has(&roles, e, "title"),
        Entity::Invoice => false,
    };
    let mut ents: Vec<Ent> = Entity::ALL
        .iter()
        .filter(|e| present(**e))
        .map(|&entity| Ent {
            entity,
            fields: Vec::new(),
            id_col: None,
            key: Vec::new(),
            probes: Vec::new(),
        })
        .collect();
    let main = [Entity::Deal, Entity::Person, Entity::Client]
        .into_iter()
        .find(|e| present(*e));
    let mut owner_col: Option<usize> = None;
    let mut created_col: Option<usize> = None;
    for (c, role) in roles.iter().enumerate() {
        let h = &headers[c];
        let p = &profiles[c];
        let Some(role) = *role else {
            col_notes[c] = Some(if p.filled == 0 {
                "left out: the column is empty".into()
            } else {
                format!(
                    "left out: no CRM field goes by this title ({})",
                    p.describe()
                )
            });
            continue;
        };
        match role {
            Role::Field(mut e, mut f) => {
                if !present(e) {
                    let why = match e {
                        Entity::Client => {
                            "there is no company name column, and a client needs a title"
                        }
                        Entity::Person => {
                            "there is no contact name column, and a person needs a name"
                        }
                        Entity::History => {
                            "there is no comment column, and a history entry needs its text"
                        }
                        _ => "there is no title column for it",
                    };
                    col_notes[c] = Some(format!("left out: would be {e} {f}, but {why}"));
                    continue;
                }
                // A contacts file's second phone column is the mobile one.
                let Some(ent) = ents.iter_mut().find(|x| x.entity == e) else {
                    continue;
                };
                if ent.fields.iter().any(|x| x.name == f) {
                    if e == Entity::Person
                        && f == "tel"
                        && !ent.fields.iter().any(|x| x.name == "mob")
                    {
                        f = "mob";
                    } else {
                        let first = ent
                            .fields
                            .iter()
                            .find(|x| x.name == f)
                            .map(|x| headers[x.cols[0]].clone())
                            .unwrap_or_default();
                        col_notes[c] =
                            Some(format!("left out: {e} {f} is already read from '{first}'"));
                        continue;
                    }
                }
                if matches!(f, "datum" | "datum_plan") && !p.is_date() && p.filled > 0 {
                    col_notes[c] = Some(format!(
                        "left out: would be {e} {f}, but its values are not dates ({})",
                        p.describe()
                    ));
                    continue;
                }
                e = ent.entity;
                ent.fields.push(Field {
                    name: f,
                    cols: vec![c],
                    spec: spec_for(e, f, h, p),
                });
                col_notes[c] = Some(format!("{e} {f} ({})", p.describe()));
                if e == Entity::Client && f == "recv.castInn" {
                    ent.fields.push(Field {
                        name: "uid",
                        cols: vec![c],
                        spec: spec_for(e, "uid", h, p),
                    });
                    col_notes[c] = Some(format!(
                        "client recv.castInn and uid: the INN is the client's external id ({})",
                        p.describe()
                    ));
                }
            }
            Role::NamePart(_) if person_from_parts => {
                col_notes[c] = Some("part of the person's name".into());
            }
            Role::NamePart(_) => {
                col_notes[c] = Some("left out: the full name is read from another column".into());
            }
            Role::Owner => {
                if owner_col.is_some() {
                    col_notes[c] = Some("left out: the owner is read from another column".into());
                } else {
                    owner_col = Some(c);
                }
            }
            Role::SourceId(_) | Role::PlainId => {
                let e = match role {
                    Role::SourceId(e) => e,
                    _ => main.unwrap_or(Entity::Person),
                };
                match ents
                    .iter_mut()
                    .find(|x| x.entity == e && x.id_col.is_none())
                {
                    Some(ent) => {
                        ent.id_col = Some(c);
                        col_notes[c] = Some(format!(
                            "the {e}'s id in the old system: a key candidate, not sent"
                        ));
                    }
                    None => {
                        col_notes[c] =
                            Some("left out: an id of a record this template does not build".into())
                    }
                }
            }
            Role::Created => created_col = Some(c),
        }
    }
    if person_from_parts {
        if let Some(ent) = ents.iter_mut().find(|x| x.entity == Entity::Person) {
            let expr: Vec<String> = name_parts
                .iter()
                .map(|(_, c)| format!("{{{}}}", headers[*c]))
                .collect();
            ent.fields.insert(
                0,
                Field {
                    name: "person",
                    cols: name_parts.iter().map(|(_, c)| *c).collect(),
                    spec: format!(
                        "value = {}, transform = [\"collapse_spaces\"], required = true",
                        toml_str(&expr.join(" "))
                    ),
                },
            );
        }
    }
    if let Some(c) = created_col {
        let hist = ents.iter_mut().find(|x| x.entity == Entity::History);
        match hist {
            Some(h) if !h.fields.iter().any(|f| f.name == "datum") && profiles[c].is_date() => {
                h.fields.push(Field {
                    name: "datum",
                    cols: vec![c],
                    spec: spec_for(Entity::History, "datum", &headers[c], &profiles[c]),
                });
                col_notes[c] = Some(format!(
                    "history datum: the comment is dated by it ({})",
                    profiles[c].describe()
                ));
            }
            _ => {
                col_notes[c] =
                    Some("left out: the CRM sets a record's creation date itself".into());
            }
        }
    }
    // 2. Owners: `user` of clients, persons, deals and tasks, through [users].
    let mut owners: Vec<OwnerMatch> = Vec::new();
    if let Some(c) = owner_col {
        owners = match_owners(
            &distinct_owners(rows.iter().map(|r| cell(r, c))),
            opts.users,
        );
        let mut owned = Vec::new();
        for ent in ents.iter_mut().filter(|e| {
            matches!(
                e.entity,
                Entity::Client | Entity::Person | Entity::Deal | Entity::Task
            )
        }) {
            ent.fields.push(Field {
                name: "user",
                cols: vec![c],
                spec: format!("column = {}, users = true", toml_str(&headers[c])),
            });
            owned.push(ent.entity.to_string());
        }
        col_notes[c] = Some(if owned.is_empty() {
            "left out: no record here has an owner".into()
        } else {
            format!(
                "owner (user) of {}, through [users]: {} names",
                owned.join(", "),
                owners.len()
            )
        });
    }
    // 3. References.
    let built: Vec<Entity> = ents.iter().map(|e| e.entity).collect();
    for ent in ents.iter_mut() {
        let refs: &[(&str, Entity)] = match ent.entity {
            Entity::Person => &[("clid", Entity::Client)],
            Entity::Deal => &[("clid", Entity::Client), ("pid", Entity::Person)],
            Entity::Task | Entity::History => &[
                ("clid", Entity::Client),
                ("pid", Entity::Person),
                ("did", Entity::Deal),
            ],
            _ => &[],
        };
        for (f, target) in refs {
            if built.contains(target) && !(ent.entity == Entity::Task && *f == "did") {
                ent.fields.push(Field {
                    name: f,
                    cols: vec![],
                    spec: format!("ref = \"{target}\""),
                });
            }
        }
    }
    // 4. Keys, parents first.
    report.push(format!("Columns of {} ({} rows):", opts.file, rows.len()));
    for (c, h) in headers.iter().enumerate() {
        report.push(format!(
            "  '{h}' → {}",
            col_notes[c].clone().unwrap_or_else(|| "left out".into())
        ));
    }
    report.push("Keys:".into());
    let mut parent_keys: HashMap<Entity, Vec<usize>> = HashMap::new();
    for i in 0..ents.len() {
        let (key, line, probes) = choose_key(&ents[i], &parent_keys, rows, headers);
        report.push(line);
        parent_keys.insert(ents[i].entity, key.clone());
        ents[i].key = key;
        ents[i].probes = probes;
    }
    let unmatched_owners = owners.iter().filter(|o| o.login.is_empty()).count();
    if let Some(c) = owner_col {
        report.push(format!(
            "Owners ('{}'): {} of {} matched to CRM users{}",
            headers[c],
            owners.len() - unmatched_owners,
            owners.len(),
            if unmatched_owners > 0 {
                "; fill in the logins left empty in [users] before importing"
            } else {
                ""
            }
        ));
        for o in &owners {
            let to = if o.login.is_empty() {
                "?".to_string()
            } else {
                o.login.clone()
            };
            report.push(format!(
                "  '{}' ({} rows) → {to}: {}",
                o.value, o.rows, o.how
            ));
        }
    }
    let text = render(headers, &ents, &owners, opts);
    Proposal {
        text,
        report,
        unmatched_owners,
    }
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
fn choose_key(
    ent: &Ent,
    parents: &HashMap<Entity, Vec<usize>>,
    rows: &[(u64, Vec<String>)],
    headers: &[String],
) -> (Vec<usize>, String, Vec<String>) {
    let e = ent.entity;
    let own: Vec<&Field> = ent
        .fields
        .iter()
        .filter(|f| !f.cols.is_empty() && f.name != "user")
        .collect();
    let value = |r: &(u64, Vec<String>), f: &Field| {
        let raw: Vec<&str> = f.cols.iter().map(|&c| cell(r, c)).collect();
        let mut text = raw.join(" ");
        if matches!(f.name, "mail" | "tel" | "mob" | "phone") {
            text = crate::template::rules::Transform::First.apply(&text);
        }
        norm_part(e, f.name, &text)
    };
    let parent_val = |r: &(u64, Vec<String>), p: Entity| -> String {
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
    let present: Vec<&(u64, Vec<String>)> = rows
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
    let tuple = |r: &(u64, Vec<String>)| -> Vec<String> {
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
        let keyval = |r: &(u64, Vec<String>)| -> Vec<String> {
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

fn render(headers: &[String], ents: &[Ent], owners: &[OwnerMatch], opts: &Options) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "# Linked template proposed by `smbatch template init --from {}`.\n",
        opts.file
    ));
    if let Some(p) = opts.preset {
        out.push_str(p.header());
    }
    out.push_str("# Keys were chosen from the data (see the report `template init` printed); review them,\n# and fill in every owner left \"\" in [users] before importing.\n");
    out.push_str(&format!(
        "name = {}\n\n",
        toml_str(&format!("migration from {}", opts.file))
    ));
    if !owners.is_empty() {
        out.push_str("# The file's owners → CRM logins (user/list). Fields with `users = true` read through it.\n[users]\n");
        for o in owners {
            out.push_str(&format!(
                "{} = {}   # {} rows: {}\n",
                toml_str(&o.value),
                toml_str(&o.login),
                o.rows,
                o.how
            ));
        }
        out.push('\n');
    }
    for ent in ents {
        let mut cols: Vec<usize> = Vec::new();
        for c in &ent.key {
            if !cols.contains(c) {
                cols.push(*c);
            }
        }
        let key: Vec<String> = cols
            .iter()
            .map(|c| format!("{{{}}}", headers[*c].replace('{', "{{").replace('}', "}}")))
            .collect();
        out.push_str("[[entity]]\n");
        out.push_str(&format!("type = \"{}\"\n", ent.entity));
        out.push_str(&format!("key = {}\n", toml_str(&key.join(" / "))));
        if !ent.probes.is_empty() {
            let p: Vec<String> = ent.probes.iter().map(|p| toml_str(p)).collect();
            out.push_str(&format!("match = [{}]\n", p.join(", ")));
        }
        out.push_str("[entity.fields]\n");
        for f in &ent.fields {
            out.push_str(&format!("{} = {{ {} }}\n", field_key(f.name), f.spec));
        }
        out.push('\n');
    }
    out
}
