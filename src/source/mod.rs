//! Reading rows from CSV, XLSX and XLS files.
//!
//! Every source yields [`Row`]s that keep where they came from ([`SourcePos`]: file, sheet, the
//! 1-based row number a spreadsheet shows) so every later message can point at the exact cell.
//! Cell-level trouble the reader sees (ragged rows, `#N/A`, undecodable bytes) travels with the row
//! as [`CellIssue`]s instead of stopping the run: one bad cell must not hide the other million.

mod csv;
mod display;
mod excel;
mod ole;
mod package;
mod records;
mod sniff;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

pub use self::csv::{detect_encoding, sniff_delimiter, Encoding};
pub use self::display::{display, display_path, escape, escape_multiline, MAX_SHOWN_CHARS};

/// Where a row came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourcePos {
    pub file: Arc<str>,
    pub sheet: Option<Arc<str>>,
    /// 1-based row number as a spreadsheet shows it (the header is row 1).
    pub row: u64,
}

impl fmt::Display for SourcePos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = escape(&self.file);
        match &self.sheet {
            Some(sheet) => write!(f, "{file} [{}] row {}", display(sheet), self.row),
            None => write!(f, "{file} row {}", self.row),
        }
    }
}

/// Something wrong with one cell (or the row's shape) that the reader noticed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellIssue {
    /// 0-based column index into the headers; `None` for the row as a whole.
    pub column: Option<usize>,
    pub value: String,
    pub message: String,
}

/// One data row: the cells as text, exactly as the user wrote them (dates from spreadsheets as
/// `YYYY-MM-DD[ HH:MM:SS]`, integral numbers without `.0` or exponent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub pos: SourcePos,
    /// Always exactly as many cells as the header has (missing cells are empty strings; extra
    /// cells are dropped and reported in `issues`).
    pub cells: Vec<String>,
    pub issues: Vec<CellIssue>,
}

impl Row {
    /// A row with nothing but whitespace in it (spreadsheets are full of them).
    pub fn is_blank(&self) -> bool {
        self.view().is_blank()
    }

    /// The row borrowed, as the mapper reads it.
    pub fn view(&self) -> RowView<'_> {
        RowView {
            pos: &self.pos,
            cells: Cells::Owned(&self.cells),
            issues: &self.issues,
        }
    }
}

/// A row's cells, borrowed: either a row's own strings, or one decoded text with each cell's end
/// in it (how CSV batches are read: one buffer a worker reuses, not a string per cell).
#[derive(Debug, Clone, Copy)]
pub enum Cells<'a> {
    Owned(&'a [String]),
    /// Cells `0..ends.len()` are `text[ends[i-1]..ends[i]]`; cells up to `width` after them are
    /// empty (a short row).
    Packed {
        text: &'a str,
        ends: &'a [usize],
        width: usize,
        /// Decoded from a single-byte encoding (Windows-1251…): every character is in the Basic
        /// Multilingual Plane, so no cell holds an emoji or another 4-byte character.
        bmp_only: bool,
    },
}

impl<'a> Cells<'a> {
    /// How many cells the row has (the header's width).
    pub fn width(&self) -> usize {
        match *self {
            Cells::Owned(c) => c.len(),
            Cells::Packed { width, .. } => width,
        }
    }

    /// Cell `i`; empty past the row's end.
    #[inline]
    pub fn get(&self, i: usize) -> &'a str {
        match *self {
            Cells::Owned(c) => c.get(i).map_or("", String::as_str),
            Cells::Packed { text, ends, .. } => match ends.get(i) {
                Some(&end) => &text[if i == 0 { 0 } else { ends[i - 1] }..end],
                None => "",
            },
        }
    }

    pub fn iter(self) -> impl Iterator<Item = &'a str> {
        (0..self.width()).map(move |i| self.get(i))
    }

    /// Known to hold no character beyond U+FFFF (false when not known).
    pub fn bmp_only(&self) -> bool {
        matches!(self, Cells::Packed { bmp_only: true, .. })
    }
}

/// A row borrowed: what [`Row`] holds, without owning its cells.
#[derive(Debug, Clone, Copy)]
pub struct RowView<'a> {
    pub pos: &'a SourcePos,
    pub cells: Cells<'a>,
    pub issues: &'a [CellIssue],
}

