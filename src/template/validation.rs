//! The validation report: a summary (terminal / JSON), and XLSX/CSV files with a "Problems" sheet
//! (row, column, value, message, entity) and a "Rows" sheet (source rows + status). Written as the
//! rows stream by through the shared sinks of `report::table` (constant-memory XLSX, CSV), so the
//! report does not hold the file. Every source value is written as text: nothing a user typed can
//! become a formula in Excel.

use super::server::ServerFinding;
use super::{fingerprint, CheckedRow, Fingerprint, KeyConflicts, MappedRow, Problem, Severity};
use crate::crm::Entity;
use crate::report::{Cell, CsvOptions, CsvTable, ReportError, SheetId, XlsxBook};
use crate::source::{display, escape, Row};
use serde::Serialize;
use smallvec::SmallVec;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use std::path::{Path, PathBuf};

#[derive(Debug, Default, Clone, Serialize)]
pub struct EntityCounts {
    pub valid: u64,
    pub invalid: u64,
    /// Distinct keys among valid records: how many CRM records an import would make.
    pub distinct_keys: u64,
    /// Keys whose rows disagree on some field value (a warning per later row).
    pub conflicting_keys: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProblemCount {
    pub entity: Option<Entity>,
    pub column: Option<String>,
    pub message: String,
    pub count: u64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct ValidationSummary {
    pub file: String,
    pub template: String,
    pub source: String,
    pub rows_read: u64,
    pub blank_rows: u64,
    pub valid_rows: u64,
    pub invalid_rows: u64,
    pub warnings: u64,
    pub entities: BTreeMap<Entity, EntityCounts>,
    pub top_problems: Vec<ProblemCount>,
    pub template_warnings: Vec<String>,
    /// The CRM the template was checked against (`--url`), if any.
    pub server: Option<String>,
    /// Where template and CRM disagree (see `template::server`).
    pub server_findings: Vec<ServerFinding>,
}

/// Where a problem message was seen (entity, column) and how often.
type ProblemPlace = (Option<Entity>, Option<String>, u64);

/// Accumulates counts and detects same-key records with different values. Per distinct key only
/// a 16-byte fingerprint slot is kept (see `template::KeyConflicts`), never the records.
#[derive(Default)]
pub struct Tally {
    pub summary: ValidationSummary,
    keys: KeyConflicts,
    /// Counts by entity at `entity as usize` (the template's from the start), into the summary
    /// at the end: a look-up for every record of every row, on the one thread that counts (a
    /// map cost as much as the key table; a scan of the template's entities a third of that).
    counts: Vec<Option<(Entity, EntityCounts)>>,
    /// message → (entity, column, count)
    problem_counts: HashMap<String, Vec<ProblemPlace>>,
}

impl Tally {
    pub fn new(
        file: &str,
        template: &str,
        source: &str,
        entities: &[Entity],
        template_warnings: Vec<String>,
    ) -> Tally {
        let mut t = Tally::default();
        t.summary.file = file.to_string();
        t.summary.template = template.to_string();
        t.summary.source = source.to_string();
        t.summary.template_warnings = template_warnings;
        for e in entities {
            t.counts_of(*e);
        }
        t
    }

    /// The counts of `entity`.
    fn counts_of(&mut self, entity: Entity) -> &mut EntityCounts {
        let i = entity as usize;
        if i >= self.counts.len() {
            self.counts.resize(i + 1, None);
        }
        &mut self.counts[i]
            .get_or_insert_with(|| (entity, EntityCounts::default()))
            .1
    }

    /// Count a mapped row; adds conflict warnings to `m.problems`.
    pub fn add(&mut self, m: &mut MappedRow) {
        let prints: Vec<Fingerprint> = m.records.iter().map(fingerprint).collect();
        self.add_fingerprinted(m, &prints);
    }

    /// The file holds about `rows` rows: make room in the key table for their keys at once
    /// (each row gives at most one record, so one key, per entity of the template).
    pub fn expect_rows(&mut self, rows: u64) {
        // Past this the table grows step by step as before: the estimate is an upper bound
        // (a company on many rows is one key), and memory taken for keys that never come is
        // lost, so it is not taken beyond ~80 MB.
        const MOST: u64 = 4_000_000;
        let entities = self.counts.iter().flatten().count() as u64;
        let keys = rows.saturating_mul(entities).min(MOST);
        self.keys.reserve(keys as usize);
    }

    /// Start fetching the key slots of a row about to be added (see [`KeyConflicts::prefetch`]):
    /// call it with a later row's prints before adding the current one.
    pub fn prefetch(&self, prints: impl IntoIterator<Item = Fingerprint>) {
        for fp in prints {
            self.keys.prefetch(fp.key);
        }
    }

    /// [`Tally::add`] with the fingerprints already computed (`prints[i]` is `m.records[i]`'s).
    pub fn add_fingerprinted(&mut self, m: &mut MappedRow, prints: &[Fingerprint]) {
        self.summary.rows_read += 1;
        if m.blank {
            self.summary.blank_rows += 1;
            return;
        }
        for (r, fp) in m.records.iter().zip(prints) {
            if let Some(first) = self.count_record(r.entity, *fp, m.pos.row) {
                m.problems.push(conflict(r.entity, &r.key, first));
            }
        }
        self.count_problems(m);
    }

    /// A checked row (see [`super::check_row`]): a clean row is counted from its records alone;
    /// a row with problems, or one a conflict is found in, gets its mapping (built on demand,
    /// positioned in `file`) with the conflict warnings added.
    pub fn add_checked(&mut self, c: &mut CheckedRow, file: &Arc<str>) {
        if let Some(m) = c.mapped.as_deref_mut() {
            let prints: SmallVec<[Fingerprint; 4]> = c.records.iter().map(|r| r.print()).collect();
            self.add_fingerprinted(m, &prints);
            return;
        }
        self.summary.rows_read += 1;
        if c.blank {
            self.summary.blank_rows += 1;
            return;
        }
        let mut conflicts: SmallVec<[Problem; 1]> = SmallVec::new();
        for (i, r) in c.records.iter().enumerate() {
            if let Some(first) = self.count_record(r.entity, r.print(), c.row) {
                conflicts.push(conflict(r.entity, c.key(i), first));
            }
        }
        if conflicts.is_empty() {
            self.summary.valid_rows += 1;
            return;
        }
        let m = c.mapped_mut(file);
        m.problems.extend(conflicts);
        self.count_problems(m);
    }

    /// Count a valid record and remember its key: the first row of its key when an earlier
    /// row gave the key other values.
    fn count_record(&mut self, entity: Entity, fp: Fingerprint, row: u64) -> Option<u64> {
        let row = row.min(u64::from(u32::MAX));
        let seen = self
            .keys
            .get_or_insert(fp.key, (u64::from(fp.values) << 32) | row);
        let counts = self.counts_of(entity);
        counts.valid += 1;
        match seen {
            None => {
                counts.distinct_keys += 1;
                None
            }
            Some(v) if (v >> 32) as u32 != fp.values => {
                counts.conflicting_keys += 1;
                Some(v & 0xffff_ffff)
            }
            Some(_) => None,
        }
    }

    /// Count a row's invalid entities, its validity and its problems (grouped by message).
    fn count_problems(&mut self, m: &MappedRow) {
        for e in &m.rejected {
            self.counts_of(*e).invalid += 1;
        }
        let s = &mut self.summary;
        if m.is_valid() {
            s.valid_rows += 1;
        } else {
            s.invalid_rows += 1;
        }
        for p in &m.problems {
            if p.severity == Severity::Warning {
                s.warnings += 1;
            }
            // Conflict messages embed a row number: group them under one line.
            let msg = if p.message.starts_with("same key as row") {
                "same key as an earlier row but different values"
            } else {
                p.message.as_str()
            };
            // Look up before cloning: most problems repeat.
            let places = match self.problem_counts.get_mut(msg) {
                Some(v) => v,
                None => self.problem_counts.entry(msg.to_string()).or_default(),
            };
            match places
                .iter_mut()
                .find(|(e, c, _)| *e == p.entity && *c == p.column)
            {
                Some((_, _, n)) => *n += 1,
                None => places.push((p.entity, p.column.clone(), 1)),
            }
        }
    }

    pub fn finish(mut self, top: usize) -> ValidationSummary {
        self.summary
            .entities
            .extend(std::mem::take(&mut self.counts).into_iter().flatten());
        let mut v: Vec<ProblemCount> = self
            .problem_counts
            .into_iter()
            .flat_map(|(message, places)| {
                places
                    .into_iter()
                    .map(move |(entity, column, count)| ProblemCount {
                        entity,
                        column,
                        message: message.clone(),
                        count,
                    })
            })
            .collect();
        v.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.message.cmp(&b.message))
        });
        v.truncate(top);
        self.summary.top_problems = v;
        self.summary
    }
}

