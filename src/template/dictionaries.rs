//! Values the CRM only takes from its own dictionaries, checked before the first write (NOTES
//! §11, §13): owners (`user`, a login from `user/list`) and the deal's `step` (`deal/steplist`),
//! `status_close` (`deal/statusclose`), `tip` (`deal/type`) and `direction` (`deal/direction`).
//!
//! The real server takes anything and quietly does harm: an unknown owner gives owner 0 and the
//! record becomes invisible (task/add dies with a fatal error), a step name instead of its title
//! puts the deal on no step, an unknown type creates a new deal type. So:
//! - [`Dictionaries::fetch`] reads the lists the template needs (read-only calls, once);
//! - [`Dictionaries::check_template`] checks the constants and `map` values of the template
//!   (unknown ones refuse the run at preflight, naming the template line);
//! - [`Dictionaries::apply`] checks each mapped row: a record with an unknown value is invalid
//!   (the row says file, row, column and value); a step given by its name is sent as its title.

use super::server::{quoted, render_findings, text_of, ServerFinding, Watch, OWNER_FIELD};
use super::{FieldRule, Input, MappedRow, Problem, Severity, Template};
use crate::crm::{CrmClient, CrmError, CrmUser, DictEntry, Entity, RetryPolicy};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use thiserror::Error;

/// Deal fields whose values come from a dictionary, with the action that lists it.
const DEAL_DICTS: [(&str, &str); 4] = [
    ("step", "steplist"),
    ("status_close", "statusclose"),
    ("tip", "type"),
    ("direction", "direction"),
];

/// A template whose constant or mapped values the CRM does not have: refused before the first
/// write.
#[derive(Debug, Error)]
#[error("{}", render_refused(.template, .target, .findings))]
pub struct UnknownValues {
    pub template: String,
    pub target: String,
    pub findings: Vec<ServerFinding>,
}

fn render_refused(template: &str, target: &str, findings: &[ServerFinding]) -> String {
    render_findings(
        &format!("the template sends values the CRM ({target}) does not have; nothing was sent:"),
        template,
        findings,
    )
}

/// What one value of a checked field becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// Send this (a step's title for its name; the value itself otherwise).
    Send(String),
    /// An owner who has left: the records are theirs, but nobody active sees them.
    InactiveOwner(String),
    Unknown,
}

/// The CRM's lists a template's values must come from.
#[derive(Debug, Clone, Default)]
pub struct Dictionaries {
    /// `user/list`, when some entity sends an owner.
    pub users: Option<Vec<CrmUser>>,
    /// Deal field → its dictionary, for the deal fields the template sends.
    pub deal: BTreeMap<String, Vec<DictEntry>>,
}

/// Whether `field` of `entity` is one this module checks.
fn is_checked(entity: Entity, field: &str) -> bool {
    field == OWNER_FIELD || (entity == Entity::Deal && DEAL_DICTS.iter().any(|(f, _)| *f == field))
}

impl Dictionaries {
    /// Read the lists the template needs: `user/list` if any entity sends `user`, and the deal
    /// dictionaries of the deal fields it sends.
    pub async fn fetch(
        client: &CrmClient,
        template: &Template,
        policy: &RetryPolicy,
    ) -> Result<Dictionaries, CrmError> {
        let mut out = Dictionaries::default();
        let sends = |e: &super::EntityTemplate, f: &str| e.fields.iter().any(|r| r.name == f);
        if template.entities.iter().any(|e| sends(e, OWNER_FIELD)) {
            out.users = Some(client.users(policy).await?);
        }
        if let Some(deal) = template.entities.iter().find(|e| e.entity == Entity::Deal) {
            for (field, action) in DEAL_DICTS {
                if sends(deal, field) {
                    out.deal.insert(
                        field.to_string(),
                        client.deal_dictionary(action, policy).await?,
                    );
                }
            }
        }
        Ok(out)
    }

