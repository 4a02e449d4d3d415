//! A source mapped in parallel: one reader thread, rayon for the rows, results in file order.

use super::mapper::{MappedRow, Mapper};
use crate::source::{RawBatch, Row, RowSource, RowView, SourceError, SourcePos};
use rayon::prelude::*;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

/// How `map_file` batches work.
#[derive(Debug, Clone, Copy)]
pub struct MapOptions {
    /// Rows per parallel batch: big enough to amortise rayon, small enough to keep memory flat.
    pub batch: usize,
}

impl Default for MapOptions {
    fn default() -> Self {
        MapOptions { batch: 2048 }
    }
}

enum Batch {
    Rows(Vec<Row>),
    Raw(RawBatch),
}

/// What the reader thread sends: batches, then exactly one `End` or `Err`. A channel that closes
/// without either means the reader died, which is an error, never the end of the file.
enum ReadMsg {
    Batch(Batch),
    Err(SourceError),
    End,
}

/// A row's work, or the panic that ended it (its row number and message).
type Mapped<T> = Result<T, (u64, String)>;

/// What the mapping thread sends the consumer.
enum MappedMsg<T> {
    /// A batch's results as the workers left them (not copied into another vector: a row's
    /// result can be big), and the bytes of the file they were read from (0 when the source
    /// does not read raw bytes). The consumer ends the stream at the first panic in it.
    Items(Vec<Mapped<T>>, usize),
    /// The stream ends with this failure.
    Failed(SourceError),
    End,
}

/// Results of [`map_file_with`] in file order. Three stages overlap: a reader thread, a mapping
/// thread that spreads each batch over rayon, and the consumer (this iterator). Channels hold one
/// batch each, so at most ~5 batches are alive at once: memory is flat in the row count.
///
/// Every way the stream can end is explicit: the file's end, a read error, or an internal error
/// (a panic in the reader or in a worker) naming the row after which nothing was processed. A
/// dead stage is never mistaken for the end of the file.
pub struct MappedFile<T = (Row, MappedRow)> {
    rx: Receiver<MappedMsg<T>>,
    /// The current batch; items before `at` were handed out.
    batch: Vec<Mapped<T>>,
    at: usize,
    done: bool,
    file: Arc<str>,
    /// Rows received so far, and the bytes of the file they were read from.
    rows_in: u64,
    bytes_in: u64,
}

/// Read `source` through `mapper` in parallel batches, preserving order. Each item is the source
/// row (for reports) with its mapping; a read error ends the stream after it is yielded.
pub fn map_file(source: Box<dyn RowSource>, mapper: Arc<Mapper>, opts: MapOptions) -> MappedFile {
    map_file_with(source, opts, move |r| {
        let m = mapper.map_row(&r);
        (r, m)
    })
}

/// The text of a panic payload (what `panic!` was given).
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}

/// Like [`map_file`], but `work` runs on the rayon pool for every row, so per-row work the
/// consumer would otherwise do alone (hashing, formatting, dropping what it does not need)
/// happens in parallel too.
pub fn map_file_with<T, F>(source: Box<dyn RowSource>, opts: MapOptions, work: F) -> MappedFile<T>
where
    T: Send + 'static,
    F: Fn(Row) -> T + Send + Sync + 'static,
{
    map_items(source, opts, move |item| match item {
        Item::Row(row) => work(row),
        Item::Raw(raw, i) => work(raw.row(i)),
    })
}

/// Like [`map_file_with`], but `work` gets each row borrowed: a CSV row is decoded into a buffer
/// its worker thread reuses, so a row allocates nothing before `work` sees it (what `validate`,
/// which keeps little of a row, runs on).
pub fn map_file_view<T, F>(source: Box<dyn RowSource>, opts: MapOptions, work: F) -> MappedFile<T>
where
    T: Send + 'static,
    F: Fn(&RowView) -> T + Send + Sync + 'static,
{
    /// The decoded text and cell ends of the row a thread is on, and its position (kept, so
    /// a row does not touch the file name's shared reference count).
    type Scratch = (Vec<u8>, Vec<usize>, Option<SourcePos>);
    thread_local! {
        static SCRATCH: std::cell::Cell<Scratch> = Default::default();
    }
    map_items(source, opts, move |item| match item {
        Item::Row(row) => work(&row.view()),
        Item::Raw(raw, i) => {
            // Taken out while `work` runs (never borrowed across it); a panic just loses it.
            let (mut text, mut ends, pos) = SCRATCH.take();
            let mut issues = Vec::new();
            let pos = raw.pos_reusing(i, pos);
            let cells = raw.decode_row(i, &mut text, &mut ends, &mut issues);
            let out = work(&RowView {
                pos: &pos,
                cells,
                issues: &issues,
            });
            SCRATCH.set((text, ends, Some(pos)));
            out
        }
    })
}

/// A row as the mapping stage hands it over: a source's own row, or row `i` of a raw CSV batch.
enum Item<'a> {
    Row(Row),
    Raw(&'a RawBatch, usize),
}