/// The warning for a record whose key an earlier row (`first`) gave other values.
fn conflict(entity: Entity, key: &str, first: u64) -> Problem {
    Problem {
        entity: Some(entity),
        column: None,
        field: None,
        value: key.to_string(),
        message: format!(
            "same key as row {first} but different values; one CRM record is made per key"
        ),
        severity: Severity::Warning,
    }
}

impl ValidationSummary {
    /// The human summary printed after a run.
    pub fn render(&self) -> String {
        let mut o = String::new();
        o.push_str(&format!(
            "File:     {} ({})\n",
            escape(&self.file),
            escape(&self.source)
        ));
        o.push_str(&format!("Template: {}\n", self.template));
        for w in &self.template_warnings {
            o.push_str(&format!("Template warning: {w}\n"));
        }
        o.push_str(&format!(
            "Rows: {} read, {} valid, {} invalid, {} blank (skipped); {} warnings\n",
            self.rows_read, self.valid_rows, self.invalid_rows, self.blank_rows, self.warnings
        ));
        for (e, c) in &self.entities {
            o.push_str(&format!(
                "  {:<8} {} valid ({} distinct keys), {} invalid{}\n",
                e.as_str(),
                c.valid,
                c.distinct_keys,
                c.invalid,
                if c.conflicting_keys > 0 {
                    format!(
                        ", {} rows conflict with an earlier row of the same key",
                        c.conflicting_keys
                    )
                } else {
                    String::new()
                }
            ));
        }
        if let Some(url) = &self.server {
            if self.server_findings.is_empty() {
                o.push_str(&format!(
                    "Checked against {url}: fields, types and owners all match\n"
                ));
            } else {
                o.push_str(&format!(
                    "Checked against {url}: {} problem(s) the server would not report (nothing was sent):\n",
                    self.server_findings.len()
                ));
                for f in &self.server_findings {
                    o.push_str(&format!("  {}\n", f.render(&self.template)));
                }
            }
        }
        if !self.top_problems.is_empty() {
            o.push_str("Most common problems:\n");
            for p in &self.top_problems {
                let ent = p.entity.map(|e| e.as_str()).unwrap_or("row");
                let col = p
                    .column
                    .as_deref()
                    .map(|c| format!(" column '{}'", display(c)))
                    .unwrap_or_default();
                o.push_str(&format!(
                    "  {:>7} × {ent}{col}: {}\n",
                    p.count,
                    escape(&p.message)
                ));
            }
        }
        o
    }
}