    /// What `value` of `entity`'s `field` becomes on this CRM (unchecked fields pass).
    pub fn resolve(&self, entity: Entity, field: &str, value: &str) -> Resolved {
        let v = value.trim();
        if field == OWNER_FIELD {
            let Some(users) = &self.users else {
                return Resolved::Send(v.to_string());
            };
            return match users.iter().find(|u| u.login == v) {
                Some(u) if u.active => Resolved::Send(v.to_string()),
                Some(_) => Resolved::InactiveOwner(v.to_string()),
                None => Resolved::Unknown,
            };
        }
        let Some(dict) = (entity == Entity::Deal)
            .then(|| self.deal.get(field))
            .flatten()
        else {
            return Resolved::Send(v.to_string());
        };
        let lc = v.to_lowercase();
        // The title as the API takes it, exactly or in another case; a step also by its name.
        let by_title = dict
            .iter()
            .find(|e| e.title == v)
            .or_else(|| dict.iter().find(|e| e.title.to_lowercase() == lc));
        let by_name = || {
            (field == "step")
                .then(|| {
                    dict.iter().find(|e| {
                        e.content
                            .as_deref()
                            .is_some_and(|c| c.trim().to_lowercase() == lc)
                    })
                })
                .flatten()
        };
        match by_title.or_else(by_name) {
            Some(e) => Resolved::Send(e.title.clone()),
            None => Resolved::Unknown,
        }
    }

    /// What the CRM would do with an unknown value of `field`, and what it has instead.
    fn unknown_text(&self, entity: Entity, field: &str) -> (String, String) {
        if field == OWNER_FIELD {
            let logins: Vec<&str> = self
                .users
                .iter()
                .flatten()
                .map(|u| u.login.as_str())
                .collect();
            return (
                "owner is not a user of this CRM; the record would be invisible".into(),
                format!("use a login from the CRM's user list ({}), or map the file's names to logins with map = {{ \"Иванов\" = \"ivanov@firm.ru\" }}", quoted(&logins, 20)),
            );
        }
        let dict = self.deal.get(field).map(Vec::as_slice).unwrap_or(&[]);
        let titles: Vec<String> = dict
            .iter()
            .map(|e| match (&e.content, field) {
                (Some(c), "step") => format!("{} ({c})", e.title),
                _ => e.title.clone(),
            })
            .collect();
        let (what, harm) = match field {
            "step" => (
                "a step of this CRM (deal/steplist)",
                "the deal would get no step",
            ),
            "status_close" => (
                "a close status of this CRM (deal/statusclose)",
                "the deal would be closed with no status",
            ),
            "tip" => (
                "a deal type of this CRM (deal/type)",
                "the CRM would silently create a new deal type",
            ),
            _ => (
                "a direction of this CRM (deal/direction)",
                "the deal would get the default direction",
            ),
        };
        (
            format!("is not {what}; {harm}"),
            format!(
                "use one of the {entity} {field} values: {}",
                quoted(&titles, 30)
            ),
        )
    }

    /// Constants (`value`/`default`) and `map` values of the checked fields that this CRM does
    /// not have: errors, then warnings (owners who have left).
    pub fn check_template(&self, template: &Template) -> (Vec<ServerFinding>, Vec<ServerFinding>) {
        let (mut errors, mut warnings) = (Vec::new(), Vec::new());
        for e in &template.entities {
            for f in e.fields.iter().filter(|f| is_checked(e.entity, &f.name)) {
                let mut consts: BTreeSet<String> = BTreeSet::new();
                consts.extend(f.map.iter().flatten().map(|(_, v)| text_of(v)));
                consts.extend(f.default.iter().map(text_of));
                // `value = "…"` without a column is a constant too.
                if let Input::Expr(e) = &f.input {
                    if e.columns().next().is_none() {
                        consts.insert(
                            e.parts
                                .iter()
                                .map(|p| match p {
                                    super::Part::Lit(l) => l.as_str(),
                                    super::Part::Column(_) => "",
                                })
                                .collect(),
                        );
                    }
                }
                consts.retain(|c| !c.trim().is_empty());
                let (unknown, inactive) = self.sort_out(e.entity, &f.name, consts);
                self.push_findings(e.entity, f, unknown, inactive, &mut errors, &mut warnings);
            }
        }
        (errors, warnings)
    }

