//! Transforms, checks and date conversion: the value-level rules of a template field.

use chrono::format::{Item, Parsed};
use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime};
use regex::Regex;
use std::borrow::Cow;
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

    /// Like [`Transform::apply`], but borrows when the value is already in shape: most cells
    /// are, and this runs for every cell of every row.
    pub fn apply_cow(self, v: Cow<'_, str>) -> Cow<'_, str> {
        let unchanged = match self {
            Transform::Trim => v.trim().len() == v.len(),
            Transform::Lower => !v.chars().any(char::is_uppercase),
            Transform::Upper => !v.chars().any(char::is_lowercase),
            Transform::CollapseSpaces => {
                let b = v.as_bytes();
                !v.chars().any(|c| c.is_whitespace() && c != ' ')
                    && !b.windows(2).any(|w| w == b"  ")
                    && b.first() != Some(&b' ')
                    && b.last() != Some(&b' ')
            }
            Transform::Digits => v.bytes().all(|c| c.is_ascii_digit()),
            Transform::Phone | Transform::Capitalize => false,
        };
        if unchanged {
            v
        } else {
            Cow::Owned(self.apply(&v))
        }
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
    // Only digits and punctuation (the common case): no extension to look for.
    let plain = v
        .bytes()
        .all(|c| c.is_ascii_digit() || b" +-().".contains(&c));
    let lower = if plain {
        Cow::Borrowed("")
    } else {
        Cow::Owned(v.to_lowercase())
    };
    // `to_lowercase` keeps byte offsets for Cyrillic and ASCII; other scripts make no phone.
    if lower.len() != v.len() && !plain {
        return None;
    }
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
    // Built by hand: `format!` was a visible share of validating a phone column.
    let mut s = String::with_capacity(32);
    for part in [
        "+7 (",
        &d[0..3],
        ") ",
        &d[3..6],
        "-",
        &d[6..8],
        "-",
        &d[8..10],
    ] {
        s.push_str(part);
    }
    if let Some(e) = ext.filter(|e| !e.is_empty()) {
        s.push_str(" доб. ");
        s.push_str(&e);
    }
    Some(s)
}

/// A phone as people write them: 7–15 digits with the usual punctuation (foreign numbers pass).
pub fn is_phone(v: &str) -> bool {
    if is_normalized_phone(v) || normalize_phone(v).is_some() {
        return true;
    }
    let digits = v.chars().filter(|c| c.is_ascii_digit()).count();
    (7..=15).contains(&digits)
        && v.chars()
            .all(|c| c.is_ascii_digit() || " +-().".contains(c))
}

/// Exactly `+7 (342) 200-00-00`, what the `phone` transform writes.
fn is_normalized_phone(v: &str) -> bool {
    const SHAPE: &[u8] = b"+7 (ddd) ddd-dd-dd";
    let b = v.as_bytes();
    b.len() == SHAPE.len()
        && b.iter().zip(SHAPE).all(|(c, s)| {
            if *s == b'd' {
                c.is_ascii_digit()
            } else {
                c == s
            }
        })
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
    DateFormats::new(formats).parse(v)
}

/// A fixed-width layout we parse by hand (the formats nearly every file uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fast {
    /// `%d.%m.%Y`, with `HH:MM` / `HH:MM:SS` after a space when `time` is 1 / 2.
    Dmy(u8),
    /// `%Y-%m-%d`, likewise.
    Ymd(u8),
}

#[derive(Debug, Clone)]
struct DateFormat {
    fast: Option<Fast>,
    /// `None` when chrono cannot read the format (it then never matches, as before).
    items: Option<Vec<Item<'static>>>,
}

/// Date formats compiled once (the template's, then [`DEFAULT_DATE_FORMATS`]): parsing a format
/// string per cell was a large part of validating a date column.
#[derive(Debug, Clone)]
pub struct DateFormats(Vec<DateFormat>);

impl DateFormats {
    pub fn new(formats: &[String]) -> DateFormats {
        DateFormats(
            formats
                .iter()
                .map(String::as_str)
                .chain(DEFAULT_DATE_FORMATS.iter().copied())
                .map(|f| DateFormat {
                    fast: match f {
                        "%d.%m.%Y" => Some(Fast::Dmy(0)),
                        "%d.%m.%Y %H:%M" => Some(Fast::Dmy(1)),
                        "%d.%m.%Y %H:%M:%S" => Some(Fast::Dmy(2)),
                        "%Y-%m-%d" => Some(Fast::Ymd(0)),
                        "%Y-%m-%d %H:%M" => Some(Fast::Ymd(1)),
                        "%Y-%m-%d %H:%M:%S" => Some(Fast::Ymd(2)),
                        _ => None,
                    },
                    items: chrono::format::StrftimeItems::new(f).parse_to_owned().ok(),
                })
                .collect(),
        )
    }

