//! A template bound to a file's headers: turns rows into records and problems, in parallel.

use super::fields::FieldKind;
use super::rules::{first_4byte_char, is_email, is_phone, parse_number, parse_time, DateFormats};
use super::{Check, Expr, FieldRule, Input, Part, Template, TemplateError};
use crate::crm::Entity;
use crate::source::{RawBatch, Row, RowSource, SourceError, SourcePos};
use crate::values::{is_money_field, CrmDateTime, Money};
use rayon::prelude::*;
use serde_json::Value;
use std::borrow::Cow;
use std::hash::{BuildHasher, Hasher};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// The record is not sent.
    Error,
    /// Worth a look; nothing is dropped because of it.
    Warning,
}

/// Something wrong with a value, pointing at the cell it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub entity: Option<Entity>,
    /// The source column (header name), when the problem is about one.
    pub column: Option<String>,
    /// The CRM field, when the problem is about one.
    pub field: Option<String>,
    /// The value as the user wrote it.
    pub value: String,
    /// What is wrong, without the value (so identical problems group in summaries).
    pub message: String,
    pub severity: Severity,
}

/// The CRM id of another record built from the same row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// e.g. `clid`
    pub field: String,
    pub entity: Entity,
    /// The referenced record's key (in the same row).
    pub key: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub entity: Entity,
    pub key: String,
    /// CRM field → value ready to send (references excluded: see `refs`).
    pub fields: serde_json::Map<String, Value>,
    pub refs: Vec<Reference>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MappedRow {
    pub pos: SourcePos,
    /// Valid records only, in upload order.
    pub records: Vec<Record>,
    /// Entities whose record in this row was invalid (not in `records`).
    pub rejected: Vec<Entity>,
    pub problems: Vec<Problem>,
    /// Nothing in the row (skipped, neither valid nor invalid).
    pub blank: bool,
}

impl MappedRow {
    pub fn is_valid(&self) -> bool {
        self.rejected.is_empty() && !self.problems.iter().any(|p| p.severity == Severity::Error)
    }
}

#[derive(Debug, Clone)]
enum BoundInput {
    Column(usize),
    Expr(Vec<BoundPart>),
    Ref(Entity),
    Nothing,
}

#[derive(Debug, Clone)]
enum BoundPart {
    Lit(String),
    Column(usize),
    /// A key part read from a column that a `date` field of the same entity parses: a
    /// spreadsheet's date cell (`2024-02-04 10:07:00`) is written in the template's own format
    /// (`04.02.2024 10:07`), so a CSV and an XLSX of the same data give the same keys.
    DateColumn(usize, Vec<String>),
}

#[derive(Debug, Clone)]
struct BoundField {
    rule: FieldRule,
    input: BoundInput,
    /// Header name shown in problems.
    column: Option<String>,
    /// `map` keys trimmed and lower-cased once, not per cell.
    map_lc: Option<Vec<(String, Value)>>,
    dates: Option<DateFormats>,
}

#[derive(Debug, Clone)]
struct BoundEntity {
    entity: Entity,
    key: Vec<BoundPart>,
    key_source: String,
    fields: Vec<BoundField>,
    /// Every column this entity reads (a bad cell in one invalidates the record).
    columns: Vec<usize>,
    /// Columns its fields read (not the key): when all are blank the row has no such record,
    /// e.g. a contact without activities in a flat export.
    presence: Vec<usize>,
}

/// A template bound to one file's headers.
#[derive(Debug, Clone)]
pub struct Mapper {
    headers: Vec<String>,
    entities: Vec<BoundEntity>,
}

/// Exact header match first; then ignoring case and repeated spaces (Excel users retype headers).
fn find_column(headers: &[String], name: &str) -> Option<usize> {
    headers.iter().position(|h| h == name).or_else(|| {
        let norm = |s: &str| {
            s.split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase()
        };
        let n = norm(name);
        headers.iter().position(|h| norm(h) == n)
    })
}