    fn sort_out(
        &self,
        entity: Entity,
        field: &str,
        values: impl IntoIterator<Item = String>,
    ) -> (Vec<String>, Vec<String>) {
        let (mut unknown, mut inactive) = (Vec::new(), Vec::new());
        for v in values {
            match self.resolve(entity, field, &v) {
                Resolved::Unknown => unknown.push(v),
                Resolved::InactiveOwner(l) => inactive.push(l),
                Resolved::Send(_) => {}
            }
        }
        (unknown, inactive)
    }

    fn push_findings(
        &self,
        entity: Entity,
        rule: &FieldRule,
        unknown: Vec<String>,
        inactive: Vec<String>,
        errors: &mut Vec<ServerFinding>,
        warnings: &mut Vec<ServerFinding>,
    ) {
        if !unknown.is_empty() {
            let (problem, fix) = self.unknown_text(entity, &rule.name);
            errors.push(ServerFinding {
                entity,
                field: rule.name.clone(),
                line: rule.line,
                problem: format!("{}: {problem}.", quoted(&unknown, 10)),
                fix: format!("{fix}."),
            });
        }
        if !inactive.is_empty() {
            warnings.push(ServerFinding {
                entity,
                field: rule.name.clone(),
                line: rule.line,
                problem: format!("{}: owner has left the company (inactive in the CRM's user list); the records will be theirs, and no active user sees them in their own lists.", quoted(&inactive, 10)),
                fix: "map them to an active user's login if someone should work with these records.".into(),
            });
        }
    }

    /// Columns read straight into a checked field (no `map`: a map's values are checked by
    /// [`Self::check_template`]): their distinct values, gathered by `validate --url`.
    pub fn watches(
        template: &Template,
        column_index: &dyn Fn(&str) -> Option<usize>,
    ) -> Vec<Watch> {
        let mut out = Vec::new();
        for e in &template.entities {
            for f in e.fields.iter().filter(|f| is_checked(e.entity, &f.name)) {
                if let (None, Input::Column(c)) = (&f.map, &f.input) {
                    if let Some(column) = column_index(c) {
                        out.push(Watch {
                            entity: e.entity,
                            field: f.name.clone(),
                            column,
                        });
                    }
                }
            }
        }
        out
    }

    /// The file's values of the watched columns that this CRM does not have (`validate --url`):
    /// errors, then warnings.
    pub fn check_values(
        &self,
        template: &Template,
        watches: &[Watch],
        seen: &super::server::Observed,
    ) -> (Vec<ServerFinding>, Vec<ServerFinding>) {
        let (mut errors, mut warnings) = (Vec::new(), Vec::new());
        for w in watches.iter().filter(|w| is_checked(w.entity, &w.field)) {
            let Some((rule, values)) = super::server::watched_values(template, w, seen) else {
                continue;
            };
            let values: BTreeSet<String> = values.into_iter().collect();
            let (unknown, inactive) = self.sort_out(w.entity, &w.field, values);
            self.push_findings(
                w.entity,
                rule,
                unknown,
                inactive,
                &mut errors,
                &mut warnings,
            );
        }
        (errors, warnings)
    }