/// A row's status for the "Rows" sheet.
pub fn row_status(m: &MappedRow) -> &'static str {
    if m.blank {
        "blank"
    } else if !m.is_valid() {
        if m.records.is_empty() {
            "invalid"
        } else {
            "partly invalid"
        }
    } else if m.problems.is_empty() {
        "valid"
    } else {
        "valid (warnings)"
    }
}

// Excel's limit: a sheet holds 1,048,576 rows (the header is one of them).
const SHEET_ROWS: u64 = 1_048_575;

const PROBLEM_HEADERS: [&str; 8] = [
    "File", "Sheet", "Row", "Column", "Value", "Message", "Entity", "Severity",
];
const SERVER_HEADERS: [&str; 5] = ["Entity", "Field", "Template line", "Problem", "Fix"];

fn strings(h: &[&str]) -> Vec<String> {
    h.iter().map(|s| s.to_string()).collect()
}

/// `out.csv` → `out.rows.csv`: the rows table next to the problems table.
pub fn rows_csv_path(p: &Path) -> PathBuf {
    let stem = p
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    p.with_file_name(format!("{stem}.rows.csv"))
}

/// `out.csv` → `out.crm.csv`: the template-vs-CRM findings (`validate --url`).
pub fn server_csv_path(p: &Path) -> PathBuf {
    let stem = p
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    p.with_file_name(format!("{stem}.crm.csv"))
}

