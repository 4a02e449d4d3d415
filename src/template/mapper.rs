//! A template bound to a file's headers: turns rows into records and problems, in parallel.

use super::fingerprint::{FieldName, Fingerprint, Finished, Sink};
use super::rules::{first_4byte_char, DateFormats};
use super::{Expr, FieldRule, Input, Part, Template, TemplateError};
use crate::crm::Entity;
use crate::source::{Cells, Row, RowView, SourcePos};
use crate::values::trim;
use serde_json::Value;
use std::borrow::Cow;
use typing::{failed_checks, typed_value, Typed, Typing};

mod typing;

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

/// A mapped row without its position: the buffers [`Mapper::map_parts`] fills.
#[derive(Debug, Default)]
pub(super) struct RowParts {
    pub(super) records: Vec<Record>,
    pub(super) rejected: Vec<Entity>,
    pub(super) problems: Vec<Problem>,
    /// `prints[i]` is `records[i]`'s (filled only when records are not built).
    pub(super) prints: Vec<Fingerprint>,
    pub(super) blank: bool,
    /// The records cleared (empty), for the next row's: their key strings and maps are reused
    /// rather than allocated again for every record of every row.
    spare: Vec<Record>,
}

impl RowParts {
    fn clear(&mut self) {
        // Moved in one copy; emptied when taken again (`spare_record`).
        self.spare.append(&mut self.records);
        self.rejected.clear();
        self.problems.clear();
        self.prints.clear();
        self.blank = false;
    }

