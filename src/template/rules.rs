//! Transforms, checks and date conversion: the value-level rules of a template field.

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime};
use regex::Regex;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    Trim,
    Lower,
    Upper,
    /// Runs of whitespace (incl. newlines, NBSP) become one space.
    CollapseSpaces,
    /// Russian numbers normalised to `+7 (342) 200-00-00`; anything else left as written.
    Phone,
    /// Keep only digits (INN, ids typed with spaces).
    Digits,
    /// First letter of each word upper-case, rest lower (ФИО typed in caps).
    Capitalize,
}

impl Transform {
    pub const NAMES: &'static str =
        "trim, lower, upper, collapse_spaces, phone, digits, capitalize";

    pub fn parse(s: &str) -> Option<Transform> {
        Some(match s {
            "trim" => Transform::Trim,
            "lower" => Transform::Lower,
            "upper" => Transform::Upper,
            "collapse_spaces" | "collapse" | "squeeze" => Transform::CollapseSpaces,
            "phone" => Transform::Phone,
            "digits" => Transform::Digits,
            "capitalize" | "title" => Transform::Capitalize,
            _ => return None,
        })
    }

    pub fn apply(self, v: &str) -> String {
        match self {
            Transform::Trim => v.trim().to_string(),
            Transform::Lower => v.to_lowercase(),
            Transform::Upper => v.to_uppercase(),
            Transform::CollapseSpaces => v.split_whitespace().collect::<Vec<_>>().join(" "),
            Transform::Phone => normalize_phone(v).unwrap_or_else(|| v.trim().to_string()),
            Transform::Digits => v.chars().filter(|c| c.is_ascii_digit()).collect(),
            Transform::Capitalize => v
                .split(' ')
                .map(|w| {
                    let mut c = w.chars();
                    match c.next() {
                        Some(first) => first
                            .to_uppercase()
                            .chain(c.flat_map(|x| x.to_lowercase()))
                            .collect(),
                        None => String::new(),
                    }
                })
                .collect::<Vec<String>>()
                .join(" "),
        }
    }
}

/// `8 342 200 00 00`, `+7(342)2000000`, `3422000000` → `+7 (342) 200-00-00`. An extension
/// (`доб. 12`, `ext 12`) is kept after the number. `None` when it is not a Russian number.
pub fn normalize_phone(v: &str) -> Option<String> {
    let lower = v.to_lowercase();
    let (main, ext) = match lower.find("доб").or_else(|| lower.find("ext")) {
        Some(i) => (
            &v[..i],
            Some(
                v[i..]
                    .chars()
                    .filter(|c| c.is_ascii_digit())
                    .collect::<String>(),
            ),
        ),
        None => (v, None),
    };
    if main.chars().any(|c| c.is_alphabetic()) {
        return None;
    }
    let digits: String = main.chars().filter(|c| c.is_ascii_digit()).collect();
    let d = match digits.len() {
        11 if digits.starts_with('7') || digits.starts_with('8') => &digits[1..],
        10 => &digits[..],
        _ => return None,
    };
    let mut s = format!("+7 ({}) {}-{}-{}", &d[0..3], &d[3..6], &d[6..8], &d[8..10]);
    if let Some(e) = ext.filter(|e| !e.is_empty()) {
        s.push_str(" доб. ");
        s.push_str(&e);
    }
    Some(s)
}

/// A phone as people write them: 7–15 digits with the usual punctuation (foreign numbers pass).
pub fn is_phone(v: &str) -> bool {
    if normalize_phone(v).is_some() {
        return true;
    }
    let digits = v.chars().filter(|c| c.is_ascii_digit()).count();
    (7..=15).contains(&digits)
        && v.chars()
            .all(|c| c.is_ascii_digit() || " +-().".contains(c))
}

pub fn is_email(v: &str) -> bool {
    static RE: OnceLock<Regex> = OnceLock::new();
    // Pragmatic: one @, no spaces, a dot in the domain, a 2+ letter TLD (Cyrillic domains too).
    RE.get_or_init(|| {
        Regex::new(r"^[^\s@,;<>()\[\]]+@[^\s@,;<>()\[\]]+\.[\p{L}]{2,}$").expect("valid regex")
    })
    .is_match(v)
}