impl Template {
    /// Resolve column names against a file's headers. `file` names the file in messages.
    pub fn bind(&self, headers: &[String], file: &str) -> Result<Mapper, TemplateError> {
        let missing = |entity: Entity, place: String, column: &str| {
            TemplateError::MissingColumn(Box::new(super::MissingColumn {
                path: self.path.clone(),
                entity,
                place,
                column: column.to_string(),
                file: file.to_string(),
                available: headers
                    .iter()
                    .map(|h| format!("'{}'", crate::source::display(h)))
                    .collect::<Vec<_>>()
                    .join(", "),
            }))
        };
        let bind_expr =
            |e: &Expr, entity: Entity, place: &str| -> Result<Vec<BoundPart>, TemplateError> {
                e.parts
                    .iter()
                    .map(|p| match p {
                        Part::Lit(s) => Ok(BoundPart::Lit(s.clone())),
                        Part::Column(c) => find_column(headers, c)
                            .map(BoundPart::Column)
                            .ok_or_else(|| missing(entity, place.to_string(), c)),
                    })
                    .collect()
            };
        let mut entities = Vec::new();
        for et in &self.entities {
            let mut key = bind_expr(&et.key, et.entity, "key")?;
            for part in &mut key {
                let BoundPart::Column(i) = *part else {
                    continue;
                };
                let formats = et.fields.iter().find_map(|f| match (&f.input, &f.date) {
                    (Input::Column(c), Some(formats))
                        if !formats.is_empty() && find_column(headers, c) == Some(i) =>
                    {
                        Some(formats.clone())
                    }
                    _ => None,
                });
                if let Some(formats) = formats {
                    *part = BoundPart::DateColumn(i, formats);
                }
            }
            let mut columns: Vec<usize> = key
                .iter()
                .filter_map(|p| match p {
                    BoundPart::Column(i) | BoundPart::DateColumn(i, _) => Some(*i),
                    BoundPart::Lit(_) => None,
                })
                .collect();
            let key_cols = columns.len();
            let mut fields = Vec::new();
            for f in &et.fields {
                let place = format!("field '{}'", f.name);
                let (input, column) = match &f.input {
                    Input::Column(c) => {
                        let i =
                            find_column(headers, c).ok_or_else(|| missing(et.entity, place, c))?;
                        columns.push(i);
                        (BoundInput::Column(i), Some(headers[i].clone()))
                    }
                    Input::Expr(e) => {
                        let parts = bind_expr(e, et.entity, &place)?;
                        let mut first = None;
                        for p in &parts {
                            if let BoundPart::Column(i) = p {
                                columns.push(*i);
                                first.get_or_insert(headers[*i].clone());
                            }
                        }
                        (BoundInput::Expr(parts), first)
                    }
                    Input::Ref(e) => (BoundInput::Ref(*e), None),
                    Input::Nothing => (BoundInput::Nothing, None),
                };
                fields.push(BoundField {
                    rule: f.clone(),
                    input,
                    column,
                    map_lc: f.map.as_ref().map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.trim().to_lowercase(), v.clone()))
                            .collect()
                    }),
                    dates: f.date.as_deref().map(DateFormats::new),
                });
            }
            let mut presence: Vec<usize> = if columns.len() > key_cols {
                columns[key_cols..].to_vec()
            } else {
                columns.clone()
            };
            presence.sort_unstable();
            presence.dedup();
            columns.sort_unstable();
            columns.dedup();
            entities.push(BoundEntity {
                entity: et.entity,
                key,
                key_source: et.key.source.clone(),
                fields,
                columns,
                presence,
            });
        }
        Ok(Mapper {
            headers: headers.to_vec(),
            entities,
        })
    }
}

fn render(parts: &[BoundPart], cells: &[String]) -> String {
    let mut s = String::new();
    for p in parts {
        match p {
            BoundPart::Lit(l) => s.push_str(l),
            BoundPart::Column(i) => s.push_str(cells[*i].trim()),
            BoundPart::DateColumn(i, formats) => {
                let raw = cells[*i].trim();
                match spreadsheet_date_in(raw, formats) {
                    Some(t) => s.push_str(&t),
                    None => s.push_str(raw),
                }
            }
        }
    }
    // "{Фамилия} {Имя}" with an empty part must not leave stray spaces.
    if s.contains("  ") || s.starts_with(' ') || s.ends_with(' ') {
        s.split(' ')
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        s
    }
}

/// A spreadsheet date cell's text (`YYYY-MM-DD[ HH:MM:SS]`, as the XLSX reader writes it) in the
/// first of the template's formats that holds it exactly; None for anything else (text typed
/// in the template's own format stays as typed, so existing keys do not change).
fn spreadsheet_date_in(raw: &str, formats: &[String]) -> Option<String> {
    let b = raw.as_bytes();
    let iso = b.len() >= 10 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-';
    if !iso || formats.iter().any(|f| parse_one(raw, f).is_some()) {
        return None;
    }
    let d = parse_one(raw, "%Y-%m-%d %H:%M:%S").or_else(|| parse_one(raw, "%Y-%m-%d"))?;
    let has_time = |f: &String| f.contains("%H");
    let date_only = b.len() == 10;
    // A date without a time prefers a format without one ("07.03.2024", not "07.03.2024 00:00").
    let (first, rest): (Vec<&String>, Vec<&String>) =
        formats.iter().partition(|f| has_time(f) != date_only);
    first.into_iter().chain(rest).find_map(|f| {
        use std::fmt::Write;
        let mut t = String::new();
        write!(t, "{}", d.format(f)).ok()?; // a bad format is an error here, not a panic
        (parse_one(&t, f) == Some(d)).then_some(t)
    })
}

