//! A template bound to a file's headers: turns rows into records and problems, in parallel.

use super::fields::FieldKind;
use super::rules::{first_4byte_char, is_email, is_phone, parse_date, parse_number, parse_time};
use super::{Check, Expr, FieldRule, Input, Part, Template, TemplateError};
use crate::crm::Entity;
use crate::source::{Row, RowSource, SourceError, SourcePos};
use rayon::prelude::*;
use serde_json::Value;
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
}

#[derive(Debug, Clone)]
struct BoundField {
    rule: FieldRule,
    input: BoundInput,
    /// Header name shown in problems.
    column: Option<String>,
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
                    .map(|h| format!("'{h}'"))
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
            let key = bind_expr(&et.key, et.entity, "key")?;
            let mut columns: Vec<usize> = key
                .iter()
                .filter_map(|p| match p {
                    BoundPart::Column(i) => Some(*i),
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

impl Mapper {
    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    /// The entities this mapper builds, in upload order.
    pub fn entities(&self) -> Vec<Entity> {
        self.entities.iter().map(|e| e.entity).collect()
    }

    pub fn map_row(&self, row: &Row) -> MappedRow {
        let mut out = MappedRow {
            pos: row.pos.clone(),
            records: Vec::new(),
            rejected: Vec::new(),
            problems: Vec::new(),
            blank: false,
        };
        if row.is_blank() {
            out.blank = true;
            return out;
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
            let mut fields = serde_json::Map::new();
            let mut refs = Vec::new();
            for bf in &be.fields {
                let rule = &bf.rule;
                let field = Some(rule.name.as_str());
                let raw = match &bf.input {
                    BoundInput::Column(i) => cells[*i].clone(),
                    BoundInput::Expr(parts) => render(parts, cells),
                    BoundInput::Nothing => String::new(),
                    BoundInput::Ref(target) => {
                        match built.iter().find(|(e, _)| e == target) {
                            Some((_, Some(k))) => refs.push(Reference {
                                field: rule.name.clone(),
                                entity: *target,
                                key: k.clone(),
                            }),
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
                let mut v = raw.trim().to_string();
                for t in &rule.transforms {
                    v = t.apply(&v);
                }
                let mut value: Option<Value> = None;
                if !v.is_empty() {
                    if let Some(map) = &rule.map {
                        match map
                            .iter()
                            .find(|(k, _)| k.trim().to_lowercase() == v.to_lowercase())
                        {
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
                            fields.insert(rule.name.clone(), d.clone());
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
                    fields.insert(rule.name.clone(), mapped);
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
                        Check::Number if parse_number(&v).is_none() => {
                            Some("is not a number".to_string())
                        }
                        Check::Integer if v.parse::<i64>().is_err() => {
                            Some("is not a whole number".to_string())
                        }
                        Check::MaxLength(n) if v.chars().count() > *n => Some(format!(
                            "is {} characters long; the CRM column holds at most {n}",
                            v.chars().count()
                        )),
                        Check::OneOf(list) if !list.iter().any(|x| x == &v) => {
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
                } else if let Some(formats) = &rule.date {
                    match parse_date(&v, formats) {
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
                            let fmt = if rule.kind == FieldKind::Date {
                                "%Y-%m-%d"
                            } else {
                                "%Y-%m-%d %H:%M:%S"
                            };
                            Value::String(d.format(fmt).to_string())
                        }
                    }
                } else if rule.kind == FieldKind::Number
                    || rule.checks.iter().any(|c| matches!(c, Check::Number))
                {
                    // "1 234,50" is sent as the number 1234.5: the server would misread the text.
                    parse_number(&v)
                        .and_then(serde_json::Number::from_f64)
                        .map(Value::Number)
                        .unwrap_or(Value::String(v))
                } else if matches!(rule.kind, FieldKind::Int) {
                    v.parse::<i64>()
                        .map(Value::from)
                        .unwrap_or(Value::String(v))
                } else {
                    Value::String(v)
                };
                fields.insert(rule.name.clone(), json);
            }
            invalid |= out.problems.len() > before;
            if invalid {
                out.rejected.push(be.entity);
                built.push((be.entity, None));
            } else {
                built.push((be.entity, Some(key.clone())));
                out.records.push(Record {
                    entity: be.entity,
                    key,
                    fields,
                    refs,
                });
            }
        }
        out
    }
}

/// How `map_file` batches work.
#[derive(Debug, Clone, Copy)]
pub struct MapOptions {
    /// Rows per parallel batch: big enough to amortise rayon, small enough to keep memory flat.
    pub batch: usize,
}

impl Default for MapOptions {
    fn default() -> Self {
        MapOptions { batch: 4096 }
    }
}

/// The rows of a file mapped through a template, in file order. Reading runs on its own thread
/// and mapping uses rayon; at most a few batches are in flight, so memory is flat in row count.
pub struct MappedFile {
    rx: Receiver<Result<Vec<Row>, SourceError>>,
    mapper: Arc<Mapper>,
    buf: std::vec::IntoIter<(Row, MappedRow)>,
    done: bool,
}

/// Read `source` through `mapper` in parallel batches, preserving order. Each item is the source
/// row (for reports) with its mapping; a read error ends the stream after it is yielded.
pub fn map_file(source: Box<dyn RowSource>, mapper: Arc<Mapper>, opts: MapOptions) -> MappedFile {
    let (tx, rx) = sync_channel(2);
    let batch = opts.batch.max(1);
    std::thread::spawn(move || {
        let mut source = source;
        loop {
            let mut rows = Vec::with_capacity(batch);
            let mut err = None;
            for r in source.by_ref() {
                match r {
                    Ok(row) => rows.push(row),
                    Err(e) => {
                        err = Some(e);
                        break;
                    }
                }
                if rows.len() == batch {
                    break;
                }
            }
            let last = rows.len() < batch || err.is_some();
            if !rows.is_empty() && tx.send(Ok(rows)).is_err() {
                return;
            }
            if let Some(e) = err {
                let _ = tx.send(Err(e));
                return;
            }
            if last {
                return;
            }
        }
    });
    MappedFile {
        rx,
        mapper,
        buf: Vec::new().into_iter(),
        done: false,
    }
}

impl Iterator for MappedFile {
    type Item = Result<(Row, MappedRow), SourceError>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(x) = self.buf.next() {
                return Some(Ok(x));
            }
            if self.done {
                return None;
            }
            match self.rx.recv() {
                Ok(Ok(rows)) => {
                    let mapper = &self.mapper;
                    let mapped: Vec<(Row, MappedRow)> = rows
                        .into_par_iter()
                        .map(|r| {
                            let m = mapper.map_row(&r);
                            (r, m)
                        })
                        .collect();
                    self.buf = mapped.into_iter();
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Some(Err(e));
                }
                Err(_) => self.done = true,
            }
        }
    }
}
