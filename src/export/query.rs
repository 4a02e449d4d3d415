//! What to ask each entity's `list` for, knowing its traps (NOTES.md §6): history and task
//! default to today, client needs an `order`, deal and task need `active`, person's `dateEnd` is
//! midnight of that day. Ordering is by id, oldest first, so pages do not shift when records are
//! added during the export; client/list ignores `first` and always answers newest first
//! (NOTES §11, `tuda: DESC`).

use super::ExportError;
use crate::crm::Entity;
use crate::values::CrmDateTime;
use chrono::{NaiveDate, NaiveDateTime};
use serde_json::{Map, Value};

/// Dates that cover everything history and task can hold (history `datum` is a MySQL
/// TIMESTAMP, 1970..2038); without them both lists answer only today.
const ALL_FROM: &str = "1970-01-01";
const ALL_TO: &str = "2099-12-31";

/// Open, closed or both (deal and task lists answer one of them per request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Active {
    Yes,
    No,
    #[default]
    All,
}

/// Invoices: paid, unpaid or both (`--paid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Paid {
    Yes,
    No,
    #[default]
    All,
}

/// The user's filters, already validated.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    /// Invoices: paid, unpaid or both (server-side `pay1` / `pay2`).
    pub paid: Paid,
    /// Invoices: only those paid on or after / before this day (their paid day, see README).
    pub paid_from: Option<NaiveDate>,
    pub paid_to: Option<NaiveDate>,
    /// Invoices, history and tasks: of this client (`clid`) / deal (`did`).
    pub client: Option<i64>,
    pub deal: Option<i64>,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub user: Option<String>,
    pub word: Option<String>,
    pub active: Active,
    /// Only records changed at or after this moment (account time zone, as the CRM shows it).
    pub changed_since: Option<NaiveDateTime>,
}

impl Filters {
    /// Does the listing return every record the login can see (nothing narrows it)? Only then
    /// does a record missing from it mean it is gone.
    pub fn lists_everything(&self) -> bool {
        self.from.is_none()
            && self.to.is_none()
            && self.user.is_none()
            && self.word.is_none()
            && self.active == Active::All
            && self.paid == Paid::All
            && self.paid_from.is_none()
            && self.paid_to.is_none()
            && self.client.is_none()
            && self.deal.is_none()
    }
}

/// One sequence of pages to fetch; deal and task take two (open, then closed).
#[derive(Debug, Clone)]
pub struct Pass {
    pub label: &'static str,
    pub params: Map<String, Value>,
}

/// The column telling when a record last changed, and the one to use when it is empty
/// (a record never edited has no edit date). `None`: the API gives no such date.
pub fn change_columns(entity: Entity) -> Option<(&'static str, &'static str)> {
    match entity {
        Entity::Person | Entity::Client => Some(("date_edit", "date_create")),
        Entity::Deal => Some(("datum_izm", "datum")),
        // History records are not edited: their date is when they happened.
        Entity::History => Some(("datum", "datum")),
        // Invoices have no change date; payments change the paid flag, the state compares it.
        Entity::Task | Entity::Invoice | Entity::Payment => None,
    }
}

/// The change column holds a date without time of day (deal `datum_izm`): changes are only
/// known to the day.
pub fn change_by_day(entity: Entity) -> bool {
    entity == Entity::Deal
}

/// What an incremental export of `entity` cannot see, said on every `--state` run.
pub fn unseen_changes(entity: Entity) -> &'static str {
    match entity {
        Entity::Person => {
            "person: changes are compared in what person/list returns; `social` is not listed, so its edits are not seen"
        }
        Entity::Client => {
            "client: changes are compared in what client/list returns; profile, bank details and other fields not listed are not seen"
        }
        Entity::Deal => {
            "deal: changes are compared in what deal/list returns (datum_izm is a date without time, so it cannot order same-day edits); the specification, invoices and `dog_num` are not listed, so their edits are not seen"
        }
        Entity::Task => {
            "task: the API gives no change date; every run reads all tasks and compares them with the state, so only edits to what task/list returns are seen (`pid` is not listed)"
        }
        Entity::History => {
            "history: rows can be entered back-dated and have no edit date; every run reads the whole history (all dates) and compares it with the state by id"
        }
        Entity::Payment => {
            "payment: payments are invoice rows; export invoice --paid yes lists them"
        }
        Entity::Invoice => {
            "invoice: the API gives no change date; every run reads all invoices and compares them with the state (paid flag, sum, dates, deal and client columns); a payment the server recorded without a date gets as its paid day the day a run first saw it paid (kept in the state)"
        }
    }
}