impl RowView<'_> {
    /// A row with nothing but whitespace in it (spreadsheets are full of them).
    pub fn is_blank(&self) -> bool {
        self.cells.iter().all(|c| crate::values::trim(c).is_empty()) && self.issues.is_empty()
    }

    /// The row as an owned [`Row`].
    pub fn to_row(&self) -> Row {
        Row {
            pos: self.pos.clone(),
            cells: self.cells.iter().map(str::to_string).collect(),
            issues: self.issues.to_vec(),
        }
    }
}

/// How to read a file; everything `None` means "detect".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceOptions {
    pub encoding: Option<Encoding>,
    /// A single-byte delimiter for CSV.
    pub delimiter: Option<u8>,
    /// Sheet name, or a 1-based index given as digits (`"2"`).
    pub sheet: Option<String>,
}

impl SourceOptions {
    /// Fill what `self` leaves open from `other` (CLI flags override template `[source]`).
    pub fn or(self, other: &SourceOptions) -> SourceOptions {
        SourceOptions {
            encoding: self.encoding.or(other.encoding),
            delimiter: self.delimiter.or(other.delimiter),
            sheet: self.sheet.or_else(|| other.sheet.clone()),
        }
    }
}

/// How the user asked to read the file (flags), as written: applied over a template's
/// `[source]` by [`SourceOverrides::options`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceOverrides {
    /// `auto`, or an encoding name.
    pub encoding: Option<String>,
    pub delimiter: Option<String>,
    pub sheet: Option<String>,
}

impl SourceOverrides {
    /// The reader options: these overrides first, then the template's `[source]` (if any), then
    /// detection. An explicit `auto` encoding wins over the template's encoding.
    pub fn options(&self, template: Option<&SourceOptions>) -> Result<SourceOptions, SourceError> {
        let mut opts = SourceOptions::default();
        match self.encoding.as_deref() {
            Some("auto") => {}
            Some(e) => opts.encoding = Some(e.parse::<Encoding>()?),
            None => opts.encoding = template.and_then(|t| t.encoding),
        }
        opts.delimiter = self.delimiter.as_deref().map(parse_delimiter).transpose()?;
        opts.sheet = self.sheet.clone();
        Ok(match template {
            Some(t) => opts.or(t),
            None => opts,
        })
    }
}

/// Parse a delimiter given on the command line or in a template: one character, or a name.
pub fn parse_delimiter(s: &str) -> Result<u8, SourceError> {
    match s {
        "\\t" | "tab" | "\t" => Ok(b'\t'),
        "comma" => Ok(b','),
        "semicolon" => Ok(b';'),
        "pipe" => Ok(b'|'),
        _ if s.len() == 1 && s.is_ascii() => Ok(s.as_bytes()[0]),
        _ => Err(SourceError::BadDelimiter(s.to_string())),
    }
}

/// Errors that stop reading a file. Every user-supplied text in them (file names, headers,
/// sheet names, options) is shown through [`display`]/[`escape`]: no raw control characters.
#[derive(Debug, Error)]
pub enum SourceError {
    #[error("{}: cannot read: {source}", display_path(.path))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a valid CSV file: {}", display_path(.path), escape(.message))]
    Csv { path: PathBuf, message: String },
    #[error("{}: cannot read the workbook: {}", display_path(.path), escape(.message))]
    Workbook { path: PathBuf, message: String },
    #[error(
        "{}: no sheet '{}' (the workbook has: {})",
        display_path(.path),
        display(.sheet),
        escape(.available)
    )]
    NoSuchSheet {
        path: PathBuf,
        sheet: String,
        available: String,
    },
    #[error("{}: the file is empty (no header row)", display_path(.path))]
    Empty { path: PathBuf },
    #[error(
        "{}: the header row has an empty or duplicate column name at column {column}: '{}'",
        display_path(.path),
        display(.name)
    )]
    BadHeader {
        path: PathBuf,
        column: usize,
        name: String,
    },
    #[error(
        "{} is not a text or spreadsheet file (it looks like {what})",
        display_path(.path)
    )]
    NotText { path: PathBuf, what: &'static str },
    #[error(
        "unknown encoding '{}' (known: auto, utf-8, windows-1251, utf-16le, utf-16be)",
        display(.0)
    )]
    UnknownEncoding(String),
    #[error(
        "bad delimiter '{}': use one character such as ',' ';' '|' or 'tab'",
        display(.0)
    )]
    BadDelimiter(String),
    /// A stage of the pipeline failed (a bug): the run must stop, never take it for the end of
    /// the file.
    #[error("{file} row {row}: internal error: {message}; nothing from this row on was processed")]
    Internal {
        file: String,
        row: u64,
        message: String,
    },
}

