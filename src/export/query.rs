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

/// The user's filters, already validated.
#[derive(Debug, Clone, Default)]
pub struct Filters {
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
        Entity::Task => None,
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
    }
}

/// The `list` requests that together return every record matching `filters`.
pub fn passes(entity: Entity, filters: &Filters, server_fields: Option<&str>) -> Vec<Pass> {
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