/// Numbers as Russian users type them: `1 234,50`, `1234.5`, NBSP as thousands separator.
pub fn parse_number(v: &str) -> Option<f64> {
    let s: String = v
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '\u{a0}')
        .map(|c| if c == ',' { '.' } else { c })
        .collect();
    if s.is_empty() {
        return None;
    }
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// Formats tried after the template's own: what spreadsheets (our XLSX reader gives ISO) and
/// Russian users write.
pub const DEFAULT_DATE_FORMATS: &[&str] = &[
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M:%S",
    "%Y/%m/%d %H:%M:%S",
    "%Y-%m-%d",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
    "%d.%m.%Y",
    "%d/%m/%Y",
];

/// Parse with the given formats (date-only formats give midnight). Years outside 1000–9999 are
/// refused: `%Y` happily reads `12` as the year 12, which is never what a file means.
pub fn parse_date(v: &str, formats: &[String]) -> Option<NaiveDateTime> {
    let v = v.trim();
    let try_one = |fmt: &str| -> Option<NaiveDateTime> {
        NaiveDateTime::parse_from_str(v, fmt).ok().or_else(|| {
            NaiveDate::parse_from_str(v, fmt)
                .ok()
                .map(|d| d.and_time(NaiveTime::MIN))
        })
    };
    formats
        .iter()
        .map(String::as_str)
        .chain(DEFAULT_DATE_FORMATS.iter().copied())
        .find_map(try_one)
        .filter(|d| (1000..=9999).contains(&d.year()))
}

/// A plain time `HH:MM[:SS]` (task `totime`).
pub fn parse_time(v: &str) -> Option<NaiveTime> {
    let v = v.trim();
    NaiveTime::parse_from_str(v, "%H:%M:%S")
        .or_else(|_| NaiveTime::parse_from_str(v, "%H:%M"))
        .ok()
}

/// The server's tables are utf8mb3: 4-byte characters (emoji) fail the row (NOTES §8).
pub fn first_4byte_char(v: &str) -> Option<char> {
    v.chars().find(|c| c.len_utf8() == 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_normalise() {
        assert_eq!(
            normalize_phone("8 (342) 200-00-00").unwrap(),
            "+7 (342) 200-00-00"
        );
        assert_eq!(
            normalize_phone("+7 342 2000000").unwrap(),
            "+7 (342) 200-00-00"
        );
        assert_eq!(normalize_phone("3422000000").unwrap(), "+7 (342) 200-00-00");
        assert_eq!(
            normalize_phone("+7 342 200-00-00 доб. 12").unwrap(),
            "+7 (342) 200-00-00 доб. 12"
        );
        assert_eq!(normalize_phone("12345"), None);
        assert!(is_phone("+44 20 7946 0958"));
        assert!(!is_phone("звонить утром"));
    }

    #[test]
    fn emails() {
        assert!(is_email("ivanov@example.ru"));
        assert!(is_email("info@пример.рф"));
        assert!(!is_email("ivanov@example"));
        assert!(!is_email("ivanov example.ru"));
        assert!(!is_email("a@b@c.ru"));
    }

    #[test]
    fn dates() {
        let d = parse_date("25.06.2024 14:25", &[]).unwrap();
        assert_eq!(d.to_string(), "2024-06-25 14:25:00");
        assert!(parse_date("31.02.2024", &[]).is_none());
        assert!(parse_date("вчера", &[]).is_none());
        let d = parse_date("06/25/2024", &["%m/%d/%Y".into()]).unwrap();
        assert_eq!(d.to_string(), "2024-06-25 00:00:00");
    }

    #[test]
    fn numbers_and_transforms() {
        assert_eq!(parse_number("1 234,50"), Some(1234.5));
        assert_eq!(parse_number("abc"), None);
        assert_eq!(Transform::CollapseSpaces.apply(" a \n b  c "), "a b c");
        assert_eq!(Transform::Capitalize.apply("иВАНОВ иван"), "Иванов Иван");
        assert_eq!(first_4byte_char("ok 😀"), Some('😀'));
    }
}
