//! The summary sheet every XLSX report opens with: a small table of counts per entity and a
//! column chart of the ones worth a look.

use super::{ReportError, XlsxBook};
use rust_xlsxwriter::{Chart, ChartType, Format};

/// Counts per row label (usually an entity), one value per column after the label.
#[derive(Debug, Clone, Default)]
pub struct SummaryTable {
    pub chart_title: String,
    /// Headers: the label column's first, then one per value.
    pub columns: Vec<String>,
    pub rows: Vec<(String, Vec<u64>)>,
    /// Value columns (0-based, after the label) to draw; totals would dwarf the findings.
    pub charted: Vec<usize>,
}

/// Add the sheet "Summary"; call before any streamed sheet so it opens first.
pub fn add_summary_sheet(book: &mut XlsxBook, t: &SummaryTable) -> Result<(), ReportError> {
    let path = book.path().to_path_buf();
    let err = |e| ReportError::xlsx(&path, e);
    let bold = Format::new().set_bold().set_background_color("#DDEBF7");
    let ws = book.workbook_mut().add_worksheet();
    ws.set_name("Summary").map_err(err)?;
    for (c, h) in t.columns.iter().enumerate() {
        ws.write_string_with_format(0, c as u16, h, &bold)
            .map_err(err)?;
        let width = (h.chars().count().max(10) + 2) as f64;
        ws.set_column_width(c as u16, width).map_err(err)?;
    }
    for (i, (label, values)) in t.rows.iter().enumerate() {
        let row = i as u32 + 1;
        ws.write_string(row, 0, label).map_err(err)?;
        for (c, n) in values.iter().enumerate() {
            ws.write_number(row, c as u16 + 1, *n as f64).map_err(err)?;
        }
    }
    ws.set_freeze_panes(1, 0).map_err(err)?;
    let last = t.rows.len() as u32;
    if last > 0 && !t.charted.is_empty() {
        let mut chart = Chart::new(ChartType::Column);
        for &c in &t.charted {
            let col = c as u16 + 1;
            chart
                .add_series()
                .set_categories(("Summary", 1, 0, last, 0))
                .set_values(("Summary", 1, col, last, col))
                .set_name(("Summary", 0, col));
        }
        chart.title().set_name(&t.chart_title);
        ws.insert_chart(last + 2, 0, &chart).map_err(err)?;
    }
    Ok(())
}
