//! The import report: one line per source row with its outcome, the CRM ids of its records and
//! the error (entity, field, value, message), as XLSX and/or CSV; and reading such a report back
//! for `import --only-failed`.

use super::summary::{add_summary_sheet, SummaryTable};
use super::{Cell, CsvOptions, CsvTable, ReportError, SheetId, XlsxBook};
use crate::crm::Entity;
use crate::source::escape;
use crate::upload::{EntityCounts, Entry, Plan, PlannedRow, RowSkip, State};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

pub const HEADERS: [&str; 13] = [
    "file", "sheet", "row", "outcome", "client", "person", "deal", "task", "history", "entity",
    "field", "value", "error",
];

/// What happened to one source row: exactly one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every record of the row is in the CRM, at least one created (by this run or an earlier one).
    Created,
    /// Every record of the row was already in the CRM.
    Existing,
    /// Some records are in the CRM; others of the row are invalid and were not sent.
    Partial,
    /// Every record of the row is invalid: nothing sent.
    Invalid,
    /// A record of the row was refused by the CRM (or a record it references was).
    Failed,
    /// A record was sent but its answer was lost and could not be checked yet.
    Unresolved,
    /// The run stopped before the row's records were sent.
    NotSent,
    /// Nothing in the row.
    Blank,
    /// Not selected by `--only-failed`.
    Skipped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Existing => "existing",
            Outcome::Partial => "partial",
            Outcome::Invalid => "invalid",
            Outcome::Failed => "failed",
            Outcome::Unresolved => "unresolved",
            Outcome::NotSent => "not_sent",
            Outcome::Blank => "blank",
            Outcome::Skipped => "skipped",
        }
    }

    /// Nothing more to do for this row: `--only-failed` leaves these rows out.
    pub fn is_success(s: &str) -> bool {
        matches!(s, "created" | "existing" | "blank" | "skipped")
    }

    /// The row is all there: the run's exit code stays 0 for these.
    pub fn is_clean(self) -> bool {
        matches!(
            self,
            Outcome::Created | Outcome::Existing | Outcome::Blank | Outcome::Skipped
        )
    }
}

/// One report line.
#[derive(Debug, Clone)]
pub struct RowLine {
    pub file: String,
    pub sheet: Option<String>,
    pub row: u64,
    pub outcome: Outcome,
    /// CRM ids in the order client, person, deal, task, history.
    pub ids: [Option<i64>; 5],
    pub entity: Option<String>,
    pub field: Option<String>,
    pub value: Option<String>,
    pub error: Option<String>,
}

pub struct ImportReport {
    xlsx: Option<(XlsxBook, SheetId)>,
    csv: Option<CsvTable>,
}

impl ImportReport {
    /// The XLSX opens with `summary` (counts per entity and a chart), then one line per row.
    pub fn create(
        xlsx: Option<&Path>,
        csv: Option<&Path>,
        summary: &SummaryTable,
    ) -> Result<ImportReport, ReportError> {
        let headers: Vec<String> = HEADERS.iter().map(|s| s.to_string()).collect();
        let xlsx = match xlsx {
            Some(p) => {
                if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| ReportError::io(p, e))?;
                }
                let mut book = XlsxBook::create(p);
                add_summary_sheet(&mut book, summary)?;
                let sheet = book.add_sheet("Rows", &headers)?;
                Some((book, sheet))
            }
            None => None,
        };
        let csv = match csv {
            Some(p) => {
                if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| ReportError::io(p, e))?;
                }
                Some(CsvTable::create(p, &headers, CsvOptions::default())?)
            }
            None => None,
        };
        Ok(ImportReport { xlsx, csv })
    }

    pub fn write(&mut self, line: &RowLine) -> Result<(), ReportError> {
        let opt = |s: &Option<String>| s.clone().map_or(Cell::Empty, Cell::Text);
        let mut cells = vec![
            Cell::text(line.file.clone()),
            opt(&line.sheet),
            Cell::Int(line.row as i64),
            match line.outcome {
                Outcome::Failed | Outcome::Invalid => Cell::Flagged(line.outcome.as_str().into()),
                o => Cell::text(o.as_str()),
            },
        ];
        cells.extend(line.ids.iter().map(|i| i.map_or(Cell::Empty, Cell::Int)));
        cells.extend([
            opt(&line.entity),
            opt(&line.field),
            opt(&line.value),
            opt(&line.error),
        ]);
        if let Some((book, sheet)) = &mut self.xlsx {
            book.write_row(*sheet, &cells)?;
        }
        if let Some(csv) = &mut self.csv {
            csv.write_row(&cells)?;
        }
        Ok(())
    }

    pub fn finish(self) -> Result<(), ReportError> {
        if let Some((book, _)) = self.xlsx {
            book.close()?;
        }
        if let Some(csv) = self.csv {
            csv.finish()?;
        }
        Ok(())
    }
}

