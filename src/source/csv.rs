//! CSV with encoding and delimiter detection, streamed: memory does not depend on the row count.

use super::records::{Record, Records, FIELD_GAP};
use super::{
    clean_headers, fit_row, CellIssue, RawBatch, RawRead, Row, RowSource, SourceError,
    SourceOptions, SourcePos,
};
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

/// The encodings Russian users' files come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    /// What Russian Excel writes for "CSV (разделители - запятые)".
    Windows1251,
    Utf16Le,
    Utf16Be,
}

impl Encoding {
    fn rs(self) -> &'static encoding_rs::Encoding {
        match self {
            Encoding::Utf8 => encoding_rs::UTF_8,
            Encoding::Windows1251 => encoding_rs::WINDOWS_1251,
            Encoding::Utf16Le => encoding_rs::UTF_16LE,
            Encoding::Utf16Be => encoding_rs::UTF_16BE,
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Encoding::Utf8 => "utf-8",
            Encoding::Windows1251 => "windows-1251",
            Encoding::Utf16Le => "utf-16le",
            Encoding::Utf16Be => "utf-16be",
        })
    }
}

impl FromStr for Encoding {
    type Err = SourceError;
    /// `"auto"` is not an encoding: callers map it to `None` before parsing.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "utf-8" | "utf8" => Ok(Encoding::Utf8),
            "windows-1251" | "cp1251" | "win1251" | "1251" => Ok(Encoding::Windows1251),
            // A UTF-16 file without a BOM is almost always little-endian (Windows "Unicode text").
            "utf-16" | "utf16" | "utf-16le" => Ok(Encoding::Utf16Le),
            "utf-16be" => Ok(Encoding::Utf16Be),
            _ => Err(SourceError::UnknownEncoding(s.to_string())),
        }
    }
}

/// Detect the encoding from the first bytes: a BOM wins; then UTF-16 without a BOM, recognised
/// by its NUL bytes all in one column (the zero high byte of ASCII delimiters, digits and line
/// breaks); otherwise valid UTF-8 is UTF-8 and anything else is taken as Windows-1251 (the only
/// 8-bit encoding our users send). Returns the encoding and the BOM length to skip.
pub fn detect_encoding(head: &[u8]) -> (Encoding, usize) {
    if head.starts_with(&[0xEF, 0xBB, 0xBF]) {
        return (Encoding::Utf8, 3);
    }
    if head.starts_with(&[0xFF, 0xFE]) {
        return (Encoding::Utf16Le, 2);
    }
    if head.starts_with(&[0xFE, 0xFF]) {
        return (Encoding::Utf16Be, 2);
    }
    if let Some(enc) = utf16_by_nul_pattern(head) {
        return (enc, 0);
    }
    match std::str::from_utf8(head) {
        Ok(_) => (Encoding::Utf8, 0),
        // The sample may end in the middle of a multi-byte character: that is still UTF-8.
        Err(e) if e.error_len().is_none() => (Encoding::Utf8, 0),
        Err(_) => (Encoding::Windows1251, 0),
    }
}

/// UTF-16 without a BOM: some code units (delimiters, digits, spaces and line breaks are ASCII
/// even in Cyrillic text) have a zero byte on one side, and few on the other — binary data has
/// its NULs on both sides — and the sample decodes without a broken surrogate pair. Whether the
/// text is readable (no control characters) is for the caller to judge.
fn utf16_by_nul_pattern(head: &[u8]) -> Option<Encoding> {
    let n = head.len().min(4096) & !1;
    if n < 4 {
        return None;
    }
    let (mut even, mut odd) = (0usize, 0usize);
    for (i, &b) in head[..n].iter().enumerate() {
        if b == 0 {
            if i % 2 == 0 {
                even += 1;
            } else {
                odd += 1;
            }
        }
    }
    let units = n / 2;
    let enough = |k: usize| k >= 2 && k * 32 >= units;
    let (enc, rs) = if enough(odd) && even * 4 <= odd {
        (Encoding::Utf16Le, encoding_rs::UTF_16LE)
    } else if enough(even) && odd * 4 <= even {
        (Encoding::Utf16Be, encoding_rs::UTF_16BE)
    } else {
        return None;
    };
    // The sample may end between the two halves of a surrogate pair.
    let last = &head[n - 2..n];
    let last = match enc {
        Encoding::Utf16Le => u16::from_le_bytes([last[0], last[1]]),
        _ => u16::from_be_bytes([last[0], last[1]]),
    };
    let m = if (0xD800..0xDC00).contains(&last) {
        n - 2
    } else {
        n
    };
    rs.decode_without_bom_handling_and_without_replacement(&head[..m])
        .map(|_| enc)
}

