//! Spreadsheet sinks shared by every writer (export files, validation and import reports,
//! reconcile reports): XLSX in constant-memory mode with typed cells, and CSV in the encodings
//! Russian Excel opens correctly. Text is always written as text, so nothing a CRM user typed can
//! run as a formula when the file is opened.

use super::ReportError;
use crate::values::Money;
use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};
use rust_xlsxwriter::{ExcelDateTime, Format, FormatAlign, Workbook};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// One cell's value with its type, so XLSX can store numbers and dates natively.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Empty,
    Text(String),
    Int(i64),
    /// A sum of money: a number shown with two decimals.
    Money(Money),
    Number(f64),
    Date(NaiveDate),
    DateTime(NaiveDateTime),
    /// Text drawn with a highlight fill (a difference, a failure).
    Flagged(String),
}

impl Cell {
    pub fn text(s: impl Into<String>) -> Cell {
        Cell::Text(s.into())
    }

    /// The value as CSV text (ISO dates; `decimal_comma` for Russian Excel's `;` files).
    fn csv_text(&self, decimal_comma: bool) -> String {
        let num = |s: String| {
            if decimal_comma {
                s.replace('.', ",")
            } else {
                s
            }
        };
        match self {
            Cell::Empty => String::new(),
            Cell::Text(s) | Cell::Flagged(s) => s.clone(),
            Cell::Int(i) => i.to_string(),
            Cell::Money(m) => m.fixed2(decimal_comma),
            Cell::Number(n) => num(n.to_string()),
            Cell::Date(d) => d.format("%Y-%m-%d").to_string(),
            Cell::DateTime(dt) => dt.format("%Y-%m-%d %H:%M:%S").to_string(),
        }
    }

    fn width(&self) -> usize {
        match self {
            Cell::Empty => 0,
            Cell::Text(s) | Cell::Flagged(s) => {
                s.lines().map(|l| l.chars().count()).max().unwrap_or(0)
            }
            Cell::Int(i) => i.to_string().len(),
            Cell::Money(_) | Cell::Number(_) => 12,
            Cell::Date(_) => 10,
            Cell::DateTime(_) => 19,
        }
    }
}

/// CSV text encodings Excel users need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CsvEncoding {
    /// UTF-8 with a byte-order mark: modern Excel opens Cyrillic correctly only with it.
    #[default]
    Utf8Bom,
    Utf8,
    /// What Russian Excel writes and old versions expect.
    Windows1251,
}

impl std::str::FromStr for CsvEncoding {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "utf-8-bom" | "utf8-bom" | "utf-8-sig" => Ok(CsvEncoding::Utf8Bom),
            "utf-8" | "utf8" => Ok(CsvEncoding::Utf8),
            "windows-1251" | "cp1251" | "win1251" => Ok(CsvEncoding::Windows1251),
            _ => Err(format!(
                "unknown CSV encoding '{s}' (use utf-8-bom, utf-8 or windows-1251)"
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct CsvOptions {
    pub encoding: CsvEncoding,
    pub delimiter: u8,
    /// Prefix text that Excel would run as a formula (`=`, `@`, a `+`/`-` not starting a number)
    /// with `'`. Opt-in: it changes the data.
    pub escape_formulas: bool,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            encoding: CsvEncoding::Utf8Bom,
            delimiter: b';',
            escape_formulas: false,
        }
    }
}

/// Would Excel treat this text as a formula? Phone numbers such as `+7 (342) 200-00-00` and
/// negative numbers are kept as they are.
pub fn looks_like_formula(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some('=' | '@' | '\t' | '\r') => true,
        Some('+' | '-') => {
            let rest = chars.as_str();
            rest.is_empty()
                || !rest
                    .chars()
                    .all(|c| c.is_ascii_digit() || " ()-.,".contains(c))
        }
        _ => false,
    }
}

/// A CSV file being written row by row, in the chosen encoding.
pub struct CsvTable {
    writer: csv::Writer<EncodingWriter<BufWriter<File>>>,
    opts: CsvOptions,
    path: PathBuf,
}

impl CsvTable {
    pub fn create(path: &Path, headers: &[String], opts: CsvOptions) -> Result<Self, ReportError> {
        let file = File::create(path).map_err(|e| ReportError::io(path, e))?;
        let mut inner = EncodingWriter::new(BufWriter::new(file), opts.encoding);
        if opts.encoding == CsvEncoding::Utf8Bom {
            inner
                .inner
                .write_all(b"\xEF\xBB\xBF")
                .map_err(|e| ReportError::io(path, e))?;
        }
        let writer = csv::WriterBuilder::new()
            .delimiter(opts.delimiter)
            .from_writer(inner);
        let mut t = CsvTable {
            writer,
            opts,
            path: path.to_path_buf(),
        };
        t.writer
            .write_record(headers)
            .map_err(|e| ReportError::csv(&t.path, e))?;
        Ok(t)
    }

