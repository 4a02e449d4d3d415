//! Which columns an export has and how each CRM value becomes a spreadsheet cell.
//!
//! Ids, dates and amounts become typed cells (so Excel can sort, sum and filter them); every
//! other value is text, written as a string cell, so nothing a CRM user typed can run as a
//! formula. Nested values (arrays, objects) are flattened into readable text.

use crate::crm::Entity;
use crate::report::Cell;
use crate::values::{is_money_field, CrmDateTime, Money};
use serde_json::{Map, Value};

/// Keys `list` returns, in the server's order, for entities whose rows do not all have the same
/// keys: history/list adds `person` only to rows linked to a contact (NOTES §6,
/// v3-history-list-dates-all), so a first page without one would otherwise drop the column.
fn list_keys(entity: Entity) -> &'static [&'static str] {
    match entity {
        Entity::History => &[
            "cid", "datum", "content", "tip", "iduser", "user", "clid", "client", "person", "did",
            "dogovor",
        ],
        _ => &[],
    }
}

/// How a column's values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A record id or a reference to one: an integer cell.
    Id,
    /// A date or datetime cell.
    Date,
    /// A sum of money: a number with two decimals.
    Money,
    Text,
}

/// Amounts the export computes (invoice and deal exports for the books).
const EXPORT_MONEY: &[&str] = &["paid_summa", "vat", "paid_total", "unpaid_total"];

/// Ids and references that are not spelled `...ID`.
const ID_FIELDS: &[&str] = &[
    "pid", "clid", "cid", "did", "tid", "mcid", "iduser", "autor", "payer",
];

impl Kind {
    /// Decided by the field name: the API has no type metadata, and deciding by value would
    /// turn a digits-only phone number into a number.
    pub fn of(name: &str) -> Kind {
        if ID_FIELDS.contains(&name) || (name.len() > 2 && name.ends_with("ID")) {
            Kind::Id
        } else if name.starts_with("date") || name.starts_with("datum") || name.ends_with("Date") {
            Kind::Date
        } else if is_money_field(name) || EXPORT_MONEY.contains(&name) {
            Kind::Money
        } else {
            Kind::Text
        }
    }
}

/// The columns of one exported table, in output order.
#[derive(Debug, Clone)]
pub struct Columns {
    entity: Entity,
    names: Vec<String>,
    kinds: Vec<Kind>,
}

impl Columns {
    pub fn new(entity: Entity, names: Vec<String>) -> Columns {
        let kinds = names.iter().map(|n| Kind::of(n)).collect();
        Columns {
            entity,
            names,
            kinds,
        }
    }