/// Pick the delimiter among `,` `;` tab `|` that splits the first lines most consistently.
pub fn sniff_delimiter(text: &str) -> u8 {
    const CANDIDATES: [u8; 4] = [b';', b',', b'\t', b'|'];
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(20)
        .collect();
    let mut best = (b',', 0usize, 0usize);
    for &cand in &CANDIDATES {
        let counts: Vec<usize> = lines.iter().map(|l| count_unquoted(l, cand)).collect();
        let Some(&first) = counts.first() else {
            continue;
        };
        if first == 0 {
            continue;
        }
        let consistent = counts.iter().filter(|&&c| c == first).count();
        if (consistent, first) > (best.1, best.2) {
            best = (cand, consistent, first);
        }
    }
    best.0
}

/// Occurrences of `delim` outside double quotes (a line-local approximation: good enough to
/// sniff, since the header line rarely contains newlines inside quotes).
fn count_unquoted(line: &str, delim: u8) -> usize {
    let mut quoted = false;
    let mut n = 0;
    for &b in line.as_bytes() {
        if b == b'"' {
            quoted = !quoted;
        } else if b == delim && !quoted {
            n += 1;
        }
    }
    n
}

/// A `Read` adapter that turns any supported encoding into UTF-8 on the fly.
struct DecodeReader<R> {
    inner: R,
    decoder: encoding_rs::Decoder,
    inbuf: Vec<u8>,
    in_start: usize,
    in_end: usize,
    eof: bool,
    /// The decoder was flushed (`last = true`): encoding_rs panics if it is used again.
    flushed: bool,
    outbuf: Vec<u8>,
    out_start: usize,
    out_end: usize,
}

impl<R: Read> DecodeReader<R> {
    fn new(inner: R, enc: Encoding) -> Self {
        DecodeReader {
            inner,
            // BOM already skipped by the caller; decode without sniffing again.
            decoder: enc.rs().new_decoder_without_bom_handling(),
            inbuf: vec![0; 64 * 1024],
            in_start: 0,
            in_end: 0,
            eof: false,
            flushed: false,
            outbuf: vec![0; 3 * 64 * 1024 + 16],
            out_start: 0,
            out_end: 0,
        }
    }
}

impl<R: Read> Read for DecodeReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.out_start < self.out_end {
                let n = buf.len().min(self.out_end - self.out_start);
                buf[..n].copy_from_slice(&self.outbuf[self.out_start..self.out_start + n]);
                self.out_start += n;
                return Ok(n);
            }
            if self.in_start == self.in_end && !self.eof {
                let n = self.inner.read(&mut self.inbuf)?;
                self.in_start = 0;
                self.in_end = n;
                self.eof = n == 0;
            }
            if self.eof && self.in_start == self.in_end {
                if self.flushed {
                    return Ok(0);
                }
                // Flush the decoder once (a dangling UTF-16 byte or surrogate becomes U+FFFD).
                self.flushed = true;
                let (_, _, written, _) = self.decoder.decode_to_utf8(&[], &mut self.outbuf, true);
                if written == 0 {
                    return Ok(0);
                }
                self.out_start = 0;
                self.out_end = written;
                continue;
            }
            let (_, read, written, _) = self.decoder.decode_to_utf8(
                &self.inbuf[self.in_start..self.in_end],
                &mut self.outbuf,
                false,
            );
            self.in_start += read;
            self.out_start = 0;
            self.out_end = written;
        }
    }
}

pub(crate) struct CsvSource {
    records: Records,
    headers: Vec<String>,
    file: Arc<str>,
    path: PathBuf,
    record: Record,
    row: u64,
    encoding: Encoding,
    delimiter: u8,
    done: bool,
    /// Decode each field from this single-byte encoding (the reader parses raw bytes).
    field_decoder: Option<&'static encoding_rs::Encoding>,
    /// What the last raw batch held, to size the next one at once.
    batch_room: (usize, usize, usize),
}

