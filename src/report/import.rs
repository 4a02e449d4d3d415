//! The import report: one line per source row with its outcome, the CRM ids of its records and
//! the error (entity, field, value, message), as XLSX and/or CSV; and reading such a report back
//! (the legacy form of `import --only-failed REPORT`). Fed plain [`RowLine`]s: the import job
//! builds them from its plan and journal.

use super::summary::{add_summary_sheet, SummaryTable};
use super::{Cell, CsvOptions, CsvTable, ReportError, SheetId, XlsxBook};
use std::collections::HashSet;
use std::path::Path;

pub const HEADERS: [&str; 15] = [
    "file", "sheet", "row", "outcome", "client", "person", "deal", "task", "history", "invoice",
    "payment", "entity", "field", "value", "error",
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
    /// A record of the row matched a CRM record and was changed (none created).
    Updated,
    /// Every record of the row matched a CRM record that already held its values.
    Unchanged,
    /// `update`: a record of the row matches nothing in the CRM.
    NotFound,
    /// A record of the row matches two or more CRM records: not written.
    Ambiguous,
    /// The row's records were deleted.
    Deleted,
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
            Outcome::Updated => "updated",
            Outcome::Unchanged => "unchanged",
            Outcome::NotFound => "not_found",
            Outcome::Ambiguous => "ambiguous",
            Outcome::Deleted => "deleted",
        }
    }

    /// Nothing more to do for this row: `--only-failed` leaves these rows out, and a run whose
    /// rows all have one of these outcomes exits 0.
    pub fn is_success(s: &str) -> bool {
        matches!(
            s,
            "created" | "existing" | "blank" | "skipped" | "updated" | "unchanged" | "deleted"
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
    /// CRM ids in the order client, person, deal, task, history, invoice, payment (the
    /// invoice row it paid).
    pub ids: [Option<i64>; 7],
    pub entity: Option<String>,
    pub field: Option<String>,
    pub value: Option<String>,
    pub error: Option<String>,
}

/// Data rows of one XLSX sheet: Excel's 1,048,576 rows less the header. A larger file's rows go
/// on in "Rows 2", "Rows 3"…
const ROWS_PER_SHEET: u64 = 1_048_575;

pub struct ImportReport {
    xlsx: Option<(XlsxBook, SheetId)>,
    csv: Option<CsvTable>,
    /// Rows on the current XLSX sheet, and how many sheets of rows there are.
    on_sheet: u64,
    sheets: u32,
    rows_per_sheet: u64,
    /// The "Changes" sheet, once a change is written.
    changes: Option<SheetId>,
}

/// One field an update changed, for the "Changes" sheet.
#[derive(Debug, Clone)]
pub struct ChangeLine {
    pub entity: String,
    pub key: String,
    pub crm_id: i64,
    pub field: String,
    pub before: String,
    pub after: String,
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
        Ok(ImportReport {
            xlsx,
            csv,
            on_sheet: 0,
            sheets: 1,
            rows_per_sheet: ROWS_PER_SHEET,
            changes: None,
        })
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
            if self.on_sheet == self.rows_per_sheet {
                self.sheets += 1;
                *sheet = book.add_sheet(&format!("Rows {}", self.sheets), &HEADERS)?;
                self.on_sheet = 0;
            }
            book.write_row(*sheet, &cells)?;
            self.on_sheet += 1;
        }
        if let Some(csv) = &mut self.csv {
            csv.write_row(&cells)?;
        }
        Ok(())
    }

    /// The "Changes" sheet: one line per field an update changed (or, in a dry run, would
    /// change): record, field, CRM value before, value after. Added only when there are any.
    pub fn changes(&mut self, lines: &[ChangeLine]) -> Result<(), ReportError> {
        let Some((book, _)) = &mut self.xlsx else {
            return Ok(());
        };
        if lines.is_empty() {
            return Ok(());
        }
        let sheet = match self.changes {
            Some(s) => s,
            None => {
                let headers =
                    ["entity", "key", "crm id", "field", "before", "after"].map(String::from);
                let s = book.add_sheet("Changes", &headers)?;
                self.changes = Some(s);
                s
            }
        };
        for l in lines {
            book.write_row(
                sheet,
                &[
                    Cell::text(l.entity.clone()),
                    Cell::text(l.key.clone()),
                    Cell::Int(l.crm_id),
                    Cell::text(l.field.clone()),
                    Cell::text(l.before.clone()),
                    Cell::text(l.after.clone()),
                ],
            )?;
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
            let mut table: Vec<Vec<String>> = range
                .rows()
                .map(|r| r.iter().map(|c| c.to_string()).collect())
                .collect();
            // A report of more rows than a sheet holds goes on in "Rows 2", "Rows 3"…
            for n in 2.. {
                let Ok(more) = wb.worksheet_range(&format!("Rows {n}")) else {
                    break;
                };
                table.extend(
                    more.rows()
                        .skip(1)
                        .map(|r| r.iter().map(|c| c.to_string()).collect()),
                );
            }
            table
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
                ids: [Some(1), None, None, None, None, None, None],
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

    #[test]
    fn rows_beyond_a_sheet_go_on_in_the_next_sheet() {
        let dir = tempfile::tempdir().unwrap();
        let x = dir.path().join("r.xlsx");
        let mut rep = ImportReport::create(Some(&x), None, &SummaryTable::default()).unwrap();
        rep.rows_per_sheet = 3;
        for row in 2..9 {
            rep.write(&RowLine {
                file: "in.csv".into(),
                sheet: None,
                row,
                outcome: if row % 2 == 0 {
                    Outcome::Failed
                } else {
                    Outcome::Created
                },
                ids: [None; 7],
                entity: None,
                field: None,
                value: None,
                error: None,
            })
            .unwrap();
        }
        rep.finish().unwrap();
        use calamine::{open_workbook, Reader, Xlsx};
        let mut wb: Xlsx<_> = open_workbook(&x).unwrap();
        let rows = |wb: &mut Xlsx<_>, name: &str| wb.worksheet_range(name).unwrap().height() - 1;
        assert_eq!(
            (
                rows(&mut wb, "Rows"),
                rows(&mut wb, "Rows 2"),
                rows(&mut wb, "Rows 3")
            ),
            (3, 3, 1)
        );
        // Every failed row is found again, whichever sheet it is on.
        let want: HashSet<u64> = [2, 4, 6, 8].into_iter().collect();
        assert_eq!(rows_to_retry(&x).unwrap(), want);
    }
}