    pub fn write_row(&mut self, cells: &[Cell]) -> Result<(), ReportError> {
        let decimal_comma = self.opts.delimiter == b';';
        let escape = self.opts.escape_formulas;
        let record = cells.iter().map(|c| {
            let s = c.csv_text(decimal_comma);
            if escape && matches!(c, Cell::Text(_) | Cell::Flagged(_)) && looks_like_formula(&s) {
                format!("'{s}")
            } else {
                s
            }
        });
        self.writer
            .write_record(record)
            .map_err(|e| ReportError::csv(&self.path, e))
    }

    /// Flush and close; returns how many characters the encoding could not represent (written
    /// as `?`), so the caller can warn.
    pub fn finish(self) -> Result<u64, ReportError> {
        let path = self.path.clone();
        let mut inner = self
            .writer
            .into_inner()
            .map_err(|e| ReportError::io(&path, e.into_error()))?;
        inner.flush().map_err(|e| ReportError::io(&path, e))?;
        Ok(inner.unmappable)
    }
}

/// Transcodes the UTF-8 the csv crate writes into the target encoding. Writes may split a
/// character, so an incomplete tail waits for the next write.
struct EncodingWriter<W: Write> {
    inner: W,
    encoding: CsvEncoding,
    carry: Vec<u8>,
    unmappable: u64,
}

impl<W: Write> EncodingWriter<W> {
    fn new(inner: W, encoding: CsvEncoding) -> Self {
        EncodingWriter {
            inner,
            encoding,
            carry: Vec::new(),
            unmappable: 0,
        }
    }

    fn encode_1251(&mut self, text: &str) -> std::io::Result<()> {
        let mut encoder = encoding_rs::WINDOWS_1251.new_encoder();
        let mut out = vec![0u8; text.len() + 16];
        let mut rest = text;
        loop {
            let (result, read, written) =
                encoder.encode_from_utf8_without_replacement(rest, &mut out, true);
            self.inner.write_all(&out[..written])?;
            rest = &rest[read..];
            match result {
                encoding_rs::EncoderResult::InputEmpty => return Ok(()),
                encoding_rs::EncoderResult::OutputFull => continue,
                encoding_rs::EncoderResult::Unmappable(_) => {
                    self.unmappable += 1;
                    self.inner.write_all(b"?")?;
                }
            }
        }
    }
}

impl<W: Write> Write for EncodingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.encoding != CsvEncoding::Windows1251 {
            return self.inner.write(buf);
        }
        self.carry.extend_from_slice(buf);
        let carry = std::mem::take(&mut self.carry);
        let valid = match std::str::from_utf8(&carry) {
            Ok(_) => carry.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "text is not valid UTF-8",
                ))
            }
        };
        // Safe: checked just above.
        let text = std::str::from_utf8(&carry[..valid]).unwrap_or_default();
        self.encode_1251(text)?;
        self.carry = carry[valid..].to_vec();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Rows kept back per sheet to size its columns before the first rows stream out.
const WIDTH_SAMPLE_ROWS: usize = 100;
const MAX_COL_WIDTH: usize = 60;
/// Excel's limit on one cell's text.
const MAX_CELL_CHARS: usize = 32_767;

/// Identifies a sheet of an [`XlsxBook`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SheetId(usize);

struct SheetState {
    index: usize,
    rows_written: u32,
    headers: Vec<String>,
    sample: Option<Vec<Vec<Cell>>>,
}

struct Formats {
    header: Format,
    money: Format,
    date: Format,
    datetime: Format,
    flagged: Format,
}

/// An XLSX workbook written sheet by sheet in constant memory: frozen header, autofilter,
/// column widths fitted to the first rows.
pub struct XlsxBook {
    workbook: Workbook,
    path: PathBuf,
    sheets: Vec<SheetState>,
    formats: Formats,
}

impl XlsxBook {
    pub fn create(path: &Path) -> XlsxBook {
        XlsxBook {
            workbook: Workbook::new(),
            path: path.to_path_buf(),
            sheets: Vec::new(),
            formats: Formats {
                header: Format::new().set_bold().set_background_color("#DDEBF7"),
                money: Format::new().set_num_format("#,##0.00"),
                date: Format::new()
                    .set_num_format("dd.mm.yyyy")
                    .set_align(FormatAlign::Left),
                datetime: Format::new()
                    .set_num_format("dd.mm.yyyy hh:mm:ss")
                    .set_align(FormatAlign::Left),
                flagged: Format::new().set_background_color("#FFC7CE"),
            },
        }
    }