fn parse_one(v: &str, format: &str) -> Option<chrono::NaiveDateTime> {
    chrono::NaiveDateTime::parse_from_str(v, format)
        .ok()
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(v, format)
                .ok()
                .map(|d| d.and_time(chrono::NaiveTime::MIN))
        })
}

impl Mapper {
    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    /// The index of a column as the template names it (same matching as binding).
    pub fn column_index(&self, name: &str) -> Option<usize> {
        find_column(&self.headers, name)
    }

    /// The entities this mapper builds, in upload order.
    pub fn entities(&self) -> Vec<Entity> {
        self.entities.iter().map(|e| e.entity).collect()
    }

    pub fn map_row(&self, row: &Row) -> MappedRow {
        self.map_row_inner(row, true).0
    }

    /// Map a row for checking only: records carry entity and key but no field values (nothing
    /// is built for them); instead each gets a [`Fingerprint`] (`prints[i]` is `records[i]`'s),
    /// equal to [`fingerprint`] of the record `map_row` would build.
    pub fn map_row_fingerprinted(&self, row: &Row) -> (MappedRow, Vec<Fingerprint>) {
        self.map_row_inner(row, false)
    }

    fn map_row_inner(&self, row: &Row, build: bool) -> (MappedRow, Vec<Fingerprint>) {
        let mut prints = Vec::new();
        let mut out = MappedRow {
            pos: row.pos.clone(),
            records: Vec::new(),
            rejected: Vec::new(),
            problems: Vec::new(),
            blank: false,
        };
        if row.is_blank() {
            out.blank = true;
            return (out, prints);
        }
        let cells = &row.cells;
        // Reader-level issues: a bad cell invalidates the records that read it; the rest warn.
        let mut bad_cols: Vec<usize> = Vec::new();
        for issue in &row.issues {
            let users: Vec<Entity> = match issue.column {
                Some(c) => self
                    .entities
                    .iter()
                    .filter(|e| e.columns.contains(&c))
                    .map(|e| e.entity)
                    .collect(),
                None => vec![],
            };
            if let Some(c) = issue.column {
                if !users.is_empty() {
                    bad_cols.push(c);
                }
            }
            out.problems.push(Problem {
                entity: users.first().copied(),
                column: issue.column.and_then(|c| self.headers.get(c).cloned()),
                field: None,
                value: issue.value.clone(),
                message: issue.message.clone(),
                severity: if users.is_empty() {
                    Severity::Warning
                } else {
                    Severity::Error
                },
            });
        }
        // (entity, key) of this row's valid records, for references.
        let mut built: Vec<(Entity, Option<String>)> = Vec::new();
        for be in &self.entities {
            if be.presence.iter().all(|&i| cells[i].trim().is_empty()) {
                continue; // this row has no such record (e.g. a contact without activities)
            }
            let before = out.problems.len();
            let err = |out: &mut MappedRow,
                       column: Option<String>,
                       field: Option<&str>,
                       value: &str,
                       message: String| {
                out.problems.push(Problem {
                    entity: Some(be.entity),
                    column,
                    field: field.map(str::to_string),
                    value: value.to_string(),
                    message,
                    severity: Severity::Error,
                });
            };
            let mut invalid = be.columns.iter().any(|c| bad_cols.contains(c));
            let key = render(&be.key, cells);
            if key.is_empty() {
                err(
                    &mut out,
                    None,
                    None,
                    "",
                    format!("the key {} is empty", be.key_source),
                );
            }
            let mut sink = Sink::new(build, be.fields.len());
            for bf in &be.fields {
                let rule = &bf.rule;
                let field = Some(rule.name.as_str());
                let raw: Cow<str> = match &bf.input {
                    BoundInput::Column(i) => Cow::Borrowed(&cells[*i]),
                    BoundInput::Expr(parts) => Cow::Owned(render(parts, cells)),
                    BoundInput::Nothing => Cow::Borrowed(""),
                    BoundInput::Ref(target) => {
                        match built.iter().find(|(e, _)| e == target) {
                            Some((_, Some(k))) => sink.reference(&rule.name, *target, k),
                            Some((_, None)) => {
                                err(
                                    &mut out,
                                    None,
                                    field,
                                    "",
                                    format!(
                                        "depends on this row's {target} record, which is invalid"
                                    ),
                                );
                            }
                            None if rule.required => {
                                err(
                                    &mut out,
                                    None,
                                    field,
                                    "",
                                    format!("this row has no {target} record to reference"),
                                );
                            }
                            None => {}
                        }
                        continue;
                    }
                };
                let mut v: Cow<str> = Cow::Borrowed(raw.trim());
                for t in &rule.transforms {
                    v = t.apply_cow(v);
                }
                let mut value: Option<Value> = None;
                if !v.is_empty() {
                    if let (Some(map), Some(map_lc)) = (&rule.map, &bf.map_lc) {
                        let lc = v.to_lowercase();
                        match map_lc.iter().find(|(k, _)| *k == lc) {
                            Some((_, mapped)) => value = Some(mapped.clone()),
                            None => {
                                let keys: Vec<&str> = map.iter().map(|(k, _)| k.as_str()).collect();
                                err(
                                    &mut out,
                                    bf.column.clone(),
                                    field,
                                    &raw,
                                    format!("not one of the mapped values: {}", keys.join(", ")),
                                );
                                continue;
                            }
                        }
                    }
                }
                if v.is_empty() {
                    match &rule.default {
                        Some(d) => {
                            sink.value(&rule.name, d);
                        }
                        None if rule.required => {
                            err(
                                &mut out,
                                bf.column.clone(),
                                field,
                                &raw,
                                "is required but empty".into(),
                            );
                        }
                        None => {}
                    }
                    continue;
                }
                if let Some(mapped) = value {
                    sink.value(&rule.name, &mapped);
                    continue;
                }
                // Text that the server would reject or mangle (NOTES §8) is reported, not sent.
                if let Some(c) = first_4byte_char(&v) {
                    err(&mut out, bf.column.clone(), field, &raw, format!("contains the character '{c}' (emoji and other 4-byte characters are rejected by the CRM)"));
                    continue;
                }
                let mut ok = true;
                for check in &rule.checks {
                    let problem = match check {
                        Check::Email if !is_email(&v) => {
                            Some("is not a valid e-mail address".to_string())
                        }
                        Check::Phone if !is_phone(&v) => Some("is not a phone number".to_string()),
                        // Amounts are read (and refused) below, as money.
                        Check::Number
                            if !is_money_field(&rule.name) && parse_number(&v).is_none() =>
                        {
                            Some("is not a number".to_string())
                        }
                        Check::Integer if v.parse::<i64>().is_err() => {
                            Some("is not a whole number".to_string())
                        }
                        Check::MaxLength(n) if v.len() > *n && v.chars().count() > *n => {
                            Some(format!(
                                "is {} characters long; the CRM column holds at most {n}",
                                v.chars().count()
                            ))
                        }
                        Check::OneOf(list) if !list.iter().any(|x| *x == *v) => {
                            Some(format!("is not one of: {}", list.join(", ")))
                        }
                        Check::Regex(re) if !re.is_match(&v) => {
                            Some(format!("does not match the pattern {}", re.as_str()))
                        }
                        _ => None,
                    };
                    if let Some(m) = problem {
                        err(&mut out, bf.column.clone(), field, &raw, m);
                        ok = false;
                    }
                }
                if !ok {
                    continue;
                }
                let json = if rule.kind == FieldKind::Time {
                    match parse_time(&v) {
                        Some(t) => Value::String(t.format("%H:%M").to_string()),
                        None => {
                            err(
                                &mut out,
                                bf.column.clone(),
                                field,
                                &raw,
                                "is not a time (HH:MM)".into(),
                            );
                            continue;
                        }
                    }
                } else if let (Some(formats), Some(compiled)) = (&rule.date, &bf.dates) {
                    match compiled.parse(&v) {
                        None => {
                            let fmts = if formats.is_empty() {
                                String::new()
                            } else {
                                format!(" (expected {})", formats.join(" or "))
                            };
                            err(
                                &mut out,
                                bf.column.clone(),
                                field,
                                &raw,
                                format!("is not a date{fmts}"),
                            );
                            continue;
                        }
                        Some(d) => {
                            if rule.kind == FieldKind::Timestamp {
                                let lo = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)
                                    .and_then(|d| d.and_hms_opt(0, 0, 0));
                                let hi = chrono::NaiveDate::from_ymd_opt(2038, 1, 19)
                                    .and_then(|d| d.and_hms_opt(0, 0, 0));
                                if Some(d) < lo || Some(d) >= hi {
                                    err(&mut out, bf.column.clone(), field, &raw, "is outside 1970-01-01 … 2038-01-19, the range the CRM can store".into());
                                    continue;
                                }
                            }
                            Value::String(
                                CrmDateTime::of(d, rule.kind == FieldKind::Date).to_string(),
                            )
                        }
                    }
                } else if (rule.kind == FieldKind::Number
                    || rule.checks.iter().any(|c| matches!(c, Check::Number)))
                    && is_money_field(&rule.name)
                {
                    // Sent as `1500.75`: the server reads "1,500.75" as 1.50 (NOTES §11, v3-deal-add-kol-thousands-comma).
                    match Money::parse(&v) {
                        Ok(m) => m.to_json(),
                        Err(e) => {
                            err(&mut out, bf.column.clone(), field, &raw, e.to_string());
                            continue;
                        }
                    }
                } else if rule.kind == FieldKind::Number
                    || rule.checks.iter().any(|c| matches!(c, Check::Number))
                {
                    // "1 234,50" is sent as the number 1234.5: the server would misread the text.
                    parse_number(&v)
                        .and_then(serde_json::Number::from_f64)
                        .map(Value::Number)
                        .unwrap_or_else(|| Value::String(v.into_owned()))
                } else if matches!(rule.kind, FieldKind::Int) {
                    v.parse::<i64>()
                        .map(Value::from)
                        .unwrap_or_else(|_| Value::String(v.into_owned()))
                } else {
                    sink.text(&rule.name, v);
                    continue;
                };
                sink.value(&rule.name, &json);
            }
            invalid |= out.problems.len() > before;
            if invalid {
                out.rejected.push(be.entity);
                built.push((be.entity, None));
            } else {
                built.push((be.entity, Some(key.clone())));
                let (fields, refs, print) = sink.finish(be.entity, &key);
                if !build {
                    prints.push(print);
                }
                out.records.push(Record {
                    entity: be.entity,
                    key,
                    fields,
                    refs,
                });
            }
        }
        (out, prints)
    }
}

