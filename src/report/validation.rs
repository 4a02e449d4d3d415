//! The validation report: a summary (terminal / JSON), and XLSX/CSV files with a "Problems" sheet
//! (row, column, value, message, entity) and a "Rows" sheet (source rows + status). Written as the
//! rows stream by (rust_xlsxwriter's constant-memory mode), so the report does not hold the file.
//! Every cell is written as text: nothing a user typed can become a formula in Excel.

use super::ReportError;
use crate::crm::Entity;
use crate::source::Row;
use crate::template::{MappedRow, Problem, Severity};
use rust_xlsxwriter::{Format, Workbook};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
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
}

fn hash_of<T: Hash>(t: &T) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    t.hash(&mut h);
    h.finish()
}

/// Accumulates counts and detects same-key records with different values. Only 64-bit hashes
/// are kept per key (≈ 30 bytes each), so a million distinct keys cost ~30 MB, not the records.
#[derive(Default)]
pub struct Tally {
    pub summary: ValidationSummary,
    /// (entity, key hash) → (fields hash, first row)
    keys: HashMap<(Entity, u64), (u64, u64)>,
    problem_counts: HashMap<(Option<Entity>, Option<String>, String), u64>,
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
            t.summary.entities.insert(*e, EntityCounts::default());
        }
        t
    }

    /// Count a mapped row; adds conflict warnings to `m.problems`.
    pub fn add(&mut self, m: &mut MappedRow) {
        let s = &mut self.summary;
        s.rows_read += 1;
        if m.blank {
            s.blank_rows += 1;
            return;
        }
        for r in &m.records {
            let fields = serde_json::to_string(&r.fields).unwrap_or_default();
            let refs: Vec<(&str, &str)> = r
                .refs
                .iter()
                .map(|x| (x.field.as_str(), x.key.as_str()))
                .collect();
            let fh = hash_of(&(fields, refs));
            let counts = s.entities.entry(r.entity).or_default();
            counts.valid += 1;
            match self.keys.get(&(r.entity, hash_of(&r.key))) {
                None => {
                    counts.distinct_keys += 1;
                    self.keys
                        .insert((r.entity, hash_of(&r.key)), (fh, m.pos.row));
                }
                Some((h, first)) if *h != fh => {
                    counts.conflicting_keys += 1;
                    m.problems.push(Problem {
                        entity: Some(r.entity),
                        column: None,
                        field: None,
                        value: r.key.clone(),
                        message: format!("same key as row {first} but different values; one CRM record is made per key"),
                        severity: Severity::Warning,
                    });
                }
                Some(_) => {}
            }
        }
        for e in &m.rejected {
            s.entities.entry(*e).or_default().invalid += 1;
        }
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
                "same key as an earlier row but different values".to_string()
            } else {
                p.message.clone()
            };
            *self
                .problem_counts
                .entry((p.entity, p.column.clone(), msg))
                .or_default() += 1;
        }
    }

    pub fn finish(mut self, top: usize) -> ValidationSummary {
        let mut v: Vec<ProblemCount> = self
            .problem_counts
            .into_iter()
            .map(|((entity, column, message), count)| ProblemCount {
                entity,
                column,
                message,
                count,
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

impl ValidationSummary {
    /// The human summary printed after a run.
    pub fn render(&self) -> String {
        let mut o = String::new();
        o.push_str(&format!("File:     {} ({})\n", self.file, self.source));
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
        if !self.top_problems.is_empty() {
            o.push_str("Most common problems:\n");
            for p in &self.top_problems {
                let ent = p.entity.map(|e| e.as_str()).unwrap_or("row");
                let col = p
                    .column
                    .as_deref()
                    .map(|c| format!(" column '{c}'"))
                    .unwrap_or_default();
                o.push_str(&format!("  {:>7} × {ent}{col}: {}\n", p.count, p.message));
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

fn problem_line(p: &Problem) -> String {
    p.message.clone()
}

// Excel limits: a cell holds 32,767 characters, a sheet 1,048,576 rows.
const CELL_MAX: usize = 32_767;
const SHEET_ROWS: u32 = 1_048_576;

fn clip(s: &str) -> &str {
    match s.char_indices().nth(CELL_MAX) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Writes the report files while rows stream by.
pub struct ReportWriter {
    xlsx: Option<(PathBuf, Workbook, u32, u32, usize)>,
    csv: Option<(
        PathBuf,
        csv::Writer<std::fs::File>,
        csv::Writer<std::fs::File>,
    )>,
}

const PROBLEM_HEADERS: [&str; 8] = [
    "File", "Sheet", "Row", "Column", "Value", "Message", "Entity", "Severity",
];

fn werr(path: &Path, e: impl std::fmt::Display) -> ReportError {
    ReportError::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// `out.csv` → `out.rows.csv`: the rows table next to the problems table.
pub fn rows_csv_path(p: &Path) -> PathBuf {
    let stem = p
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    p.with_file_name(format!("{stem}.rows.csv"))
}

impl ReportWriter {
    pub fn new(
        xlsx: Option<&Path>,
        csv_path: Option<&Path>,
        headers: &[String],
    ) -> Result<ReportWriter, ReportError> {
        let mut rows_header: Vec<String> = vec!["Row".into(), "Status".into(), "Problems".into()];
        rows_header.extend(headers.iter().cloned());
        let xlsx = match xlsx {
            None => None,
            Some(p) => {
                let mut wb = Workbook::new();
                let bold = Format::new().set_bold();
                let e = |e| werr(p, e);
                let ws = wb.add_worksheet_with_constant_memory();
                ws.set_name("Problems").map_err(e)?;
                for (i, h) in PROBLEM_HEADERS.iter().enumerate() {
                    ws.write_string_with_format(0, i as u16, *h, &bold)
                        .map_err(e)?;
                }
                ws.set_freeze_panes(1, 0).map_err(e)?;
                ws.set_column_width(5, 60).map_err(e)?;
                let ws = wb.add_worksheet_with_constant_memory();
                ws.set_name("Rows").map_err(e)?;
                for (i, h) in rows_header.iter().enumerate() {
                    ws.write_string_with_format(0, i as u16, clip(h), &bold)
                        .map_err(e)?;
                }
                ws.set_freeze_panes(1, 0).map_err(e)?;
                Some((p.to_path_buf(), wb, 1, 1, rows_header.len()))
            }
        };
        let csv = match csv_path {
            None => None,
            Some(p) => {
                let open = |p: &Path| -> Result<csv::Writer<std::fs::File>, ReportError> {
                    if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                        std::fs::create_dir_all(dir).map_err(|e| werr(p, e))?;
                    }
                    let mut f = std::fs::File::create(p).map_err(|e| werr(p, e))?;
                    // UTF-8 BOM: Excel opens the CSV with the right encoding on a double click.
                    std::io::Write::write_all(&mut f, b"\xEF\xBB\xBF").map_err(|e| werr(p, e))?;
                    Ok(csv::WriterBuilder::new().delimiter(b';').from_writer(f))
                };
                let mut problems = open(p)?;
                problems
                    .write_record(PROBLEM_HEADERS)
                    .map_err(|e| werr(p, e))?;
                let rp = rows_csv_path(p);
                let mut rows = open(&rp)?;
                rows.write_record(&rows_header).map_err(|e| werr(&rp, e))?;
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
        let rownum = m.pos.row.to_string();
        let status = row_status(m);
        let summary: String = m
            .problems
            .iter()
            .map(|p| {
                let col = p
                    .column
                    .as_deref()
                    .map(|c| format!("{c}: "))
                    .unwrap_or_default();
                format!("{col}{}", problem_line(p))
            })
            .collect::<Vec<_>>()
            .join("; ");
        let prob_fields = |p: &Problem| -> [String; 8] {
            [
                m.pos.file.to_string(),
                sheet.to_string(),
                rownum.clone(),
                p.column.clone().unwrap_or_default(),
                p.value.clone(),
                p.message.clone(),
                p.entity.map(|e| e.to_string()).unwrap_or_default(),
                match p.severity {
                    Severity::Error => "error".into(),
                    Severity::Warning => "warning".into(),
                },
            ]
        };
        if let Some((path, wb, prow, rrow, _)) = &mut self.xlsx {
            let e = |e| werr(path, e);
            let ws = wb.worksheet_from_index(0).map_err(e)?;
            for p in &m.problems {
                if *prow >= SHEET_ROWS {
                    break;
                }
                for (i, v) in prob_fields(p).iter().enumerate() {
                    if i == 2 {
                        ws.write_number(*prow, 2, m.pos.row as f64).map_err(e)?;
                    } else if !v.is_empty() {
                        ws.write_string(*prow, i as u16, clip(v)).map_err(e)?;
                    }
                }
                *prow += 1;
            }
            if *rrow < SHEET_ROWS {
                let ws = wb.worksheet_from_index(1).map_err(e)?;
                ws.write_number(*rrow, 0, m.pos.row as f64).map_err(e)?;
                ws.write_string(*rrow, 1, status).map_err(e)?;
                if !summary.is_empty() {
                    ws.write_string(*rrow, 2, clip(&summary)).map_err(e)?;
                }
                for (i, c) in row.cells.iter().enumerate() {
                    if !c.is_empty() {
                        ws.write_string(*rrow, 3 + i as u16, clip(c)).map_err(e)?;
                    }
                }
                *rrow += 1;
            }
        }
        if let Some((path, problems, rows)) = &mut self.csv {
            for p in &m.problems {
                problems
                    .write_record(prob_fields(p))
                    .map_err(|e| werr(path, e))?;
            }
            let mut rec: Vec<&str> = vec![&rownum, status, &summary];
            rec.extend(row.cells.iter().map(String::as_str));
            rows.write_record(rec).map_err(|e| werr(path, e))?;
        }
        Ok(())
    }

    pub fn finish(self) -> Result<(), ReportError> {
        if let Some((path, mut wb, prow, rrow, width)) = self.xlsx {
            let e = |e| werr(&path, e);
            let ws = wb.worksheet_from_index(0).map_err(e)?;
            ws.autofilter(
                0,
                0,
                prow.saturating_sub(1).max(1),
                PROBLEM_HEADERS.len() as u16 - 1,
            )
            .map_err(e)?;
            let ws = wb.worksheet_from_index(1).map_err(e)?;
            ws.autofilter(0, 0, rrow.saturating_sub(1).max(1), width as u16 - 1)
                .map_err(e)?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|x| werr(&path, x))?;
            }
            wb.save(&path).map_err(e)?;
        }
        if let Some((path, mut problems, mut rows)) = self.csv {
            problems.flush().map_err(|e| werr(&path, e))?;
            rows.flush().map_err(|e| werr(&path, e))?;
        }
        Ok(())
    }
}
