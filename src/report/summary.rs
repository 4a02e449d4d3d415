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

/// One line of a totals block: label, paid, unpaid.
pub type MoneyLine = (String, crate::values::Money, crate::values::Money);

/// Money totals by label (month, owner): paid and unpaid per row, and the control total.
#[derive(Debug, Clone, Default)]
pub struct MoneyTotals {
    /// Blocks of rows, each with its own header ("month", "owner").
    pub blocks: Vec<(String, Vec<MoneyLine>)>,
    /// (label, value) lines after the blocks: the control total and what it sums.
    pub control: Vec<(String, crate::values::Money)>,
}

/// Add the totals sheet `name` ("Totals"): per block, label / paid / unpaid / total with two
/// decimals, a column chart of paid vs unpaid of the first block, then the control lines.
pub fn add_totals_sheet(
    book: &mut XlsxBook,
    name: &str,
    t: &MoneyTotals,
) -> Result<(), ReportError> {
    let path = book.path().to_path_buf();
    let err = |e| ReportError::xlsx(&path, e);
    let bold = Format::new().set_bold().set_background_color("#DDEBF7");
    let money = Format::new().set_num_format("#,##0.00");
    let ws = book.workbook_mut().add_worksheet();
    ws.set_name(name).map_err(err)?;
    ws.set_column_width(0, 28).map_err(err)?;
    for c in 1..4 {
        ws.set_column_width(c, 16).map_err(err)?;
    }
    let mut row = 0u32;
    let mut first_block: Option<(u32, u32)> = None;
    for (label, lines) in &t.blocks {
        for (c, h) in [label.as_str(), "paid", "unpaid", "total"]
            .iter()
            .enumerate()
        {
            ws.write_string_with_format(row, c as u16, *h, &bold)
                .map_err(err)?;
        }
        let start = row + 1;
        for (name, paid, unpaid) in lines {
            row += 1;
            ws.write_string(row, 0, name).map_err(err)?;
            for (c, m) in [*paid, *unpaid, *paid + *unpaid].iter().enumerate() {
                ws.write_number_with_format(row, c as u16 + 1, m.to_f64(), &money)
                    .map_err(err)?;
            }
        }
        if first_block.is_none() && row >= start {
            first_block = Some((start, row));
        }
        row += 2;
    }
    for (label, m) in &t.control {
        ws.write_string_with_format(row, 0, label, &bold)
            .map_err(err)?;
        ws.write_number_with_format(row, 1, m.to_f64(), &money)
            .map_err(err)?;
        row += 1;
    }
    if let Some((a, b)) = first_block {
        let mut chart = Chart::new(ChartType::Column);
        for col in [1u16, 2] {
            chart
                .add_series()
                .set_categories((name, a, 0, b, 0))
                .set_values((name, a, col, b, col))
                .set_name((name, a - 1, col));
        }
        chart.title().set_name("Paid vs unpaid");
        ws.insert_chart(row + 1, 0, &chart).map_err(err)?;
    }
    Ok(())
}