/// A compact identity of one record: which key it has and what it holds, so "same key,
/// different values" can be checked with 12 bytes per key instead of the record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fingerprint {
    /// Entity and key, 64-bit (a false match needs ~4·10⁹ distinct keys to become likely).
    pub key: u64,
    /// Field values and references; 32 bits are plenty to tell "same" from "different".
    pub values: u32,
}

use crate::hash::{FastHasher as FpHasher, FAST as SEED};

fn hash_text(h: &mut FpHasher, name: &str, v: &str) {
    h.write(name.as_bytes());
    h.write_u8(0xff);
    h.write_u8(1);
    h.write(v.as_bytes());
    h.write_u8(0xff);
}

fn hash_value(h: &mut FpHasher, name: &str, v: &Value) {
    match v {
        Value::String(s) => hash_text(h, name, s),
        Value::Null => {
            h.write(name.as_bytes());
            h.write_u8(0xfd);
        }
        other => {
            h.write(name.as_bytes());
            h.write_u8(0xfe);
            h.write(other.to_string().as_bytes());
            h.write_u8(0xff);
        }
    }
}

fn hash_ref(h: &mut FpHasher, field: &str, key: &str) {
    h.write(field.as_bytes());
    h.write_u8(0xfc);
    h.write(key.as_bytes());
    h.write_u8(0xff);
}

