//! `template init --from FILE` without an entity: a whole linked template (client, person, deal,
//! task, history) from a flat file, with each entity's key chosen from the data and owners mapped
//! to the CRM's users. [`propose`] returns the template text and the report of what every column
//! became and why every key was chosen.

use super::keys::choose_key;
use super::owners::{distinct_owners, match_owners, OwnerMatch};
use super::presets::{role_of, Preset, Role};
use super::profile::Profile;
use crate::crm::{CrmUser, Entity};
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
pub(super) struct Field {
    pub(super) name: &'static str,
    /// The columns its value is made of (several: a name from its parts).
    pub(super) cols: Vec<usize>,
    /// The inside of its `{ ... }` in the template.
    pub(super) spec: String,
}

pub(super) struct Ent {
    pub(super) entity: Entity,
    pub(super) fields: Vec<Field>,
    pub(super) id_col: Option<usize>,
    pub(super) key: Vec<usize>,
    pub(super) probes: Vec<String>,
}

pub(super) type SourceRow = (u64, Vec<String>);

/// A row's cell, trimmed ("" past the row's end).
pub(super) fn cell(r: &SourceRow, c: usize) -> &str {
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
        roles.contains(&Some(Role::Field(e, f)))
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
        // Money moves from files of their own (templates/invoices.toml, payments.toml).
        Entity::Invoice | Entity::Payment => false,
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
    for ent in ents.iter_mut() {
        let (key, line, probes) = choose_key(ent, &parent_keys, rows, headers);
        report.push(line);
        parent_keys.insert(ent.entity, key.clone());
        ent.key = key;
        ent.probes = probes;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(cells: &[&[&str]]) -> Vec<SourceRow> {
        cells
            .iter()
            .enumerate()
            .map(|(i, r)| (i as u64 + 2, r.iter().map(|c| c.to_string()).collect()))
            .collect()
    }

    #[test]
    fn an_inn_keys_a_company_spelled_two_ways_and_the_spellings_are_reported() {
        let headers: Vec<String> = ["Организация", "ИНН", "ФИО", "Телефон"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let data = rows(&[
            &["Ромашка", "7701234567", "Иванов Иван", "+7 900 111-11-11"],
            &[
                "Ромашка-Трейд",
                "7701234567",
                "Петров Пётр",
                "+7 900 222-22-22",
            ],
            &["Лютик", "5904338272", "Иванов Иван", "+7 900 333-33-33"],
        ]);
        let p = propose(
            &headers,
            &data,
            &Options {
                file: "x.csv",
                ..Options::default()
            },
        );
        let report = p.report.join("\n");
        assert!(
            report.contains("client: key {ИНН}")
                && report.contains("2 client records from 3 rows")
                && report.contains("row 3 'Ромашка-Трейд' vs row 2"),
            "{report}"
        );
        // Phones are unique per contact here; the name alone is not.
        assert!(report.contains("person: key {Телефон}"), "{report}");
        let t = crate::template::Template::parse(std::path::Path::new("x.toml"), &p.text).unwrap();
        t.bind(&headers, "x.csv").unwrap();
        assert!(p.text.contains("clid = { ref = \"client\" }"), "{}", p.text);
    }
}