/// The `list` requests that together return every record matching `filters`.
pub fn passes(entity: Entity, filters: &Filters, server_fields: Option<&str>) -> Vec<Pass> {
    if entity == Entity::Invoice {
        return vec![invoice_pass(filters)];
    }
    let mut base = Map::new();
    let id = entity.id_field();
    // `order` must be a real column; `first=old` = ascending, so new records land on the last
    // page instead of shifting every page (client ignores `first` but still needs `order`).
    base.insert("order".into(), Value::from(id));
    base.insert("first".into(), Value::from("old"));
    if let Some(f) = server_fields {
        base.insert("fields".into(), Value::from(f));
    }
    if let Some(u) = &filters.user {
        base.insert("user".into(), Value::from(u.as_str()));
    }
    if let Some(w) = &filters.word {
        base.insert("word".into(), Value::from(w.as_str()));
    }
    let fmt = |d: NaiveDate| CrmDateTime::Date(d).to_string();
    match entity {
        Entity::History | Entity::Task => {
            // Never narrowed by `changed_since`: history rows can be entered back-dated, so a
            // row dated before the last run may still be new (`datum` is not an entry date).
            let from = filters.from;
            base.insert(
                "dateStart".into(),
                Value::from(from.map_or(ALL_FROM.to_string(), fmt)),
            );
            base.insert(
                "dateEnd".into(),
                Value::from(filters.to.map_or(ALL_TO.to_string(), fmt)),
            );
        }
        _ => {
            if let Some(f) = filters.from {
                base.insert("dateStart".into(), Value::from(fmt(f)));
            }
            if let Some(t) = filters.to {
                // person compares the raw datetime with `BETWEEN`, so `dateEnd=D` means D 00:00
                // and drops the whole day D; ask for the next day to make --to inclusive.
                let t = if entity == Entity::Person {
                    t.succ_opt().unwrap_or(t)
                } else {
                    t
                };
                base.insert("dateEnd".into(), Value::from(fmt(t)));
            }
        }
    }
    if matches!(entity, Entity::History | Entity::Task) {
        // Both lists take the links as top-level filters (v3-history-list-filter-*,
        // v3-task-list-clid).
        if let Some(c) = filters.client {
            base.insert("clid".into(), Value::from(c));
        }
        if let Some(d) = filters.deal {
            base.insert("did".into(), Value::from(d));
        }
    }
    match entity {
        Entity::Deal | Entity::Task => {
            let with = |label, active: &str| {
                let mut p = base.clone();
                p.insert("active".into(), Value::from(active));
                Pass { label, params: p }
            };
            match filters.active {
                Active::Yes => vec![with("open", "yes")],
                Active::No => vec![with("closed", "no")],
                Active::All => vec![with("open", "yes"), with("closed", "no")],
            }
        }
        _ => vec![Pass {
            label: "all",
            params: base,
        }],
    }
}

/// invoice/list (NOTES §12): ordered by creation time, oldest first (there is no id order;
/// `first=old` works), so invoices added during the export land on the last page. `--from`/`--to`
/// are the planned date: start and end together are an inclusive `BETWEEN`, a lone start is
/// `>` and a lone end `<`, so lone bounds are moved a day out. `dateStart`/`dateEnd` would kill
/// the request (SQL fatal) and are never sent. Paid/unpaid is `pay1`/`pay2` (`active` is
/// ignored by the server). The paid day is filtered on our side (see `export::invoice`).
fn invoice_pass(filters: &Filters) -> Pass {
    let mut p = Map::new();
    p.insert("order".into(), Value::from("datum"));
    p.insert("first".into(), Value::from("old"));
    let fmt = |d: NaiveDate| CrmDateTime::Date(d).to_string();
    match (filters.from, filters.to) {
        (Some(f), Some(t)) => {
            p.insert("datePlanStart".into(), Value::from(fmt(f)));
            p.insert("datePlanEnd".into(), Value::from(fmt(t)));
        }
        (Some(f), None) => {
            let f = f.pred_opt().unwrap_or(f);
            p.insert("datePlanStart".into(), Value::from(fmt(f)));
        }
        (None, Some(t)) => {
            let t = t.succ_opt().unwrap_or(t);
            p.insert("datePlanEnd".into(), Value::from(fmt(t)));
        }
        (None, None) => {}
    }
    match filters.paid {
        Paid::Yes => {
            p.insert("pay1".into(), Value::from("yes"));
        }
        Paid::No => {
            p.insert("pay2".into(), Value::from("yes"));
        }
        Paid::All => {}
    }
    if let Some(c) = filters.client {
        p.insert("clid".into(), Value::from(c));
    }
    if let Some(d) = filters.deal {
        p.insert("did".into(), Value::from(d));
    }
    if let Some(w) = &filters.word {
        p.insert("word".into(), Value::from(w.as_str()));
    }
    Pass {
        label: "all",
        params: p,
    }
}

/// A `YYYY-MM-DD` date from a flag.
pub fn parse_date(flag: &'static str, s: &str) -> Result<NaiveDate, ExportError> {
    match CrmDateTime::parse(s) {
        Some(CrmDateTime::Date(d)) => Ok(d),
        _ => Err(ExportError::BadDate {
            flag,
            value: s.to_string(),
        }),
    }
}