/// A stream of rows with a header. Rows arrive in file order.
pub trait RowSource: Iterator<Item = Result<Row, SourceError>> + Send {
    /// Column names from the first row, trimmed.
    fn headers(&self) -> &[String];
    /// What was detected (encoding, delimiter, sheet), for the summary.
    fn describe(&self) -> String;
    /// The file, as rows name it.
    fn file(&self) -> &str;
    /// Up to `max` rows as raw fields, for sources that can hand them over cheaper than as
    /// [`Row`]s (CSV): the cells are then built — and later freed — on the worker threads, not
    /// on the one reader thread. `None` when the source does not support it (use the iterator).
    fn read_raw(&mut self, _max: usize) -> Option<RawRead> {
        None
    }
}

/// What [`RowSource::read_raw`] read: rows (possibly none) and then, maybe, the end or an error.
pub struct RawRead {
    pub batch: RawBatch,
    /// A read error after the rows of `batch`; the stream ends with it.
    pub error: Option<SourceError>,
    /// No more rows.
    pub eof: bool,
}

/// CSV rows as one byte buffer with field boundaries: three allocations per batch, not per cell.
#[derive(Debug, Default)]
pub struct RawBatch {
    file: Arc<str>,
    width: usize,
    /// The fields, each followed by one byte that is not part of it (a quote-free line is
    /// copied as it is: its delimiters are those bytes).
    bytes: Vec<u8>,
    /// End offset of each field in `bytes`; the next field starts one byte after it.
    ends: Vec<usize>,
    /// Per row: index of its first field in `ends`, its field count, its row number.
    rows: Vec<(usize, usize, u64)>,
    /// Single-byte encoding the fields are in (decoded per field in [`RawBatch::row`]).
    decoder: Option<&'static encoding_rs::Encoding>,
    /// Its table, when it has one: [`RawBatch::decode_row`] then decodes a row in one call.
    table: Option<&'static [u32; 256]>,
}

impl RawBatch {
    /// A batch with room for `room` (bytes, fields, rows: what [`RawBatch::room`] said of the
    /// previous batch), so that filling it does not grow its buffers step by step.
    pub(crate) fn new(
        file: Arc<str>,
        width: usize,
        decoder: Option<&'static encoding_rs::Encoding>,
        room: (usize, usize, usize),
    ) -> RawBatch {
        let more = |n: usize| n + n / 8;
        RawBatch {
            file,
            width,
            decoder,
            table: decoder.and_then(csv::single_byte_table),
            bytes: Vec::with_capacity(more(room.0)),
            ends: Vec::with_capacity(more(room.1)),
            rows: Vec::with_capacity(room.2),
        }
    }

    /// How much this batch holds: bytes, fields, rows.
    pub(crate) fn room(&self) -> (usize, usize, usize) {
        (self.bytes.len(), self.ends.len(), self.rows.len())
    }

    /// Add row `row`: `read` appends its fields to the bytes (each followed by one byte that
    /// is not part of it) and their ends to the ends, and returns how many — or `None`, and
    /// there is no row.
    pub(crate) fn push_with<E>(
        &mut self,
        row: u64,
        read: impl FnOnce(&mut Vec<u8>, &mut Vec<usize>) -> Result<Option<usize>, E>,
    ) -> Result<bool, E> {
        let first = self.ends.len();
        let Some(n) = read(&mut self.bytes, &mut self.ends)? else {
            return Ok(false);
        };
        debug_assert_eq!(self.ends.len(), first + n);
        self.rows.push((first, n, row));
        Ok(true)
    }

