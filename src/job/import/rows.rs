//! The plan's rows turned into plain report lines: one outcome per source row, from the
//! journal's states of its records.

use crate::crm::Entity;
use crate::report::import::{Outcome, RowLine};
use crate::source::escape;
use crate::upload::{PlannedRow, RecordOutcome, RowSkip, State};

/// Invalid rows printed before the upload starts; the report lists every one.
pub const INVALID_ROWS_SHOWN: usize = 10;

/// The invalid rows, one line each (at most `at_most` of `first`, the first invalid rows, then
/// how many more of `total`).
pub fn invalid_row_lines(first: &[PlannedRow], total: u64, at_most: usize) -> Vec<String> {
    let mut out = Vec::new();
    let invalid: Vec<_> = first
        .iter()
        .filter_map(|r| r.invalid.as_ref().map(|p| (r, p)))
        .collect();
    for (r, p) in invalid.iter().take(at_most) {
        let held: Vec<&str> = r.rejected.iter().map(|e| e.as_str()).collect();
        let sent = if r.records.is_empty() {
            "nothing of this row is sent".to_string()
        } else {
            format!("not sent: {}; the row's other records are", held.join(", "))
        };
        out.push(format!("{}: {} ({sent})", r.pos, escape(&p.message)));
    }
    let shown = invalid.len().min(at_most) as u64;
    if total > shown {
        out.push(format!(
            "… and {} more invalid rows (see the report)",
            total - shown
        ));
    }
    out
}

/// One source row's outcome after a run, from the journal's states of its records (`records`:
/// those of `r.records`, in order).
pub fn row_line(r: &PlannedRow, records: &[RecordOutcome]) -> RowLine {
    let mut line = RowLine {
        file: r.pos.file.to_string(),
        sheet: r.pos.sheet.as_ref().map(|s| s.to_string()),
        row: r.pos.row,
        outcome: Outcome::Skipped,
        ids: [None; 7],
        entity: None,
        field: None,
        value: None,
        error: None,
    };
    match r.skip {
        Some(RowSkip::Blank) => {
            line.outcome = Outcome::Blank;
            return line;
        }
        Some(RowSkip::NotSelected) => {
            line.outcome = Outcome::Skipped;
            return line;
        }
        None => {}
    }
    if let Some(p) = &r.invalid {
        line.entity = p.entity.map(|e| e.to_string());
        line.field = p.field.clone();
        line.value = (!p.value.is_empty()).then(|| p.value.clone());
        line.error = Some(p.message.clone());
    }
    let (mut created, mut existing, mut failed, mut unresolved, mut not_sent) = (0, 0, 0, 0, 0);
    let (mut updated, mut unchanged, mut not_found, mut ambiguous, mut deleted) = (0, 0, 0, 0, 0);
    // A record's trouble replaces the invalid-part message: it is what needs acting on first.
    let mut trouble: Option<(Entity, String, String)> = None;
    for rec in records {
        let slot = Entity::IMPORT
            .iter()
            .position(|e| *e == rec.entity)
            .unwrap_or(0);
        let entry = rec.entry.as_ref();
        let state = entry.map(|e| e.state);
        let why = |default: &str| {
            entry
                .and_then(|e| e.error.clone())
                .unwrap_or_else(|| default.to_string())
        };
        match state {
            Some(State::Created) => {
                line.ids[slot] = entry.and_then(|e| e.crm_id);
                created += 1;
            }
            Some(State::Existing) => {
                line.ids[slot] = entry.and_then(|e| e.crm_id);
                existing += 1;
            }
            Some(State::Updated) => {
                line.ids[slot] = entry.and_then(|e| e.crm_id);
                updated += 1;
            }
            Some(State::Unchanged) => {
                line.ids[slot] = entry.and_then(|e| e.crm_id);
                unchanged += 1;
            }
            Some(State::Deleted) => {
                line.ids[slot] = entry.and_then(|e| e.crm_id);
                deleted += 1;
            }
            Some(State::NotFound) => {
                not_found += 1;
                trouble.get_or_insert((rec.entity, rec.key.clone(), why("not found in the CRM")));
            }
            Some(State::AmbiguousMatch) => {
                ambiguous += 1;
                trouble.get_or_insert((
                    rec.entity,
                    rec.key.clone(),
                    why("matches several CRM records"),
                ));
            }
            Some(State::Failed) => {
                failed += 1;
                trouble.get_or_insert((rec.entity, rec.key.clone(), why("refused by the CRM")));
            }
            Some(State::Sent) | Some(State::Ambiguous) => {
                unresolved += 1;
                trouble.get_or_insert((
                    rec.entity,
                    rec.key.clone(),
                    why("sent, but the answer was lost; run again to check it"),
                ));
            }
            Some(State::Pending) | None => {
                not_sent += 1;
                trouble.get_or_insert((
                    rec.entity,
                    rec.key.clone(),
                    why("not sent: the run stopped first"),
                ));
            }
        }
    }
    // A payment made or found: the CRM keeps no payment date (invoice/do drops it), so the
    // line says what was paid, when, and on which invoice.
    let paid_note = records.iter().find_map(|rec| {
        let e = rec.entry.as_ref()?;
        (rec.entity == Entity::Payment && matches!(e.state, State::Created | State::Existing))
            .then(|| e.error.clone())
            .flatten()
            .map(|n| (rec.key.clone(), n))
    });
    if let Some((entity, key, error)) = trouble {
        line.entity = Some(entity.to_string());
        line.field = None;
        line.value = Some(key);
        line.error = Some(error);
    } else if let Some((key, note)) = paid_note.filter(|_| r.invalid.is_none()) {
        line.entity = Some(Entity::Payment.to_string());
        line.value = Some(key);
        line.error = Some(note);
    }
    line.outcome = if failed > 0 {
        Outcome::Failed
    } else if unresolved > 0 {
        Outcome::Unresolved
    } else if not_sent > 0 {
        Outcome::NotSent
    } else if ambiguous > 0 {
        Outcome::Ambiguous
    } else if not_found > 0 {
        Outcome::NotFound
    } else if r.invalid.is_some() {
        if created + existing + updated + unchanged + deleted > 0 {
            Outcome::Partial
        } else {
            Outcome::Invalid
        }
    } else if created > 0 {
        Outcome::Created
    } else if updated > 0 {
        Outcome::Updated
    } else if deleted > 0 {
        Outcome::Deleted
    } else if existing > 0 {
        Outcome::Existing
    } else {
        Outcome::Unchanged
    };
    line
}
