//! XLSX (streamed with calamine's cell reader on a background thread) and XLS/XLSB/ODS (through
//! calamine's in-memory range: XLS sheets are capped at 65,536 rows, so that is bounded anyway).

use super::sniff::Kind;
use super::{
    clean_headers, display, fit_row, CellIssue, Row, RowSource, SourceError, SourceOptions,
    SourcePos,
};
use calamine::{
    open_workbook, CellErrorType, Data, DataRef, ExcelDateTime, Ods, Reader, Sheets, Xls, Xlsb,
    Xlsx,
};
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Once};

/// Excel's widest sheet (XFD): a cell beyond it is a damaged file, not data.
const MAX_COLUMNS: usize = 16_384;

thread_local! {
    /// Set while this thread runs calamine inside [`guarded`]: its panics are reported as an
    /// error, so the panic hook must not also print them.
    static GUARDED: Cell<bool> = const { Cell::new(false) };
}

/// Chain a panic hook (once per process) that stays silent for panics [`guarded`] catches and
/// hands every other panic to the hook that was there before.
fn quiet_hook_for_guarded_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !GUARDED.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// Run calamine on bytes we do not trust: a panic inside it (it indexes arrays with numbers
/// from the file, e.g. shared strings that are missing) becomes a [`SourceError::Workbook`]
/// naming the file instead of killing the run or printing a backtrace.
fn guarded<T>(path: &Path, f: impl FnOnce() -> Result<T, SourceError>) -> Result<T, SourceError> {
    quiet_hook_for_guarded_panics();
    let outer = GUARDED.with(|g| g.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(outer));
    result.unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(SourceError::Workbook {
            path: path.to_path_buf(),
            message: format!("the file is damaged (the spreadsheet reader failed: {why})"),
        })
    })
}