/// A moment from a flag or the state file: `YYYY-MM-DD`, `YYYY-MM-DD HH:MM[:SS]` or with `T`.
pub fn parse_moment(flag: &'static str, s: &str) -> Result<NaiveDateTime, ExportError> {
    CrmDateTime::parse(s)
        .and_then(CrmDateTime::moment)
        .ok_or_else(|| ExportError::BadDate {
            flag,
            value: s.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(p: &'a Pass, k: &str) -> Option<&'a str> {
        p.params.get(k).and_then(Value::as_str)
    }

    #[test]
    fn invoice_list_gets_plan_dates_with_lone_bounds_moved_and_never_date_start() {
        let d = |s| parse_date("--from", s).unwrap();
        let both = Filters {
            from: Some(d("2026-12-01")),
            to: Some(d("2026-12-31")),
            paid: Paid::Yes,
            deal: Some(25),
            ..Filters::default()
        };
        let p = &passes(Entity::Invoice, &both, None)[0];
        assert_eq!(get(p, "datePlanStart"), Some("2026-12-01"));
        assert_eq!(get(p, "datePlanEnd"), Some("2026-12-31"));
        assert_eq!(get(p, "pay1"), Some("yes"));
        assert_eq!(p.params["did"], 25);
        assert_eq!(get(p, "order"), Some("datum"));
        assert!(p.params.get("dateStart").is_none() && p.params.get("dateEnd").is_none());
        let lone = Filters {
            from: Some(d("2026-12-01")),
            paid: Paid::No,
            ..Filters::default()
        };
        let p = &passes(Entity::Invoice, &lone, None)[0];
        assert_eq!(
            get(p, "datePlanStart"),
            Some("2026-11-30"),
            "a lone start is exclusive"
        );
        assert_eq!(get(p, "pay2"), Some("yes"));
        let lone = Filters {
            to: Some(d("2026-12-31")),
            ..Filters::default()
        };
        let p = &passes(Entity::Invoice, &lone, None)[0];
        assert_eq!(
            get(p, "datePlanEnd"),
            Some("2027-01-01"),
            "a lone end is exclusive"
        );
        assert!(!lone.lists_everything());
    }

    #[test]
    fn every_entity_is_ordered_by_id_oldest_first() {
        for e in Entity::ALL {
            for p in passes(e, &Filters::default(), None) {
                assert_eq!(get(&p, "order"), Some(e.id_field()));
                assert_eq!(get(&p, "first"), Some("old"));
            }
        }
    }

    #[test]
    fn history_and_task_get_an_explicit_full_date_range() {
        for e in [Entity::History, Entity::Task] {
            for p in passes(e, &Filters::default(), None) {
                assert_eq!(get(&p, "dateStart"), Some(ALL_FROM));
                assert_eq!(get(&p, "dateEnd"), Some(ALL_TO));
            }
        }
        let p = &passes(Entity::Person, &Filters::default(), None)[0];
        assert!(p.params.get("dateStart").is_none());
    }

    #[test]
    fn deal_and_task_export_open_and_closed_unless_told() {
        let ps = passes(Entity::Deal, &Filters::default(), None);
        let act: Vec<_> = ps.iter().map(|p| get(p, "active").unwrap()).collect();
        assert_eq!(act, ["yes", "no"]);
        let f = Filters {
            active: Active::No,
            ..Filters::default()
        };
        assert_eq!(passes(Entity::Task, &f, None).len(), 1);
        assert_eq!(passes(Entity::Person, &Filters::default(), None).len(), 1);
    }

    #[test]
    fn person_to_date_is_made_inclusive_and_history_since_never_narrows_on_server() {
        let d = |s| parse_date("--to", s).unwrap();
        let f = Filters {
            from: Some(d("2026-01-01")),
            to: Some(d("2026-11-22")),
            ..Filters::default()
        };
        let p = &passes(Entity::Person, &f, Some("pid,person"))[0];
        assert_eq!(get(p, "dateEnd"), Some("2026-11-23"));
        assert_eq!(get(p, "fields"), Some("pid,person"));
        let h = &passes(Entity::History, &f, None)[0];
        assert_eq!(get(h, "dateEnd"), Some("2026-11-22"));
        // Back-dated history rows would be missed by a server-side narrowing: never narrowed.
        let f = Filters {
            changed_since: Some(parse_moment("--changed-since", "2026-05-01 10:00").unwrap()),
            from: None,
            ..f
        };
        let h = &passes(Entity::History, &f, None)[0];
        assert_eq!(get(h, "dateStart"), Some(ALL_FROM));
    }

    #[test]
    fn bad_dates_are_rejected() {
        assert!(parse_date("--from", "22.11.2026").is_err());
        assert!(parse_date("--from", "2026-02-30").is_err());
        assert!(parse_moment("--changed-since", "yesterday").is_err());
        assert!(parse_moment("--changed-since", "2026-11-22T10:00:00").is_ok());
        assert!(parse_moment("--changed-since", "0000-00-00 00:00:00").is_err());
        assert!(parse_date("--to", "2026-11-22 10:00").is_err());
        assert_eq!(
            parse_moment("--changed-since", "2026-11-22").unwrap(),
            parse_moment("--changed-since", "2026-11-22 00:00:00").unwrap()
        );
    }
}
