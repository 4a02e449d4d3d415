//! Checking a template against a live CRM (`validate --url`): what the real server would silently
//! drop or garble (NOTES §4). Read-only: only `fields` and `tips` are read; nothing is written.
//! Owners and deal dictionaries are checked by [`super::dictionaries`].
//!
//! Two steps: [`ServerFacts::fetch`] asks the CRM once, before the file is read;
//! [`ServerFacts::check`] compares the template and the values the file actually holds
//! ([`Observed`], collected while the rows stream by) with those answers.

use super::{FieldRule, Input, Template};
use crate::crm::{CrmClient, CrmError, Entity, FieldInfo, RetryPolicy};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use thiserror::Error;

/// The field that names a record's owner by login (a payload parameter, not a listed field).
pub const OWNER_FIELD: &str = "user";
/// Person fields the server casts to an integer id (NOTES §4).
const INT_DICT_FIELDS: [&str; 2] = ["loyalty", "clientpath"];
/// Distinct values kept per watched field (enough to name the bad ones).
const MAX_OBSERVED: usize = 1000;

/// One way the template and the CRM disagree.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ServerFinding {
    pub entity: Entity,
    pub field: String,
    /// 1-based line in the template file.
    pub line: Option<usize>,
    pub problem: String,
    /// What to do instead.
    pub fix: String,
}

impl ServerFinding {
    /// `template.toml:12: person field 'loyalty': … Fix: …`
    pub fn render(&self, template: &str) -> String {
        let at = match self.line {
            Some(l) => format!("{template}:{l}"),
            None => template.to_string(),
        };
        format!(
            "{at}: {} field '{}': {} Fix: {}",
            self.entity, self.field, self.problem, self.fix
        )
    }
}

/// A template that writes fields the CRM does not list: refused before the first write, since
/// the server would drop those values silently (NOTES §4).
#[derive(Debug, Error)]
#[error("{}", render_unknown(.template, .target, .findings))]
pub struct UnknownFields {
    /// The template file as the user named it.
    pub template: String,
    /// The CRM, as the journal names it (`sandbox DB`, or `URL as login`).
    pub target: String,
    pub findings: Vec<ServerFinding>,
}

fn render_unknown(template: &str, target: &str, findings: &[ServerFinding]) -> String {
    let mut out = render_findings(
        &format!(
            "the template writes fields the CRM ({target}) does not list; it would silently drop their values, so nothing was sent:"
        ),
        template,
        findings,
    );
    out.push_str("\n(--allow-unknown-fields sends anyway, without those values)");
    out
}

/// A refusal's first line, then each finding on an indented line of its own (the one layout of
/// [`UnknownFields`] and [`super::dictionaries::UnknownValues`]).
pub fn render_findings(header: &str, template: &str, findings: &[ServerFinding]) -> String {
    let mut out = header.to_string();
    for f in findings {
        out.push_str("\n  ");
        out.push_str(&f.render(template));
    }
    out
}