    /// Where the field after the one ending at `ends[k - 1]` starts (0 for `k == 0`).
    fn start(&self, k: usize) -> usize {
        if k == 0 {
            0
        } else {
            self.ends[k - 1] + records::FIELD_GAP
        }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The spreadsheet row number of row `i`.
    pub fn row_number(&self, i: usize) -> u64 {
        self.rows[i].2
    }

    /// The spreadsheet row number of the last row, if any.
    pub fn last_row(&self) -> Option<u64> {
        self.rows.last().map(|r| r.2)
    }

    /// Where row `i` came from.
    pub fn pos(&self, i: usize) -> SourcePos {
        SourcePos {
            file: self.file.clone(),
            sheet: None,
            row: self.rows[i].2,
        }
    }

    /// [`RawBatch::pos`], reusing `pos` when it names the same file (only its row changes).
    pub fn pos_reusing(&self, i: usize, pos: Option<SourcePos>) -> SourcePos {
        match pos {
            Some(mut p) if Arc::ptr_eq(&p.file, &self.file) && p.sheet.is_none() => {
                p.row = self.rows[i].2;
                p
            }
            _ => self.pos(i),
        }
    }

    /// Decode row `i` into `text` (UTF-8) and `ends` (both cleared first; reused from row to
    /// row, so a row costs no allocation) and append its reader issues: the same cells and
    /// issues as [`RawBatch::row`], as a [`Cells::Packed`] of the header's width.
    pub fn decode_row<'b>(
        &self,
        i: usize,
        text: &'b mut Vec<u8>,
        ends: &'b mut Vec<usize>,
        issues: &mut Vec<CellIssue>,
    ) -> Cells<'b> {
        let (first, n, _) = self.rows[i];
        text.clear();
        ends.clear();
        let mut start = self.start(first);
        if let Some(table) = self.table.filter(|_| n <= self.width) {
            // The common case: Windows-1251 and not too many cells (those few cells that are
            // not in the header would be reported).
            let row_ends = &self.ends[first..first + n];
            csv::push_single_byte_fields(&self.bytes, start, row_ends, table, text, |e| {
                ends.push(e)
            });
            let first_empty = row_ends.first().is_none_or(|&e| e == start);
            issues.extend(ragged(n, self.width, &[], first_empty, true));
            return packed(text, ends, self.width, true);
        }
        let mut extra = Vec::new();
        let mut first_empty = true;
        for (j, &end) in self.ends[first..first + n].iter().enumerate() {
            let field = &self.bytes[start..end];
            if j == 0 {
                first_empty = field.is_empty();
            }
            if j < self.width {
                csv::push_cell_text(field, j, self.decoder, text, issues);
                ends.push(text.len());
            } else {
                extra.push(csv::cell_text(field, j, self.decoder, issues));
            }
            start = end + records::FIELD_GAP;
        }
        issues.extend(ragged(n, self.width, &extra, first_empty, true));
        let bmp_only = self.decoder.is_some_and(|d| d.is_single_byte());
        packed(text, ends, self.width, bmp_only)
    }

    /// Build row `i` (what the CSV iterator would have yielded for it).
    pub fn row(&self, i: usize) -> Row {
        let (first, n, row) = self.rows[i];
        let mut start = self.start(first);
        let mut cells = Vec::with_capacity(self.width.max(n));
        let mut issues = Vec::new();
        for (j, &end) in self.ends[first..first + n].iter().enumerate() {
            cells.push(csv::cell_text(
                &self.bytes[start..end],
                j,
                self.decoder,
                &mut issues,
            ));
            start = end + records::FIELD_GAP;
        }
        fit_row(&mut cells, self.width, &mut issues, true);
        Row {
            pos: SourcePos {
                file: self.file.clone(),
                sheet: None,
                row,
            },
            cells,
            issues,
        }
    }
}

/// A row decoded by [`RawBatch::decode_row`] as [`Cells`].
fn packed<'b>(text: &'b [u8], ends: &'b [usize], width: usize, bmp_only: bool) -> Cells<'b> {
    debug_assert!(std::str::from_utf8(text).is_ok());
    // SAFETY: `decode_row` appends only UTF-8 (`push_cell_text` and `push_single_byte_fields`
    // append characters from their table — encoded by `char::encode_utf8` —, ASCII bytes, or
    // fields checked with `str::from_utf8`, lossy otherwise). Checking again cost as much as
    // decoding (a third of the row's reading).
    let text = unsafe { std::str::from_utf8_unchecked(text) };
    Cells::Packed {
        text,
        ends,
        width,
        bmp_only,
    }
}