/// Bounded unpacking of a ZIP-based workbook (see [`super::package`]).
fn check_package(path: &Path, ods: bool) -> Result<(), SourceError> {
    let file = std::fs::File::open(path).map_err(|source| SourceError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    super::package::check(std::io::BufReader::new(file), ods).map_err(|message| {
        SourceError::Workbook {
            path: path.to_path_buf(),
            message,
        }
    })
}

/// One cell as text plus the problem the reader saw in it, if any.
fn float_text(f: f64) -> String {
    if !f.is_finite() {
        return f.to_string(); // only a damaged or hand-made file holds these
    }
    // Identifiers (phones, INN, ids) arrive as floats: print integral values as integers, never
    // with an exponent. Rust's `Display` for f64 never uses exponent notation.
    if f.fract() == 0.0 && f.abs() < 1e17 {
        format!("{}", f as i64)
    } else {
        // Excel shows at most 15 significant digits; binary noise beyond that is not user data.
        let s = format!(
            "{:.*}",
            15usize.saturating_sub((f.abs().log10().max(0.0) as usize).saturating_add(1)),
            f
        );
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    }
}

fn datetime_text(dt: &ExcelDateTime) -> String {
    let v = dt.as_f64();
    // Excel's dates end at 9999-12-31 (serial 2958465); calamine's conversion overflows on
    // what a damaged file may hold beyond that, so such a value stays a number.
    if !(0.0..2_958_466.0).contains(&v) && !dt.is_duration() {
        return float_text(v);
    }
    if dt.is_duration() {
        // [h]:mm:ss: whole days are hours too, rounded to the nearest second like a time.
        let secs = (v.abs() * 86_400.0).round() as u64;
        let sign = if v < 0.0 && secs > 0 { "-" } else { "" };
        return format!(
            "{sign}{:02}:{:02}:{:02}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        );
    }
    let (y, mo, d, h, mi, s, _) = dt.to_ymd_hms_milli();
    // Excel stores 10:07 as a float a hair below 10:07:00; calamine truncates to 10:06:59.
    // Round to the nearest second, carrying into the minute, hour and day. The sub-second part
    // is judged at 0.1 ms: a serial near 45,000 days carries ~1 µs of binary noise, so x.5 s may
    // be stored as x.4999999 s.
    let up = ((v.fract() * 86_400.0).fract() * 10_000.0).round() >= 5_000.0;
    if (0.0..1.0).contains(&v) {
        let secs =
            (u32::from(h) * 3600 + u32::from(mi) * 60 + u32::from(s) + u32::from(up)) % 86_400;
        format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
    } else if v.fract() == 0.0 {
        format!("{y:04}-{mo:02}-{d:02}")
    } else {
        let exact = chrono::NaiveDate::from_ymd_opt(y.into(), mo.into(), d.into())
            .and_then(|date| date.and_hms_opt(h.into(), mi.into(), s.into()));
        match exact {
            Some(t) => (t + chrono::TimeDelta::seconds(i64::from(up)))
                .format("%Y-%m-%d %H:%M:%S")
                .to_string(),
            // 1900-02-29, Excel's phantom leap day: no carry, only the truncated time.
            None => format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}"),
        }
    }
}

fn error_text(e: &CellErrorType) -> (String, String) {
    let v = e.to_string();
    (v.clone(), format!("the cell holds the formula error {v}"))
}

fn data_ref_text(v: &DataRef<'_>) -> (String, Option<String>) {
    match v {
        DataRef::Int(i) => (i.to_string(), None),
        DataRef::Float(f) => (float_text(*f), None),
        DataRef::String(s) => (s.clone(), None),
        DataRef::SharedString(s) => (s.to_string(), None),
        DataRef::Bool(b) => (if *b { "TRUE" } else { "FALSE" }.into(), None),
        DataRef::DateTime(dt) => (datetime_text(dt), None),
        DataRef::DateTimeIso(s) => (s.replace('T', " "), None),
        DataRef::DurationIso(s) => (s.clone(), None),
        DataRef::Error(e) => {
            let (v, m) = error_text(e);
            (v, Some(m))
        }
        DataRef::Empty => (String::new(), None),
    }
}

fn data_text(v: &Data) -> (String, Option<String>) {
    match v {
        Data::Int(i) => (i.to_string(), None),
        Data::Float(f) => (float_text(*f), None),
        Data::String(s) => (s.clone(), None),
        Data::Bool(b) => (if *b { "TRUE" } else { "FALSE" }.into(), None),
        Data::DateTime(dt) => (datetime_text(dt), None),
        Data::DateTimeIso(s) => (s.replace('T', " "), None),
        Data::DurationIso(s) => (s.clone(), None),
        Data::Error(e) => {
            let (v, m) = error_text(e);
            (v, Some(m))
        }
        Data::Empty => (String::new(), None),
    }
}

/// Resolve `--sheet` (a name, or a 1-based index) against the workbook's sheet names.
fn pick_sheet(path: &Path, names: &[String], want: Option<&str>) -> Result<String, SourceError> {
    let no_sheet = |sheet: &str| SourceError::NoSuchSheet {
        path: path.to_path_buf(),
        sheet: sheet.to_string(),
        available: names
            .iter()
            .map(|n| display(n))
            .collect::<Vec<_>>()
            .join(", "),
    };
    match want {
        None => names.first().cloned().ok_or_else(|| no_sheet("1")),
        Some(w) => {
            if let Some(n) = names.iter().find(|n| n.as_str() == w) {
                return Ok(n.clone());
            }
            match w.parse::<usize>() {
                Ok(i) if i >= 1 && i <= names.len() => Ok(names[i - 1].clone()),
                _ => Err(no_sheet(w)),
            }
        }
    }
}

/// Builds rows out of a stream of (row, col, text, issue) cells.
struct RowBuilder {
    file: Arc<str>,
    sheet: Arc<str>,
    path: PathBuf,
    first_col: u32,
    headers: Option<Vec<String>>,
    cur_row: Option<u32>,
    cells: Vec<String>,
    issues: Vec<CellIssue>,
}

enum Built {
    Headers(Vec<String>),
    Row(Row),
}

impl RowBuilder {
    fn push(
        &mut self,
        row: u32,
        col: u32,
        text: String,
        issue: Option<String>,
    ) -> Result<Option<Built>, SourceError> {
        let mut out = None;
        if self.cur_row != Some(row) {
            if self.cur_row.is_some() {
                out = self.finish()?;
            }
            self.cur_row = Some(row);
        }
        let c = col.saturating_sub(self.first_col) as usize;
        if c >= MAX_COLUMNS {
            return Err(SourceError::Workbook {
                path: self.path.clone(),
                message: format!(
                    "row {} has a cell in column {}, beyond the {MAX_COLUMNS} columns a sheet can have",
                    row as u64 + 1,
                    col as u64 + 1
                ),
            });
        }
        if self.cells.len() <= c {
            self.cells.resize(c + 1, String::new());
        }
        if let Some(message) = issue {
            self.issues.push(CellIssue {
                column: Some(c),
                value: text.clone(),
                message,
            });
        }
        self.cells[c] = text;
        Ok(out)
    }

    fn finish(&mut self) -> Result<Option<Built>, SourceError> {
        let Some(row) = self.cur_row.take() else {
            return Ok(None);
        };
        let mut cells = std::mem::take(&mut self.cells);
        let mut issues = std::mem::take(&mut self.issues);
        match &self.headers {
            None => {
                if cells.iter().all(|c| c.trim().is_empty()) {
                    return Ok(None); // blank rows above the header
                }
                let h = clean_headers(&self.path, cells)?;
                self.headers = Some(h.clone());
                Ok(Some(Built::Headers(h)))
            }
            Some(h) => {
                fit_row(&mut cells, h.len(), &mut issues, false);
                Ok(Some(Built::Row(Row {
                    pos: SourcePos {
                        file: self.file.clone(),
                        sheet: Some(self.sheet.clone()),
                        row: row as u64 + 1,
                    },
                    cells,
                    issues,
                })))
            }
        }
    }
}

enum Msg {
    Headers(Vec<String>),
    Rows(Vec<Row>),
    Err(SourceError),
    /// The sheet is read to its end (a closed channel without it means the thread died).
    End,
}

/// XLSX read on a background thread with calamine's streaming cell reader: the reader borrows
/// the workbook, so the thread owns both and sends rows in batches over a bounded channel.
pub(crate) struct XlsxSource {
    headers: Vec<String>,
    sheet: String,
    file: Arc<str>,
    rx: Receiver<Msg>,
    buf: std::vec::IntoIter<Row>,
    done: bool,
}

const BATCH: usize = 1024;

impl XlsxSource {
    pub(crate) fn open(path: &Path, opts: &SourceOptions) -> Result<XlsxSource, SourceError> {
        let wb_err = |e: calamine::XlsxError| SourceError::Workbook {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let (mut wb, sheet) = guarded(path, || {
            check_package(path, false)?;
            let wb: Xlsx<_> = open_workbook(path).map_err(wb_err)?;
            let sheet = pick_sheet(path, &wb.sheet_names(), opts.sheet.as_deref())?;
            Ok((wb, sheet))
        })?;
        let (tx, rx) = sync_channel::<Msg>(4);
        let p = path.to_path_buf();
        let sheet_name = sheet.clone();
        std::thread::spawn(move || {
            let run = || -> Result<(), SourceError> {
                let wb_err = |e: calamine::XlsxError| SourceError::Workbook {
                    path: p.clone(),
                    message: e.to_string(),
                };
                let mut reader = wb.worksheet_cells_reader(&sheet_name).map_err(wb_err)?;
                let mut b = RowBuilder {
                    file: Arc::from(p.display().to_string()),
                    sheet: Arc::from(sheet_name.as_str()),
                    path: p.clone(),
                    first_col: reader.dimensions().start.1,
                    headers: None,
                    cur_row: None,
                    cells: Vec::new(),
                    issues: Vec::new(),
                };
                let mut batch = Vec::with_capacity(BATCH);
                let send = |built: Option<Built>, batch: &mut Vec<Row>, flush: bool| -> bool {
                    let ok = match built {
                        Some(Built::Headers(h)) => tx.send(Msg::Headers(h)).is_ok(),
                        Some(Built::Row(r)) => {
                            batch.push(r);
                            true
                        }
                        None => true,
                    };
                    if !ok {
                        return false;
                    }
                    if batch.len() >= BATCH || (flush && !batch.is_empty()) {
                        return tx.send(Msg::Rows(std::mem::take(batch))).is_ok();
                    }
                    true
                };
                while let Some(cell) = reader.next_cell().map_err(wb_err)? {
                    let (r, c) = cell.get_position();
                    let (text, issue) = data_ref_text(cell.get_value());
                    if text.is_empty() && issue.is_none() {
                        continue;
                    }
                    let built = b.push(r, c, text, issue)?;
                    if !send(built, &mut batch, false) {
                        return Ok(()); // the consumer went away
                    }
                }
                let built = b.finish()?;
                send(built, &mut batch, true);
                if b.headers.is_none() {
                    return Err(SourceError::Empty { path: p.clone() });
                }
                Ok(())
            };
            // calamine on a damaged file may panic: that is the file's fault, said as such.
            match guarded(&p.clone(), run) {
                Ok(()) => {
                    let _ = tx.send(Msg::End);
                }
                Err(e) => {
                    let _ = tx.send(Msg::Err(e));
                }
            }
        });
        match rx.recv() {
            Ok(Msg::Headers(headers)) => Ok(XlsxSource {
                headers,
                sheet,
                file: Arc::from(path.display().to_string()),
                rx,
                buf: Vec::new().into_iter(),
                done: false,
            }),
            Ok(Msg::Err(e)) => Err(e),
            _ => Err(SourceError::Empty {
                path: path.to_path_buf(),
            }),
        }
    }
}

impl Iterator for XlsxSource {
    type Item = Result<Row, SourceError>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(r) = self.buf.next() {
                return Some(Ok(r));
            }
            if self.done {
                return None;
            }
            match self.rx.recv() {
                Ok(Msg::Rows(rows)) => self.buf = rows.into_iter(),
                Ok(Msg::Err(e)) => {
                    self.done = true;
                    return Some(Err(e));
                }
                Ok(Msg::Headers(_)) => {}
                Ok(Msg::End) => self.done = true,
                Err(_) => {
                    self.done = true;
                    return Some(Err(SourceError::Internal {
                        file: self.file.to_string(),
                        row: 0,
                        message: "the workbook reader stopped before the end of the sheet".into(),
                    }));
                }
            }
        }
    }
}