    /// A record for `entity` with no fields or references, its key string reused if it can be.
    fn spare_record(&mut self, entity: Entity) -> Record {
        match self.spare.pop() {
            Some(mut r) => {
                r.entity = entity;
                r.fields.clear();
                r.refs.clear();
                r
            }
            None => Record {
                entity,
                key: String::new(),
                fields: serde_json::Map::new(),
                refs: Vec::new(),
            },
        }
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
    /// A reference's fallback column (`ref` + `column`).
    fallback: Option<usize>,
    /// The template's own text in the value (an expression's literal) has a character beyond
    /// U+FFFF.
    wide_literal: bool,
    /// The field's name hashed once, for the fingerprints.
    tag: u64,
    /// What [`typed_value`] makes of the text, worked out from the rule once.
    typing: Typing,
}

impl BoundField {
    fn name(&self) -> FieldName<'_> {
        FieldName {
            name: &self.rule.name,
            tag: self.tag,
        }
    }
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
                let fallback = match &f.ref_fallback {
                    Some(c) => {
                        let place = format!("field '{}'", f.name);
                        let i =
                            find_column(headers, c).ok_or_else(|| missing(et.entity, place, c))?;
                        columns.push(i);
                        Some(i)
                    }
                    None => None,
                };
                let wide_literal = matches!(&input, BoundInput::Expr(parts) if parts.iter().any(
                    |p| matches!(p, BoundPart::Lit(l) if l.chars().any(|c| c > '\u{FFFF}'))
                ));
                fields.push(BoundField {
                    rule: f.clone(),
                    wide_literal,
                    tag: FieldName::new(&f.name).tag,
                    typing: Typing::of(f),
                    input,
                    column,
                    map_lc: f.map.as_ref().map(|m| {
                        m.iter()
                            .map(|(k, v)| (map_key(f.users, k), v.clone()))
                            .collect()
                    }),
                    dates: f.date.as_deref().map(DateFormats::new),
                    fallback,
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

fn render(parts: &[BoundPart], cells: Cells) -> String {
    let mut s = String::new();
    render_into(parts, cells, &mut s);
    s
}

/// [`render`] into `s` (cleared first): a key is rendered for every record of every row, and a
/// reused string spares an allocation each time.
fn render_into(parts: &[BoundPart], cells: Cells, s: &mut String) {
    s.clear();
    for p in parts {
        match p {
            BoundPart::Lit(l) => s.push_str(l),
            BoundPart::Column(i) => s.push_str(trim(cells.get(*i))),
            BoundPart::DateColumn(i, formats) => {
                let raw = trim(cells.get(*i));
                match spreadsheet_date_in(raw, formats) {
                    Some(t) => s.push_str(&t),
                    None => s.push_str(raw),
                }
            }
        }
    }
    // "{Фамилия} {Имя}" with an empty part must not leave stray spaces.
    if has_stray_space(s) {
        *s = s
            .split(' ')
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
    }
}

/// A space at either end or two in a row. Every key of every row is checked, and most are
/// short ids: the pairs of neighbouring bytes are compared eight at a time (a `memchr`
/// pre-check cost more than the whole check on a 10-byte key).
fn has_stray_space(s: &str) -> bool {
    let b = s.as_bytes();
    if b.first() == Some(&b' ') || b.last() == Some(&b' ') {
        return true;
    }
    const SPACES: u64 = u64::from_ne_bytes([b' '; 8]);
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let word = |at: usize| u64::from_ne_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    let mut at = 0;
    while at + 9 <= b.len() {
        // A zero byte where byte i and byte i+1 are both spaces; the test for "any zero
        // byte" is exact.
        let z = (word(at) ^ SPACES) | (word(at + 1) ^ SPACES);
        if z.wrapping_sub(ONES) & !z & HIGHS != 0 {
            return true;
        }
        at += 8;
    }
    b[at..].windows(2).any(|w| w == b"  ")
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
        self.map_row_inner(&row.view(), true).0
    }

    /// Map a row for checking only: records carry entity and key but no field values (nothing
    /// is built for them); instead each gets a [`Fingerprint`] (`prints[i]` is `records[i]`'s),
    /// equal to [`super::fingerprint()`] of the record `map_row` would build.
    pub fn map_row_fingerprinted(&self, row: &Row) -> (MappedRow, Vec<Fingerprint>) {
        self.map_view_fingerprinted(&row.view())
    }

    /// [`Mapper::map_row_fingerprinted`] of a borrowed row.
    pub fn map_view_fingerprinted(&self, row: &RowView) -> (MappedRow, Vec<Fingerprint>) {
        self.map_row_inner(row, false)
    }

    fn map_row_inner(&self, row: &RowView, build: bool) -> (MappedRow, Vec<Fingerprint>) {
        let mut parts = RowParts::default();
        self.map_parts(row, build, &mut parts);
        let RowParts {
            records,
            rejected,
            problems,
            prints,
            blank,
            ..
        } = parts;
        let out = MappedRow {
            pos: row.pos.clone(),
            records,
            rejected,
            problems,
            blank,
        };
        (out, prints)
    }

    /// Map a row into `out` (cleared first, its buffers kept): what [`MappedRow`] holds but
    /// where the row came from. `validate` reuses one per worker thread, so a row that maps
    /// cleanly leaves nothing to free on another thread.
    pub(super) fn map_parts(&self, row: &RowView, build: bool, out: &mut RowParts) {
        out.clear();
        if row.is_blank() {
            out.blank = true;
            return;
        }
        let cells = row.cells;
        let bad_cols = self.reader_issues(row, &mut out.problems);
        for be in &self.entities {
            if be.presence.iter().all(|&i| trim(cells.get(i)).is_empty()) {
                continue; // this row has no such record (e.g. a contact without activities)
            }
            let before = out.problems.len();
            let mut record = out.spare_record(be.entity);
            let mut problems = EntityProblems {
                entity: be.entity,
                list: &mut out.problems,
            };
            render_into(&be.key, cells, &mut record.key);
            if record.key.is_empty() {
                problems.push(
                    None,
                    None,
                    "",
                    format!("the key {} is empty", be.key_source),
                );
            }
            let mut sink = Sink::new(build, be.fields.len());
            for bf in &be.fields {
                map_field(
                    bf,
                    cells,
                    &out.records,
                    &out.rejected,
                    &mut sink,
                    &mut problems,
                );
            }
            let invalid = out.problems.len() > before
                || (!bad_cols.is_empty() && be.columns.iter().any(|c| bad_cols.contains(c)));
            if invalid {
                out.rejected.push(be.entity);
                out.spare.push(record);
                continue;
            }
            match sink.finish(be.entity, &record.key) {
                Finished::Print(print) => out.prints.push(print),
                Finished::Built(fields, refs) => {
                    record.fields = fields;
                    record.refs = refs;
                }
            }
            out.records.push(record);
        }
    }

    /// Reader-level issues become problems: a bad cell invalidates the records that read it
    /// (its column is answered), the rest warn.
    fn reader_issues(&self, row: &RowView, problems: &mut Vec<Problem>) -> Vec<usize> {
        let mut bad_cols: Vec<usize> = Vec::new();
        for issue in row.issues {
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
            problems.push(Problem {
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
        bad_cols
    }
}

/// The errors of one entity's record in a row.
struct EntityProblems<'a> {
    entity: Entity,
    list: &'a mut Vec<Problem>,
}

impl EntityProblems<'_> {
    fn push(&mut self, column: Option<String>, field: Option<&str>, value: &str, message: String) {
        self.list.push(Problem {
            entity: Some(self.entity),
            column,
            field: field.map(str::to_string),
            value: value.to_string(),
            message,
            severity: Severity::Error,
        });
    }
}

/// One field of a record: read (cell, expression or reference), transformed, mapped or
/// defaulted, checked, typed, and put into the sink — or a problem.
fn map_field(
    bf: &BoundField,
    cells: Cells,
    records: &[Record],
    rejected: &[Entity],
    sink: &mut Sink,
    problems: &mut EntityProblems,
) {
    let rule = &bf.rule;
    let field = Some(rule.name.as_str());
    let raw: Cow<str> = match &bf.input {
        BoundInput::Column(i) => Cow::Borrowed(cells.get(*i)),
        BoundInput::Expr(parts) => Cow::Owned(render(parts, cells)),
        BoundInput::Nothing => Cow::Borrowed(""),
        BoundInput::Ref(target) => match bf.fallback {
            // No such record in this row: the fallback column's CRM id, as a plain value.
            Some(i)
                if !records.iter().any(|r| r.entity == *target) && !rejected.contains(target) =>
            {
                Cow::Borrowed(cells.get(i))
            }
            _ => return reference(bf, *target, records, rejected, sink, problems),
        },
    };
    let mut err = |message: String| problems.push(bf.column.clone(), field, &raw, message);
    let mut v: Cow<str> = Cow::Borrowed(trim(&raw));
    for t in &rule.transforms {
        v = t.apply_cow(v);
    }
    let mut value: Option<Value> = None;
    if !v.is_empty() {
        if let (Some(map), Some(map_lc)) = (&rule.map, &bf.map_lc) {
            let lc = map_key(rule.users, &v);
            match map_lc.iter().find(|(k, _)| *k == lc) {
                Some((_, Value::String(login))) if rule.users && login.is_empty() => {
                    err(format!("owner has no CRM login in the template's [users] table yet: fill in \"{v}\" = \"login\""));
                    return;
                }
                Some((_, mapped)) => value = Some(mapped.clone()),
                None if rule.users => {
                    err(format!("owner is not in the template's [users] table: add \"{v}\" = \"login\" (a login from the CRM's user list)"));
                    return;
                }
                None => {
                    let keys: Vec<&str> = map.iter().map(|(k, _)| k.as_str()).collect();
                    err(format!("not one of the mapped values: {}", keys.join(", ")));
                    return;
                }
            }
        }
    }
    if v.is_empty() {
        match &rule.default {
            Some(d) => sink.value(bf.name(), d),
            None if rule.required => err("is required but empty".into()),
            // Sent as "": an update then clears the CRM's value (NOTES §11: "" is written).
            None if rule.clear_when_empty => sink.value(bf.name(), &Value::String(String::new())),
            None => {}
        }
        return;
    }
    if let Some(mapped) = value {
        sink.value(bf.name(), &mapped);
        return;
    }
    // Text that the server would reject or mangle (NOTES §8) is reported, not sent. Not looked
    // for where it cannot be: a single-byte file's cells hold none, and neither transforms nor
    // case mappings make one out of other characters (`rules` tests that).
    let may_hold = !cells.bmp_only() || bf.wide_literal;
    if let Some(c) = may_hold.then(|| first_4byte_char(&v)).flatten() {
        err(format!("contains the character '{c}' (emoji and other 4-byte characters are rejected by the CRM)"));
        return;
    }
    if failed_checks(&rule.checks, &v, &rule.name, &mut err) {
        return;
    }
    match typed_value(bf.typing, rule, bf.dates.as_ref(), &v) {
        Err(m) => err(m),
        Ok(Typed::Json(json)) => sink.value(bf.name(), &json),
        // A date's CRM text, written on the stack (every row of a date column comes here).
        Ok(Typed::Date(d)) => match d.crm_text(&mut [0; 19]) {
            Some(t) => sink.text(bf.name(), Cow::Borrowed(t)),
            None => sink.text(bf.name(), Cow::Owned(d.to_string())),
        },
        Ok(Typed::Text) => sink.text(bf.name(), v),
    }
}

/// A `map` key as looked up: trimmed, any case; an owner of `[users]` also with ё as е and
/// runs of spaces as one (a full name retyped by hand).
fn map_key(users: bool, k: &str) -> String {
    if users {
        crate::values::norm_text(k)
    } else {
        k.trim().to_lowercase()
    }
}

/// A reference to another record of the same row: its key when that record is valid; a problem
/// when it is invalid, or when the field is required and the row has no such record.
fn reference(
    bf: &BoundField,
    target: Entity,
    records: &[Record],
    rejected: &[Entity],
    sink: &mut Sink,
    problems: &mut EntityProblems,
) {
    let rule = &bf.rule;
    let field = Some(rule.name.as_str());
    // A template builds at most one record of each entity per row: valid, invalid or none.
    let valid = records.iter().find(|r| r.entity == target);
    match (valid, rejected.contains(&target)) {
        (Some(r), _) => sink.reference(bf.name(), target, &r.key),
        (None, true) => problems.push(
            None,
            field,
            "",
            format!("depends on this row's {target} record, which is invalid"),
        ),
        (None, false) if rule.required => problems.push(
            None,
            field,
            "",
            format!("this row has no {target} record to reference"),
        ),
        (None, false) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A single-byte file's cells are not scanned for 4-byte characters, but an expression's
    /// own literal text still is: the emoji a template adds is refused as one in a cell would be.
    #[test]
    fn an_emoji_from_the_template_is_refused_in_a_single_byte_files_row() {
        let t = Template::parse(
            std::path::Path::new("t.toml"),
            "[[entity]]\ntype=\"person\"\nkey=\"{ID}\"\n[entity.fields]\n\
             person={value=\"{N} 🎉\"}\nptitle=\"T\"\n",
        )
        .unwrap();
        let m = t
            .bind(&["ID".into(), "N".into(), "T".into()], "f.csv")
            .unwrap();
        let pos = SourcePos {
            file: "f.csv".into(),
            sheet: None,
            row: 2,
        };
        let text = "1ИванМенеджер";
        let ends = [1, 9, text.len()];
        let row = RowView {
            pos: &pos,
            cells: Cells::Packed {
                text,
                ends: &ends,
                width: 3,
                bmp_only: true,
            },
            issues: &[],
        };
        let (mapped, _) = m.map_view_fingerprinted(&row);
        assert_eq!(mapped.rejected, vec![Entity::Person]);
        assert!(
            mapped.problems[0].message.contains("'🎉'"),
            "{:?}",
            mapped.problems
        );
    }

    proptest::proptest! {
        #![proptest_config(crate::values::hostile::config())]

        /// The one-pass check agrees with the simple one it replaced, on text made mostly of
        /// spaces and a few other characters (so runs and ends of spaces are common).
        #[test]
        fn stray_spaces_are_found_as_before(s in "[ aЖ🎉\t]{0,40}") {
            let before = s.contains("  ") || s.starts_with(' ') || s.ends_with(' ');
            proptest::prop_assert_eq!(has_stray_space(&s), before);
        }

        /// The same on words with single spaces between them, a doubled one only now and then
        /// (an empty word), at any place of an eight-byte word.
        #[test]
        fn stray_spaces_in_longer_text_are_found_as_before(s in "([aЖ1]{0,12} ?){0,5}") {
            let before = s.contains("  ") || s.starts_with(' ') || s.ends_with(' ');
            proptest::prop_assert_eq!(has_stray_space(&s), before);
        }
    }

    #[test]
    fn stray_spaces_found_where_a_word_at_a_time_check_once_missed_them() {
        // Cases a broken eight-bytes-at-a-time comparison got wrong while it was written.
        assert!(has_stray_space("🎉🎉a Ж🎉\t "));
        assert!(!has_stray_space("a Жaaa a"));
        assert!(has_stray_space("a Жaaa  a"));
    }

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
}