    pub fn parse(&self, v: &str) -> Option<NaiveDateTime> {
        let v = v.trim();
        self.0
            .iter()
            .find_map(|f| {
                f.fast
                    .and_then(|fast| parse_fast(v, fast))
                    .or_else(|| parse_items(v, f.items.as_deref()?))
            })
            .filter(|d| (1000..=9999).contains(&d.year()))
    }
}

fn parse_items(v: &str, items: &[Item<'static>]) -> Option<NaiveDateTime> {
    let mut p = Parsed::new();
    chrono::format::parse(&mut p, v, items.iter()).ok()?;
    p.to_naive_datetime_with_offset(0)
        .ok()
        .or_else(|| p.to_naive_date().ok().map(|d| d.and_time(NaiveTime::MIN)))
}

/// Strictly zero-padded input only; anything else goes to chrono with the same format.
fn parse_fast(v: &str, fast: Fast) -> Option<NaiveDateTime> {
    let b = v.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let s = b.get(r)?;
        let mut n = 0u32;
        for &c in s {
            if !c.is_ascii_digit() {
                return None;
            }
            n = n * 10 + u32::from(c - b'0');
        }
        Some(n)
    };
    let (y, m, d, time) = match fast {
        Fast::Dmy(t) => {
            if b.get(2) != Some(&b'.') || b.get(5) != Some(&b'.') {
                return None;
            }
            (num(6..10)?, num(3..5)?, num(0..2)?, t)
        }
        Fast::Ymd(t) => {
            if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
                return None;
            }
            (num(0..4)?, num(5..7)?, num(8..10)?, t)
        }
    };
    let len = [10, 16, 19][time as usize];
    if b.len() != len {
        return None;
    }
    let (mut hh, mut mm, mut ss) = (0, 0, 0);
    if time >= 1 {
        if b[10] != b' ' || b[13] != b':' {
            return None;
        }
        hh = num(11..13)?;
        mm = num(14..16)?;
    }
    if time == 2 {
        if b[16] != b':' {
            return None;
        }
        ss = num(17..19)?;
    }
    NaiveDate::from_ymd_opt(y as i32, m, d)?.and_hms_opt(hh, mm, ss)
}

/// `YYYY-MM-DD HH:MM:SS` (or just the date) without chrono's formatting machinery.
pub fn format_datetime(d: &NaiveDateTime, date_only: bool) -> String {
    use chrono::Timelike;
    if date_only {
        format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
    } else {
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            d.year(),
            d.month(),
            d.day(),
            d.hour(),
            d.minute(),
            d.second()
        )
    }
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
    // A 4-byte sequence starts with a byte ≥ 0xF0: scan bytes, decode only on a hit.
    let i = v.bytes().position(|b| b >= 0xF0)?;
    v[i..].chars().next()
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
    fn fast_date_paths_agree_with_chrono() {
        let f = DateFormats::new(&[]);
        for v in [
            "25.06.2024 14:25",
            "25.06.2024",
            "5.6.2024",
            "2024-06-25 14:25:59",
            "2024-06-25",
            "2024-06-25T14:25:59",
            "31.02.2024",
            "25.06.2024 25:00",
            "0012-01-01",
        ] {
            let slow = DEFAULT_DATE_FORMATS
                .iter()
                .find_map(|fmt| {
                    NaiveDateTime::parse_from_str(v, fmt).ok().or_else(|| {
                        NaiveDate::parse_from_str(v, fmt)
                            .ok()
                            .map(|d| d.and_time(NaiveTime::MIN))
                    })
                })
                .filter(|d| (1000..=9999).contains(&d.year()));
            assert_eq!(f.parse(v), slow, "{v}");
        }
        let d = f.parse("25.06.2024 14:25").unwrap();
        assert_eq!(format_datetime(&d, false), "2024-06-25 14:25:00");
        assert_eq!(format_datetime(&d, true), "2024-06-25");
    }

    #[test]
    fn cow_transforms_match_owned() {
        for t in [
            Transform::Trim,
            Transform::Lower,
            Transform::Upper,
            Transform::CollapseSpaces,
            Transform::Phone,
            Transform::Digits,
            Transform::Capitalize,
        ] {
            for v in [
                "abc",
                " a  b\t",
                "ИВАНОВ иван",
                "8 (342) 200-00-00",
                "+7 (342) 200-00-00",
                "12 34",
                "",
            ] {
                assert_eq!(t.apply_cow(Cow::Borrowed(v)), t.apply(v), "{t:?} {v}");
            }
        }
        assert!(is_phone("+7 (342) 200-00-00"));
        assert_eq!(
            normalize_phone("8 342 200 00 00 ДОБ. 5").unwrap(),
            "+7 (342) 200-00-00 доб. 5"
        );
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
