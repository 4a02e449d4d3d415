//! CSV records split from a byte stream: quote-free lines by a word-at-a-time search for the
//! delimiter, everything else by `csv_core`, into buffers the caller owns.

use std::io::{self, Read};

/// The byte that follows every field in the buffers [`Records::read_into`] fills (not part of
/// any field): a quote-free line is then copied as it is, its delimiters standing in for it.
pub(crate) const FIELD_GAP: usize = 1;

/// CSV records from a byte stream, as `csv::Reader` with `flexible(true)` and no headers reads
/// them (`csv_core` defaults: `"` quotes, doubled to escape, `\r`, `\n` or `\r\n` end a record,
/// blank lines are skipped). A line without a quote — nearly every line of a real file — is
/// found with `memchr` and split at its delimiters eight bytes at a time; any other record goes
/// through `csv_core`.
pub(crate) struct Records {
    input: Box<dyn Read + Send>,
    /// Unread input is `buf[pos..end]`.
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    eof: bool,
    core: ::csv_core::Reader,
    delimiter: u8,
    /// The delimiter is not a quote or line break, so quote-free lines may be split directly.
    fast: bool,
    /// A record was read: csv_core read the first one (it drops a UTF-8 BOM at the very start).
    started: bool,
    /// `csv_core`'s output for one record, and its field ends.
    out: Vec<u8>,
    out_ends: Vec<usize>,
}

impl Records {
    /// `buf`: the read buffer's starting size (it grows to hold a line).
    pub(crate) fn new(input: Box<dyn Read + Send>, delimiter: u8, buf: usize) -> Records {
        Records {
            input,
            buf: vec![0; buf.max(1)],
            pos: 0,
            end: 0,
            eof: false,
            core: ::csv_core::ReaderBuilder::new()
                .delimiter(delimiter)
                .build(),
            delimiter,
            fast: !matches!(delimiter, b'"' | b'\r' | b'\n'),
            started: false,
            out: vec![0; 1024],
            out_ends: vec![0; 64],
        }
    }

    /// Read more input after what is unread (moved to the front; the buffer doubles when one
    /// line fills it). False at the end of the input.
    fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        if self.end == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        loop {
            match self.input.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Append the next record's fields to `bytes`, each followed by [`FIELD_GAP`] byte, and
    /// each field's end (an offset into `bytes`) to `ends`; the number of fields, or `None` at
    /// the end of the input.
    pub(crate) fn read_into(
        &mut self,
        bytes: &mut Vec<u8>,
        ends: &mut Vec<usize>,
    ) -> io::Result<Option<usize>> {
        if !self.started {
            self.started = true;
            // Enough input for csv_core to see a whole BOM on its first read, and a byte after
            // it (empty input would tell it the file ended).
            while self.end - self.pos < 4 && self.fill()? {}
            return self.read_parsed(bytes, ends);
        }
        if !self.fast {
            return self.read_parsed(bytes, ends);
        }
        // Blank lines and the previous record's line break.
        loop {
            while self.pos < self.end && matches!(self.buf[self.pos], b'\n' | b'\r') {
                self.pos += 1;
            }
            if self.pos < self.end {
                break;
            }
            if !self.fill()? {
                return Ok(None);
            }
        }
        // The line, up to its break or the end of the input; a quote anywhere in it, and it is
        // parsed instead (the quote may hide delimiters and line breaks).
        let mut len = 0;
        loop {
            let rest = &self.buf[self.pos + len..self.end];
            match memchr::memchr3(b'\n', b'\r', b'"', rest) {
                Some(i) if rest[i] == b'"' => return self.read_parsed(bytes, ends),
                Some(i) => {
                    len += i;
                    break;
                }
                None => {
                    len = self.end - self.pos;
                    if !self.fill()? {
                        break;
                    }
                }
            }
        }
        let line = &self.buf[self.pos..self.pos + len];
        let base = bytes.len();
        bytes.reserve(len + FIELD_GAP);
        bytes.extend_from_slice(line);
        bytes.push(self.delimiter);
        let first = ends.len();
        push_positions(line, self.delimiter, base, ends);
        ends.push(base + len);
        self.pos += len;
        Ok(Some(ends.len() - first))
    }

    /// [`Records::read_into`] through `csv_core`, from a record's start. The parser is not
    /// reset between records (that would make it drop a BOM again): a record leaves it in a
    /// state that reads the next byte as a record's start, whoever read the records between.
    fn read_parsed(
        &mut self,
        bytes: &mut Vec<u8>,
        ends: &mut Vec<usize>,
    ) -> io::Result<Option<usize>> {
        use ::csv_core::ReadRecordResult;
        let (mut outlen, mut endlen) = (0, 0);
        loop {
            if self.pos == self.end {
                self.fill()?;
            }
            // Empty input only at the end: that tells csv_core to finish the record.
            let (res, nin, nout, nend) = self.core.read_record(
                &self.buf[self.pos..self.end],
                &mut self.out[outlen..],
                &mut self.out_ends[endlen..],
            );
            self.pos += nin;
            outlen += nout;
            endlen += nend;
            match res {
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => {
                    let n = self.out.len() * 2;
                    self.out.resize(n, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    let n = self.out_ends.len() * 2;
                    self.out_ends.resize(n, 0);
                }
                ReadRecordResult::Record => {
                    let mut start = 0;
                    for &end in &self.out_ends[..endlen] {
                        bytes.extend_from_slice(&self.out[start..end]);
                        ends.push(bytes.len());
                        bytes.push(self.delimiter);
                        start = end;
                    }
                    return Ok(Some(endlen));
                }
                ReadRecordResult::End => return Ok(None),
            }
        }
    }
}

/// Append `base + i` for every `line[i] == byte`: sixteen bytes at a time with SSE2 (part of
/// every x86-64 CPU), eight elsewhere. A line's delimiters are too close together for
/// `memchr`'s per-call setup to pay; this loop was a third of the reader thread's work when it
/// went eight bytes at a time.
fn push_positions(line: &[u8], byte: u8, base: usize, out: &mut Vec<usize>) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
        };
        let (blocks, rest) = line.as_chunks::<16>();
        // SAFETY: SSE2 is part of every x86-64 CPU (the target enables it); each `block` is
        // 16 readable bytes and `loadu` needs no alignment.
        let pattern = unsafe { _mm_set1_epi8(byte as i8) };
        let mut at = base;
        for block in blocks {
            let mut hits = unsafe {
                let v = _mm_loadu_si128(block.as_ptr().cast::<__m128i>());
                _mm_movemask_epi8(_mm_cmpeq_epi8(v, pattern)) as u32
            };
            while hits != 0 {
                out.push(at + hits.trailing_zeros() as usize);
                hits &= hits - 1;
            }
            at += 16;
        }
        push_positions_swar(rest, byte, at, out);
    }
    #[cfg(not(target_arch = "x86_64"))]
    push_positions_swar(line, byte, base, out);
}

