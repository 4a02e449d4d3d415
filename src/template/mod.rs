//! Templates: mapping source columns to CRM fields, transforms and validation.
//!
//! A [`Template`] is loaded from TOML and checked as a whole (unknown transforms, bad regexes,
//! references to entities the template does not build) before any row is read; binding it to a
//! file's headers gives a [`Mapper`], which turns each [`crate::source::Row`] into [`Record`]s.

mod check;
pub mod dictionaries;
pub mod fields;
mod fingerprint;
pub mod init;
mod mapper;
pub mod matching;
pub mod pattern;
pub mod rules;
pub mod server;
mod stream;
pub mod validation;

pub use check::{check_row, CheckedRecord, CheckedRow, KeyConflicts, RowExtra};
pub use fingerprint::{fingerprint, Fingerprint};
pub use mapper::{MappedRow, Mapper, Problem, Record, Reference, Severity};
pub use stream::{map_file, map_file_view, map_file_with, MapOptions, MappedFile};

use crate::crm::Entity;
use crate::source::{display, display_path, escape, escape_multiline, Encoding, SourceOptions};
use fields::{field_info, FieldKind};
use rules::Transform;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TemplateError {
    #[error("{}: cannot read the template: {source}", display_path(.path))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{}: not a valid template: {}",
        display_path(.path),
        escape_multiline(.message)
    )]
    Parse { path: PathBuf, message: String },
    #[error(
        "{}: {} field '{}': {}",
        display_path(.path),
        escape(.entity),
        display(.field),
        escape_multiline(.message)
    )]
    Field {
        path: PathBuf,
        entity: String,
        field: String,
        message: String,
    },
    /// A field written the way the server cannot take (a plain value for an object field).
    #[error("{}{}: {}", display_path(.path), .line.map(|l| format!(":{l}")).unwrap_or_default(), escape_multiline(.message))]
    FieldShape {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
    #[error(
        "{}: {}: {}",
        display_path(.path),
        escape(.entity),
        escape_multiline(.message)
    )]
    Entity {
        path: PathBuf,
        entity: String,
        message: String,
    },
    /// Boxed: the details are large and `Result`s carrying this error are everywhere.
    #[error("{0}")]
    MissingColumn(Box<MissingColumn>),
}

/// A template names a column the file does not have.
#[derive(Debug)]
pub struct MissingColumn {
    pub path: PathBuf,
    pub entity: Entity,
    /// `key` or `field 'mail'`
    pub place: String,
    pub column: String,
    pub file: String,
    /// The file's columns, quoted and comma-separated.
    pub available: String,
}

impl std::fmt::Display for MissingColumn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} {} names the column '{}' that {} does not have; its columns are: {}",
            display_path(&self.path),
            self.entity,
            escape(&self.place),
            display(&self.column),
            escape(&self.file),
            escape(&self.available)
        )
    }
}

/// `{Column}` placeholders in literal text (`{{`/`}}` for braces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expr {
    pub source: String,
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Lit(String),
    Column(String),
}

impl Expr {
    pub fn parse(s: &str) -> Result<Expr, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(ch) => name.push(ch),
                            None => return Err(format!("unclosed '{{' in \"{s}\"")),
                        }
                    }
                    let name = name.trim().to_string();
                    if name.is_empty() {
                        return Err(format!("empty '{{}}' in \"{s}\""));
                    }
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Column(name));
                }
                '}' => {
                    return Err(format!(
                        "unmatched '}}' in \"{s}\" (write '}}}}' for a brace)"
                    ))
                }
                _ => lit.push(c),
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Expr {
            source: s.to_string(),
            parts,
        })
    }

    pub fn columns(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Column(c) => Some(c.as_str()),
            Part::Lit(_) => None,
        })
    }
}

/// Where a field's value comes from.
#[derive(Debug, Clone)]
pub enum Input {
    Column(String),
    Expr(Expr),
    /// The CRM id of this row's record of that entity (resolved at upload).
    Ref(Entity),
    /// Only a default (constant).
    Nothing,
}

#[derive(Debug, Clone)]
pub enum Check {
    Email,
    Phone,
    Date,
    Number,
    Integer,
    MaxLength(usize),
    OneOf(Vec<String>),
    Regex(pattern::WholeMatch),
}