fn map_items<T, F>(source: Box<dyn RowSource>, opts: MapOptions, work: F) -> MappedFile<T>
where
    T: Send + 'static,
    F: Fn(Item) -> T + Send + Sync + 'static,
{
    let (tx, rx) = sync_channel::<ReadMsg>(1);
    let (out_tx, out_rx) = sync_channel(1);
    let batch = opts.batch.max(1);
    let file: Arc<str> = Arc::from(source.file());
    let reader_file = file.clone();
    std::thread::spawn(move || {
        let mut source = source;
        // The last row handed over, for the message if reading panics.
        let mut last_row = 1u64;
        let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| loop {
            // CSV hands over raw fields: the cells are built on the workers.
            if let Some(raw) = source.read_raw(batch) {
                if let Some(n) = raw.batch.last_row() {
                    last_row = n;
                }
                if !raw.batch.is_empty() && tx.send(ReadMsg::Batch(Batch::Raw(raw.batch))).is_err()
                {
                    return;
                }
                if let Some(e) = raw.error {
                    let _ = tx.send(ReadMsg::Err(e));
                    return;
                }
                if raw.eof {
                    let _ = tx.send(ReadMsg::End);
                    return;
                }
                continue;
            }
            let mut rows = Vec::with_capacity(batch);
            let mut err = None;
            let mut end = false;
            loop {
                match source.next() {
                    Some(Ok(row)) => rows.push(row),
                    Some(Err(e)) => {
                        err = Some(e);
                        break;
                    }
                    None => {
                        end = true;
                        break;
                    }
                }
                if rows.len() == batch {
                    break;
                }
            }
            if let Some(r) = rows.last() {
                last_row = r.pos.row;
            }
            if !rows.is_empty() && tx.send(ReadMsg::Batch(Batch::Rows(rows))).is_err() {
                return;
            }
            if let Some(e) = err {
                let _ = tx.send(ReadMsg::Err(e));
                return;
            }
            if end {
                let _ = tx.send(ReadMsg::End);
                return;
            }
        }));
        if let Err(payload) = read {
            let _ = tx.send(ReadMsg::Err(SourceError::Internal {
                file: reader_file.to_string(),
                row: last_row + 1,
                message: format!("reading failed: {}", panic_text(&*payload)),
            }));
        }
    });
    let map_file = file.clone();
    std::thread::spawn(move || {
        let mut last_row = 1u64;
        let mut ended = false;
        for msg in rx {
            let out = match msg {
                ReadMsg::End => {
                    ended = true;
                    MappedMsg::End
                }
                ReadMsg::Err(e) => {
                    ended = true;
                    MappedMsg::Failed(e)
                }
                ReadMsg::Batch(b) => {
                    let (batch_last, bytes) = match &b {
                        Batch::Rows(rows) => (rows.last().map(|r| r.pos.row), 0),
                        Batch::Raw(raw) => (raw.last_row(), raw.room().0),
                    };
                    // Each row's work is caught on its own, so a panic names its row and the
                    // rows before it in the batch still count.
                    let one = |row: Row| {
                        let n = row.pos.row;
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            work(Item::Row(row))
                        }))
                        .map_err(|p| (n, panic_text(&*p)))
                    };
                    let results: Vec<Mapped<T>> = match b {
                        Batch::Rows(rows) => rows.into_par_iter().map(one).collect(),
                        Batch::Raw(raw) => (0..raw.len())
                            .into_par_iter()
                            .map(|i| {
                                let n = raw.row_number(i);
                                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                    work(Item::Raw(&raw, i))
                                }))
                                .map_err(|p| (n, panic_text(&*p)))
                            })
                            .collect(),
                    };
                    if results.iter().any(|r| r.is_err()) {
                        ended = true;
                    } else {
                        last_row = batch_last.unwrap_or(last_row);
                    }
                    MappedMsg::Items(results, bytes)
                }
            };
            let stop = ended;
            if out_tx.send(out).is_err() || stop {
                return;
            }
        }
        // The reader's channel closed without End or Err: it died.
        if !ended {
            let _ = out_tx.send(MappedMsg::Failed(SourceError::Internal {
                file: map_file.to_string(),
                row: last_row + 1,
                message: "the reader stopped before the end of the file".into(),
            }));
        }
    });
    MappedFile {
        rx: out_rx,
        batch: Vec::new(),
        at: 0,
        done: false,
        file,
        rows_in: 0,
        bytes_in: 0,
    }
}

impl<T> MappedFile<T> {
    /// Rows received so far and the bytes of the file they were read from; bytes are 0 for a
    /// source that is not read as raw bytes (a spreadsheet). With the file's size, this
    /// estimates how many rows the file holds.
    pub fn read_so_far(&self) -> (u64, u64) {
        (self.rows_in, self.bytes_in)
    }

