//! The reconcile report: a summary sheet with a chart, then one sheet per kind of finding.

use super::Reconciliation;
use crate::report::summary::{add_summary_sheet, SummaryTable};
use crate::report::{Cell, XlsxBook};
use serde_json::{json, Value};
use std::path::Path;

const SUMMARY_COLUMNS: [&str; 9] = [
    "entity",
    "in source",
    "matched",
    "missing in CRM",
    "only in CRM",
    "different",
    "duplicated in CRM",
    "invisible to the API user",
    "in CRM (exported)",
];

/// Write the report; the findings stream out of the reconciliation's store a row at a time.
pub fn write_xlsx(r: &Reconciliation, path: &Path) -> crate::Result<()> {
    let mut book = XlsxBook::create(path);
    add_summary_sheet(&mut book, &summary_table(r))?;
    let ids = |ids: &[i64]| {
        ids.iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let pairs = |fields: &mut dyn Iterator<Item = (&str, &str)>| {
        fields
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let findings = r.findings();

    let s = book.add_sheet(
        "Missing",
        &["entity", "key", "source rows", "journal id", "values"],
    )?;
    findings.each_missing(|m| {
        let row = found(
            m.entity,
            &m.key,
            &m.rows,
            [
                m.journal_id.map_or(Cell::Empty, Cell::Int),
                Cell::text(pairs(&mut m.fields.iter())),
            ],
        );
        Ok::<_, crate::Error>(book.write_row(s, &row)?)
    })?;
    let s = book.add_sheet(
        "Different",
        &[
            "entity",
            "key",
            "CRM id",
            "source rows",
            "field",
            "source value",
            "CRM value",
        ],
    )?;
    findings.each_different(|d| {
        let row = vec![
            Cell::text(d.entity.as_str()),
            Cell::text(&d.key),
            Cell::Int(d.id),
            Cell::text(d.rows.join(", ")),
            Cell::text(&d.field),
            Cell::Flagged(d.source),
            Cell::Flagged(d.crm),
        ];
        Ok::<_, crate::Error>(book.write_row(s, &row)?)
    })?;
    let s = book.add_sheet(
        "Duplicates",
        &["entity", "key", "source rows", "CRM records", "CRM ids"],
    )?;
    findings.each_duplicate(|d| {
        let row = found(
            d.entity,
            &d.key,
            &d.rows,
            [Cell::Int(d.ids.len() as i64), Cell::text(ids(&d.ids))],
        );
        Ok::<_, crate::Error>(book.write_row(s, &row)?)
    })?;
    let s = book.add_sheet(
        "Invisible",
        &["entity", "key", "source rows", "CRM id", "owner (info)"],
    )?;
    for v in &r.invisible {
        let owner = if v.owner.is_empty() {
            "none (owner 0)".to_string()
        } else {
            v.owner.clone()
        };
        let row = found(
            v.entity,
            &v.key,
            &v.rows,
            [Cell::Int(v.id), Cell::text(owner)],
        );
        book.write_row(s, &row)?;
    }
    let s = book.add_sheet("Only in CRM", &["entity", "CRM id", "values"])?;
    findings.each_only_in_crm(|entity, rec| {
        let row = vec![
            Cell::text(entity.as_str()),
            Cell::Int(rec.id),
            Cell::text(pairs(&mut rec.fields.iter().filter(|(_, v)| !v.is_empty()))),
        ];
        Ok::<_, crate::Error>(book.write_row(s, &row)?)
    })?;
    Ok(book.close()?)
}

/// A finding's row: entity, key and source rows, then what is particular to the sheet.
fn found<const N: usize>(
    entity: crate::crm::Entity,
    key: &str,
    rows: &[String],
    rest: [Cell; N],
) -> Vec<Cell> {
    let mut row = vec![
        Cell::text(entity.as_str()),
        Cell::text(key),
        Cell::text(rows.join(", ")),
    ];
    row.extend(rest);
    row
}

fn summary_table(r: &Reconciliation) -> SummaryTable {
    SummaryTable {
        chart_title: "Reconciliation by entity".into(),
        columns: SUMMARY_COLUMNS.iter().map(|s| s.to_string()).collect(),
        rows: r
            .summaries
            .iter()
            .map(|(e, s)| {
                (
                    e.as_str().to_string(),
                    vec![
                        s.in_source,
                        s.matched,
                        s.missing,
                        s.only_in_crm,
                        s.different,
                        s.duplicated,
                        s.invisible,
                        s.in_crm,
                    ],
                )
            })
            .collect(),
        // Findings only: "in source"/"in CRM" would dwarf them.
        charted: vec![1, 2, 3, 4, 5, 6],
    }
}

/// The `--json` summary for scripts.
pub fn summary_json(r: &Reconciliation) -> Value {
    let entities: serde_json::Map<String, Value> = r
        .summaries
        .iter()
        .map(|(e, s)| {
            (
                e.as_str().to_string(),
                json!({
                    "in_source": s.in_source, "matched": s.matched, "missing": s.missing,
                    "only_in_crm": s.only_in_crm, "different": s.different,
                    "duplicated": s.duplicated, "invisible": s.invisible, "in_crm": s.in_crm,
                }),
            )
        })
        .collect();
    json!({ "clean": r.is_clean(), "entities": entities })
}

/// A plain table for the terminal.
pub fn summary_text(r: &Reconciliation) -> String {
    let mut out = format!(
        "{:<9} {:>9} {:>8} {:>8} {:>11} {:>9} {:>10} {:>9}\n",
        "entity",
        "in source",
        "matched",
        "missing",
        "only in CRM",
        "different",
        "duplicated",
        "invisible"
    );
    for (e, s) in &r.summaries {
        out.push_str(&format!(
            "{:<9} {:>9} {:>8} {:>8} {:>11} {:>9} {:>10} {:>9}\n",
            e.as_str(),
            s.in_source,
            s.matched,
            s.missing,
            s.only_in_crm,
            s.different,
            s.duplicated,
            s.invisible
        ));
    }
    if !r.invisible.is_empty() {
        out.push_str(&format!(
            "{} records are in the CRM but hidden from this login (owner 0 or another owner; sheet \"Invisible\"): --fix does not send them again\n",
            r.invisible.len()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crm::Entity;
    use crate::reconcile::{EntitySummary, FieldDiff};
    use calamine::{open_workbook, Data, Reader, Xlsx};

    #[test]
    fn report_has_summary_first_and_highlighted_differences() {
        let mut r = Reconciliation::new().unwrap();
        r.summaries = vec![(
            Entity::Person,
            EntitySummary {
                in_source: 3,
                matched: 2,
                missing: 1,
                different: 1,
                ..Default::default()
            },
        )];
        r.findings()
            .add_different(&FieldDiff {
                entity: Entity::Person,
                key: "P1".into(),
                id: 5,
                rows: vec!["a.csv:2".into()],
                field: "ptitle".into(),
                source: "Директор".into(),
                crm: "Бухгалтер".into(),
            })
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.xlsx");
        write_xlsx(&r, &path).unwrap();
        let mut wb: Xlsx<_> = open_workbook(&path).unwrap();
        assert_eq!(
            wb.sheet_names(),
            vec![
                "Summary",
                "Missing",
                "Different",
                "Duplicates",
                "Invisible",
                "Only in CRM"
            ]
        );
        let summary = wb.worksheet_range("Summary").unwrap();
        assert_eq!(summary.get((1, 0)), Some(&Data::String("person".into())));
        assert_eq!(summary.get((1, 3)), Some(&Data::Float(1.0)));
        let diff = wb.worksheet_range("Different").unwrap();
        assert_eq!(diff.get((1, 5)), Some(&Data::String("Директор".into())));
        assert_eq!(diff.get((1, 6)), Some(&Data::String("Бухгалтер".into())));
    }
}