    /// The entity's known list keys first (so the columns do not depend on which rows came
    /// first), then the keys of the first rows in the server's order, then keys first seen in
    /// later rows of the same page.
    pub fn from_rows(entity: Entity, rows: &[Map<String, Value>]) -> Columns {
        let mut names: Vec<String> = list_keys(entity).iter().map(|k| k.to_string()).collect();
        let mut seen: std::collections::HashSet<&str> = list_keys(entity).iter().copied().collect();
        for row in rows {
            for k in row.keys() {
                if seen.insert(k.as_str()) {
                    names.push(k.clone());
                }
            }
        }
        Columns::new(entity, names)
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn contains(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }

    /// One row as cells, in column order.
    pub fn cells(&self, row: &Map<String, Value>) -> Vec<Cell> {
        // Rows nearly always hold exactly these keys in this order: walk row and columns
        // together and look keys up (hashing) only from where they part.
        let mut entries = row.iter();
        let mut in_step = true;
        self.names
            .iter()
            .zip(&self.kinds)
            .map(|(name, kind)| {
                let value = match in_step.then(|| entries.next()).flatten() {
                    Some((k, v)) if k == name => Some(v),
                    _ => {
                        in_step = false;
                        row.get(name)
                    }
                };
                match value {
                    None => Cell::Empty,
                    Some(v) => cell(self.entity, name, *kind, v),
                }
            })
            .collect()
    }
}

impl Columns {
    /// [`cells`](Self::cells) of a row that is not needed afterwards: text is moved into its
    /// cell instead of copied (most cells of an export are text).
    pub fn into_cells(&self, mut row: Map<String, Value>) -> Vec<Cell> {
        let in_order =
            row.len() == self.names.len() && row.keys().zip(&self.names).all(|(k, n)| k == n);
        if !in_order {
            return self.cells(&row);
        }
        self.names
            .iter()
            .zip(&self.kinds)
            .zip(row.values_mut())
            .map(|((name, kind), v)| match (kind, v) {
                (Kind::Text, Value::String(s)) => {
                    text_cell_owned(self.entity, name, std::mem::take(s))
                }
                (kind, v) => cell(self.entity, name, *kind, v),
            })
            .collect()
    }
}

/// One value as a typed cell.
pub fn cell(entity: Entity, name: &str, kind: Kind, v: &Value) -> Cell {
    if v.is_null() {
        return Cell::Empty;
    }
    match kind {
        Kind::Id => match v {
            Value::Number(n) if n.is_i64() => Cell::Int(n.as_i64().unwrap_or_default()),
            Value::String(s) => match s.trim().parse::<i64>() {
                Ok(i) => Cell::Int(i),
                Err(_) => text_cell(entity, name, v),
            },
            _ => text_cell(entity, name, v),
        },
        Kind::Date => match v.as_str().and_then(CrmDateTime::parse) {
            Some(CrmDateTime::DateTime(at)) => Cell::DateTime(at),
            Some(CrmDateTime::Date(d)) => Cell::Date(d),
            // "0000-00-00 00:00:00" (non-strict MySQL) and anything odd stays visible as text.
            Some(CrmDateTime::Zero) | None => text_cell(entity, name, v),
        },
        Kind::Money => match Money::from_json(v) {
            Some(m) => Cell::Money(m),
            None => text_cell(entity, name, v),
        },
        Kind::Text => text_cell(entity, name, v),
    }
}

fn text_cell(entity: Entity, name: &str, v: &Value) -> Cell {
    text_cell_owned(entity, name, flatten(v))
}

fn text_cell_owned(entity: Entity, name: &str, mut s: String) -> Cell {
    // history/list passes `content` through PHP's nl2br (history/info returns it raw, NOTES §6):
    // the `<br />` before each newline is the server's presentation, not what the user wrote.
    if entity == Entity::History && name == "content" && s.contains("<br />") {
        s = s.replace("<br />\r\n", "\r\n").replace("<br />\n", "\n");
    }
    if s.is_empty() {
        Cell::Empty
    } else {
        Cell::Text(s)
    }
}

/// Readable text for any JSON value: arrays joined with ", " (objects inside with "; "),
/// objects as `key: value` pairs.
pub fn flatten(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Bool(b) => if *b { "да" } else { "нет" }.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let sep = if items.iter().any(Value::is_object) {
                "; "
            } else {
                ", "
            };
            items
                .iter()
                .map(flatten)
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(sep)
        }
        Value::Object(obj) => obj
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| format!("{k}: {}", flatten(v)))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kinds_follow_field_names() {
        for id in ["pid", "clid", "iduser", "stepID", "tid"] {
            assert_eq!(Kind::of(id), Kind::Id, "{id}");
        }
        for d in [
            "date_create",
            "date_edit",
            "datum",
            "datum_plan",
            "contractDate",
        ] {
            assert_eq!(Kind::of(d), Kind::Date, "{d}");
        }
        assert_eq!(Kind::of("kol"), Kind::Money);
        for t in ["person", "tel", "uid", "ID", "totime", "step"] {
            assert_eq!(Kind::of(t), Kind::Text, "{t}");
        }
    }

    #[test]
    fn values_become_typed_cells_and_text_stays_text() {
        let e = Entity::Deal;
        assert_eq!(cell(e, "did", Kind::Id, &json!(7)), Cell::Int(7));
        assert_eq!(cell(e, "tid", Kind::Id, &json!("12")), Cell::Int(12));
        assert_eq!(
            cell(e, "datum", Kind::Date, &json!("2026-11-22")),
            Cell::Date(chrono::NaiveDate::from_ymd_opt(2026, 11, 22).unwrap())
        );
        assert!(matches!(
            cell(e, "date_create", Kind::Date, &json!("2026-11-22 09:11:25")),
            Cell::DateTime(_)
        ));
        assert_eq!(
            cell(e, "datum", Kind::Date, &json!("0000-00-00 00:00:00")),
            Cell::text("0000-00-00 00:00:00")
        );
        assert_eq!(
            cell(e, "kol", Kind::Money, &json!(100000)),
            Cell::Money(Money::from_units(100000))
        );
        assert_eq!(
            cell(e, "kol", Kind::Money, &json!("1234.50")),
            Cell::Money(Money::parse("1234,5").unwrap())
        );
        assert_eq!(
            cell(e, "kol", Kind::Money, &json!("1 500,75")),
            cell(e, "kol", Kind::Money, &json!(1500.75))
        );
        // What is not an amount stays visible as the server sent it.
        assert_eq!(
            cell(e, "kol", Kind::Money, &json!("по договору")),
            Cell::text("по договору")
        );
        assert_eq!(cell(e, "kol", Kind::Money, &Value::Null), Cell::Empty);
        assert_eq!(
            cell(e, "title", Kind::Text, &json!("=HYPERLINK(\"x\")")),
            Cell::text("=HYPERLINK(\"x\")")
        );
        assert_eq!(cell(e, "step", Kind::Text, &json!(20)), Cell::text("20"));
        assert_eq!(cell(e, "title", Kind::Text, &json!("")), Cell::Empty);
    }

    #[test]
    fn nested_values_are_flattened_and_history_line_breaks_cleaned() {
        assert_eq!(flatten(&json!(["a", "b", null])), "a, b");
        assert_eq!(
            flatten(&json!([{"pid": 1, "person": "Иванов"}, {"pid": 2, "person": "Петров"}])),
            "pid: 1, person: Иванов; pid: 2, person: Петров"
        );
        assert_eq!(flatten(&json!(false)), "нет");
        assert_eq!(
            cell(
                Entity::History,
                "content",
                Kind::Text,
                &json!("Строка 1<br />\nСтрока 2")
            ),
            Cell::text("Строка 1\nСтрока 2")
        );
    }

    #[test]
    fn columns_come_from_row_keys_in_order() {
        let rows: Vec<Map<String, Value>> = vec![
            json!({"pid": 1, "person": "А"})
                .as_object()
                .unwrap()
                .clone(),
            json!({"pid": 2, "mail": "x@y"})
                .as_object()
                .unwrap()
                .clone(),
        ];
        let c = Columns::from_rows(Entity::Person, &rows);
        assert_eq!(c.names(), ["pid", "person", "mail"]);
        assert_eq!(
            c.cells(&rows[1]),
            vec![Cell::Int(2), Cell::Empty, Cell::text("x@y")]
        );
        assert_eq!(c.into_cells(rows[1].clone()), c.cells(&rows[1]));
        let full = json!({"pid": "3", "person": "", "mail": "=1+1"});
        let full = full.as_object().unwrap();
        assert_eq!(
            c.into_cells(full.clone()),
            vec![Cell::Int(3), Cell::Empty, Cell::text("=1+1")]
        );
        // History's columns are the same whether or not the first rows are linked to a contact.
        let plain = json!({"cid": 1, "datum": "2026-11-29 10:00:00", "content": "a"});
        let linked = json!({"cid": 2, "person": [{"pid": 1, "person": "Иванов"}], "did": 0});
        let plain = plain.as_object().unwrap().clone();
        let linked = linked.as_object().unwrap().clone();
        let a = Columns::from_rows(Entity::History, std::slice::from_ref(&plain));
        let b = Columns::from_rows(Entity::History, &[linked, plain]);
        assert_eq!(a.names(), b.names());
        assert_eq!(a.names()[8], "person");
        let h = Columns::new(Entity::History, vec!["cid".into(), "content".into()]);
        let row = json!({"cid": 1, "content": "a<br />\nb"});
        let row = row.as_object().unwrap();
        assert_eq!(h.into_cells(row.clone()), h.cells(row));
        assert_eq!(h.cells(row)[1], Cell::text("a\nb"));
    }
}