/// One entity's counts, as the summary table and `--json` show them. Rows: `read` = `valid` +
/// `invalid` (rows holding a record of this entity — the figures `validate` prints). Records
/// (distinct keys of the valid rows): `records` = created + existing + earlier + failed +
/// unresolved + not_sent.
#[derive(Debug, Default, Serialize)]
pub struct EntitySummary {
    pub read: u64,
    pub valid: u64,
    pub invalid: u64,
    #[serde(flatten)]
    pub counts: EntityCounts,
}

/// A whole run, as the terminal summary and `--json` show it.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub file: String,
    pub target: String,
    /// Nothing was sent: the counts say what a run would do.
    pub dry_run: bool,
    pub rows: u64,
    pub rows_by_outcome: BTreeMap<&'static str, u64>,
    pub entities: BTreeMap<Entity, EntitySummary>,
    pub report: Option<String>,
    pub csv_report: Option<String>,
    pub journal: Option<String>,
    pub interrupted: bool,
    /// Why the run stopped early (a fatal error), if it did.
    pub stopped: Option<String>,
    pub seconds: f64,
}

impl Summary {
    /// Every row is all there (or, in a dry run, would be sent whole).
    pub fn is_clean(&self) -> bool {
        self.rows_by_outcome
            .keys()
            .all(|o| matches!(*o, "created" | "existing" | "blank" | "skipped"))
    }

    /// Every row has exactly one outcome and every entity's figures add up; otherwise the run
    /// is an internal error, never a success.
    pub fn check_adds_up(&self) -> Result<(), crate::Error> {
        let outcomes: u64 = self.rows_by_outcome.values().sum();
        if outcomes != self.rows {
            return Err(crate::Error::Internal(format!(
                "{} rows read but {outcomes} row outcomes counted",
                self.rows
            )));
        }
        for (e, c) in &self.entities {
            if c.read != c.valid + c.invalid || !c.counts.adds_up() {
                return Err(crate::Error::Internal(format!(
                    "the {e} figures do not add up: {c:?}"
                )));
            }
        }
        Ok(())
    }
}

/// Invalid rows printed before the upload starts; the report lists every one.
pub const INVALID_ROWS_SHOWN: usize = 10;

pub fn print_invalid_rows(rows: &[PlannedRow], at_most: usize) {
    let invalid: Vec<_> = rows
        .iter()
        .filter_map(|r| r.invalid.as_ref().map(|p| (r, p)))
        .collect();
    for (r, p) in invalid.iter().take(at_most) {
        let held: Vec<&str> = r.rejected.iter().map(|e| e.as_str()).collect();
        let sent = if r.records.is_empty() {
            "nothing of this row is sent".to_string()
        } else {
            format!("not sent: {}; the row's other records are", held.join(", "))
        };
        eprintln!("{}: {} ({sent})", r.pos, escape(&p.message));
    }
    if invalid.len() > at_most {
        eprintln!(
            "… and {} more invalid rows (see the report)",
            invalid.len() - at_most
        );
    }
}

pub fn summary_table(entities: &BTreeMap<Entity, EntitySummary>) -> SummaryTable {
    SummaryTable {
        chart_title: "Import by entity".into(),
        columns: [
            "entity",
            "rows",
            "invalid rows",
            "records",
            "created",
            "existing",
            "earlier run",
            "failed",
            "unresolved",
            "not sent",
            "ambiguous resolved",
        ]
        .map(String::from)
        .to_vec(),
        rows: entities
            .iter()
            .map(|(e, s)| {
                let c = &s.counts;
                (
                    e.to_string(),
                    vec![
                        s.read,
                        s.invalid,
                        c.records,
                        c.created,
                        c.existing,
                        c.earlier,
                        c.failed,
                        c.unresolved,
                        c.not_sent,
                        c.ambiguous_resolved,
                    ],
                )
            })
            .collect(),
        charted: vec![3, 4, 5, 6, 7],
    }
}

