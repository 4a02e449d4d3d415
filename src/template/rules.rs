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
            // Not `is_uppercase`: title-case letters (ǅ) and others change too.
            Transform::Lower => v.chars().all(|c| maps_to_itself(c.to_lowercase(), c)),
            Transform::Upper => v.chars().all(|c| maps_to_itself(c.to_uppercase(), c)),
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

/// A case mapping that leaves the character as it is.
fn maps_to_itself(mut mapped: impl Iterator<Item = char>, c: char) -> bool {
    mapped.next() == Some(c) && mapped.next().is_none()
}

/// `8 342 200 00 00`, `+7(342)2000000`, `3422000000` → `+7 (342) 200-00-00`. An extension
/// (`доб. 12`, `ext 12`) is kept after the number. `None` when it is not a Russian number.
pub fn normalize_phone(v: &str) -> Option<String> {
    // Only digits and punctuation (the common case): no extension to look for. The marker is
    // searched on `v` itself, never at offsets found in a lower-cased copy: lower-casing changes
    // byte lengths (`K` Kelvin sign → `k`, `İ` → `i̇`), so such offsets can split a character.
    let plain = v
        .bytes()
        .all(|c| c.is_ascii_digit() || b" +-().".contains(&c));
    let marker = if plain {
        None
    } else {
        find_ignore_case(v, "доб").or_else(|| find_ignore_case(v, "ext"))
    };
    let (main, ext) = match marker {
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
    // Digits of other scripts (full-width, Arabic-Indic) would silently drop out of the number.
    if main.chars().any(|c| c.is_numeric() && !c.is_ascii_digit()) {
        return None;
    }
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

/// Byte offset in `haystack` (always a char boundary of it) where `needle` — lower-case — starts,
/// comparing each character of `haystack` by its simple lower-case form.
fn find_ignore_case(haystack: &str, needle: &str) -> Option<usize> {
    let lower1 = |c: char| {
        let mut l = c.to_lowercase();
        match (l.next(), l.next()) {
            (Some(a), None) => a,
            _ => c, // lower-cases to several characters (İ): never part of an ASCII/Cyrillic word
        }
    };
    haystack.char_indices().map(|(i, _)| i).find(|&i| {
        let mut hay = haystack[i..].chars();
        needle.chars().all(|n| hay.next().map(lower1) == Some(n))
    })
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

    #[test]
    fn phone_with_case_changing_letters_does_not_split_a_character() {
        // Kelvin sign shrinks and İ grows under to_lowercase: the total byte length stays the
        // same, so offsets from a lower-cased copy used to land inside the Kelvin sign.
        assert_eq!(normalize_phone("\u{212A}ext İİ"), None);
        assert_eq!(Transform::Phone.apply("\u{212A}ext İİ"), "\u{212A}ext İİ");
        assert_eq!(normalize_phone("8 342 200 00 00 İ ext 7"), None);
        assert_eq!(
            normalize_phone("8 342 200 00 00 \u{212A} EXT 7"),
            None,
            "a letter before the extension is not a phone"
        );
        assert_eq!(
            normalize_phone("8 342 200 00 00 Ext. 7").unwrap(),
            "+7 (342) 200-00-00 доб. 7"
        );
        // Title-case letters are neither upper nor lower case, yet change under both.
        assert_eq!(Transform::Lower.apply_cow(Cow::Borrowed("ǅ")), "ǆ");
        assert_eq!(Transform::Upper.apply_cow(Cow::Borrowed("ǅ")), "Ǆ");
        // Digits of other scripts are not silently dropped from the number.
        assert_eq!(normalize_phone("8 342 200 00 00 ٣"), None);
        assert_eq!(normalize_phone("８ ３４２ ２００ ００ ００"), None);
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        /// Characters that break naive text handling, mixed with what phones and dates are made of.
        fn nasty_char() -> impl Strategy<Value = char> {
            prop_oneof![
                3 => prop::sample::select(vec![
                    '\u{212A}', 'İ', 'ı', 'ß', 'ǅ', 'ﬃ', 'ΐ', '\u{301}', '\u{308}', '\u{200F}',
                    '\u{202E}', '\u{200D}', '\u{200B}', '\u{FEFF}', '１', '٣', '۷', '😀', '\0',
                    '\n', '\t', '\u{a0}', 'д', 'о', 'б', 'Д', 'О', 'Б', 'e', 'x', 't', 'E', 'X',
                    'T', 'ё', 'Ё', ' ', '.', ',', '-', ':', '/', '(', ')', '+', 'T', '%',
                ]),
                3 => prop::char::range('0', '9'),
                2 => any::<char>(),
            ]
        }

        fn nasty_string() -> impl Strategy<Value = String> {
            prop::collection::vec(nasty_char(), 0..40).prop_map(String::from_iter)
        }

        const ALL: [Transform; 7] = [
            Transform::Trim,
            Transform::Lower,
            Transform::Upper,
            Transform::CollapseSpaces,
            Transform::Phone,
            Transform::Digits,
            Transform::Capitalize,
        ];

        proptest! {
            #![proptest_config(ProptestConfig {
                failure_persistence: None,
                ..ProptestConfig::with_cases(2000)
            })]

            #[test]
            fn phone_normalisation_is_well_formed_and_idempotent(v in nasty_string()) {
                if let Some(p) = normalize_phone(&v) {
                    let re = Regex::new(r"^\+7 \(\d{3}\) \d{3}-\d{2}-\d{2}( доб\. \d+)?$").unwrap();
                    prop_assert!(re.is_match(&p), "{v:?} → {p:?}");
                    prop_assert_eq!(normalize_phone(&p), Some(p.clone()));
                    prop_assert!(is_phone(&p));
                }
            }

            #[test]
            fn transforms_and_checks_never_panic(v in nasty_string()) {
                for t in ALL {
                    let owned = t.apply(&v);
                    prop_assert_eq!(t.apply_cow(Cow::Borrowed(&v)), owned.as_str(), "{:?}", t);
                }
                prop_assert_eq!(Transform::Trim.apply(&Transform::Trim.apply(&v)), Transform::Trim.apply(&v));
                let digits = Transform::Digits.apply(&v);
                prop_assert!(digits.bytes().all(|b| b.is_ascii_digit()));
                let collapsed = Transform::CollapseSpaces.apply(&v);
                prop_assert_eq!(Transform::CollapseSpaces.apply(&collapsed), collapsed.clone());
                let _ = (is_email(&v), is_phone(&v), parse_number(&v), parse_time(&v));
                if let Some(c) = first_4byte_char(&v) {
                    prop_assert!(v.contains(c) && c.len_utf8() == 4);
                }
            }

            #[test]
            fn dates_never_panic_with_any_format(v in nasty_string(), f in "[%a-zA-Z.:/ -]{0,12}") {
                let all: Vec<String> = DEFAULT_DATE_FORMATS.iter().map(|s| s.to_string()).collect();
                let formats = DateFormats::new(std::slice::from_ref(&f));
                if let Some(d) = formats.parse(&v) {
                    prop_assert!((1000..=9999).contains(&d.year()));
                }
                for one in &all {
                    let _ = parse_date(&v, std::slice::from_ref(one));
                }
                let _ = parse_date(&v, &[f]);
            }

            #[test]
            fn dates_round_trip_through_every_default_format(
                days in 0i64..3_000_000, secs in 0u32..86_400, k in 0usize..DEFAULT_DATE_FORMATS.len()
            ) {
                let base = NaiveDate::from_ymd_opt(1000, 1, 1).unwrap();
                let Some(day) = base.checked_add_days(chrono::Days::new(days as u64)) else { return Ok(()) };
                prop_assume!(day.year() <= 9999);
                let t = NaiveTime::from_num_seconds_from_midnight_opt(secs, 0).unwrap();
                let fmt = DEFAULT_DATE_FORMATS[k];
                let written = day.and_time(t).format(fmt).to_string();
                let back = parse_date(&written, &[]).unwrap();
                // Formats without seconds (or without a time) keep what they wrote.
                prop_assert_eq!(back.format(fmt).to_string(), written.clone());
                prop_assert_eq!(parse_date(&format_datetime(&back, false), &[]), Some(back));
            }

            #[test]
            fn numbers_round_trip_as_russian_users_write_them(x in -1e12f64..1e12, cents in any::<bool>()) {
                let x = if cents { (x * 100.0).round() / 100.0 } else { x.round() };
                prop_assert_eq!(parse_number(&x.to_string()), Some(x));
                let ru = x.to_string().replace('.', ",");
                prop_assert_eq!(parse_number(&ru), Some(x));
                prop_assert_eq!(parse_number(&format!("\u{a0}{ru} ")), Some(x));
            }
        }
    }
}