fn create_dir_for(p: &Path) -> Result<(), ReportError> {
    match p.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => std::fs::create_dir_all(dir).map_err(|e| ReportError::io(dir, e)),
        None => Ok(()),
    }
}

/// Writes the report files while rows stream by, through the shared table sinks
/// ([`XlsxBook`] in constant-memory mode, [`CsvTable`]): nothing is held per row.
pub struct ReportWriter {
    xlsx: Option<(XlsxBook, SheetId, SheetId)>,
    csv: Option<(PathBuf, CsvTable, CsvTable)>,
}

impl ReportWriter {
    pub fn new(
        xlsx: Option<&Path>,
        csv_path: Option<&Path>,
        headers: &[String],
    ) -> Result<ReportWriter, ReportError> {
        let mut rows_header: Vec<String> = strings(&["Row", "Status", "Problems"]);
        rows_header.extend(headers.iter().cloned());
        let xlsx = match xlsx {
            None => None,
            Some(p) => {
                let mut book = XlsxBook::create(p);
                let problems = book.add_sheet("Problems", &PROBLEM_HEADERS)?;
                let rows = book.add_sheet("Rows", &rows_header)?;
                Some((book, problems, rows))
            }
        };
        let csv = match csv_path {
            None => None,
            Some(p) => {
                create_dir_for(p)?;
                // UTF-8 with BOM and ';': Excel opens it with the right encoding on a double click.
                let problems =
                    CsvTable::create(p, &strings(&PROBLEM_HEADERS), CsvOptions::default())?;
                let rows =
                    CsvTable::create(&rows_csv_path(p), &rows_header, CsvOptions::default())?;
                Some((p.to_path_buf(), problems, rows))
            }
        };
        Ok(ReportWriter { xlsx, csv })
    }

    pub fn is_active(&self) -> bool {
        self.xlsx.is_some() || self.csv.is_some()
    }