fn key_hash(entity: Entity, key: &str) -> u64 {
    let mut k = SEED.build_hasher();
    k.write_u8(entity as u8);
    k.write(key.as_bytes());
    k.finish()
}

fn combine(fields: &FpHasher, refs: &FpHasher) -> u32 {
    (fields.finish() ^ refs.finish().rotate_left(32)) as u32
}

/// The fingerprint of a built record (what [`Mapper::map_row_fingerprinted`] computes on the fly).
pub fn fingerprint(r: &Record) -> Fingerprint {
    let mut f = SEED.build_hasher();
    let mut rh = SEED.build_hasher();
    for (name, v) in &r.fields {
        match v {
            // An object field is hashed leaf by leaf, as the mapper saw its leaves.
            Value::Object(leaves) => {
                for (leaf, lv) in leaves {
                    hash_value(&mut f, &format!("{name}.{leaf}"), lv);
                }
            }
            _ => hash_value(&mut f, name, v),
        }
    }
    for x in &r.refs {
        hash_ref(&mut rh, &x.field, &x.key);
    }
    Fingerprint {
        key: key_hash(r.entity, &r.key),
        values: combine(&f, &rh),
    }
}

/// Where a record's values go: into a JSON map (upload), or only into a hash (validate).
struct Sink {
    map: Option<serde_json::Map<String, Value>>,
    refs: Vec<Reference>,
    fields: FpHasher,
    refh: FpHasher,
}