impl CsvSource {
    pub(crate) fn open(path: &Path, opts: &SourceOptions) -> Result<CsvSource, SourceError> {
        let io_err = |source| SourceError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::open(path).map_err(io_err)?;
        let mut head = vec![0u8; 64 * 1024];
        let n = read_full(&mut file, &mut head).map_err(io_err)?;
        head.truncate(n);
        let (detected, bom) = detect_encoding(&head);
        let encoding = opts.encoding.unwrap_or(detected);
        // Skip the BOM only when it belongs to the encoding we decode with.
        let skip = if encoding == detected { bom } else { 0 };
        let delimiter = match opts.delimiter {
            Some(d) => d,
            None => {
                let (text, _) = encoding.rs().decode_without_bom_handling(&head[skip..]);
                sniff_delimiter(&text)
            }
        };
        let rest = std::io::Cursor::new(head[skip..].to_vec()).chain(file);
        // Windows-1251 is ASCII-compatible and one byte per character, so the CSV structure can
        // be parsed on the raw bytes and each field decoded on its own — on the worker threads
        // when the rows go through `read_raw`. UTF-16 is decoded as a stream before parsing.
        let field_decoder = (encoding == Encoding::Windows1251).then(|| encoding.rs());
        let input: Box<dyn Read + Send> = match encoding {
            Encoding::Utf8 | Encoding::Windows1251 => Box::new(rest),
            other => Box::new(DecodeReader::new(rest, other)),
        };
        let mut records = Records::new(input, delimiter, 256 * 1024);
        let mut record = Record::default();
        let got = record.read(&mut records).map_err(|e| SourceError::Csv {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if !got {
            return Err(SourceError::Empty {
                path: path.to_path_buf(),
            });
        }
        let raw: Vec<String> = record
            .iter()
            .map(|f| match field_decoder {
                Some(enc) => enc.decode_without_bom_handling(f).0.into_owned(),
                None => String::from_utf8_lossy(f).into_owned(),
            })
            .collect();
        let headers = clean_headers(path, raw)?;
        Ok(CsvSource {
            records,
            headers,
            file: Arc::from(path.display().to_string()),
            path: path.to_path_buf(),
            record,
            row: 1,
            encoding,
            delimiter,
            done: false,
            field_decoder,
            batch_room: (0, 0, 0),
        })
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Every byte's UTF-8 in Windows-1251 (what encoding_rs decodes it to, U+FFFD where it has
/// none), for decoding cells without a decoder call per cell: the character's 1–3 bytes in the
/// low bytes of the little-endian `u32`, their count in the top byte.
pub(crate) fn single_byte_table(
    enc: &'static encoding_rs::Encoding,
) -> Option<&'static [u32; 256]> {
    static CP1251: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    if enc != encoding_rs::WINDOWS_1251 {
        return None;
    }
    Some(CP1251.get_or_init(|| {
        let mut t = [0u32; 256];
        for (byte, slot) in t.iter_mut().enumerate() {
            let byte = [byte as u8];
            let (text, _) = enc.decode_without_bom_handling(&byte);
            let mut chars = text.chars();
            let c = match (chars.next(), chars.next()) {
                (Some(one), None) => one,
                _ => '\u{FFFD}',
            };
            let mut utf8 = [0u8; 4];
            let n = c.encode_utf8(&mut utf8).len();
            assert!(n <= 3, "a single-byte encoding maps into the BMP");
            utf8[3] = n as u8;
            *slot = u32::from_le_bytes(utf8);
        }
        t
    }))
}

/// Append the fields `bytes[start..ends[0]]`, `bytes[ends[0] + FIELD_GAP..ends[1]]`, …
/// decoded through `table` (see [`single_byte_table`]) to `out`, calling `field_done` with each
/// field's end in `out`: a whole row with one reservation and one call. ASCII fields are copied
/// as they are; in others each byte's character is stored as four bytes at once (the fourth is
/// overwritten by the next character or left past the end): no branch, no bounds check.
#[inline]
pub(crate) fn push_single_byte_fields(
    bytes: &[u8],
    start: usize,
    ends: &[usize],
    table: &[u32; 256],
    out: &mut Vec<u8>,
    mut field_done: impl FnMut(usize),
) {
    let Some(&last) = ends.last() else {
        return;
    };
    // At most 3 bytes per input byte, plus the spare fourth byte of the last store.
    let room = bytes[start..last].len() * 3 + 1;
    out.reserve(room);
    let at = out.len();
    debug_assert!(out.spare_capacity_mut().len() >= room);
    let base = out.spare_capacity_mut().as_mut_ptr().cast::<u8>();
    // Bytes written; before input byte `p` is read, `w <= 3 * (p - start)` (a byte writes at
    // most 3, a gap between fields none).
    let mut w = 0usize;
    let mut from = start;
    for &end in ends {
        let field = &bytes[from..end];
        if field.is_ascii() {
            // SAFETY: the copy ends at `w + field.len() <= 3 * (end - start) < room`, inside the
            // spare capacity reserved above; `field` is in `bytes`, not in `out`.
            unsafe { std::ptr::copy_nonoverlapping(field.as_ptr(), base.add(w), field.len()) };
            w += field.len();
        } else {
            // SAFETY: a store for input byte `p` ends at `w + 4 <= 3 * (p - start) + 4
            // <= 3 * (last - start) + 1 = room`, inside the spare capacity reserved above.
            // `write_unaligned` needs no alignment.
            let mut store = |b: u8| {
                let entry = table[usize::from(b)];
                unsafe {
                    base.add(w)
                        .cast::<[u8; 4]>()
                        .write_unaligned(entry.to_le_bytes())
                };
                w += (entry >> 24) as usize;
            };
            // Four at a time: the loop's own work is then shared by four characters.
            let mut quads = field.chunks_exact(4);
            for q in &mut quads {
                store(q[0]);
                store(q[1]);
                store(q[2]);
                store(q[3]);
            }
            for &b in quads.remainder() {
                store(b);
            }
        }
        debug_assert!(w <= room);
        field_done(at + w);
        from = end + FIELD_GAP;
    }
    // SAFETY: bytes `at..at + w` were initialised by the copies and stores above (a store's
    // first `len` bytes are kept; the next write starts right after them), and `w <= room` fits
    // the capacity. They are valid UTF-8: ASCII, or whole characters from `char::encode_utf8`.
    unsafe { out.set_len(at + w) };
    debug_assert!(std::str::from_utf8(&out[at..]).is_ok());
}

/// A CSV field as text; bytes that are not UTF-8 are replaced and reported.
pub(crate) fn cell_text(
    field: &[u8],
    column: usize,
    decoder: Option<&'static encoding_rs::Encoding>,
    issues: &mut Vec<CellIssue>,
) -> String {
    let mut out = Vec::new();
    push_cell_text(field, column, decoder, &mut out, issues);
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// [`cell_text`] as UTF-8 appended to `out` (no allocation once `out` is big enough). Only
/// valid UTF-8 is ever appended.
pub(crate) fn push_cell_text(
    field: &[u8],
    column: usize,
    decoder: Option<&'static encoding_rs::Encoding>,
    out: &mut Vec<u8>,
    issues: &mut Vec<CellIssue>,
) {
    if let Some(enc) = decoder {
        if let Some(table) = single_byte_table(enc) {
            push_single_byte_fields(field, 0, &[field.len()], table, out, |_| {});
            return;
        }
        let (text, _) = enc.decode_without_bom_handling(field);
        out.extend_from_slice(text.as_bytes());
        return;
    }
    match std::str::from_utf8(field) {
        Ok(_) => out.extend_from_slice(field),
        Err(_) => {
            let s = String::from_utf8_lossy(field);
            out.extend_from_slice(s.as_bytes());
            issues.push(CellIssue {
                column: Some(column),
                value: s.into_owned(),
                message: "bytes that are not valid UTF-8 (is the file Windows-1251? try --encoding windows-1251)".into(),
            });
        }
    }
}

impl Iterator for CsvSource {
    type Item = Result<Row, SourceError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.record.read(&mut self.records) {
            Ok(false) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(SourceError::Csv {
                    path: self.path.clone(),
                    message: format!("after row {}: {e}", self.row),
                }))
            }
            Ok(true) => {
                self.row += 1;
                let mut issues = Vec::new();
                let mut cells: Vec<String> = Vec::with_capacity(self.headers.len());
                for (i, field) in self.record.iter().enumerate() {
                    cells.push(cell_text(field, i, self.field_decoder, &mut issues));
                }
                fit_row(&mut cells, self.headers.len(), &mut issues, true);
                Some(Ok(Row {
                    pos: SourcePos {
                        file: self.file.clone(),
                        sheet: None,
                        row: self.row,
                    },
                    cells,
                    issues,
                }))
            }
        }
    }
}

impl RowSource for CsvSource {
    fn headers(&self) -> &[String] {
        &self.headers
    }
    fn read_raw(&mut self, max: usize) -> Option<RawRead> {
        let mut batch = RawBatch::new(
            self.file.clone(),
            self.headers.len(),
            self.field_decoder,
            self.batch_room,
        );
        let mut error = None;
        while !self.done && batch.len() < max {
            match batch.push_with(self.row + 1, |bytes, ends| {
                self.records.read_into(bytes, ends)
            }) {
                Ok(false) => self.done = true,
                Err(e) => {
                    self.done = true;
                    error = Some(SourceError::Csv {
                        path: self.path.clone(),
                        message: format!("after row {}: {e}", self.row),
                    });
                }
                Ok(true) => self.row += 1,
            }
        }
        self.batch_room = batch.room();
        Some(RawRead {
            batch,
            error,
            eof: self.done,
        })
    }
    fn file(&self) -> &str {
        &self.file
    }
    fn describe(&self) -> String {
        let d = match self.delimiter {
            b'\t' => "tab".to_string(),
            d => format!("'{}'", d as char),
        };
        format!("CSV, {}, delimiter {d}", self.encoding)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_boms_and_cp1251() {
        assert_eq!(detect_encoding(b"\xEF\xBB\xBFa"), (Encoding::Utf8, 3));
        assert_eq!(detect_encoding(b"\xFF\xFEa\0"), (Encoding::Utf16Le, 2));
        assert_eq!(detect_encoding("Имя".as_bytes()), (Encoding::Utf8, 0));
        assert_eq!(detect_encoding(b"\xC8\xEC\xFF"), (Encoding::Windows1251, 0));
        // Truncated multi-byte char at the end of the sample is still UTF-8.
        assert_eq!(detect_encoding(&"Я".as_bytes()[..1]), (Encoding::Utf8, 0));
    }

    #[test]
    fn raw_batches_build_the_same_rows_as_the_iterator() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.csv");
        // Ragged rows, quoted newline, bad UTF-8, empty line.
        std::fs::write(
            &p,
            b"a;b;c\n1;2;3\n4;5\n6;7;8;9\n\"x\ny\";\xff;z\n\n10;11;12\n".as_slice(),
        )
        .unwrap();
        let opts = SourceOptions {
            encoding: Some(Encoding::Utf8),
            ..SourceOptions::default()
        };
        let want: Vec<Row> = CsvSource::open(&p, &opts)
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        let (got, viewed) = raw_rows(&p, &opts);
        assert_eq!(got, want);
        assert_eq!(viewed, want);
        assert_eq!(want.len(), 5);
        assert!(want[1..4].iter().all(|r| !r.issues.is_empty()), "{want:?}");
    }