impl RowSource for XlsxSource {
    fn headers(&self) -> &[String] {
        &self.headers
    }
    fn file(&self) -> &str {
        &self.file
    }
    fn describe(&self) -> String {
        format!("XLSX, sheet '{}'", display(&self.sheet))
    }
}

/// XLS/XLSB/ODS through calamine's in-memory range.
pub(crate) struct RangeSource {
    headers: Vec<String>,
    sheet: String,
    file: Arc<str>,
    rows: std::vec::IntoIter<Row>,
}

impl RangeSource {
    /// `kind` is what the content says the file is (XLS, XLSB or ODS), whatever its name.
    pub(crate) fn open(
        path: &Path,
        opts: &SourceOptions,
        kind: Kind,
    ) -> Result<RangeSource, SourceError> {
        guarded(path, || RangeSource::open_unguarded(path, opts, kind))
    }

    fn open_unguarded(
        path: &Path,
        opts: &SourceOptions,
        kind: Kind,
    ) -> Result<RangeSource, SourceError> {
        let wb_err = |e: &dyn std::fmt::Display| SourceError::Workbook {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        if kind != Kind::Xls {
            check_package(path, kind == Kind::Ods)?;
        } else {
            let bytes = std::fs::read(path).map_err(|source| SourceError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            super::ole::check(&bytes).map_err(|m| wb_err(&format!("the file is damaged: {m}")))?;
        }
        let mut wb = match kind {
            Kind::Xls => Sheets::Xls(open_workbook::<Xls<_>, _>(path).map_err(|e| wb_err(&e))?),
            Kind::Ods => Sheets::Ods(open_workbook::<Ods<_>, _>(path).map_err(|e| wb_err(&e))?),
            _ => Sheets::Xlsb(open_workbook::<Xlsb<_>, _>(path).map_err(|e| wb_err(&e))?),
        };
        let sheet = pick_sheet(path, &wb.sheet_names(), opts.sheet.as_deref())?;
        let range = wb.worksheet_range(&sheet).map_err(|e| wb_err(&e))?;
        let (r0, c0) = range.start().unwrap_or((0, 0));
        let mut b = RowBuilder {
            file: Arc::from(path.display().to_string()),
            sheet: Arc::from(sheet.as_str()),
            path: path.to_path_buf(),
            first_col: c0,
            headers: None,
            cur_row: None,
            cells: Vec::new(),
            issues: Vec::new(),
        };
        let mut rows = Vec::new();
        let mut headers = None;
        let mut take = |built: Option<Built>, rows: &mut Vec<Row>| match built {
            Some(Built::Headers(h)) => headers = Some(h),
            Some(Built::Row(r)) => rows.push(r),
            None => {}
        };
        for (i, row) in range.rows().enumerate() {
            for (j, v) in row.iter().enumerate() {
                let (text, issue) = data_text(v);
                if text.is_empty() && issue.is_none() {
                    continue;
                }
                let built = b.push(r0 + i as u32, c0 + j as u32, text, issue)?;
                take(built, &mut rows);
            }
        }
        let built = b.finish()?;
        take(built, &mut rows);
        let headers = headers.ok_or_else(|| SourceError::Empty {
            path: path.to_path_buf(),
        })?;
        Ok(RangeSource {
            headers,
            sheet,
            file: Arc::from(path.display().to_string()),
            rows: rows.into_iter(),
        })
    }
}

impl Iterator for RangeSource {
    type Item = Result<Row, SourceError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.rows.next().map(Ok)
    }
}

impl RowSource for RangeSource {
    fn headers(&self) -> &[String] {
        &self.headers
    }
    fn file(&self) -> &str {
        &self.file
    }
    fn describe(&self) -> String {
        format!("workbook, sheet '{}'", display(&self.sheet))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_that_are_identifiers_stay_whole() {
        assert_eq!(float_text(79_012_345_678.0), "79012345678");
        assert_eq!(float_text(5_902_000_000.0), "5902000000");
        assert_eq!(float_text(1.5), "1.5");
        assert_eq!(float_text(0.1 + 0.2), "0.3");
        assert_eq!(float_text(-3.0), "-3");
    }

    /// Serial of a date and a time of day given in seconds (fractions allowed), 1900 system.
    fn at(y: i32, m: u32, d: u32, secs: f64) -> ExcelDateTime {
        let epoch = chrono::NaiveDate::from_ymd_opt(1899, 12, 30).unwrap();
        let days = (chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap() - epoch).num_days();
        ExcelDateTime::new(
            days as f64 + secs / 86_400.0,
            calamine::ExcelDateTimeType::DateTime,
            false,
        )
    }

    fn hms(h: u32, m: u32, s: f64) -> f64 {
        f64::from(h * 3600 + m * 60) + s
    }

    #[test]
    fn spreadsheet_times_round_to_the_nearest_second() {
        // 10:07 as Excel stores it: a float a hair below 10:07:00 (calamine alone says 10:06:59).
        let v = at(2024, 2, 4, hms(10, 7, 0.0)).as_f64() - 1e-10;
        let dt = ExcelDateTime::new(v, calamine::ExcelDateTimeType::DateTime, false);
        assert_eq!(
            dt.to_ymd_hms_milli().5,
            59,
            "the truncation this guards against"
        );
        assert_eq!(datetime_text(&dt), "2024-02-04 10:07:00");
        assert_eq!(
            datetime_text(&at(2024, 2, 4, hms(10, 7, 0.4999))),
            "2024-02-04 10:07:00"
        );
        assert_eq!(
            datetime_text(&at(2024, 2, 4, hms(10, 7, 0.5))),
            "2024-02-04 10:07:01"
        );
        assert_eq!(
            datetime_text(&at(2024, 2, 4, hms(10, 59, 59.5))),
            "2024-02-04 11:00:00"
        );
    }

    #[test]
    fn rounding_carries_into_the_next_day_and_year() {
        assert_eq!(
            datetime_text(&at(2024, 2, 28, hms(23, 59, 59.6))),
            "2024-02-29 00:00:00"
        );
        assert_eq!(
            datetime_text(&at(2024, 12, 31, hms(23, 59, 59.6))),
            "2025-01-01 00:00:00"
        );
        // A time of day alone wraps around midnight.
        let t = ExcelDateTime::new(
            hms(23, 59, 59.6) / 86_400.0,
            calamine::ExcelDateTimeType::DateTime,
            false,
        );
        assert_eq!(datetime_text(&t), "00:00:00");
        let t = ExcelDateTime::new(
            hms(8, 30, 0.0) / 86_400.0 - 1e-12,
            calamine::ExcelDateTimeType::DateTime,
            false,
        );
        assert_eq!(datetime_text(&t), "08:30:00");
    }

    #[test]
    fn dates_only_stay_dates_and_durations_keep_their_hours() {
        assert_eq!(datetime_text(&at(2024, 3, 7, 0.0)), "2024-03-07");
        let d = ExcelDateTime::new(
            1.0 + hms(2, 0, 0.0) / 86_400.0 - 1e-10,
            calamine::ExcelDateTimeType::TimeDelta,
            false,
        );
        assert_eq!(datetime_text(&d), "26:00:00");
    }
}