impl Sink {
    fn new(build: bool, n: usize) -> Sink {
        Sink {
            map: build.then(|| serde_json::Map::with_capacity(n)),
            refs: Vec::new(),
            fields: SEED.build_hasher(),
            refh: SEED.build_hasher(),
        }
    }
    fn value(&mut self, name: &str, v: &Value) {
        match &mut self.map {
            Some(m) => {
                m.insert(name.to_string(), v.clone());
            }
            None => hash_value(&mut self.fields, name, v),
        }
    }
    fn text(&mut self, name: &str, v: Cow<str>) {
        match &mut self.map {
            Some(m) => {
                m.insert(name.to_string(), Value::String(v.into_owned()));
            }
            None => hash_text(&mut self.fields, name, &v),
        }
    }
    fn reference(&mut self, field: &str, entity: Entity, key: &str) {
        if self.map.is_some() {
            self.refs.push(Reference {
                field: field.to_string(),
                entity,
                key: key.to_string(),
            });
        } else {
            hash_ref(&mut self.refh, field, key);
        }
    }
    fn finish(
        self,
        entity: Entity,
        key: &str,
    ) -> (serde_json::Map<String, Value>, Vec<Reference>, Fingerprint) {
        let print = match self.map {
            Some(_) => Fingerprint::default(),
            None => Fingerprint {
                key: key_hash(entity, key),
                values: combine(&self.fields, &self.refh),
            },
        };
        (nest(self.map.unwrap_or_default()), self.refs, print)
    }
}

/// Leaves of object fields (`recv.castInn`) become one object (`recv: {castInn: …}`), where the
/// first leaf was; a record whose leaves were all empty has no such field at all.
fn nest(map: serde_json::Map<String, Value>) -> serde_json::Map<String, Value> {
    if !map.keys().any(|k| k.contains('.')) {
        return map;
    }
    let mut out = serde_json::Map::with_capacity(map.len());
    for (k, v) in map {
        match k.split_once('.') {
            Some((parent, leaf)) => {
                let slot = out
                    .entry(parent.to_string())
                    .or_insert_with(|| Value::Object(serde_json::Map::new()));
                if let Value::Object(o) = slot {
                    o.insert(leaf.to_string(), v);
                }
            }
            None => {
                out.insert(k, v);
            }
        }
    }
    out
}

/// How `map_file` batches work.
#[derive(Debug, Clone, Copy)]
pub struct MapOptions {
    /// Rows per parallel batch: big enough to amortise rayon, small enough to keep memory flat.
    pub batch: usize,
}

impl Default for MapOptions {
    fn default() -> Self {
        MapOptions { batch: 2048 }
    }
}

enum Batch {
    Rows(Vec<Row>),
    Raw(RawBatch),
}

/// What the reader thread sends: batches, then exactly one `End` or `Err`. A channel that closes
/// without either means the reader died, which is an error, never the end of the file.
enum ReadMsg {
    Batch(Batch),
    Err(SourceError),
    End,
}

/// What the mapping thread sends the consumer.
enum MappedMsg<T> {
    Items(Vec<T>),
    /// Items mapped before a failure, then the failure: the stream ends with it.
    Failed(Vec<T>, SourceError),
    End,
}

/// Results of [`map_file_with`] in file order. Three stages overlap: a reader thread, a mapping
/// thread that spreads each batch over rayon, and the consumer (this iterator). Channels hold one
/// batch each, so at most ~5 batches are alive at once: memory is flat in the row count.
///
/// Every way the stream can end is explicit: the file's end, a read error, or an internal error
/// (a panic in the reader or in a worker) naming the row after which nothing was processed. A
/// dead stage is never mistaken for the end of the file.
pub struct MappedFile<T = (Row, MappedRow)> {
    rx: Receiver<MappedMsg<T>>,
    buf: std::vec::IntoIter<T>,
    pending_err: Option<SourceError>,
    done: bool,
    file: Arc<str>,
}