    /// Check one mapped row's records: a value the CRM does not have makes its record invalid
    /// (and every record of the row that references it); a step name becomes its title.
    pub fn apply(&self, template: &Template, row: &mut MappedRow) {
        let mut rejected: Vec<(Entity, String)> = Vec::new();
        let mut i = 0;
        while i < row.records.len() {
            let rec = &mut row.records[i];
            let Some(et) = template.entities.iter().find(|e| e.entity == rec.entity) else {
                i += 1;
                continue;
            };
            let mut bad: Option<Problem> = None;
            for rule in et.fields.iter().filter(|f| is_checked(rec.entity, &f.name)) {
                let Some(v) = rec.fields.get(&rule.name) else {
                    continue;
                };
                let sent = text_of(v);
                if sent.trim().is_empty() {
                    continue;
                }
                match self.resolve(rec.entity, &rule.name, &sent) {
                    Resolved::Send(t) if t != sent => {
                        rec.fields.insert(rule.name.clone(), Value::String(t));
                    }
                    Resolved::Send(_) | Resolved::InactiveOwner(_) => {}
                    Resolved::Unknown => {
                        let column = match &rule.input {
                            Input::Column(c) => Some(c.clone()),
                            _ => None,
                        };
                        let mut message = self.unknown_text(rec.entity, &rule.name).0;
                        if let Some(c) = &column {
                            message.push_str(&format!(" (column '{c}')"));
                        }
                        bad.get_or_insert_with(|| Problem {
                            entity: Some(rec.entity),
                            column,
                            field: Some(rule.name.clone()),
                            value: sent.clone(),
                            message,
                            severity: Severity::Error,
                        });
                    }
                }
            }
            // A record that references one held back here is held back too.
            if bad.is_none() {
                if let Some(dep) = rec
                    .refs
                    .iter()
                    .find(|r| rejected.iter().any(|(e, k)| *e == r.entity && *k == r.key))
                {
                    bad = Some(Problem {
                        entity: Some(rec.entity),
                        column: None,
                        field: Some(dep.field.clone()),
                        value: String::new(),
                        message: format!(
                            "depends on this row's {} record, which is invalid",
                            dep.entity
                        ),
                        severity: Severity::Error,
                    });
                }
            }
            match bad {
                Some(p) => {
                    let rec = row.records.remove(i);
                    rejected.push((rec.entity, rec.key));
                    row.rejected.push(rec.entity);
                    row.problems.push(p);
                }
                None => i += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dicts() -> Dictionaries {
        let step = |t: &str, c: &str| DictEntry {
            title: t.into(),
            content: Some(c.into()),
        };
        let mut d = Dictionaries {
            users: Some(vec![
                CrmUser {
                    iduser: 1,
                    login: "admin@x".into(),
                    title: "Админ".into(),
                    email: String::new(),
                    active: true,
                },
                CrmUser {
                    iduser: 3,
                    login: "gone@x".into(),
                    title: "Ушёл".into(),
                    email: String::new(),
                    active: false,
                },
            ]),
            ..Dictionaries::default()
        };
        d.deal.insert(
            "step".into(),
            vec![
                step("20", "Подтвержден интерес"),
                step("40", "Отправлено КП"),
            ],
        );
        d.deal.insert(
            "tip".into(),
            vec![DictEntry {
                title: "Тендер".into(),
                content: None,
            }],
        );
        d
    }

    #[test]
    fn steps_by_title_or_name_owners_by_login() {
        let d = dicts();
        let send = |s: &str| Resolved::Send(s.into());
        assert_eq!(d.resolve(Entity::Deal, "step", "40"), send("40"));
        assert_eq!(
            d.resolve(Entity::Deal, "step", " отправлено кп "),
            send("40")
        );
        assert_eq!(d.resolve(Entity::Deal, "step", "11"), Resolved::Unknown);
        assert_eq!(d.resolve(Entity::Deal, "tip", "тендер"), send("Тендер"));
        assert_eq!(
            d.resolve(Entity::Deal, "tip", "Нет такого"),
            Resolved::Unknown
        );
        assert_eq!(
            d.resolve(Entity::Person, "user", "admin@x"),
            send("admin@x")
        );
        assert_eq!(
            d.resolve(Entity::Task, "user", "gone@x"),
            Resolved::InactiveOwner("gone@x".into())
        );
        assert_eq!(
            d.resolve(Entity::Client, "user", "ghost@x"),
            Resolved::Unknown
        );
        assert_eq!(
            d.resolve(Entity::Client, "title", "anything"),
            send("anything"),
            "fields without a dictionary pass"
        );
    }
}
