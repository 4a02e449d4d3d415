//! How the real server mangles text and dates on the way in (NOTES.md §7, §8).

use crate::values::{strip_tags, CrmDateTime};
use chrono::Local;
use serde_json::Value;

/// A request value as the PHP server sees it: strings as-is, numbers printed, arrays joined
/// with `sep`, null/absent as None.
pub fn value_str(v: Option<&Value>, sep: &str) -> Option<String> {
    match v? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "1".into() } else { String::new() }),
        Value::Array(a) => Some(
            a.iter()
                .filter_map(|x| value_str(Some(x), sep))
                .collect::<Vec<_>>()
                .join(sep),
        ),
        Value::Object(_) => None,
    }
}

/// PHP's `(int)` cast: leading digits of a string, 0 otherwise.
pub fn value_int(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => {
            let s = s.trim();
            let end = s
                .char_indices()
                .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && c == '-')))
                .map(|(i, _)| i)
                .unwrap_or(s.len());
            Some(s[..end].parse().unwrap_or(0))
        }
        Value::Bool(b) => Some(*b as i64),
        _ => None,
    }
}

/// Person/client text fields: tags stripped, `"` « » stored as ” (U+201D), trimmed.
pub fn clean_field(s: &str) -> String {
    strip_tags(s)
        .replace(['"', '«', '»'], "\u{201D}")
        .trim()
        .to_string()
}

/// History content: tags stripped, both quote kinds removed, newlines kept.
pub fn clean_content(s: &str) -> String {
    strip_tags(s).replace(['"', '\''], "").trim().to_string()
}

/// utf8mb3 tables reject 4-byte characters in strict mode; returns MySQL's error text.
pub fn utf8mb3_error(s: &str, table: &str, column: &str) -> Option<String> {
    let pos = s.char_indices().find(|(_, c)| c.len_utf8() == 4)?.0;
    let bytes: String = s.as_bytes()[pos..]
        .iter()
        .take(6)
        .map(|b| {
            if b.is_ascii_graphic() || *b == b' ' {
                (*b as char).to_string()
            } else {
                format!("\\x{b:02X}")
            }
        })
        .collect();
    let more = if s.len() - pos > 6 { "..." } else { "" };
    Some(format!(
        "Incorrect string value: '{bytes}{more}' for column `salesman`.`{table}`.`{column}` at row 1"
    ))
}

/// Client titles: "ООО «Ромашка»" → "Ромашка, ООО" (the CRM moves the legal form to the end).
pub fn normalize_title(s: &str) -> String {
    let t = strip_tags(s);
    let t = t.trim();
    for form in ["ООО", "ЗАО", "ОАО", "ПАО"] {
        if let Some(rest) = t.strip_prefix(form) {
            if rest.starts_with([' ', '«', '"']) {
                let name = rest
                    .trim()
                    .trim_matches(|c| matches!(c, '«' | '»' | '"' | '\u{201D}' | '\u{201C}'))
                    .trim();
                if !name.is_empty() {
                    return format!("{}, {form}", clean_field(name));
                }
            }
        }
    }
    clean_field(t)
}

/// The formats MySQL accepts in strict mode for a DATETIME (NOTES §7). Empty → now.
pub fn parse_datetime(v: Option<&Value>) -> Result<String, String> {
    let raw = match v {
        None | Some(Value::Null) => return Ok(now()),
        Some(Value::String(s)) => s.trim().to_string(),
        Some(other) => other.to_string(),
    };
    if raw.is_empty() {
        return Ok(now());
    }
    match CrmDateTime::parse(&raw) {
        // MySQL strict mode refuses the zero date.
        Some(CrmDateTime::Zero) | None => Err(raw),
        Some(d) => Ok(d.to_datetime_string()),
    }
}

/// A date (no time) for tasks/deals; accepts a datetime too and keeps the date part.
pub fn parse_date(v: Option<&Value>) -> Result<String, String> {
    parse_datetime(v).map(|s| s[..10].to_string())
}

pub fn datetime_error(raw: &str, table: &str, column: &str) -> String {
    format!("Incorrect datetime value: '{raw}' for column `salesman`.`{table}`.`{column}` at row 1")
}

/// MySQL TIMESTAMP range (history datum): 1970-01-01 00:00:01 .. 2038-01-19 03:14:07.
pub fn in_timestamp_range(dt: &str) -> bool {
    ("1970-01-01 00:00:01"..="2038-01-19 03:14:07").contains(&dt)
}

pub fn now() -> String {
    CrmDateTime::DateTime(Local::now().naive_local()).to_string()
}

pub fn today() -> String {
    CrmDateTime::Date(Local::now().date_naive()).to_string()
}

/// A date filter value (`dateStart`/`dateEnd`): only the date part counts.
pub fn filter_date(v: Option<&Value>) -> Option<String> {
    let s = value_str(v, "")?;
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    Some(s.chars().take(10).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn titles_normalise_like_the_crm() {
        assert_eq!(normalize_title("ООО «Ромашка»"), "Ромашка, ООО");
        assert_eq!(normalize_title("ООО Колокольчик"), "Колокольчик, ООО");
        assert_eq!(normalize_title("АО Василёк"), "АО Василёк");
        assert_eq!(normalize_title("ИП Лютиков"), "ИП Лютиков");
    }

    #[test]
    fn text_mangling() {
        assert_eq!(
            clean_field("  O'Брайен \"Кавычки\" <b>Тег</b> & Ёжиков "),
            "O'Брайен ”Кавычки” Тег & Ёжиков"
        );
        assert_eq!(
            clean_content("Строка 1\nСтрока 2 <b>жирный</b> \"кавычки\" 'апостроф' & амперсанд"),
            "Строка 1\nСтрока 2 жирный кавычки апостроф & амперсанд"
        );
        let e = utf8mb3_error("Эмодзи 😀 Тест", "app_personcat", "person").unwrap();
        assert!(
            e.starts_with("Incorrect string value: '\\xF0\\x9F\\x98\\x80 \\xD0..."),
            "{e}"
        );
        assert!(utf8mb3_error("Ёлкин — №5 € ü", "t", "c").is_none());
    }

    #[test]
    fn dates_strict_mode() {
        for ok in [
            "2024-06-25 10:11:12",
            "2024-06-25 10:11",
            "2024-06-25T10:11:12",
            "2024/06/25 10:11:12",
            "2024-06-25",
        ] {
            assert!(parse_datetime(Some(&json!(ok))).is_ok(), "{ok}");
        }
        for bad in [
            json!("25.06.2024 10:11"),
            json!(1719310272),
            json!("2024-06-25T10:11:12Z"),
            json!("2024-06-25T14:25:00+05:00"),
            json!("not a date"),
            json!("0000-00-00 00:00:00"),
        ] {
            assert!(parse_datetime(Some(&bad)).is_err(), "{bad}");
        }
        assert!(parse_datetime(Some(&json!(""))).is_ok());
        assert_eq!(
            parse_datetime(Some(&json!("2024/06/25 10:11"))).unwrap(),
            "2024-06-25 10:11:00"
        );
        assert_eq!(
            parse_date(Some(&json!("2024-06-25T10:11"))).unwrap(),
            "2024-06-25"
        );
        assert!(!in_timestamp_range("1965-01-01 10:00:00"));
        assert!(!in_timestamp_range("2040-01-01 10:00:00"));
        assert!(in_timestamp_range("2024-06-25 10:00:00"));
        assert_eq!(value_int(Some(&json!("1 - Пока"))), Some(1));
    }
}