#[derive(Debug, Clone)]
pub struct FieldRule {
    pub name: String,
    pub input: Input,
    pub required: bool,
    pub transforms: Vec<Transform>,
    pub checks: Vec<Check>,
    /// Date formats to parse with (plus the defaults); `Some` = this is a date field.
    pub date: Option<Vec<String>>,
    pub map: Option<Vec<(String, serde_json::Value)>>,
    pub default: Option<serde_json::Value>,
    pub kind: FieldKind,
    /// 1-based line of the field in the template file, for messages.
    pub line: Option<usize>,
    /// `empty = "clear"`: an empty cell clears the CRM's value on update (else it is left).
    pub clear_when_empty: bool,
    /// `ref` with `column`: when the row has no record of the referenced entity, the column's
    /// value (a CRM id) is used instead (a delete's backup: a parent restored with it, or one
    /// still in the CRM).
    pub ref_fallback: Option<String>,
    /// `users = true`: an owner read through the template's `[users]` table (the file's value →
    /// a CRM login); `map` then holds that table.
    pub users: bool,
}

#[derive(Debug, Clone)]
pub struct EntityTemplate {
    pub entity: Entity,
    pub key: Expr,
    pub fields: Vec<FieldRule>,
    /// How a record is recognised in the CRM (`match = [...]`, or the defaults).
    pub probes: Vec<matching::Probe>,
}

