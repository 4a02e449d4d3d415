//! A look inside ZIP-based workbooks (XLSX, XLSB, ODS) before calamine reads them: calamine
//! inflates parts into memory and, for ODS, expands repeated rows and cells into a full grid.
//! A small hostile file can demand gigabytes that way, and a failed allocation aborts the
//! process (no `catch_unwind` helps), so the sizes are bounded here first.

use std::io::{Read, Seek};

/// A part that inflates more than this many times its packed size, beyond [`BOMB_MIN`], is a
/// ZIP bomb: spreadsheet XML packs 5–50×, even a sheet of identical cells stays far below.
const BOMB_RATIO: u64 = 500;
const BOMB_MIN: u64 = 64 << 20;
/// No spreadsheet part is larger than this (Excel's own limits stay well below).
const MAX_PART: u64 = 4 << 30;
/// Cells an ODS sheet may expand to: Excel's 1,048,576 × 16,384 is a theoretical limit; XLS
/// holds 16.7 M; this is a grid calamine can hold in a few GB at most.
const MAX_ODS_CELLS: u64 = 50_000_000;

/// `Ok` when calamine can unpack the workbook in bounded memory; otherwise what is wrong.
/// A file that is not a readable ZIP is left to calamine (it says what is broken).
pub(crate) fn check<R: Read + Seek>(reader: R, ods: bool) -> Result<(), String> {
    let Ok(mut zip) = zip::ZipArchive::new(reader) else {
        return Ok(());
    };
    for i in 0..zip.len() {
        let Ok(part) = zip.by_index_raw(i) else {
            continue;
        };
        let (size, packed) = (part.size(), part.compressed_size());
        if size > MAX_PART || (size > BOMB_MIN && size / packed.max(1) > BOMB_RATIO) {
            return Err(format!(
                "the part '{}' unpacks from {packed} to {size} bytes (a ZIP bomb, not a workbook)",
                part.name()
            ));
        }
    }
    if ods {
        let Ok(content) = zip.by_name("content.xml") else {
            return Ok(());
        };
        let mut xml = Vec::new();
        content
            .take(MAX_PART)
            .read_to_end(&mut xml)
            .map_err(|e| format!("content.xml cannot be unpacked: {e}"))?;
        ods_grid(&xml)?;
    }
    Ok(())
}

/// The value of attribute `name` in the text of one start tag.
fn attr<'a>(tag: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let at = tag
        .windows(name.len() + 2)
        .position(|w| w.starts_with(name) && w[name.len()] == b'=')?;
    let rest = &tag[at + name.len() + 1..];
    let quote = *rest.first()?;
    let rest = rest.get(1..)?;
    let end = rest.iter().position(|&b| b == quote)?;
    Some(&rest[..end])
}

fn repeats(tag: &[u8], name: &[u8]) -> u64 {
    attr(tag, name)
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(1)
}

/// What calamine's ODS reader would materialise, per sheet: every row's cells up to its last
/// non-empty one (repeats expanded), and then a grid as wide as the widest row and as tall as
/// the rows up to the last non-empty one (row repeats expanded).
fn ods_grid(xml: &[u8]) -> Result<(), String> {
    #[derive(Default)]
    struct Sheet {
        width: u64,
        rows: u64,
        used_rows: u64,
        read: u64,
    }
    let too_big =
        |s: &Sheet| s.read > MAX_ODS_CELLS || s.width.saturating_mul(s.used_rows) > MAX_ODS_CELLS;
    let mut sheet = Sheet::default();
    // The current row: its repeat count, cells up to the last non-empty one, pending empties.
    let mut row: Option<(u64, u64, u64)> = None;
    let mut i = 0;
    while let Some(lt) = xml[i..].iter().position(|&b| b == b'<') {
        let start = i + lt;
        let Some(gt) = xml[start..].iter().position(|&b| b == b'>') else {
            break;
        };
        let tag = &xml[start + 1..start + gt];
        i = start + gt + 1;
        // The name ends at a space or the `/` of `<x/>` (a leading `/` is an end tag's).
        let name_end = tag
            .iter()
            .skip(1)
            .position(|b| b.is_ascii_whitespace() || *b == b'/')
            .map_or(tag.len(), |p| p + 1);
        let closing = tag.last() == Some(&b'/');
        match &tag[..name_end] {
            b"table:table" => sheet = Sheet::default(),
            b"table:table-row" => row = Some((repeats(tag, b"table:number-rows-repeated"), 0, 0)),
            b"/table:table-row" => {
                if let Some((times, used, _)) = row.take() {
                    sheet.rows = sheet.rows.saturating_add(times);
                    if used > 0 {
                        sheet.width = sheet.width.max(used);
                        sheet.used_rows = sheet.rows;
                        sheet.read = sheet.read.saturating_add(used);
                    }
                }
            }
            b"table:table-cell" | b"table:covered-table-cell" => {
                if let Some((_, used, pending)) = row.as_mut() {
                    let n = repeats(tag, b"table:number-columns-repeated");
                    let filled = !closing
                        || attr(tag, b"office:value-type").is_some()
                        || attr(tag, b"table:formula").is_some();
                    if filled {
                        *used = used.saturating_add(*pending).saturating_add(n);
                        *pending = 0;
                    } else {
                        *pending = pending.saturating_add(n);
                    }
                }
            }
            _ => {}
        }
        if too_big(&sheet) {
            return Err(format!(
                "a sheet expands to more than {MAX_ODS_CELLS} cells (repeated rows or cells)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(rows: &str) -> Vec<u8> {
        format!("<office:document-content><office:body><office:spreadsheet><table:table table:name=\"Лист1\">{rows}</table:table></office:spreadsheet></office:body></office:document-content>").into_bytes()
    }

    #[test]
    fn ordinary_sheets_pass_even_with_huge_empty_repeats() {
        // What LibreOffice writes: trailing empty cells and rows as one repeated element.
        let xml = content(
            "<table:table-row><table:table-cell office:value-type=\"string\"><text:p>ID</text:p></table:table-cell><table:table-cell table:number-columns-repeated=\"16383\"/></table:table-row>\
             <table:table-row table:number-rows-repeated=\"1048575\"><table:table-cell table:number-columns-repeated=\"16384\"/></table:table-row>",
        );
        assert_eq!(ods_grid(&xml), Ok(()));
    }

    #[test]
    fn repeated_values_that_expand_to_a_huge_grid_are_refused() {
        let xml = content(
            "<table:table-row table:number-rows-repeated=\"1000000\"><table:table-cell table:number-columns-repeated=\"1000\" office:value-type=\"float\" office:value=\"1\"/></table:table-row>",
        );
        assert!(ods_grid(&xml).unwrap_err().contains("expands"));
        // Empty cells before a value are materialised too.
        let xml = content(
            "<table:table-row><table:table-cell table:number-columns-repeated=\"4000000000\"/><table:table-cell office:value-type=\"float\" office:value=\"1\"/></table:table-row>",
        );
        assert!(ods_grid(&xml).is_err());
    }
}
