//! The export file: XLSX (one sheet per entity) or CSV. Everything is written to
//! `NAME.partial.EXT` and renamed to `NAME.EXT` only when the export completed, so a short file
//! is never presented as a complete one.

use super::ExportError;
use crate::report::{Cell, CsvOptions, CsvTable, ReportError, SheetId, XlsxBook};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub enum Format {
    Xlsx,
    Csv(CsvOptions),
}

impl Format {
    /// By the file extension: `.csv` is CSV, anything else XLSX.
    pub fn for_path(path: &Path, csv: CsvOptions) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("csv") => Format::Csv(csv),
            _ => Format::Xlsx,
        }
    }
}

/// `out.xlsx` → `out.partial.xlsx`.
pub fn partial_path(path: &Path) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "export".into());
    let name = match path.extension() {
        Some(ext) => format!("{stem}.partial.{}", ext.to_string_lossy()),
        None => format!("{stem}.partial"),
    };
    path.with_file_name(name)
}

enum Sink {
    Xlsx {
        // Boxed, like the CSV table: both writers are large, and only one exists per export.
        book: Box<XlsxBook>,
        sheet: Option<SheetId>,
    },
    Csv {
        opts: CsvOptions,
        // Boxed: the CSV writer's buffers are large and XLSX exports never build one.
        table: Option<Box<CsvTable>>,
        /// One CSV holds one table.
        tables: u32,
    },
}

/// The file being written.
pub struct Output {
    final_path: PathBuf,
    partial: PathBuf,
    sink: Sink,
    /// Characters the CSV encoding could not represent (written as `?`).
    pub unmappable: u64,
}

impl Output {
    pub fn create(path: &Path, format: &Format) -> Result<Output, ExportError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| ReportError::io(dir, e))?;
        }
        let partial = partial_path(path);
        let sink = match format {
            Format::Xlsx => Sink::Xlsx {
                book: Box::new(XlsxBook::create(&partial)),
                sheet: None,
            },
            Format::Csv(opts) => Sink::Csv {
                opts: opts.clone(),
                table: None,
                tables: 0,
            },
        };
        Ok(Output {
            final_path: path.to_path_buf(),
            partial,
            sink,
            unmappable: 0,
        })
    }

    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    pub fn partial_path(&self) -> &Path {
        &self.partial
    }

    /// Start the next table (a sheet in XLSX; the file itself in CSV).
    pub fn begin(&mut self, name: &str, headers: &[String]) -> Result<(), ExportError> {
        match &mut self.sink {
            Sink::Xlsx { book, sheet } => {
                *sheet = Some(book.add_sheet(name, headers)?);
            }
            Sink::Csv {
                opts,
                table,
                tables,
            } => {
                if *tables > 0 {
                    return Err(ExportError::Internal(
                        "a CSV file holds one table; export entities one by one".into(),
                    ));
                }
                *tables += 1;
                *table = Some(Box::new(CsvTable::create(
                    &self.partial,
                    headers,
                    opts.clone(),
                )?));
            }
        }
        Ok(())
    }

    pub fn write(&mut self, cells: &[Cell]) -> Result<(), ExportError> {
        match &mut self.sink {
            Sink::Xlsx {
                book,
                sheet: Some(s),
            } => book.write_row(*s, cells)?,
            Sink::Csv { table: Some(t), .. } => t.write_row(cells)?,
            _ => return Err(ExportError::Internal("row before header".into())),
        }
        Ok(())
    }

    /// Add the totals sheet `name` (XLSX only; `false` for CSV, which holds one table).
    pub fn totals(
        &mut self,
        name: &str,
        t: &crate::report::summary::MoneyTotals,
    ) -> Result<bool, ExportError> {
        match &mut self.sink {
            Sink::Xlsx { book, .. } => {
                crate::report::summary::add_totals_sheet(book, name, t)?;
                Ok(true)
            }
            Sink::Csv { .. } => Ok(false),
        }
    }

    /// Save what was written. `complete`: rename to the final name; otherwise the file stays
    /// under its partial name. Returns the path of the file written.
    pub fn close(mut self, complete: bool) -> Result<(PathBuf, u64), ExportError> {
        match self.sink {
            Sink::Xlsx { book, .. } => book.close()?,
            Sink::Csv { table, .. } => match table {
                Some(t) => self.unmappable += t.finish()?,
                // Nothing was begun (e.g. the first page failed): an empty partial file still
                // shows that an export was attempted and failed.
                None => std::fs::write(&self.partial, b"")
                    .map_err(|e| ReportError::io(&self.partial, e))?,
            },
        }
        if !complete {
            return Ok((self.partial, self.unmappable));
        }
        std::fs::rename(&self.partial, &self.final_path)
            .map_err(|e| ReportError::io(&self.final_path, e))?;
        Ok((self.final_path, self.unmappable))
    }

    /// Drop the output without leaving a file (the export never really started: bad input).
    pub fn abandon(self) {
        drop(self.sink);
        let _ = std::fs::remove_file(&self.partial);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_names_keep_the_extension() {
        assert_eq!(
            partial_path(Path::new("/tmp/out.xlsx")),
            Path::new("/tmp/out.partial.xlsx")
        );
        assert_eq!(
            partial_path(Path::new("a.b.csv")),
            Path::new("a.b.partial.csv")
        );
        assert_eq!(partial_path(Path::new("out")), Path::new("out.partial"));
    }

    #[test]
    fn csv_is_renamed_only_when_complete() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.csv");
        let fmt = Format::for_path(&path, CsvOptions::default());
        let mut out = Output::create(&path, &fmt).unwrap();
        out.begin("person", &["pid".into()]).unwrap();
        out.write(&[Cell::Int(1)]).unwrap();
        let (written, _) = out.close(false).unwrap();
        assert_eq!(written, dir.path().join("p.partial.csv"));
        assert!(!path.exists());
        let mut out = Output::create(&path, &fmt).unwrap();
        out.begin("person", &["pid".into()]).unwrap();
        assert_eq!(out.close(true).unwrap().0, path);
        assert!(path.exists());
    }
}