/// Read `source` through `mapper` in parallel batches, preserving order. Each item is the source
/// row (for reports) with its mapping; a read error ends the stream after it is yielded.
pub fn map_file(source: Box<dyn RowSource>, mapper: Arc<Mapper>, opts: MapOptions) -> MappedFile {
    map_file_with(source, opts, move |r| {
        let m = mapper.map_row(&r);
        (r, m)
    })
}

/// The text of a panic payload (what `panic!` was given).
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}

/// Like [`map_file`], but `work` runs on the rayon pool for every row, so per-row work the
/// consumer would otherwise do alone (hashing, formatting, dropping what it does not need)
/// happens in parallel too.
pub fn map_file_with<T, F>(source: Box<dyn RowSource>, opts: MapOptions, work: F) -> MappedFile<T>
where
    T: Send + 'static,
    F: Fn(Row) -> T + Send + Sync + 'static,
{
    let (tx, rx) = sync_channel::<ReadMsg>(1);
    let (out_tx, out_rx) = sync_channel(1);
    let batch = opts.batch.max(1);
    let file: Arc<str> = Arc::from(source.file());
    let reader_file = file.clone();
    std::thread::spawn(move || {
        let mut source = source;
        // The last row handed over, for the message if reading panics.
        let mut last_row = 1u64;
        let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| loop {
            // CSV hands over raw fields: the cells are built on the workers.
            if let Some(raw) = source.read_raw(batch) {
                if let Some(n) = raw.batch.last_row() {
                    last_row = n;
                }
                if !raw.batch.is_empty() && tx.send(ReadMsg::Batch(Batch::Raw(raw.batch))).is_err()
                {
                    return;
                }
                if let Some(e) = raw.error {
                    let _ = tx.send(ReadMsg::Err(e));
                    return;
                }
                if raw.eof {
                    let _ = tx.send(ReadMsg::End);
                    return;
                }
                continue;
            }
            let mut rows = Vec::with_capacity(batch);
            let mut err = None;
            let mut end = false;
            loop {
                match source.next() {
                    Some(Ok(row)) => rows.push(row),
                    Some(Err(e)) => {
                        err = Some(e);
                        break;
                    }
                    None => {
                        end = true;
                        break;
                    }
                }
                if rows.len() == batch {
                    break;
                }
            }
            if let Some(r) = rows.last() {
                last_row = r.pos.row;
            }
            if !rows.is_empty() && tx.send(ReadMsg::Batch(Batch::Rows(rows))).is_err() {
                return;
            }
            if let Some(e) = err {
                let _ = tx.send(ReadMsg::Err(e));
                return;
            }
            if end {
                let _ = tx.send(ReadMsg::End);
                return;
            }
        }));
        if let Err(payload) = read {
            let _ = tx.send(ReadMsg::Err(SourceError::Internal {
                file: reader_file.to_string(),
                row: last_row + 1,
                message: format!("reading failed: {}", panic_text(&*payload)),
            }));
        }
    });
    let map_file = file.clone();
    std::thread::spawn(move || {
        let mut last_row = 1u64;
        let mut ended = false;
        for msg in rx {
            let out = match msg {
                ReadMsg::End => {
                    ended = true;
                    MappedMsg::End
                }
                ReadMsg::Err(e) => {
                    ended = true;
                    MappedMsg::Failed(Vec::new(), e)
                }
                ReadMsg::Batch(b) => {
                    let batch_last = match &b {
                        Batch::Rows(rows) => rows.last().map(|r| r.pos.row),
                        Batch::Raw(raw) => raw.last_row(),
                    };
                    // Each row's work is caught on its own, so a panic names its row and the
                    // rows before it in the batch still count.
                    let one = |row: Row| {
                        let n = row.pos.row;
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(row)))
                            .map_err(|p| (n, panic_text(&*p)))
                    };
                    let results: Vec<Result<T, (u64, String)>> = match b {
                        Batch::Rows(rows) => rows.into_par_iter().map(one).collect(),
                        Batch::Raw(raw) => (0..raw.len())
                            .into_par_iter()
                            .map(|i| {
                                let n = raw.row_number(i);
                                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                    work(raw.row(i))
                                }))
                                .map_err(|p| (n, panic_text(&*p)))
                            })
                            .collect(),
                    };
                    let mut items = Vec::with_capacity(results.len());
                    let mut failure = None;
                    for r in results {
                        match r {
                            Ok(t) => items.push(t),
                            Err((row, message)) => {
                                failure = Some(SourceError::Internal {
                                    file: map_file.to_string(),
                                    row,
                                    message,
                                });
                                break;
                            }
                        }
                    }
                    match failure {
                        Some(e) => {
                            ended = true;
                            MappedMsg::Failed(items, e)
                        }
                        None => {
                            last_row = batch_last.unwrap_or(last_row);
                            MappedMsg::Items(items)
                        }
                    }
                }
            };
            let stop = ended;
            if out_tx.send(out).is_err() || stop {
                return;
            }
        }
        // The reader's channel closed without End or Err: it died.
        if !ended {
            let _ = out_tx.send(MappedMsg::Failed(
                Vec::new(),
                SourceError::Internal {
                    file: map_file.to_string(),
                    row: last_row + 1,
                    message: "the reader stopped before the end of the file".into(),
                },
            ));
        }
    });
    MappedFile {
        rx: out_rx,
        buf: Vec::new().into_iter(),
        pending_err: None,
        done: false,
        file,
    }
}