    pub fn add(&mut self, row: &Row, m: &MappedRow) -> Result<(), ReportError> {
        if m.blank {
            return Ok(());
        }
        let sheet = m.pos.sheet.as_deref().unwrap_or("");
        let summary: String = m
            .problems
            .iter()
            .map(|p| match &p.column {
                Some(c) => format!("{c}: {}", p.message),
                None => p.message.clone(),
            })
            .collect::<Vec<_>>()
            .join("; ");
        let problem_cells = |p: &Problem| -> [Cell; 8] {
            let text = |s: &str| {
                if s.is_empty() {
                    Cell::Empty
                } else {
                    Cell::text(s)
                }
            };
            [
                Cell::text(&*m.pos.file),
                text(sheet),
                Cell::Int(m.pos.row as i64),
                text(p.column.as_deref().unwrap_or("")),
                text(&p.value),
                Cell::text(&p.message),
                text(p.entity.map(|e| e.as_str()).unwrap_or("")),
                Cell::text(match p.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                }),
            ]
        };
        let mut row_cells = Vec::with_capacity(3 + row.cells.len());
        row_cells.push(Cell::Int(m.pos.row as i64));
        row_cells.push(Cell::text(row_status(m)));
        row_cells.push(if summary.is_empty() {
            Cell::Empty
        } else {
            Cell::Text(summary)
        });
        row_cells.extend(row.cells.iter().map(|c| {
            if c.is_empty() {
                Cell::Empty
            } else {
                Cell::text(c.as_str())
            }
        }));
        if let Some((book, problems, rows)) = &mut self.xlsx {
            for p in &m.problems {
                if book.rows(*problems) < SHEET_ROWS {
                    book.write_row(*problems, &problem_cells(p))?;
                }
            }
            if book.rows(*rows) < SHEET_ROWS {
                book.write_row(*rows, &row_cells)?;
            }
        }
        if let Some((_, problems, rows)) = &mut self.csv {
            for p in &m.problems {
                problems.write_row(&problem_cells(p))?;
            }
            rows.write_row(&row_cells)?;
        }
        Ok(())
    }

    /// Close the files; `findings` (from `validate --url`) get a sheet "CRM check" (and
    /// `NAME.crm.csv`) when there are any.
    pub fn finish(self, template: &str, findings: &[ServerFinding]) -> Result<(), ReportError> {
        let finding_cells = |f: &ServerFinding| -> Vec<Cell> {
            vec![
                Cell::text(f.entity.as_str()),
                Cell::text(&f.field),
                match f.line {
                    Some(l) => Cell::Int(l as i64),
                    None => Cell::text(template),
                },
                Cell::text(&f.problem),
                Cell::text(&f.fix),
            ]
        };
        if let Some((mut book, _, _)) = self.xlsx {
            if !findings.is_empty() {
                let s = book.add_sheet("CRM check", &SERVER_HEADERS)?;
                for f in findings {
                    book.write_row(s, &finding_cells(f))?;
                }
            }
            book.close()?;
        }
        if let Some((path, problems, rows)) = self.csv {
            problems.finish()?;
            rows.finish()?;
            if !findings.is_empty() {
                let mut t = CsvTable::create(
                    &server_csv_path(&path),
                    &strings(&SERVER_HEADERS),
                    CsvOptions::default(),
                )?;
                for f in findings {
                    t.write_row(&finding_cells(f))?;
                }
                t.finish()?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{Row, SourcePos};
    use crate::template::Template;
    use std::sync::Arc;

    fn row(n: u64, cells: &[&str]) -> Row {
        Row {
            pos: SourcePos {
                file: Arc::from("f.csv"),
                sheet: None,
                row: n,
            },
            cells: cells.iter().map(|c| c.to_string()).collect(),
            issues: vec![],
        }
    }

    #[test]
    fn fingerprints_match_built_records_and_find_conflicts() {
        let t = Template::parse(
            Path::new("t.toml"),
            "[[entity]]\ntype=\"client\"\nkey=\"{C}\"\n[entity.fields]\ntitle=\"C\"\n\
             [[entity]]\ntype=\"person\"\nkey=\"{ID}\"\n[entity.fields]\nperson=\"N\"\n\
             loyalty={column=\"L\", map={\"a\"=3}, default=0}\nclid={ref=\"client\"}\n",
        )
        .unwrap();
        let m = t
            .bind(&["ID".into(), "N".into(), "C".into(), "L".into()], "f.csv")
            .unwrap();
        let rows = [
            row(2, &["1", "Ivan", "X", "a"]),
            row(3, &["1", "Ivan", "X", "a"]),
            row(4, &["1", "Ivan", "Y", ""]),
            row(5, &["2", "Petr", "X", ""]),
        ];
        let mut slow = Tally::new("f", "t", "s", &m.entities(), vec![]);
        let mut fast = Tally::new("f", "t", "s", &m.entities(), vec![]);
        let mut checked = Tally::new("f", "t", "s", &m.entities(), vec![]);
        let file: Arc<str> = Arc::from("f.csv");
        for r in &rows {
            let (mut a, prints) = m.map_row_fingerprinted(r);
            let mut b = m.map_row(r);
            let built: Vec<Fingerprint> = b.records.iter().map(fingerprint).collect();
            assert_eq!(prints, built, "row {}", r.pos.row);
            fast.add_fingerprinted(&mut a, &prints);
            slow.add(&mut b);
            assert_eq!(a.problems, b.problems);
            // validate's path: a clean row crosses threads without its mapping, which is
            // built (with the row's position and its keys) only when a conflict is found.
            let mut c = crate::template::check_row(&m, &r.view(), false, &[]);
            checked.add_checked(&mut c, &file);
            match c.mapped.as_deref() {
                Some(cm) => {
                    assert_eq!(cm.problems, b.problems, "row {}", r.pos.row);
                    assert_eq!(cm.pos, r.pos);
                }
                None => assert!(b.problems.is_empty(), "row {}", r.pos.row),
            }
        }
        let c = checked.finish(5);
        assert_eq!(c.warnings, 1);
        assert_eq!(c.entities[&Entity::Person].conflicting_keys, 1);
        let (f, s) = (fast.finish(5), slow.finish(5));
        let p = &f.entities[&Entity::Person];
        assert_eq!((p.valid, p.distinct_keys, p.conflicting_keys), (4, 2, 1));
        assert_eq!(f.entities[&Entity::Client].distinct_keys, 2);
        assert_eq!(f.warnings, 1);
        assert_eq!(s.warnings, 1);
    }
}