    /// Add a streamed sheet with a header row. Sheet names are cut to Excel's 31 characters.
    pub fn add_sheet(
        &mut self,
        name: &str,
        headers: &[impl AsRef<str>],
    ) -> Result<SheetId, ReportError> {
        let clean: String = name
            .chars()
            .map(|c| if "[]:*?/\\".contains(c) { '_' } else { c })
            .take(31)
            .collect();
        // The workbook's index, not ours: hand-laid sheets may sit between streamed ones.
        let index = self.workbook.worksheets_mut().len();
        let ws = self.workbook.add_worksheet_with_constant_memory();
        ws.set_name(&clean)
            .map_err(|e| ReportError::xlsx(&self.path, e))?;
        let id = self.sheets.len();
        self.sheets.push(SheetState {
            index,
            rows_written: 0,
            headers: headers.iter().map(|h| h.as_ref().to_string()).collect(),
            sample: Some(Vec::new()),
        });
        Ok(SheetId(id))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The workbook itself, for small hand-laid sheets (summaries, charts).
    pub fn workbook_mut(&mut self) -> &mut Workbook {
        &mut self.workbook
    }

    pub fn write_row(&mut self, sheet: SheetId, cells: &[Cell]) -> Result<(), ReportError> {
        let state = &mut self.sheets[sheet.0];
        if let Some(sample) = &mut state.sample {
            sample.push(cells.to_vec());
            if sample.len() >= WIDTH_SAMPLE_ROWS {
                self.flush_sample(sheet)?;
            }
            return Ok(());
        }
        self.put_row(sheet, cells)
    }

    /// Size the columns from the header and the rows seen so far, then write them out.
    fn flush_sample(&mut self, sheet: SheetId) -> Result<(), ReportError> {
        let Some(sample) = self.sheets[sheet.0].sample.take() else {
            return Ok(());
        };
        let headers = self.sheets[sheet.0].headers.clone();
        let index = self.sheets[sheet.0].index;
        let path = self.path.clone();
        let ws = self
            .workbook
            .worksheet_from_index(index)
            .map_err(|e| ReportError::xlsx(&path, e))?;
        for (col, h) in headers.iter().enumerate() {
            let widest = sample
                .iter()
                .filter_map(|r| r.get(col))
                .map(Cell::width)
                .chain([h.chars().count()])
                .max()
                .unwrap_or(8);
            ws.set_column_width(col as u16, (widest.clamp(6, MAX_COL_WIDTH) + 2) as f64)
                .map_err(|e| ReportError::xlsx(&path, e))?;
            ws.write_string_with_format(0, col as u16, h, &self.formats.header)
                .map_err(|e| ReportError::xlsx(&path, e))?;
        }
        ws.set_freeze_panes(1, 0)
            .map_err(|e| ReportError::xlsx(&path, e))?;
        for row in sample {
            self.put_row(sheet, &row)?;
        }
        Ok(())
    }

    fn put_row(&mut self, sheet: SheetId, cells: &[Cell]) -> Result<(), ReportError> {
        // Borrowed field by field: this runs once a row, so nothing is cloned here.
        let XlsxBook {
            workbook,
            path,
            sheets,
            formats: f,
        } = self;
        let path: &Path = path;
        let state = &mut sheets[sheet.0];
        state.rows_written += 1;
        let row = state.rows_written;
        let ws = workbook
            .worksheet_from_index(state.index)
            .map_err(|e| ReportError::xlsx(path, e))?;
        for (col, cell) in cells.iter().enumerate() {
            let col = col as u16;
            let r = match cell {
                Cell::Empty => continue,
                Cell::Text(s) => ws.write_string(row, col, clip(s)),
                Cell::Flagged(s) => ws.write_string_with_format(row, col, clip(s), &f.flagged),
                Cell::Int(i) => ws.write_number(row, col, *i as f64),
                Cell::Number(n) => ws.write_number(row, col, *n),
                Cell::Money(m) => ws.write_number_with_format(row, col, m.to_f64(), &f.money),
                Cell::Date(d) => match excel_date(d.year(), d.month(), d.day(), 0, 0, 0) {
                    Some(x) => ws.write_datetime_with_format(row, col, &x, &f.date),
                    None => ws.write_string(row, col, d.to_string()),
                },
                Cell::DateTime(dt) => match excel_date(
                    dt.year(),
                    dt.month(),
                    dt.day(),
                    dt.hour(),
                    dt.minute(),
                    dt.second(),
                ) {
                    Some(x) => ws.write_datetime_with_format(row, col, &x, &f.datetime),
                    None => ws.write_string(row, col, dt.to_string()),
                },
            };
            r.map_err(|e| ReportError::xlsx(path, e))?;
        }
        Ok(())
    }

    /// Rows written so far to a sheet (header not counted).
    pub fn rows(&self, sheet: SheetId) -> u64 {
        let s = &self.sheets[sheet.0];
        s.rows_written as u64 + s.sample.as_ref().map_or(0, |v| v.len() as u64)
    }

    /// Finish every sheet (autofilter over what was written) and save the file.
    pub fn close(mut self) -> Result<(), ReportError> {
        for i in 0..self.sheets.len() {
            self.flush_sample(SheetId(i))?;
            let s = &self.sheets[i];
            let last_col = s.headers.len().saturating_sub(1) as u16;
            if !s.headers.is_empty() {
                let ws = self
                    .workbook
                    .worksheet_from_index(s.index)
                    .map_err(|e| ReportError::xlsx(&self.path, e))?;
                ws.autofilter(0, 0, s.rows_written, last_col)
                    .map_err(|e| ReportError::xlsx(&self.path, e))?;
            }
        }
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| ReportError::io(dir, e))?;
        }
        self.workbook
            .save(&self.path)
            .map_err(|e| ReportError::xlsx(&self.path, e))
    }
}