    /// A file's rows through `read_raw`: built with `row`, and decoded into one reused buffer
    /// with `decode_row` (what `validate` reads).
    fn raw_rows(p: &Path, opts: &SourceOptions) -> (Vec<Row>, Vec<Row>) {
        let mut src = CsvSource::open(p, opts).unwrap();
        let (mut got, mut viewed) = (Vec::new(), Vec::new());
        let (mut text, mut ends) = (Vec::new(), Vec::new());
        loop {
            let raw = src.read_raw(2).unwrap();
            assert!(raw.error.is_none());
            for i in 0..raw.batch.len() {
                got.push(raw.batch.row(i));
                let mut issues = Vec::new();
                let pos = raw.batch.pos(i);
                let cells = raw.batch.decode_row(i, &mut text, &mut ends, &mut issues);
                let view = super::super::RowView {
                    pos: &pos,
                    cells,
                    issues: &issues,
                };
                viewed.push(view.to_row());
            }
            if raw.eof {
                break;
            }
        }
        (got, viewed)
    }

    #[test]
    fn cp1251_cells_decode_every_byte_as_encoding_rs_does() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cp.csv");
        // Every byte but the delimiter, quote and line breaks, in runs mixed with ASCII.
        let all: Vec<u8> = (1..=255u8)
            .filter(|b| ![b';', b'"', b'\n', b'\r'].contains(b))
            .collect();
        let mut file = b"\xC8\xEC\xFF;b\n".to_vec();
        file.extend_from_slice(&all);
        file.extend_from_slice(b";x\xE0y\n\xC0\xC1;\n\xF1\xF2\xF3;1;\xFF\n");
        std::fs::write(&p, &file).unwrap();
        let opts = SourceOptions::default();
        let (got, viewed) = raw_rows(&p, &opts);
        let dec = |b: &[u8]| {
            encoding_rs::WINDOWS_1251
                .decode_without_bom_handling(b)
                .0
                .into_owned()
        };
        assert_eq!(got[0].cells, [dec(&all), "xаy".to_string()]);
        assert_eq!(got[1].cells, ["АБ", ""]);
        assert_eq!(got[2].cells, ["сту", "1"]);
        assert_eq!(got[2].issues[0].value, "я");
        assert_eq!(viewed, got);
        let want: Vec<Row> = CsvSource::open(&p, &opts)
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(want, got);
    }

