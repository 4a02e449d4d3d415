//! How a field's text is checked and typed for the CRM: the field's checks, and the value sent
//! (text, a date, a number...), decided once per field by [`Typing::of`].

use crate::template::fields::FieldKind;
use crate::template::rules::{is_email, is_phone, parse_number, parse_time, DateFormats};
use crate::template::{Check, FieldRule};
use crate::values::{is_money_field, CrmDateTime, Money};
use serde_json::Value;

/// How a field's text becomes the value sent (see [`typed_value`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Typing {
    Time,
    Date,
    Money,
    Number,
    Int,
    Text,
}

impl Typing {
    pub(super) fn of(rule: &FieldRule) -> Typing {
        let number = rule.kind == FieldKind::Number
            || rule.checks.iter().any(|c| matches!(c, Check::Number));
        if rule.kind == FieldKind::Time {
            Typing::Time
        } else if rule.date.is_some() {
            Typing::Date
        } else if number && is_money_field(&rule.name) {
            Typing::Money
        } else if number {
            Typing::Number
        } else if rule.kind == FieldKind::Int {
            Typing::Int
        } else {
            Typing::Text
        }
    }
}

/// What the field's checks (e-mail, phone, number, length, list, pattern) say about a value,
/// each failed one to `report`; whether any failed.
// Inlined into `map_field` (a module apart, it would not be: +74M Ir on validate small.csv).
#[inline]
pub(super) fn failed_checks(
    checks: &[Check],
    v: &str,
    field: &str,
    report: impl FnMut(String),
) -> bool {
    let mut report = report;
    let mut failed = false;
    for check in checks {
        let problem = match check {
            Check::Email if !is_email(v) => Some("is not a valid e-mail address".to_string()),
            Check::Phone if !is_phone(v) => Some("is not a phone number".to_string()),
            // Amounts are read (and refused) as money by `typed_value`.
            Check::Number if !is_money_field(field) && parse_number(v).is_none() => {
                Some("is not a number".to_string())
            }
            Check::Integer if v.parse::<i64>().is_err() => {
                Some("is not a whole number".to_string())
            }
            Check::MaxLength(n) if v.len() > *n && v.chars().count() > *n => Some(format!(
                "is {} characters long; the CRM column holds at most {n}",
                v.chars().count()
            )),
            Check::OneOf(list) if !list.iter().any(|x| *x == *v) => {
                Some(format!("is not one of: {}", list.join(", ")))
            }
            Check::Regex(re) if !re.is_match(v) => {
                Some(format!("does not match the pattern {}", re.as_str()))
            }
            _ => None,
        };
        if let Some(m) = problem {
            report(m);
            failed = true;
        }
    }
    failed
}

/// A value as the CRM takes it.
pub(super) enum Typed {
    /// The text as it is.
    Text,
    /// A date, sent as its text (`CrmDateTime`'s `Display`).
    Date(CrmDateTime),
    Json(Value),
}

/// The value as the CRM takes it: a time, a date (in the CRM's range for timestamps), a number
/// or an integer; text as it is; `Err` with what is wrong.
#[inline]
pub(super) fn typed_value(
    typing: Typing,
    rule: &FieldRule,
    dates: Option<&DateFormats>,
    v: &str,
) -> Result<Typed, String> {
    match typing {
        Typing::Text => Ok(Typed::Text),
        Typing::Time => match parse_time(v) {
            Some(t) => Ok(Typed::Json(Value::String(t.format("%H:%M").to_string()))),
            None => Err("is not a time (HH:MM)".into()),
        },
        Typing::Date => {
            let (Some(formats), Some(compiled)) = (&rule.date, dates) else {
                return Ok(Typed::Text); // bound with the rule's formats: never
            };
            let Some(d) = compiled.parse(v) else {
                let fmts = if formats.is_empty() {
                    String::new()
                } else {
                    format!(" (expected {})", formats.join(" or "))
                };
                return Err(format!("is not a date{fmts}"));
            };
            if rule.kind == FieldKind::Timestamp {
                // The range a 32-bit UNIX timestamp holds, by the calendar (no clock, no zone).
                const LO: chrono::NaiveDate = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
                const HI: chrono::NaiveDate = chrono::NaiveDate::from_ymd_opt(2038, 1, 19).unwrap();
                if d < LO.and_time(chrono::NaiveTime::MIN)
                    || d >= HI.and_time(chrono::NaiveTime::MIN)
                {
                    return Err(
                        "is outside 1970-01-01 … 2038-01-19, the range the CRM can store".into(),
                    );
                }
            }
            Ok(Typed::Date(CrmDateTime::of(
                d,
                rule.kind == FieldKind::Date,
            )))
        }
        // Sent as `1500.75`: the server reads "1,500.75" as 1.50 (NOTES §11,
        // v3-deal-add-kol-thousands-comma).
        Typing::Money => Money::parse(v)
            .map(|m| Typed::Json(m.to_json()))
            .map_err(|e| e.to_string()),
        // "1 234,50" is sent as the number 1234.5: the server would misread the text.
        Typing::Number => Ok(Typed::Json(
            parse_number(v)
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .unwrap_or_else(|| Value::String(v.to_string())),
        )),
        Typing::Int => Ok(Typed::Json(
            v.parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::String(v.to_string())),
        )),
    }
}