/// Open a CSV, XLSX, XLS, XLSB or ODS file as a row stream. The type is decided by the content
/// (a ZIP or OLE2 signature, text or not), whatever the file is called; the extension only
/// tells XLSB from XLSX. A file that is neither text nor a spreadsheet is refused up front.
pub fn open(path: &Path, opts: &SourceOptions) -> Result<Box<dyn RowSource>, SourceError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .unwrap_or_default();
    let head = read_head(path, 8 * 1024)?;
    match sniff::sniff(&head, &ext) {
        sniff::Kind::Xlsx => Ok(Box::new(excel::XlsxSource::open(path, opts)?)),
        kind @ (sniff::Kind::Xls | sniff::Kind::Xlsb | sniff::Kind::Ods) => {
            Ok(Box::new(excel::RangeSource::open(path, opts, kind)?))
        }
        sniff::Kind::Text => Ok(Box::new(csv::CsvSource::open(path, opts)?)),
        sniff::Kind::Binary(what) => Err(SourceError::NotText {
            path: path.to_path_buf(),
            what,
        }),
    }
}

/// Up to `max` bytes from the start of the file.
fn read_head(path: &Path, max: usize) -> Result<Vec<u8>, SourceError> {
    use std::io::Read;
    let io_err = |source| SourceError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut head = Vec::with_capacity(max);
    std::fs::File::open(path)
        .map_err(io_err)?
        .take(max as u64)
        .read_to_end(&mut head)
        .map_err(io_err)?;
    Ok(head)
}

/// Trim header names and refuse empty/duplicate names in the middle: a template addresses columns
/// by name, so an ambiguous name would silently read the wrong column. Trailing empty header
/// cells (common in spreadsheets) are dropped.
pub(crate) fn clean_headers(path: &Path, raw: Vec<String>) -> Result<Vec<String>, SourceError> {
    let mut headers: Vec<String> = raw.into_iter().map(|h| h.trim().to_string()).collect();
    while headers.last().is_some_and(|h| h.is_empty()) {
        headers.pop();
    }
    if headers.is_empty() {
        return Err(SourceError::Empty {
            path: path.to_path_buf(),
        });
    }
    for (i, h) in headers.iter().enumerate() {
        if h.is_empty() || headers[..i].contains(h) {
            return Err(SourceError::BadHeader {
                path: path.to_path_buf(),
                column: i + 1,
                name: h.clone(),
            });
        }
    }
    Ok(headers)
}

/// Fit a row's cells to the header width, reporting extra non-empty cells (a ragged row is
/// usually a stray delimiter, and the data in the extra cells would otherwise vanish silently).
pub(crate) fn fit_row(
    cells: &mut Vec<String>,
    width: usize,
    issues: &mut Vec<CellIssue>,
    csv: bool,
) {
    let n = cells.len();
    let first_empty = cells.first().is_none_or(String::is_empty);
    let extra: Vec<String> = if n > width {
        cells.drain(width..).collect()
    } else {
        Vec::new()
    };
    issues.extend(ragged(n, width, &extra, first_empty, csv));
    cells.resize(width, String::new());
}

/// The issue of a row with `n` cells under a header of `width` (`extra`: the cells past the
/// header), if any. Spreadsheets legitimately omit trailing empty cells; in CSV a short row is
/// ragged, except an empty line (one empty cell).
fn ragged(
    n: usize,
    width: usize,
    extra: &[String],
    first_empty: bool,
    csv: bool,
) -> Option<CellIssue> {
    if n > width {
        extra
            .iter()
            .any(|c| !c.trim().is_empty())
            .then(|| CellIssue {
                column: None,
                value: extra.join(" | "),
                message: format!(
                    "row has {n} cells but the header has {width}; the extra cells are ignored"
                ),
            })
    } else if n < width && csv && !(n == 1 && first_empty) {
        Some(CellIssue {
            column: None,
            value: String::new(),
            message: format!(
                "row has {n} cells but the header has {width}; the missing cells are read as empty"
            ),
        })
    } else {
        None
    }
}