    /// The item `n` places after the next one, when it is already mapped (in the current
    /// batch), for a consumer that prefetches ahead.
    pub fn ahead(&self, n: usize) -> Option<&T> {
        self.batch.get(self.at + n)?.as_ref().ok()
    }

    /// The next item, left in its batch (a consumer that only reads or edits items need not
    /// copy each out; they can be big). `None` at the end of the stream.
    pub fn next_mut(&mut self) -> Option<Result<&mut T, SourceError>> {
        match self.advance() {
            Err(e) => return Some(Err(e)),
            Ok(false) => return None,
            Ok(true) => {}
        }
        let i = self.at;
        self.at += 1;
        if let Err((row, message)) = &mut self.batch[i] {
            // A worker panicked on this row: nothing after it was processed.
            let e = SourceError::Internal {
                file: self.file.to_string(),
                row: *row,
                message: std::mem::take(message),
            };
            self.done = true;
            return Some(Err(e));
        }
        self.batch[i].as_mut().ok().map(Ok)
    }

    /// Receive batches until `batch[at]` is the next item: true then, false at the end, or the
    /// failure that ends the stream.
    fn advance(&mut self) -> Result<bool, SourceError> {
        while !self.done && self.at >= self.batch.len() {
            match self.rx.recv() {
                Ok(MappedMsg::Items(items, bytes)) => {
                    self.rows_in += items.len() as u64;
                    self.bytes_in += bytes as u64;
                    self.batch = items;
                    self.at = 0;
                }
                Ok(MappedMsg::Failed(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Ok(MappedMsg::End) => self.done = true,
                Err(_) => {
                    // The mapping thread died without a word: never the end of the file.
                    self.done = true;
                    return Err(SourceError::Internal {
                        file: self.file.to_string(),
                        row: 0,
                        message: "the mapping stage stopped before the end of the file".into(),
                    });
                }
            }
        }
        Ok(!self.done)
    }
}

impl<T> Iterator for MappedFile<T> {
    type Item = Result<T, SourceError>;
    fn next(&mut self) -> Option<Self::Item> {
        if let Err(e) = self.next_mut()? {
            return Some(Err(e));
        }
        // `next_mut` handed out an item: take it, leaving a placeholder never read again.
        let taken = std::mem::replace(&mut self.batch[self.at - 1], Err((0, String::new())));
        taken.ok().map(Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{self, SourceOptions};

    fn csv_source(rows: usize) -> (tempfile::TempDir, Box<dyn RowSource>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.csv");
        let mut text = String::from("n;phone\n");
        for i in 0..rows {
            text.push_str(&format!("{i};+7 900 000 00 00\n"));
        }
        std::fs::write(&path, text).unwrap();
        let src = source::open(&path, &SourceOptions::default()).unwrap();
        (dir, src)
    }

    #[test]
    fn a_panicking_worker_ends_the_stream_with_an_error_naming_the_row() {
        let (_dir, src) = csv_source(5000);
        let out = map_file_with(src, MapOptions { batch: 300 }, |row: Row| {
            if row.pos.row == 2001 {
                panic!("boom at {}", row.cells[0]);
            }
            row.pos.row
        });
        let mut rows = Vec::new();
        let mut err = None;
        for item in out {
            match item {
                Ok(n) => rows.push(n),
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        // Every row before the panic came through, in order, and then an error — not an end.
        assert_eq!(rows, (2..2001).collect::<Vec<u64>>());
        let e = err
            .expect("a panic must not look like the end of the file")
            .to_string();
        assert!(e.contains("row 2001"), "{e}");
        assert!(e.contains("internal error"), "{e}");
        assert!(e.contains("boom at 1999"), "{e}");
    }

    #[test]
    fn rows_read_in_place_see_what_is_ahead_and_end_at_a_panic() {
        let (_dir, src) = csv_source(1000);
        let mut out = map_file_with(src, MapOptions { batch: 64 }, |row: Row| {
            assert_ne!(row.pos.row, 700, "boom");
            row.pos.row
        });
        let mut rows = Vec::new();
        loop {
            // What `ahead` shows is what comes three items later (within the batch).
            let later = out.ahead(3).copied();
            match out.next_mut() {
                Some(Ok(n)) => {
                    if let Some(l) = later {
                        assert_eq!(l, *n + 3);
                    }
                    rows.push(*n);
                }
                Some(Err(e)) => {
                    assert!(e.to_string().contains("row 700"), "{e}");
                    break;
                }
                None => panic!("a panic must not look like the end of the file"),
            }
        }
        assert_eq!(rows, (2..700).collect::<Vec<u64>>());
        assert!(out.next_mut().is_none(), "nothing after the failure");
    }

    #[test]
    fn a_clean_file_ends_with_every_row() {
        let (_dir, src) = csv_source(4321);
        let rows: Vec<u64> = map_file_with(src, MapOptions { batch: 100 }, |row: Row| row.pos.row)
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(rows, (2..4323).collect::<Vec<u64>>());
    }
}