fn clip(s: &str) -> &str {
    if s.len() <= MAX_CELL_CHARS {
        return s; // no more characters than bytes
    }
    match s.char_indices().nth(MAX_CELL_CHARS) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn excel_date(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Option<ExcelDateTime> {
    // Excel cannot show dates before 1900; such values stay text.
    if !(1900..=9999).contains(&y) {
        return None;
    }
    ExcelDateTime::from_ymd(y as u16, mo as u8, d as u8)
        .and_then(|x| x.and_hms(h as u16, mi as u8, s as f64))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_detection_keeps_phones_and_numbers() {
        assert!(looks_like_formula("=HYPERLINK(\"http://x\")"));
        assert!(looks_like_formula("@SUM(A1)"));
        assert!(looks_like_formula("+cmd|' /C calc'!A0"));
        assert!(!looks_like_formula("+7 (342) 200-00-00"));
        assert!(!looks_like_formula("-12.50"));
        assert!(!looks_like_formula("Иванов"));
    }

    #[test]
    fn windows_1251_csv_round_trips_cyrillic_and_counts_unmappable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        let mut t = CsvTable::create(
            &path,
            &["Имя".into(), "Сумма".into()],
            CsvOptions {
                encoding: CsvEncoding::Windows1251,
                delimiter: b';',
                escape_formulas: true,
            },
        )
        .unwrap();
        // A long row forces the csv crate to flush mid-character.
        let long = "Щ".repeat(20_000);
        t.write_row(&[
            Cell::text("Пётр 🙂"),
            Cell::Money(Money::parse("1234,5").unwrap()),
        ])
        .unwrap();
        t.write_row(&[Cell::text(long.clone()), Cell::text("=1+1")])
            .unwrap();
        assert_eq!(t.finish().unwrap(), 1);
        let bytes = std::fs::read(&path).unwrap();
        let (text, _, bad) = encoding_rs::WINDOWS_1251.decode(&bytes);
        assert!(!bad);
        assert!(text.starts_with("Имя;Сумма\n"));
        assert!(text.contains("Пётр ?;1234,50\n"), "{text}");
        assert!(text.contains(&format!("{long};'=1+1")));
    }

    #[test]
    fn utf8_bom_csv_starts_with_the_bom() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        let t = CsvTable::create(&path, &["Ф.И.О.".into()], CsvOptions::default()).unwrap();
        t.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..3], b"\xEF\xBB\xBF");
        assert_eq!(std::str::from_utf8(&bytes[3..]).unwrap(), "Ф.И.О.\n");
    }

    #[test]
    fn xlsx_keeps_formula_text_as_text_and_types_numbers_and_dates() {
        use calamine::{open_workbook, Data, Reader, Xlsx};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.xlsx");
        let mut book = XlsxBook::create(&path);
        let s = book
            .add_sheet("Сделки", &["id", "title", "sum", "date"])
            .unwrap();
        for i in 0..250 {
            book.write_row(
                s,
                &[
                    Cell::Int(i),
                    Cell::text("=HYPERLINK(\"http://evil\")"),
                    Cell::Money(Money::parse("10.5").unwrap()),
                    Cell::Date(NaiveDate::from_ymd_opt(2026, 11, 24).unwrap()),
                ],
            )
            .unwrap();
        }
        assert_eq!(book.rows(s), 250);
        book.close().unwrap();
        let mut wb: Xlsx<_> = open_workbook(&path).unwrap();
        let range = wb.worksheet_range("Сделки").unwrap();
        assert_eq!(range.height(), 251);
        assert_eq!(range.get((1, 0)), Some(&Data::Float(0.0)));
        assert_eq!(
            range.get((1, 1)),
            Some(&Data::String("=HYPERLINK(\"http://evil\")".into()))
        );
        assert!(matches!(range.get((250, 3)), Some(Data::DateTime(_))));
    }
}