/// One source row's outcome after a run, from the journal's states of its records.
pub fn row_line(
    r: &PlannedRow,
    plan: &Plan,
    state_of: &dyn Fn(Entity, &str) -> Option<Entry>,
) -> RowLine {
    let mut line = RowLine {
        file: r.pos.file.to_string(),
        sheet: r.pos.sheet.as_ref().map(|s| s.to_string()),
        row: r.pos.row,
        outcome: Outcome::Skipped,
        ids: [None; 5],
        entity: None,
        field: None,
        value: None,
        error: None,
    };
    match r.skip {
        Some(RowSkip::Blank) => {
            line.outcome = Outcome::Blank;
            return line;
        }
        Some(RowSkip::NotSelected) => {
            line.outcome = Outcome::Skipped;
            return line;
        }
        None => {}
    }
    if let Some(p) = &r.invalid {
        line.entity = p.entity.map(|e| e.to_string());
        line.field = p.field.clone();
        line.value = (!p.value.is_empty()).then(|| p.value.clone());
        line.error = Some(p.message.clone());
    }
    let (mut created, mut existing, mut failed, mut unresolved, mut not_sent) = (0, 0, 0, 0, 0);
    // A record's trouble replaces the invalid-part message: it is what needs acting on first.
    let mut trouble: Option<(Entity, String, String)> = None;
    for &i in &r.records {
        let rec = plan.get(i);
        let slot = Entity::ALL
            .iter()
            .position(|e| *e == rec.entity)
            .unwrap_or(0);
        let entry = state_of(rec.entity, &rec.key);
        let entry = entry.as_ref();
        let state = entry.map(|e| e.state);
        let why = |default: &str| {
            entry
                .and_then(|e| e.error.clone())
                .unwrap_or_else(|| default.to_string())
        };
        match state {
            Some(State::Created) => {
                line.ids[slot] = entry.and_then(|e| e.crm_id);
                created += 1;
            }
            Some(State::Existing) => {
                line.ids[slot] = entry.and_then(|e| e.crm_id);
                existing += 1;
            }
            Some(State::Failed) => {
                failed += 1;
                trouble.get_or_insert((rec.entity, rec.key.clone(), why("refused by the CRM")));
            }
            Some(State::Sent) | Some(State::Ambiguous) => {
                unresolved += 1;
                trouble.get_or_insert((
                    rec.entity,
                    rec.key.clone(),
                    why("sent, but the answer was lost; run again to check it"),
                ));
            }
            Some(State::Pending) | None => {
                not_sent += 1;
                trouble.get_or_insert((
                    rec.entity,
                    rec.key.clone(),
                    why("not sent: the run stopped first"),
                ));
            }
        }
    }
    if let Some((entity, key, error)) = trouble {
        line.entity = Some(entity.to_string());
        line.field = None;
        line.value = Some(key);
        line.error = Some(error);
    }
    line.outcome = if failed > 0 {
        Outcome::Failed
    } else if unresolved > 0 {
        Outcome::Unresolved
    } else if not_sent > 0 {
        Outcome::NotSent
    } else if r.invalid.is_some() {
        if created + existing > 0 {
            Outcome::Partial
        } else {
            Outcome::Invalid
        }
    } else if created > 0 {
        Outcome::Created
    } else {
        Outcome::Existing
    };
    line
}