    proptest::proptest! {
        #![proptest_config(crate::values::hostile::config())]

        /// Any bytes in Windows-1251 (the fast table path) read as the text encoding_rs makes
        /// of them, appended after what the buffer already held.
        #[test]
        fn cp1251_fields_decode_as_encoding_rs_does(
            before in "\\PC{0,4}",
            field in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
        ) {
            let mut out = before.clone().into_bytes();
            let mut issues = Vec::new();
            push_cell_text(&field, 0, Some(encoding_rs::WINDOWS_1251), &mut out, &mut issues);
            let (want, _) = encoding_rs::WINDOWS_1251.decode_without_bom_handling(&field);
            proptest::prop_assert_eq!(String::from_utf8(out).unwrap(), before + &want);
            proptest::prop_assert!(issues.is_empty());
        }

        /// A row of fields (ASCII runs, Cyrillic, any byte; every length around the eight bytes
        /// decoded at once) reads as encoding_rs decodes each field, each ending where it should.
        #[test]
        fn cp1251_rows_decode_field_by_field_as_encoding_rs_does(
            before in "\\PC{0,4}",
            fields in proptest::collection::vec(
                proptest::collection::vec(proptest::prop_oneof![
                    4 => 0x20u8..0x7F,
                    2 => 0xC0u8..=0xFF,
                    1 => proptest::num::u8::ANY,
                ], 0..40),
                1..8,
            ),
            gap in proptest::num::u8::ANY,
        ) {
            let mut bytes = Vec::new();
            let mut ends = Vec::new();
            for f in &fields {
                bytes.extend_from_slice(f);
                ends.push(bytes.len());
                bytes.push(gap);
            }
            let table = single_byte_table(encoding_rs::WINDOWS_1251).unwrap();
            let mut out = before.clone().into_bytes();
            let mut got_ends = Vec::new();
            push_single_byte_fields(&bytes, 0, &ends, table, &mut out, |e| got_ends.push(e));
            let mut want = before.clone().into_bytes();
            let mut want_ends = Vec::new();
            for f in &fields {
                let (text, _) = encoding_rs::WINDOWS_1251.decode_without_bom_handling(f);
                want.extend_from_slice(text.as_bytes());
                want_ends.push(want.len());
            }
            proptest::prop_assert_eq!(String::from_utf8(out).unwrap(), String::from_utf8(want).unwrap());
            proptest::prop_assert_eq!(got_ends, want_ends);
        }
    }

    #[test]
    fn utf16_with_a_dangling_last_byte_ends_in_a_replacement_character() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("odd.csv");
        let mut bytes: Vec<u8> = "a;b\n1;2"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        bytes.push(b'x'); // half a code unit: the file was cut
        std::fs::write(&p, &bytes).unwrap();
        let rows: Vec<Row> = CsvSource::open(&p, &SourceOptions::default())
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].cells, ["1", "2\u{FFFD}"]);
    }

    #[test]
    fn sniffs_delimiters() {
        assert_eq!(sniff_delimiter("a;b;c\n1;2,5;3\n"), b';');
        assert_eq!(sniff_delimiter("a,b,c\n1,2,3\n"), b',');
        assert_eq!(sniff_delimiter("a\tb\n1\t2\n"), b'\t');
        assert_eq!(sniff_delimiter("a|b\n1|2\n"), b'|');
        assert_eq!(sniff_delimiter("\"x;y\",b\n1,2\n"), b',');
    }
}