/// Edit distance with adjacent transpositions counted as one edit (`mial` → `mail` is 1).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// The known name nearest to `name`, when it is close enough to be a typo (at most 2 edits,
/// and fewer than half the name's letters).
pub fn nearest<'k>(name: &str, known: impl IntoIterator<Item = &'k str>) -> Option<&'k str> {
    let limit = 2.min((name.chars().count().max(1) - 1).max(1));
    known
        .into_iter()
        .map(|k| (edit_distance(name, k), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Check the template against the CRM before the first write: every field it writes must be
/// among the CRM's `fields` of that entity. Unknown or disabled fields are an
/// [`UnknownFields`] error, or, with `allow_unknown`, returned as warnings to show.
pub async fn require_known_fields(
    client: &CrmClient,
    target: &str,
    template: &Template,
    template_name: &str,
    allow_unknown: bool,
    policy: &RetryPolicy,
) -> crate::Result<Vec<String>> {
    // The import's own retry policy: a flaky server must not fail the run at this first call.
    let facts = ServerFacts::fetch_fields(client, template, policy).await?;
    let findings = facts.unknown_fields(template);
    if findings.is_empty() {
        return Ok(Vec::new());
    }
    if allow_unknown {
        return Ok(findings
            .iter()
            .map(|f| {
                format!(
                    "{} (sent anyway: --allow-unknown-fields)",
                    f.render(template_name)
                )
            })
            .collect());
    }
    Err(UnknownFields {
        template: template_name.to_string(),
        target: target.to_string(),
        findings,
    }
    .into())
}

/// What one CRM said about the entities a template builds.
#[derive(Debug, Clone, Default)]
pub struct ServerFacts {
    pub fields: BTreeMap<Entity, Vec<FieldInfo>>,
    pub tips: BTreeMap<Entity, Vec<String>>,
}

/// A field whose values in the file matter to the server check.
#[derive(Debug, Clone)]
pub struct Watch {
    pub entity: Entity,
    pub field: String,
    pub column: usize,
}

/// Distinct cell values of the watched columns, as the rows went by.
#[derive(Debug, Default)]
pub struct Observed {
    values: BTreeMap<usize, BTreeSet<String>>,
}

impl Observed {
    /// `cells[i]` is the value of `watches[i].column` in one row.
    pub fn add(&mut self, watches: &[Watch], cells: Vec<String>) {
        for (w, v) in watches.iter().zip(cells) {
            let set = self.values.entry(w.column).or_default();
            if set.len() < MAX_OBSERVED && !v.trim().is_empty() {
                set.insert(v);
            }
        }
    }

    pub fn of(&self, column: usize) -> impl Iterator<Item = &String> {
        self.values.get(&column).into_iter().flatten()
    }
}

fn is_int(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_i64() || n.is_u64(),
        Value::String(s) => s.trim().parse::<i64>().is_ok(),
        _ => false,
    }
}

pub(crate) fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(crate) fn quoted(v: impl IntoIterator<Item = impl AsRef<str>>, max: usize) -> String {
    let all: Vec<String> = v.into_iter().map(|s| format!("'{}'", s.as_ref())).collect();
    if all.len() > max {
        format!("{}, … ({} in all)", all[..max].join(", "), all.len())
    } else {
        all.join(", ")
    }
}

/// The cell of a field that reads one column directly (value checks need it).
fn column_of(rule: &FieldRule, column_index: &dyn Fn(&str) -> Option<usize>) -> Option<usize> {
    match &rule.input {
        Input::Column(c) => column_index(c),
        _ => None,
    }
}

/// Fields whose file values the check needs: `tip` without a `map` and `loyalty`/`clientpath`
/// without a `map` (owners and deal dictionaries: [`super::dictionaries::Dictionaries::watches`]).
pub fn watches(template: &Template, column_index: &dyn Fn(&str) -> Option<usize>) -> Vec<Watch> {
    let mut out = Vec::new();
    for e in &template.entities {
        for f in &e.fields {
            let wanted = (f.name == "tip" && f.map.is_none())
                || (e.entity == Entity::Person
                    && INT_DICT_FIELDS.contains(&f.name.as_str())
                    && f.map.is_none());
            if let (true, Some(column)) = (wanted, column_of(f, column_index)) {
                out.push(Watch {
                    entity: e.entity,
                    field: f.name.clone(),
                    column,
                });
            }
        }
    }
    out
}

impl ServerFacts {
    /// Ask the CRM for the fields of every entity the template builds and the `tips` of those
    /// that have a `tip` field.
    pub async fn fetch(
        client: &CrmClient,
        template: &Template,
        policy: &RetryPolicy,
    ) -> Result<ServerFacts, CrmError> {
        let mut facts = Self::fetch_fields(client, template, policy).await?;
        for e in &template.entities {
            if matches!(e.entity, Entity::History | Entity::Task)
                && e.fields.iter().any(|f| f.name == "tip")
            {
                facts
                    .tips
                    .insert(e.entity, client.tips(e.entity, policy).await?);
            }
        }
        Ok(facts)
    }

    /// Only the `fields` of every entity the template builds.
    pub async fn fetch_fields(
        client: &CrmClient,
        template: &Template,
        policy: &RetryPolicy,
    ) -> Result<ServerFacts, CrmError> {
        let mut facts = ServerFacts::default();
        for e in &template.entities {
            // invoice has no `fields` action (a payment is written through invoice/do): their
            // fields are the ones invoice/add and invoice/do take (`template::fields`).
            if matches!(e.entity, Entity::Invoice | Entity::Payment) {
                continue;
            }
            facts
                .fields
                .insert(e.entity, client.fields(e.entity, policy).await?);
        }
        Ok(facts)
    }

    /// Template fields the CRM does not list (unknown, or disabled in its field settings), with
    /// the nearest real field when one is close enough to be a typo.
    pub fn unknown_fields(&self, template: &Template) -> Vec<ServerFinding> {
        let mut out = Vec::new();
        for e in &template.entities {
            let Some(known) = self.fields.get(&e.entity) else {
                continue;
            };
            for f in &e.fields {
                // A leaf (`recv.castInn`) is written inside its object field, which is listed.
                let top = f.name.split('.').next().unwrap_or(&f.name);
                if f.name == OWNER_FIELD
                    || known.iter().any(|k| k.name == top)
                    || super::fields::written_but_unlisted(e.entity).contains(&f.name.as_str())
                {
                    continue;
                }
                let fix = match nearest(&f.name, known.iter().map(|k| k.name.as_str())) {
                    Some(near) => {
                        let title = known
                            .iter()
                            .find(|k| k.name == near)
                            .map(|k| format!(" ({})", k.title))
                            .unwrap_or_default();
                        format!("did you mean `{near}`{title}? Otherwise enable '{}' in the CRM's field settings.", f.name)
                    }
                    None => {
                        let names: Vec<String> = known
                            .iter()
                            .map(|k| format!("{} ({})", k.name, k.title))
                            .collect();
                        format!("enable the field in the CRM's field settings, or send the column to one of its fields: {}.", names.join(", "))
                    }
                };
                out.push(ServerFinding {
                    entity: e.entity,
                    field: f.name.clone(),
                    line: f.line,
                    problem: format!("this CRM does not list '{}' among its {} fields (unknown or disabled in its field settings): the server would silently drop the value.", f.name, e.entity),
                    fix,
                });
            }
        }
        out
    }

    /// Everything the template alone tells: unknown/disabled fields, dictionary ids given as
    /// text, `tip` constants the CRM does not have.
    pub fn check_template(&self, template: &Template) -> Vec<ServerFinding> {
        let mut out = self.unknown_fields(template);
        for e in &template.entities {
            if !self.fields.contains_key(&e.entity) {
                continue;
            }
            for f in &e.fields {
                let finding = |problem: String, fix: String| ServerFinding {
                    entity: e.entity,
                    field: f.name.clone(),
                    line: f.line,
                    problem,
                    fix,
                };
                if e.entity == Entity::Person && INT_DICT_FIELDS.contains(&f.name.as_str()) {
                    let bad_map: Vec<String> = f
                        .map
                        .iter()
                        .flatten()
                        .filter(|(_, v)| !is_int(v))
                        .map(|(k, v)| format!("{k} = {v}"))
                        .collect();
                    let bad_default = f.default.as_ref().filter(|d| !is_int(d));
                    if !bad_map.is_empty() || bad_default.is_some() {
                        let mut what = bad_map;
                        what.extend(bad_default.map(|d| format!("default = {d}")));
                        out.push(finding(
                            format!("the server casts {} to a number, so text becomes a wrong id (\"1 - Пока не понятно\" is stored as id 1); the template sends {}.", f.name, what.join(", ")),
                            format!("map every value to the numeric id of the CRM's {} dictionary, e.g. map = {{ \"Лояльный\" = 3 }}.", f.name),
                        ));
                    }
                }
                if f.name == "tip" {
                    if let Some(tips) = self.tips.get(&e.entity) {
                        let mut consts: Vec<String> = Vec::new();
                        consts.extend(f.map.iter().flatten().map(|(_, v)| text_of(v)));
                        consts.extend(f.default.iter().map(text_of));
                        for c in &f.checks {
                            if let super::Check::OneOf(list) = c {
                                consts.extend(list.iter().cloned());
                            }
                        }
                        let missing: BTreeSet<String> =
                            consts.into_iter().filter(|c| !tips.contains(c)).collect();
                        if !missing.is_empty() {
                            out.push(finding(
                                format!("{} not among this CRM's {} types (tips); the server stores unknown types verbatim, so these records fall outside every type filter and report.", quoted(&missing, 10), e.entity),
                                format!("use the CRM's own titles: {}.", quoted(tips, 30)),
                            ));
                        }
                    }
                }
            }
        }
        out
    }

    /// What the file's values tell: `tip` values and dictionary ids read straight from a column.
    pub fn check_values(
        &self,
        template: &Template,
        watches: &[Watch],
        seen: &Observed,
    ) -> Vec<ServerFinding> {
        let mut out = Vec::new();
        for w in watches {
            let Some((rule, values)) = watched_values(template, w, seen) else {
                continue;
            };
            let finding = |problem: String, fix: String| ServerFinding {
                entity: w.entity,
                field: w.field.clone(),
                line: rule.line,
                problem,
                fix,
            };
            if w.field == "tip" {
                let Some(tips) = self.tips.get(&w.entity) else {
                    continue;
                };
                let missing: BTreeSet<&String> =
                    values.iter().filter(|v| !tips.contains(v)).collect();
                if !missing.is_empty() {
                    out.push(finding(
                        format!("the file has {} values that are not among this CRM's types (tips): {}; the server stores them verbatim, outside every type filter.", w.field, quoted(&missing, 10)),
                        format!("add a map from the file's words to the CRM's titles ({}), e.g. map = {{ \"Звонок\" = \"вх.Звонок\" }}, default = \"Событие\".", quoted(tips, 30)),
                    ));
                }
            } else if INT_DICT_FIELDS.contains(&w.field.as_str()) {
                let text: BTreeSet<&String> = values
                    .iter()
                    .filter(|v| v.parse::<i64>().is_err())
                    .collect();
                if !text.is_empty() {
                    out.push(finding(
                        format!("the column holds text ({}) but the server casts {} to a number: the records would get a wrong id.", quoted(&text, 10), w.field),
                        format!("add a map from these words to the numeric ids of the CRM's {} dictionary, e.g. map = {{ \"Лояльный\" = 3 }}, default = 0.", w.field),
                    ));
                }
            }
        }
        out
    }
}

/// A watched column's distinct non-empty values as the template sends them (its transforms
/// applied), with the template field they fill; `None` when the template has no such field.
pub(crate) fn watched_values<'t>(
    template: &'t Template,
    w: &Watch,
    seen: &Observed,
) -> Option<(&'t super::FieldRule, Vec<String>)> {
    let rule = template
        .entities
        .iter()
        .find(|e| e.entity == w.entity)
        .and_then(|e| e.fields.iter().find(|f| f.name == w.field))?;
    let values = seen
        .of(w.column)
        .map(|v| {
            let mut s = v.trim().to_string();
            for t in &rule.transforms {
                s = t.apply(&s);
            }
            s
        })
        .filter(|s| !s.is_empty())
        .collect();
    Some((rule, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_find_the_real_field_and_strangers_find_none() {
        assert_eq!(edit_distance("mial", "mail"), 1, "a swap is one edit");
        assert_eq!(edit_distance("тел", "тел"), 0);
        let person = ["pid", "person", "ptitle", "tel", "mob", "mail", "input7"];
        assert_eq!(nearest("mial", person), Some("mail"));
        assert_eq!(nearest("emial", person), Some("mail"));
        assert_eq!(nearest("input1", person), Some("input7"));
        assert_eq!(nearest("birthday", person), None);
        assert_eq!(
            nearest("x", person),
            None,
            "one letter is no typo of anything"
        );
    }
}