/// [`push_positions`] eight bytes at a time in a `u64`.
fn push_positions_swar(line: &[u8], byte: u8, base: usize, out: &mut Vec<usize>) {
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    let pattern = u64::from_le_bytes([byte; 8]);
    let (words, rest) = line.as_chunks::<8>();
    let mut at = base;
    for word in words {
        let x = u64::from_le_bytes(*word) ^ pattern;
        // The high bit of each byte of `x` that is zero, and only those (no borrow between
        // bytes: the low seven bits are added apart from the high one).
        let mut zero = !(((x & LOW7) + LOW7) | x | LOW7);
        while zero != 0 {
            out.push(at + (zero.trailing_zeros() / 8) as usize);
            zero &= zero - 1;
        }
        at += 8;
    }
    for (i, &b) in rest.iter().enumerate() {
        if b == byte {
            out.push(at + i);
        }
    }
}

/// The fields of one record, read by [`Records::read_into`] into buffers reused from record to
/// record.
#[derive(Default)]
pub(crate) struct Record {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Record {
    pub(crate) fn read(&mut self, records: &mut Records) -> io::Result<bool> {
        self.bytes.clear();
        self.ends.clear();
        Ok(records
            .read_into(&mut self.bytes, &mut self.ends)?
            .is_some())
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let field = &self.bytes[start..end];
            start = end + FIELD_GAP;
            field
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(crate::values::hostile::config())]

        /// Any bytes split into the same records as `csv::Reader` (flexible, no headers) gives,
        /// whatever the delimiter, however the input arrives and however small the buffer.
        #[test]
        fn records_split_as_the_csv_crate_does(
            file in proptest::collection::vec(
                proptest::sample::select(b";,\"\r\n a\xEF\xBB\xBF\xC0".to_vec()), 0..120),
            delimiter in proptest::sample::select(b";,\"\r\na".to_vec()),
            chunk in 1usize..9,
            buf in 1usize..16,
        ) {
            let mut want = Vec::new();
            let mut csv = ::csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .delimiter(delimiter)
                .from_reader(file.as_slice());
            let mut record = ::csv::ByteRecord::new();
            while csv.read_byte_record(&mut record).unwrap() {
                want.push(record.iter().map(<[u8]>::to_vec).collect::<Vec<_>>());
            }
            let input = Chunks(file.clone(), chunk);
            let mut records = Records::new(Box::new(input), delimiter, buf);
            let mut got = Vec::new();
            let mut one = Record::default();
            while one.read(&mut records).unwrap() {
                got.push(one.iter().map(<[u8]>::to_vec).collect::<Vec<_>>());
            }
            proptest::prop_assert_eq!(got, want);
        }

        /// The word-at-a-time search finds every occurrence and nothing else, whatever bytes
        /// sit next to it.
        #[test]
        fn positions_are_every_occurrence(
            line in proptest::collection::vec(
                proptest::sample::select(vec![0u8, 1, 0x3A, 0x3B, 0x3C, 0x7F, 0x80, 0xBB, 0xFF]),
                0..70),
            byte in proptest::sample::select(vec![0u8, 0x3B, 0x80, 0xFF]),
            base in 0usize..5,
        ) {
            let mut want = vec![7];
            want.extend(line.iter().enumerate().filter(|(_, &b)| b == byte).map(|(i, _)| base + i));
            let mut got = vec![7];
            push_positions(&line, byte, base, &mut got);
            proptest::prop_assert_eq!(&got, &want);
            let mut got = vec![7];
            push_positions_swar(&line, byte, base, &mut got);
            proptest::prop_assert_eq!(got, want);
        }
    }

    /// Bytes handed out at most `.1` at a time.
    struct Chunks(Vec<u8>, usize);

    impl Read for Chunks {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.1.min(buf.len()).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0.drain(..n);
            Ok(n)
        }
    }
}