pub fn print_summary(s: &Summary) {
    println!(
        "{:<9} {:>7} {:>8} {:>8} {:>8} {:>9} {:>8} {:>7} {:>10} {:>9}",
        "entity",
        "rows",
        "invalid",
        "records",
        "created",
        "existing",
        "earlier",
        "failed",
        "unresolved",
        "not sent"
    );
    for (e, c) in &s.entities {
        let n = &c.counts;
        println!(
            "{:<9} {:>7} {:>8} {:>8} {:>8} {:>9} {:>8} {:>7} {:>10} {:>9}",
            e.as_str(),
            c.read,
            c.invalid,
            n.records,
            n.created,
            n.existing,
            n.earlier,
            n.failed,
            n.unresolved,
            n.not_sent
        );
    }
    let outcomes: Vec<String> = s
        .rows_by_outcome
        .iter()
        .map(|(k, v)| format!("{v} {}", k.replace('_', " ")))
        .collect();
    println!(
        "{} rows: {} ({:.1} s) → {}",
        s.rows,
        outcomes.join(", "),
        s.seconds,
        s.target
    );
    let resolved: u64 = s
        .entities
        .values()
        .map(|c| c.counts.ambiguous_resolved)
        .sum();
    if resolved > 0 {
        println!(
            "{resolved} records whose answer was lost were found in the CRM and not sent again"
        );
    }
    if let Some(r) = &s.report {
        println!("report: {r}");
    }
    if let Some(r) = &s.csv_report {
        println!("csv report: {r}");
    }
    if let Some(j) = &s.journal {
        println!("journal: {j}");
    }
    if s.dry_run {
        println!("dry run: nothing was sent; 'created' counts what a run would create");
    }
    if s.stopped.is_some() {
        println!("stopped early (the reason is above): the report lists what was not sent; run the same command again to continue");
    } else if s.entities.values().any(|c| c.counts.unresolved > 0) {
        println!("some records' answers were lost and could not be checked: run the same command again to resolve them");
    }
}

/// Row numbers of an import report (XLSX or CSV) whose outcome is not created/existing.
pub fn rows_to_retry(path: &Path) -> Result<HashSet<u64>, ReportError> {
    let bad = |message: String| ReportError::Read {
        path: path.to_path_buf(),
        message,
    };
    let table: Vec<Vec<String>> = match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("xlsx") => {
            use calamine::{open_workbook, Reader, Xlsx};
            let mut wb: Xlsx<_> = open_workbook(path).map_err(|e| bad(format!("{e}")))?;
            let range = wb
                .worksheet_range("Rows")
                .map_err(|e| bad(format!("no sheet 'Rows': {e}")))?;
            range
                .rows()
                .map(|r| r.iter().map(|c| c.to_string()).collect())
                .collect()
        }
        _ => {
            let text = std::fs::read_to_string(path).map_err(|e| ReportError::io(path, e))?;
            let text = text.trim_start_matches('\u{feff}');
            let delim = if text.lines().next().unwrap_or("").contains(';') {
                b';'
            } else {
                b','
            };
            let mut rd = csv::ReaderBuilder::new()
                .delimiter(delim)
                .has_headers(false)
                .flexible(true)
                .from_reader(text.as_bytes());
            rd.records()
                .map(|r| r.map(|r| r.iter().map(str::to_string).collect()))
                .collect::<Result<_, _>>()
                .map_err(|e| ReportError::csv(path, e))?
        }
    };
    let mut it = table.into_iter();
    let header = it.next().ok_or_else(|| bad("the report is empty".into()))?;
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| bad(format!("no '{name}' column: not an import report?")))
    };
    let (row_col, out_col) = (col("row")?, col("outcome")?);
    let mut out = HashSet::new();
    for r in it {
        let outcome = r.get(out_col).map(|s| s.trim()).unwrap_or("");
        if Outcome::is_success(outcome) {
            continue;
        }
        if let Some(n) = r
            .get(row_col)
            .and_then(|s| s.trim().trim_end_matches(".0").parse::<u64>().ok())
        {
            out.insert(n);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_rows_are_read_back_from_xlsx_and_csv() {
        let dir = tempfile::tempdir().unwrap();
        let x = dir.path().join("r.xlsx");
        let c = dir.path().join("r.csv");
        let mut rep = ImportReport::create(Some(&x), Some(&c), &SummaryTable::default()).unwrap();
        for (row, outcome) in [
            (2, Outcome::Created),
            (3, Outcome::Failed),
            (4, Outcome::Invalid),
            (5, Outcome::Existing),
        ] {
            rep.write(&RowLine {
                file: "in.csv".into(),
                sheet: None,
                row,
                outcome,
                ids: [Some(1), None, None, None, None],
                entity: None,
                field: None,
                value: None,
                error: None,
            })
            .unwrap();
        }
        rep.finish().unwrap();
        let want: HashSet<u64> = [3, 4].into_iter().collect();
        assert_eq!(rows_to_retry(&x).unwrap(), want);
        assert_eq!(rows_to_retry(&c).unwrap(), want);
    }
}