#[derive(Debug, Clone)]
pub struct Template {
    pub path: PathBuf,
    pub name: Option<String>,
    pub source: SourceOptions,
    /// In upload order (`Entity::IMPORT`), one per entity type.
    pub entities: Vec<EntityTemplate>,
    /// Things that are legal but suspicious (a field the server does not know is silently dropped).
    pub warnings: Vec<String>,
    /// `[users]`: an owner as the file writes it (a full name, a login, an e-mail) → the CRM
    /// login; an empty login is one still to be filled. Read by fields with `users = true`.
    pub users: Vec<(String, String)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTemplate {
    name: Option<String>,
    #[allow(dead_code)]
    description: Option<String>,
    source: Option<RawSource>,
    users: Option<toml::Table>,
    #[serde(default)]
    entity: Vec<RawEntity>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    encoding: Option<String>,
    delimiter: Option<String>,
    sheet: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntity {
    #[serde(rename = "type")]
    kind: String,
    key: Option<String>,
    #[serde(rename = "match")]
    probes: Option<Vec<String>>,
    #[serde(default)]
    fields: toml::Table,
}

#[derive(Deserialize, Default)]
#[serde(untagged)]
enum OneOrMany {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::None => vec![],
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    column: Option<String>,
    value: Option<String>,
    #[serde(rename = "ref")]
    reference: Option<String>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    transform: OneOrMany,
    #[serde(default)]
    check: OneOrMany,
    date: Option<OneOrMany>,
    map: Option<toml::Table>,
    default: Option<toml::Value>,
    max_length: Option<usize>,
    one_of: Option<Vec<String>>,
    regex: Option<String>,
    empty: Option<String>,
    #[serde(default)]
    users: bool,
}

/// Keys of a field's `{ column = … }` table: a table with any is a field spec, not object leaves.
const FIELD_KEYS: &[&str] = &[
    "column",
    "value",
    "ref",
    "required",
    "transform",
    "check",
    "date",
    "map",
    "default",
    "max_length",
    "one_of",
    "regex",
    "empty",
    "users",
];

fn toml_to_json(v: &toml::Value) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

impl Template {
    pub fn load(path: &Path) -> Result<Template, TemplateError> {
        let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Template::parse(path, &text)
    }

    /// Parse template text; `path` is only used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Template, TemplateError> {
        let p = path.to_path_buf();
        let raw: RawTemplate = toml::from_str(text).map_err(|e| TemplateError::Parse {
            path: p.clone(),
            message: e.to_string(),
        })?;
        let parse_err = |message: String| TemplateError::Parse {
            path: p.clone(),
            message,
        };
        let mut source = SourceOptions::default();
        if let Some(s) = raw.source {
            if let Some(e) = s.encoding.filter(|e| e != "auto") {
                source.encoding = Some(
                    e.parse::<Encoding>()
                        .map_err(|e| parse_err(format!("[source] {e}")))?,
                );
            }
            if let Some(d) = s.delimiter {
                source.delimiter = Some(
                    crate::source::parse_delimiter(&d)
                        .map_err(|e| parse_err(format!("[source] {e}")))?,
                );
            }
            source.sheet = match s.sheet {
                None => None,
                Some(toml::Value::String(s)) => Some(s),
                Some(toml::Value::Integer(i)) => Some(i.to_string()),
                Some(other) => {
                    return Err(parse_err(format!(
                        "[source] sheet must be a name or a number, not {other}"
                    )))
                }
            };
        }
        let mut users = Vec::new();
        for (name, login) in raw.users.into_iter().flatten() {
            match login {
                toml::Value::String(l) => users.push((name, l.trim().to_string())),
                other => {
                    return Err(parse_err(format!(
                        "[users] \"{name}\" = {other}: give the CRM login as text, e.g. \"{name}\" = \"ivanov@firm.ru\" (\"\" while it is unknown)"
                    )))
                }
            }
        }
        if raw.entity.is_empty() {
            return Err(parse_err("no [[entity]] sections: nothing to build".into()));
        }
        let mut entities = Vec::new();
        let mut warnings = Vec::new();
        let lines = field_lines(text);
        for re in raw.entity {
            let entity: Entity = re
                .kind
                .parse()
                .map_err(|e: crate::crm::UnknownEntity| parse_err(e.to_string()))?;
            if !Entity::IMPORT.contains(&entity) {
                return Err(parse_err(format!(
                    "{entity} is read-only here (smbatch export {entity}); templates build client, person, deal, task, history, invoice and payment"
                )));
            }
            let ent_err = |message: String| TemplateError::Entity {
                path: p.clone(),
                entity: entity.to_string(),
                message,
            };
            if entities.iter().any(|e: &EntityTemplate| e.entity == entity) {
                return Err(ent_err(
                    "appears twice; a template builds at most one record of each entity per row"
                        .into(),
                ));
            }
            let key_src = re.key.ok_or_else(|| {
                ent_err("has no key: add e.g. key = \"{Внешний ID}\" (the identity of the record across rows and runs)".into())
            })?;
            let key = Expr::parse(&key_src).map_err(|m| ent_err(format!("key: {m}")))?;
            if key.columns().next().is_none() {
                return Err(ent_err(format!(
                    "key \"{key_src}\" uses no column: every row would be the same record"
                )));
            }
            let line_of = |name: &str| {
                lines
                    .iter()
                    .find(|(t, f, _)| *t == re.kind && *f == name)
                    .map(|(_, _, l)| *l)
            };
            let shape_err = |name: &str, message: String| TemplateError::FieldShape {
                path: p.clone(),
                line: line_of(name),
                message,
            };
            // Object fields (client `recv`) are filled leaf by leaf: `"recv.castInn" = ...`,
            // `recv.castInn = ...` or `[entity.fields.recv]`; a plain value is refused here,
            // since the server dies on it (NOTES §15).
            let mut flat: Vec<(String, toml::Value)> = Vec::new();
            for (name, value) in re.fields {
                // Accept a name copied from the server's `fields` answer (history `des`).
                let name = entity.api_field(&name).to_string();
                if let Some(obj) = fields::object_field(entity, &name) {
                    match value {
                        toml::Value::Table(t)
                            if !t.is_empty()
                                && !t.keys().any(|k| FIELD_KEYS.contains(&k.as_str())) =>
                        {
                            flat.extend(t.into_iter().map(|(k, v)| (format!("{name}.{k}"), v)));
                        }
                        _ => return Err(shape_err(&name, obj.how_to_fill())),
                    }
                } else {
                    flat.push((name, value));
                }
            }
            let mut fields = Vec::new();
            for (name, value) in flat {
                if let Some((parent, leaf)) = name.split_once('.') {
                    match fields::object_field(entity, parent) {
                        Some(obj) if obj.leaves.contains(&leaf) => {}
                        Some(obj) => {
                            let near = server::nearest(leaf, obj.leaves.iter().copied())
                                .map(|n| format!("did you mean {parent}.{n}? "))
                                .unwrap_or_default();
                            return Err(shape_err(
                                &name,
                                format!(
                                    "{entity} field '{name}': the {} object '{parent}' has no leaf '{leaf}'; {near}its leaves are: {}",
                                    obj.what,
                                    obj.leaves.join(", ")
                                ),
                            ));
                        }
                        None => {
                            return Err(shape_err(
                                &name,
                                format!("{entity} field '{name}': '{parent}' is not an object field of a {entity}, so it has no parts; write the field name without a dot"),
                            ))
                        }
                    }
                }
                let field_err = |message: String| TemplateError::Field {
                    path: p.clone(),
                    entity: entity.to_string(),
                    field: name.clone(),
                    message,
                };
                let rf: RawField = match value {
                    toml::Value::String(col) => RawField {
                        column: Some(col),
                        value: None,
                        reference: None,
                        required: false,
                        transform: OneOrMany::None,
                        check: OneOrMany::None,
                        date: None,
                        map: None,
                        default: None,
                        max_length: None,
                        one_of: None,
                        regex: None,
                        empty: None,
                        users: false,
                    },
                    v @ toml::Value::Table(_) => v.try_into().map_err(|e: toml::de::Error| {
                        field_err(e.to_string().trim().to_string())
                    })?,
                    other => {
                        return Err(field_err(format!(
                            "expected a column name or {{ column = ... }}, found {other}"
                        )))
                    }
                };
                let table = (!users.is_empty() || s_has_users(text)).then_some(users.as_slice());
                let mut rule =
                    build_field(entity, &name, rf, table, &mut warnings).map_err(field_err)?;
                rule.line = line_of(&name);
                fields.push(rule);
            }
            // The leaves of one object next to each other (where its first leaf is): the mapper
            // nests them in that order, and fingerprints hash them in the same order.
            let parent = |f: &FieldRule| f.name.split('.').next().unwrap_or("").to_string();
            let firsts: Vec<String> = fields.iter().map(parent).collect();
            fields.sort_by_key(|f| {
                let p = parent(f);
                firsts.iter().position(|x| *x == p).unwrap_or(0)
            });
            fields::money_rows(entity, &mut fields).map_err(ent_err)?;
            let mapped: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
            let probes =
                matching::probes_for(entity, re.probes.as_deref(), &mapped).map_err(ent_err)?;
            entities.push(EntityTemplate {
                entity,
                key,
                fields,
                probes,
            });
        }
        entities.sort_by_key(|e| Entity::IMPORT.iter().position(|x| *x == e.entity));
        // References must point at an entity this template builds, earlier in upload order.
        for e in &entities {
            for f in &e.fields {
                if let Input::Ref(target) = f.input {
                    if !entities.iter().any(|x| x.entity == target) {
                        return Err(TemplateError::Field {
                            path: p.clone(),
                            entity: e.entity.to_string(),
                            field: f.name.clone(),
                            message: format!("ref = \"{target}\" but the template has no [[entity]] of type \"{target}\""),
                        });
                    }
                }
            }
        }
        Ok(Template {
            path: p,
            name: raw.name,
            source,
            entities,
            warnings,
            users,
        })
    }
}

/// Whether the text has a `[users]` table (an empty one is a table still to be filled).
fn s_has_users(text: &str) -> bool {
    text.lines().any(|l| l.trim() == "[users]")
}

fn build_field(
    entity: Entity,
    name: &str,
    mut rf: RawField,
    users: Option<&[(String, String)]>,
    warnings: &mut Vec<String>,
) -> Result<FieldRule, String> {
    if rf.users {
        if rf.map.is_some() {
            return Err("give either map or users = true, not both".into());
        }
        let Some(users) = users else {
            return Err("users = true, but the template has no [users] table (the file's owners → CRM logins)".into());
        };
        rf.map = Some(
            users
                .iter()
                .map(|(k, v)| (k.clone(), toml::Value::String(v.clone())))
                .collect(),
        );
    }
    let info = field_info(entity, name);
    let custom = name == server::OWNER_FIELD
        || name.starts_with("input")
        || matches!(entity, Entity::Person if ["blog", "mysite", "twitter", "icq", "skype", "google", "yandex", "mykrug", "social", "rol", "loyalty", "clientpath"].contains(&name));
    if info.is_none() && !custom {
        warnings.push(format!(
            "{entity} field '{name}' is not a field this tool knows; the server silently drops unknown or disabled fields"
        ));
    }
    let kind = info.map(|i| i.kind).unwrap_or(FieldKind::Text);
    // `ref` + `column`: the reference, or the column's CRM id when the row has no such record.
    let ref_fallback = match (&rf.reference, &rf.column) {
        (Some(_), Some(c)) => Some(c.trim().to_string()),
        _ => None,
    };
    let sources = [
        rf.column.is_some() && ref_fallback.is_none(),
        rf.value.is_some(),
        rf.reference.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if sources > 1 {
        return Err("give only one of column, value, ref".into());
    }
    let input = if let Some(c) = rf.column.filter(|_| ref_fallback.is_none()) {
        Input::Column(c.trim().to_string())
    } else if let Some(v) = rf.value {
        Input::Expr(Expr::parse(&v)?)
    } else if let Some(r) = rf.reference {
        let target: Entity = r
            .parse()
            .map_err(|e: crate::crm::UnknownEntity| e.to_string())?;
        let at = |e: Entity| Entity::IMPORT.iter().position(|x| *x == e);
        if at(target).is_none_or(|t| at(entity).is_none_or(|e| t >= e)) {
            return Err(format!("a {entity} cannot reference a {target} (upload order is client, person, deal, task, history, invoice, payment)"));
        }
        if let Some(FieldKind::Ref(expected)) = info.map(|i| i.kind) {
            if expected != target {
                return Err(format!("'{name}' holds a {expected} id, not a {target} id"));
            }
        }
        Input::Ref(target)
    } else if rf.default.is_some() {
        Input::Nothing
    } else {
        return Err("needs column, value, ref or default".into());
    };
    let mut transforms = Vec::new();
    for t in rf.transform.into_vec() {
        transforms.push(
            Transform::parse(&t)
                .ok_or_else(|| format!("unknown transform '{t}' (known: {})", Transform::NAMES))?,
        );
    }
    let mut date = rf.date.map(OneOrMany::into_vec);
    let mut required = rf.required;
    let mut checks = Vec::new();
    for c in rf.check.into_vec() {
        checks.push(match c.as_str() {
            "email" => Check::Email,
            "phone" => Check::Phone,
            "number" => Check::Number,
            "integer" | "int" => Check::Integer,
            "date" => {
                date.get_or_insert_with(Vec::new);
                continue;
            }
            "required" => {
                required = true;
                continue;
            }
            other => {
                return Err(format!(
                    "unknown check '{other}' (known: email, phone, date, number, integer; and the keys max_length, one_of, regex)"
                ))
            }
        });
    }
    if let Some(n) = rf.max_length {
        checks.push(Check::MaxLength(n));
    } else if let Some(n) = info.and_then(|i| i.max_len) {
        checks.push(Check::MaxLength(n));
    } else if custom && entity == Entity::Person {
        checks.push(Check::MaxLength(250));
    }
    if let Some(v) = rf.one_of {
        checks.push(Check::OneOf(v));
    }
    if let Some(r) = rf.regex {
        let re = pattern::WholeMatch::new(&r).map_err(|e| format!("bad regex: {e}"))?;
        checks.push(Check::Regex(re));
    }
    if date.is_none()
        && matches!(
            kind,
            FieldKind::Date | FieldKind::DateTime | FieldKind::Timestamp
        )
    {
        date = Some(Vec::new());
    }
    match kind {
        FieldKind::Int if !matches!(input, Input::Ref(_)) && rf.map.is_none() => {
            checks.push(Check::Integer)
        }
        FieldKind::Number => checks.push(Check::Number),
        _ => {}
    }
    let clear_when_empty = match rf.empty.as_deref() {
        None | Some("keep") => false,
        Some("clear") => true,
        Some(other) => {
            return Err(format!(
                "empty = \"{other}\": say \"clear\" (an empty cell clears the CRM's value) or \"keep\" (the default: an empty cell changes nothing)"
            ))
        }
    };
    let map = rf.map.map(|t| {
        t.iter()
            .map(|(k, v)| (k.clone(), toml_to_json(v)))
            .collect()
    });
    Ok(FieldRule {
        name: name.to_string(),
        input,
        required,
        transforms,
        checks,
        date,
        map,
        default: rf.default.as_ref().map(toml_to_json),
        kind,
        line: None,
        clear_when_empty,
        ref_fallback,
        users: rf.users,
    })
}

/// (entity type, field name, 1-based line) of each `name = ...` line under `[entity.fields]`:
/// a light scan of the text (the TOML parser keeps no positions), good for messages only.
fn field_lines(text: &str) -> Vec<(String, String, usize)> {
    let mut out = Vec::new();
    let mut kind = String::new();
    let mut in_fields = false;
    let mut prefix = String::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.starts_with('[') {
            in_fields = l.starts_with("[entity.fields]") || l.starts_with("[entity.fields.");
            // `[entity.fields.recv]`: its keys are leaves `recv.<key>`.
            prefix = l
                .strip_prefix("[entity.fields.")
                .and_then(|r| r.split(']').next())
                .map(|t| format!("{}.", t.trim().trim_matches('"')))
                .unwrap_or_default();
            if l.starts_with("[[entity]]") {
                kind.clear();
            }
            continue;
        }
        let Some((lhs, rhs)) = l.split_once('=') else {
            continue;
        };
        let lhs = lhs.trim().trim_matches('"');
        if !in_fields && lhs == "type" {
            kind = rhs
                .split('#')
                .next()
                .unwrap_or("")
                .trim()
                .trim_matches('"')
                .to_string();
        } else if in_fields && !lhs.is_empty() && !lhs.starts_with('#') {
            out.push((kind.clone(), format!("{prefix}{lhs}"), i + 1));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expr_parses_columns_and_braces() {
        let e = Expr::parse("{Фамилия} {Имя} {{x}}").unwrap();
        assert_eq!(e.columns().collect::<Vec<_>>(), vec!["Фамилия", "Имя"]);
        assert!(Expr::parse("{open").is_err());
    }

    #[test]
    fn history_text_named_as_the_fields_action_names_it_is_sent_as_content() {
        let t = Template::parse(
            Path::new("h.toml"),
            "[[entity]]\ntype = \"history\"\nkey = \"{id}\"\n[entity.fields]\ndes = \"Текст\"\n",
        )
        .unwrap();
        let names: Vec<&str> = t.entities[0]
            .fields
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(names, ["content"]);
        assert!(t.warnings.is_empty(), "{:?}", t.warnings);
    }

    fn client_row(cells: &[&str]) -> crate::source::Row {
        crate::source::Row {
            pos: crate::source::SourcePos {
                file: std::sync::Arc::from("c.csv"),
                sheet: None,
                row: 2,
            },
            cells: cells.iter().map(|c| c.to_string()).collect(),
            issues: vec![],
        }
    }

    #[test]
    fn requisite_leaves_build_one_recv_object_in_every_spelling() {
        let head = "[[entity]]\ntype = \"client\"\nkey = \"{Компания}\"\n[entity.fields]\ntitle = \"Компания\"\n";
        let quoted = format!("{head}\"recv.castInn\" = {{ column = \"ИНН\", transform = [\"digits\"] }}\nphone = \"Телефон\"\n\"recv.castKpp\" = \"КПП\"\n");
        let dotted = format!("{head}recv.castInn = {{ column = \"ИНН\", transform = [\"digits\"] }}\nphone = \"Телефон\"\nrecv.castKpp = \"КПП\"\n");
        let section = format!("{head}phone = \"Телефон\"\n[entity.fields.recv]\ncastInn = {{ column = \"ИНН\", transform = [\"digits\"] }}\ncastKpp = \"КПП\"\n");
        let headers: Vec<String> = ["Компания", "ИНН", "КПП", "Телефон"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for text in [quoted, dotted, section] {
            let t = Template::parse(Path::new("c.toml"), &text).unwrap();
            assert!(t.warnings.is_empty(), "{:?}", t.warnings);
            let m = t.bind(&headers, "c.csv").unwrap();
            let row = client_row(&["ООО Ромашка", "59-04-338272", "590401001", "+7 342 200"]);
            let got = m.map_row(&row);
            let rec = &got.records[0];
            assert_eq!(
                rec.fields["recv"],
                serde_json::json!({"castInn": "5904338272", "castKpp": "590401001"}),
                "{text}"
            );
            // validate's streaming fingerprint equals the built record's.
            let (_, prints) = m.map_row_fingerprinted(&row);
            assert_eq!(prints, vec![fingerprint(rec)], "{text}");
            // A company without requisites sends no `recv` at all.
            let got = m.map_row(&client_row(&["ООО Пусто", "", "", "1"]));
            assert!(!got.records[0].fields.contains_key("recv"), "{text}");
        }
    }

    #[test]
    fn invoices_and_payments_need_their_sums_and_what_they_point_at() {
        let parse = |text: &str| Template::parse(Path::new("inv.toml"), text);
        let deal = "[[entity]]\ntype = \"deal\"\nkey = \"{Сделка}\"\n[entity.fields]\ntitle = \"Сделка\"\n";
        // Without summa the CRM would invoice the whole deal: refused before any request.
        let e = parse(&format!("{deal}[[entity]]\ntype = \"invoice\"\nkey = \"{{Номер}}\"\n[entity.fields]\ninvoice = \"Номер\"\ndid = {{ ref = \"deal\" }}\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("maps no `summa`") && e.contains("whole deal"),
            "{e}"
        );
        let e = parse(&format!("{deal}[[entity]]\ntype = \"invoice\"\nkey = \"{{Номер}}\"\n[entity.fields]\nsumma = \"Сумма\"\ndid = {{ ref = \"deal\" }}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("maps no `invoice` number"), "{e}");
        let t = parse(&format!("[[entity]]\ntype = \"payment\"\nkey = \"{{Номер}}/{{Сумма}}\"\n[entity.fields]\ninvoice = \"Номер\"\nsumma = {{ column = \"Сумма\", check = \"number\" }}\ndate = {{ column = \"Дата\", date = [\"%d.%m.%Y\"] }}\n{deal}[[entity]]\ntype = \"invoice\"\nkey = \"{{Номер}}\"\n[entity.fields]\ninvoice = \"Номер\"\nsumma = \"Сумма\"\ndid = {{ ref = \"deal\" }}\n")).unwrap();
        let order: Vec<Entity> = t.entities.iter().map(|e| e.entity).collect();
        assert_eq!(order, [Entity::Deal, Entity::Invoice, Entity::Payment]);
        let summa = t.entities[2]
            .fields
            .iter()
            .find(|f| f.name == "summa")
            .unwrap();
        assert!(summa.required, "a payment row without an amount is invalid");
        let e = parse(
            "[[entity]]\ntype = \"payment\"\nkey = \"{С}\"\n[entity.fields]\nsumma = \"С\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("names no invoice"), "{e}");
        let text = "[[entity]]\ntype = \"deal\"\nkey = \"{N}\"\n[entity.fields]\ntitle = \"N\"\nclid = { ref = \"invoice\" }\n";
        let e = Template::parse(Path::new("d.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("a deal cannot reference a invoice"), "{e}");
    }

    #[test]
    fn a_plain_recv_is_refused_naming_the_file_line_and_the_leaves() {
        let text = "[[entity]]\ntype = \"client\"\nkey = \"{ИНН}\"\n[entity.fields]\ntitle = \"Компания\"\nrecv  = { value = \"ИНН {ИНН}\" }\n";
        let e = Template::parse(Path::new("flat.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("flat.toml:6: client field 'recv' is an object on the server (requisites); write recv.castInn = ..., recv.castKpp = ..."),
            "{e}"
        );
        let text = "[[entity]]\ntype = \"client\"\nkey = \"{ИНН}\"\n[entity.fields]\ntitle = \"Компания\"\nrecv = \"Реквизиты\"\n";
        let e = Template::parse(Path::new("flat.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("flat.toml:6: client field 'recv' is an object"),
            "{e}"
        );
        let text = "[[entity]]\ntype = \"client\"\nkey = \"{ИНН}\"\n[entity.fields]\ntitle = \"Компания\"\n\"recv.castInnn\" = \"ИНН\"\n";
        let e = Template::parse(Path::new("flat.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("flat.toml:6:") && e.contains("did you mean recv.castInn?"),
            "{e}"
        );
        let text =
            "[[entity]]\ntype = \"person\"\nkey = \"{A}\"\n[entity.fields]\n\"tel.work\" = \"A\"\n";
        let e = Template::parse(Path::new("p.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("'tel' is not an object field"), "{e}");
    }

    #[test]
    fn shipped_templates_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if let Err(err) = Template::load(&p) {
                panic!("{}: {err}", p.display());
            }
        }
    }

    #[test]
    fn template_errors_name_entity_and_field() {
        let t = "[[entity]]\ntype=\"person\"\nkey=\"{A}\"\n[entity.fields]\nmail={column=\"A\", transform=\"shout\"}\n";
        let e = Template::parse(Path::new("t.toml"), t)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("t.toml") && e.contains("person field 'mail'") && e.contains("shout"),
            "{e}"
        );
        let t =
            "[[entity]]\ntype=\"person\"\nkey=\"{A}\"\n[entity.fields]\nclid={ref=\"client\"}\n";
        let e = Template::parse(Path::new("t.toml"), t)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no [[entity]] of type \"client\""), "{e}");
    }
}