impl<T> Iterator for MappedFile<T> {
    type Item = Result<T, SourceError>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(x) = self.buf.next() {
                return Some(Ok(x));
            }
            if let Some(e) = self.pending_err.take() {
                self.done = true;
                return Some(Err(e));
            }
            if self.done {
                return None;
            }
            match self.rx.recv() {
                Ok(MappedMsg::Items(items)) => self.buf = items.into_iter(),
                Ok(MappedMsg::Failed(items, e)) => {
                    self.buf = items.into_iter();
                    self.pending_err = Some(e);
                }
                Ok(MappedMsg::End) => self.done = true,
                Err(_) => {
                    // The mapping thread died without a word: never the end of the file.
                    self.done = true;
                    return Some(Err(SourceError::Internal {
                        file: self.file.to_string(),
                        row: 0,
                        message: "the mapping stage stopped before the end of the file".into(),
                    }));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{self, SourceOptions};

    #[test]
    fn spreadsheet_dates_in_keys_take_the_templates_format() {
        let f = vec!["%d.%m.%Y %H:%M".to_string(), "%d.%m.%Y".to_string()];
        let at = |raw: &str| spreadsheet_date_in(raw, &f);
        assert_eq!(
            at("2024-02-04 10:07:00").as_deref(),
            Some("04.02.2024 10:07")
        );
        assert_eq!(at("2024-03-07").as_deref(), Some("07.03.2024"));
        // Seconds the template's formats cannot hold: the cell text stays as it is.
        assert_eq!(at("2024-02-04 10:07:30"), None);
        // Text typed in the template's own format is the key as before.
        assert_eq!(at("04.02.2024 10:07"), None);
        assert_eq!(at("EXT-1001"), None);
        // A template that itself uses ISO dates keeps them.
        assert_eq!(
            spreadsheet_date_in("2024-02-04 10:07:00", &["%Y-%m-%d %H:%M:%S".to_string()]),
            None
        );
        // A broken format is skipped, never a panic.
        assert_eq!(
            spreadsheet_date_in("2024-02-04 10:07:00", &["%Q".to_string()]),
            None
        );
    }

    fn csv_source(rows: usize) -> (tempfile::TempDir, Box<dyn RowSource>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.csv");
        let mut text = String::from("n;phone\n");
        for i in 0..rows {
            text.push_str(&format!("{i};+7 900 000 00 00\n"));
        }
        std::fs::write(&path, text).unwrap();
        let src = source::open(&path, &SourceOptions::default()).unwrap();
        (dir, src)
    }

    #[test]
    fn a_panicking_worker_ends_the_stream_with_an_error_naming_the_row() {
        let (_dir, src) = csv_source(5000);
        let out = map_file_with(src, MapOptions { batch: 300 }, |row: Row| {
            if row.pos.row == 2001 {
                panic!("boom at {}", row.cells[0]);
            }
            row.pos.row
        });
        let mut rows = Vec::new();
        let mut err = None;
        for item in out {
            match item {
                Ok(n) => rows.push(n),
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        // Every row before the panic came through, in order, and then an error — not an end.
        assert_eq!(rows, (2..2001).collect::<Vec<u64>>());
        let e = err
            .expect("a panic must not look like the end of the file")
            .to_string();
        assert!(e.contains("row 2001"), "{e}");
        assert!(e.contains("internal error"), "{e}");
        assert!(e.contains("boom at 1999"), "{e}");
    }

    #[test]
    fn a_clean_file_ends_with_every_row() {
        let (_dir, src) = csv_source(4321);
        let rows: Vec<u64> = map_file_with(src, MapOptions { batch: 100 }, |row: Row| row.pos.row)
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(rows, (2..4323).collect::<Vec<u64>>());
    }
}
