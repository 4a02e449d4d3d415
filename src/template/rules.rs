//! Transforms, checks and date conversion: the value-level rules of a template field.

use super::pattern::WholeMatch;
use chrono::format::{Item, Parsed};
use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime};
use std::borrow::Cow;
use std::sync::LazyLock;

pub use crate::values::phone::{is_phone, normalize_phone};

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
    /// The first of several values in one cell (`a@x.ru, b@x.ru`; `+7 900…; +7 901…`), as CRM
    /// exports write a contact's phones and e-mails.
    First,
    /// An Excel serial day number (`45321`, `45321.5`: a date cell exported as a number) as
    /// `YYYY-MM-DD[ HH:MM:SS]`; anything else is left as written.
    ExcelDate,
}

impl Transform {
    pub const NAMES: &'static str =
        "trim, lower, upper, collapse_spaces, phone, digits, capitalize, first, excel_date";

    pub fn parse(s: &str) -> Option<Transform> {
        Some(match s {
            "trim" => Transform::Trim,
            "lower" => Transform::Lower,
            "upper" => Transform::Upper,
            "collapse_spaces" | "collapse" | "squeeze" => Transform::CollapseSpaces,
            "phone" => Transform::Phone,
            "digits" => Transform::Digits,
            "capitalize" | "title" => Transform::Capitalize,
            "first" => Transform::First,
            "excel_date" => Transform::ExcelDate,
            _ => return None,
        })
    }

    /// Like [`Transform::apply`], but borrows when the value is already in shape: most cells
    /// are, and this runs for every cell of every row.
    pub fn apply_cow(self, v: Cow<'_, str>) -> Cow<'_, str> {
        let unchanged = match self {
            Transform::Trim => crate::values::trim(&v).len() == v.len(),
            // Not `is_uppercase`: title-case letters (ǅ) and others change too.
            // ASCII text (an e-mail address) is lower case without upper-case letters.
            // One pass over the bytes for ASCII text (an e-mail address), characters otherwise.
            Transform::Lower => {
                is_ascii_lower(v.as_bytes())
                    || !v.is_ascii() && v.chars().all(|c| maps_to_itself(c.to_lowercase(), c))
            }
            Transform::Upper => v.chars().all(|c| maps_to_itself(c.to_uppercase(), c)),
            Transform::CollapseSpaces => is_collapsed(&v),
            Transform::Digits => is_ascii_digits(v.as_bytes()),
            Transform::First => !v.contains([',', ';', '\n']),
            Transform::ExcelDate => excel_serial(&v).is_none(),
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
            Transform::Digits => {
                let mut digits = String::with_capacity(v.len());
                digits.extend(v.chars().filter(|c| c.is_ascii_digit()));
                digits
            }
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
            Transform::First if !v.contains([',', ';', '\n']) => v.to_string(),
            Transform::First => v
                .split([',', ';', '\n'])
                .map(str::trim)
                .find(|p| !p.is_empty())
                .unwrap_or("")
                .to_string(),
            Transform::ExcelDate => match excel_serial(v) {
                Some(d) if d.time() == NaiveTime::MIN => d.format("%Y-%m-%d").to_string(),
                Some(d) => d.format("%Y-%m-%d %H:%M:%S").to_string(),
                None => v.to_string(),
            },
        }
    }
}

/// An Excel serial date (days since 1899-12-30, the fraction a time of day) within 1954–2119
/// (serials 20000–80000): a plain number outside that range is no date a CRM export holds.
pub fn excel_serial(v: &str) -> Option<NaiveDateTime> {
    let t = v.trim();
    if t.is_empty()
        || !t
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b',')
    {
        return None;
    }
    let f: f64 = t.replace(',', ".").parse().ok()?;
    if !(20000.0..80000.0).contains(&f) {
        return None;
    }
    let days = f.trunc() as i64;
    let secs = ((f - f.trunc()) * 86400.0).round() as i64;
    let base = NaiveDate::from_ymd_opt(1899, 12, 30)?.and_time(NaiveTime::MIN);
    Some(base + chrono::Duration::days(days) + chrono::Duration::seconds(secs))
}

/// What [`Transform::CollapseSpaces`] leaves as it is: single spaces between words, no other
/// white space. Read byte by byte (a title of every row comes here): a character is decoded
/// only where white space other than the space could start, at a byte below the space or the
/// lead bytes of U+0085, U+00A0 (0xC2) and U+1680…U+3000 (0xE1–0xE3) — never in Cyrillic.
fn is_collapsed(v: &str) -> bool {
    #[cfg(target_arch = "x86_64")]
    if let Some(answer) = collapsed_by_blocks(v.as_bytes()) {
        return answer;
    }
    is_collapsed_bytes(v)
}

/// [`is_collapsed`] sixteen bytes at a time with SSE2 (part of every x86-64 CPU), for text of
/// 16 bytes or more; `None` where a character must be decoded: a byte below the space, a lead
/// byte 0xE1–0xE3, or 0xC2 before 0x85 / 0xA0 or at a block's end.
#[cfg(target_arch = "x86_64")]
fn collapsed_by_blocks(b: &[u8]) -> Option<bool> {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_min_epu8, _mm_movemask_epi8,
        _mm_or_si128, _mm_set1_epi8,
    };
    let n = b.len();
    if n < 16 {
        return None;
    }
    // Blocks at 0, 16, … and one ending at the end (overlapping the one before: checking a byte
    // twice changes nothing).
    let starts = (0..n - 15).step_by(16).chain(std::iter::once(n - 16));
    // SAFETY: SSE2 is part of every x86-64 CPU (the target enables it); each block is 16
    // readable bytes of `b` (`at + 16 <= n`) and `loadu` needs no alignment.
    let splat = |x: u8| unsafe { _mm_set1_epi8(x as i8) };
    let [space, ctl, c2, e1, e3, nel, nbsp] = [b' ', 0x1F, 0xC2, 0xE1, 0xE3, 0x85, 0xA0].map(splat);
    for at in starts {
        let block: &[u8; 16] = b[at..at + 16].try_into().expect("16 bytes");
        let [spaces, special, c2s, next] = unsafe {
            let v = _mm_loadu_si128(block.as_ptr().cast::<__m128i>());
            let low = _mm_cmpeq_epi8(_mm_min_epu8(v, ctl), v);
            let e = _mm_cmpeq_epi8(_mm_min_epu8(_mm_max_epu8(v, e1), e3), v);
            let second = _mm_or_si128(_mm_cmpeq_epi8(v, nel), _mm_cmpeq_epi8(v, nbsp));
            [
                _mm_cmpeq_epi8(v, space),
                _mm_or_si128(low, e),
                _mm_cmpeq_epi8(v, c2),
                second,
            ]
            .map(|m| _mm_movemask_epi8(m) as u32)
        };
        if special != 0 || c2s & ((next >> 1) | 0x8000) != 0 {
            return None;
        }
        // A space at the start, or after another (the byte before the block included).
        let before = if at == 0 {
            1
        } else {
            u32::from(b[at - 1] == b' ')
        };
        if spaces & ((spaces << 1) | before) != 0 {
            return Some(false);
        }
    }
    Some(b[n - 1] != b' ')
}

/// [`is_collapsed`] a byte at a time.
fn is_collapsed_bytes(v: &str) -> bool {
    /// Per byte: 0 never white space, 1 the space, 2 may start other white space.
    const CLASS: [u8; 256] = {
        let mut t = [0u8; 256];
        let mut b = 0;
        while b < 256 {
            t[b] = match b {
                0x20 => 1,
                0..0x20 | 0xC2 | 0xE1..=0xE3 => 2,
                _ => 0,
            };
            b += 1;
        }
        t
    };
    let b = v.as_bytes();
    // True at the start too: a leading space is not collapsed.
    let mut after_space = true;
    for (i, &c) in b.iter().enumerate() {
        match CLASS[usize::from(c)] {
            0 => after_space = false,
            1 if after_space => return false,
            1 => after_space = true,
            // `i` is a character boundary: an ASCII byte or a lead byte.
            _ if v[i..].chars().next().is_some_and(char::is_whitespace) => return false,
            _ => after_space = false,
        }
    }
    !after_space || b.is_empty()
}

/// ASCII without an upper-case letter, eight bytes at a time (an e-mail column is lower-cased
/// in every row).
fn is_ascii_lower(b: &[u8]) -> bool {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    let (words, rest) = b.as_chunks::<8>();
    words.iter().all(|w| {
        let x = u64::from_le_bytes(*w);
        // For bytes below 0x80 (no carry between bytes; a byte from 0x80 up fails anyway): the
        // high bit of `x + 0x3F` is set from 'A' up, that of `x + 0x25` from '[' up.
        let upper = x.wrapping_add(0x3F * ONES) & !x.wrapping_add(0x25 * ONES);
        (x | upper) & (0x80 * ONES) == 0
    }) && rest.iter().all(|&c| c < 0x80 && !c.is_ascii_uppercase())
}

/// Only ASCII digits, eight bytes at a time (an INN column is checked in every row).
fn is_ascii_digits(b: &[u8]) -> bool {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    let (words, rest) = b.as_chunks::<8>();
    words.iter().all(|w| {
        // A digit's byte XOR '0' is at most 9: neither it nor it plus 6 reaches 16 (a carry out
        // of a byte only comes from one that fails on its own).
        let x = u64::from_le_bytes(*w) ^ (b'0' as u64 * ONES);
        (x | x.wrapping_add(6 * ONES)) & (0xF0 * ONES) == 0
    }) && rest.iter().all(u8::is_ascii_digit)
}

/// A case mapping that leaves the character as it is.
fn maps_to_itself(mut mapped: impl Iterator<Item = char>, c: char) -> bool {
    mapped.next() == Some(c) && mapped.next().is_none()
}

pub fn is_email(v: &str) -> bool {
    static RE: LazyLock<WholeMatch> = LazyLock::new(|| {
        // Pragmatic: one @, no spaces, a dot in the domain, a 2+ letter TLD (Cyrillic domains
        // too).
        WholeMatch::new(r"[^\s@,;<>()\[\]]+@[^\s@,;<>()\[\]]+\.[\p{L}]{2,}").expect("valid regex")
    });
    RE.is_match(v)
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

/// A fixed-width layout parsed by hand (the formats nearly every file uses): `text` with `0`
/// for each digit; the date is `DD.MM.YYYY` or `YYYY-MM-DD`, a time, if any, at 11, 14 (, 17).
/// Checked and read a word at a time: a date column is in every row of many files.
#[derive(Debug, PartialEq, Eq)]
struct Fast {
    text: &'static [u8],
    /// `DD.MM.YYYY`, else `YYYY-MM-DD`.
    dmy: bool,
    /// `text` as little-endian words, padded with zero bytes.
    want: [u64; 3],
    /// 6 at each digit: a digit's byte XOR `'0'` is at most 9 exactly when neither it nor it
    /// plus 6 reaches 16.
    six: [u64; 3],
    /// The bits that must be clear after XOR with `want`: the top four of a digit, all of a
    /// separator.
    clear: [u64; 3],
}

impl Fast {
    const fn new(text: &'static [u8], dmy: bool) -> Fast {
        let (mut want, mut six, mut clear) = ([0u64; 3], [0u64; 3], [0u64; 3]);
        let mut i = 0;
        while i < text.len() {
            let (w, shift) = (i / 8, 8 * (i % 8));
            want[w] |= (text[i] as u64) << shift;
            if text[i] == b'0' {
                six[w] |= 6 << shift;
                clear[w] |= 0xF0 << shift;
            } else {
                clear[w] |= 0xFF << shift;
            }
            i += 1;
        }
        Fast {
            text,
            dmy,
            want,
            six,
            clear,
        }
    }
}

/// The formats parsed by hand, with the strftime text each stands for.
static FAST: [(&str, Fast); 6] = [
    ("%d.%m.%Y", Fast::new(b"00.00.0000", true)),
    ("%d.%m.%Y %H:%M", Fast::new(b"00.00.0000 00:00", true)),
    ("%d.%m.%Y %H:%M:%S", Fast::new(b"00.00.0000 00:00:00", true)),
    ("%Y-%m-%d", Fast::new(b"0000-00-00", false)),
    ("%Y-%m-%d %H:%M", Fast::new(b"0000-00-00 00:00", false)),
    (
        "%Y-%m-%d %H:%M:%S",
        Fast::new(b"0000-00-00 00:00:00", false),
    ),
];

#[derive(Debug, Clone)]
struct DateFormat {
    fast: Option<&'static Fast>,
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
                    fast: FAST
                        .iter()
                        .find(|(text, _)| *text == f)
                        .map(|(_, fast)| fast),
                    items: chrono::format::StrftimeItems::new(f).parse_to_owned().ok(),
                })
                .collect(),
        )
    }

    pub fn parse(&self, v: &str) -> Option<NaiveDateTime> {
        let v = crate::values::trim(v);
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
fn parse_fast(v: &str, fast: &Fast) -> Option<NaiveDateTime> {
    let b = v.as_bytes();
    let mut buf = [0u8; 24];
    // Copies of a known size (no `memcpy` call).
    match (b.len(), fast.text.len()) {
        (10, 10) => buf[..10].copy_from_slice(b),
        (16, 16) => buf[..16].copy_from_slice(b),
        (19, 19) => buf[..19].copy_from_slice(b),
        _ => return None,
    }
    let mut bad = 0;
    // Per word, at each byte: ten times its digit plus the next byte's, which is the two-digit
    // number starting there (no carry between bytes: at most 99). No field straddles words.
    let mut pairs = [0u64; 3];
    for (k, word) in buf.as_chunks::<8>().0.iter().enumerate() {
        // Each digit's value, zero for each separator (and the padding), if all is as it should be.
        let x = u64::from_le_bytes(*word) ^ fast.want[k];
        // A carry out of a byte only comes from one that fails here on its own.
        bad |= (x | x.wrapping_add(fast.six[k])) & fast.clear[k];
        pairs[k] = x.wrapping_mul(10).wrapping_add(x >> 8); // Wraps only when `bad`.
    }
    if bad != 0 {
        return None;
    }
    let two = |at: usize| ((pairs[at / 8] >> (8 * (at % 8))) & 0xFF) as u32;
    let (year, month, day) = if fast.dmy {
        (two(6) * 100 + two(8), two(3), two(0))
    } else {
        (two(0) * 100 + two(2), two(5), two(8))
    };
    // A time the layout lacks reads as zeros from the padding.
    NaiveDate::from_ymd_opt(year as i32, month, day)?.and_hms_opt(two(11), two(14), two(17))
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
    // A 4-byte sequence starts with a byte ≥ 0xF0: scan bytes (16 at a time, which the
    // compiler vectorises: every value of every row comes here), decode only on a hit.
    let b = v.as_bytes();
    let hit = |c: &[u8]| c.iter().fold(false, |any, &x| any | (x >= 0xF0));
    let chunk = b.chunks(16).position(hit)?;
    let i = chunk * 16 + b[chunk * 16..].iter().position(|&x| x >= 0xF0)?;
    v[i..].chars().next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::CrmDateTime;

    #[test]
    fn excel_serials_become_dates_and_the_first_of_several_values_is_kept() {
        let x = |v: &str| Transform::ExcelDate.apply(v);
        assert_eq!(x("45321"), "2024-01-30");
        assert_eq!(x("45321.5"), "2024-01-30 12:00:00");
        assert_eq!(x("30.01.2024"), "30.01.2024", "a typed date stays");
        assert_eq!(x("12"), "12", "a small number is no date");
        let f = |v: &str| Transform::First.apply(v);
        assert_eq!(f("a@x.ru, b@x.ru"), "a@x.ru");
        assert_eq!(f(" ; +7 900 000-00-00; +7 901"), "+7 900 000-00-00");
        assert_eq!(f("один"), "один");
    }

    const ALL: [Transform; 9] = [
        Transform::First,
        Transform::ExcelDate,
        Transform::Trim,
        Transform::Lower,
        Transform::Upper,
        Transform::CollapseSpaces,
        Transform::Phone,
        Transform::Digits,
        Transform::Capitalize,
    ];

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
        assert_eq!(CrmDateTime::of(d, false).to_string(), "2024-06-25 14:25:00");
        assert_eq!(CrmDateTime::of(d, true).to_string(), "2024-06-25");
    }

    #[test]
    fn two_spaces_are_found_across_sixteen_byte_blocks() {
        let a15 = "a".repeat(15);
        for v in [
            format!("{a15}  {a15}"),
            format!("{a15} {a15}  "),
            format!("{a15}ж  ж{a15}"),
        ] {
            assert!(!is_collapsed(&v), "{v:?}");
            assert_eq!(
                Transform::CollapseSpaces.apply(&v),
                v.split_whitespace().collect::<Vec<_>>().join(" ")
            );
        }
        assert!(is_collapsed(&format!("{a15} {a15} ж")));
    }

    #[test]
    fn cow_transforms_match_owned() {
        for t in ALL {
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
    fn phone_transform_keeps_what_is_not_a_phone_and_case_maps_title_letters() {
        assert_eq!(Transform::Phone.apply("\u{212A}ext İİ"), "\u{212A}ext İİ");
        assert_eq!(
            Transform::Phone.apply(" 8 342 200 00 00 "),
            "+7 (342) 200-00-00"
        );
        // Title-case letters are neither upper nor lower case, yet change under both.
        assert_eq!(Transform::Lower.apply_cow(Cow::Borrowed("ǅ")), "ǆ");
        assert_eq!(Transform::Upper.apply_cow(Cow::Borrowed("ǅ")), "Ǆ");
    }

    /// The mapper skips looking for 4-byte characters in a single-byte file's values, on the
    /// grounds that no transform makes one out of characters below U+10000: every case mapping
    /// of such a character stays below it, and the other transforms only cut, join or write
    /// ASCII (the property test below checks them on arbitrary text).
    #[test]
    fn case_mappings_of_the_basic_plane_stay_in_it() {
        for c in (0..=0xFFFFu32).filter_map(char::from_u32) {
            for m in c.to_lowercase().chain(c.to_uppercase()) {
                assert!(m <= '\u{FFFF}', "{c:?} maps to {m:?}");
            }
        }
    }

    mod props {
        use super::super::*;
        use super::ALL;
        use crate::values::hostile::nasty_string;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(crate::values::hostile::config())]

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
                // Text of the basic plane stays in it, whatever the transform (see
                // `case_mappings_of_the_basic_plane_stay_in_it`).
                let bmp: String = v.chars().filter(|&c| c <= '\u{FFFF}').collect();
                for t in ALL {
                    prop_assert_eq!(first_4byte_char(&t.apply(&bmp)), None, "{:?} of {:?}", t, bmp);
                }
            }

            /// The word-at-a-time byte checks answer as the byte-at-a-time ones.
            #[test]
            fn word_checks_agree_with_byte_checks(
                v in prop::collection::vec(prop::sample::select(vec![
                    0u8, b' ', b'/', b'0', b'5', b'9', b':', b'@', b'A', b'Z', b'[', b'`', b'a', b'z',
                    b'{', 0x7F, 0x80, 0xBF, 0xC0, 0xD0, 0xFF,
                ]), 0..40),
                digits in "[0-9]{0,12}[/:?0-9]{0,2}[0-9]{0,12}",
                lower in "[a-z0-9.@_-]{0,12}[@AZ\\[`{]?[a-z0-9.@_-]{0,12}",
            ) {
                for v in [v.as_slice(), digits.as_bytes(), lower.as_bytes()] {
                    prop_assert_eq!(is_ascii_digits(v), v.iter().all(u8::is_ascii_digit), "{:?}", v);
                    prop_assert_eq!(
                        is_ascii_lower(v),
                        v.iter().all(|&b| b < 0x80 && !b.is_ascii_uppercase()),
                        "{:?}", v
                    );
                }
            }

            #[test]
            fn collapsed_text_is_found_as_the_character_check_found_it(
                v in prop::collection::vec(prop_oneof![
                    // Every white space character, and lead bytes they share with others.
                    prop::sample::select(vec![
                        ' ', '\t', '\n', '\u{b}', '\u{c}', '\r', '\u{1c}', '\u{85}', '\u{a0}',
                        '\u{1680}', '\u{2000}', '\u{200a}', '\u{200b}', '\u{2028}', '\u{2029}',
                        '\u{202f}', '\u{205f}', '\u{3000}', '\u{3001}', '«', '»', '\u{ab}',
                        '\u{1681}', '\u{2010}', 'ж', 'Ж', 'a', '1',
                    ]),
                    any::<char>(),
                ], 0..40).prop_map(String::from_iter),
                // Text of 16 bytes and more that only spaces may spoil (the block-wise check).
                plain in "[ жa«1]{0,40}",
            ) {
                let old = |v: &str| {
                    let b = v.as_bytes();
                    !v.chars().any(|c| c.is_whitespace() && c != ' ')
                        && !b.windows(2).any(|w| w == b"  ")
                        && b.first() != Some(&b' ')
                        && b.last() != Some(&b' ')
                };
                for v in [v, plain] {
                    prop_assert_eq!(is_collapsed(&v), old(&v), "{:?}", v);
                    prop_assert_eq!(is_collapsed(&v), is_collapsed_bytes(&v), "{:?}", v);
                    prop_assert_eq!(is_collapsed(&v), Transform::CollapseSpaces.apply(&v) == v);
                }
            }

            /// The hand-written layouts read exactly what chrono reads with the same format:
            /// zero-padded fields of any value (impossible dates and times too), one or two
            /// characters changed, and anything at all.
            #[test]
            fn fast_date_layouts_agree_with_chrono(
                k in 0usize..FAST.len(),
                parts in (0u32..40, 0u32..15, 0u32..10_000, 0u32..30, 0u32..70, 0u32..70),
                edits in prop::collection::vec((0usize..24, prop::sample::select(vec![
                    '0', '1', '2', '9', '.', '-', ' ', ':', '/', '+', 'T', 'a', '\u{a0}', 'я', '\u{0}',
                ])), 0..3),
                cut in prop::option::of(0usize..22),
                random in "[0-9 .:/+-]{0,20}",
            ) {
                let (format, fast) = &FAST[k];
                let (d, m, y, hh, mi, ss) = parts;
                let date = if fast.dmy {
                    format!("{d:02}.{m:02}.{y:04}")
                } else {
                    format!("{y:04}-{m:02}-{d:02}")
                };
                let mut v: Vec<char> = match fast.text.len() {
                    10 => date,
                    16 => format!("{date} {hh:02}:{mi:02}"),
                    _ => format!("{date} {hh:02}:{mi:02}:{ss:02}"),
                }
                .chars()
                .collect();
                for (at, c) in edits {
                    if at < v.len() {
                        v[at] = c;
                    }
                }
                if let Some(n) = cut {
                    v.truncate(n);
                }
                let formats = DateFormats::new(&[format.to_string()]);
                let mut slow = formats.clone();
                for f in &mut slow.0 {
                    f.fast = None;
                }
                for v in [String::from_iter(v), random] {
                    let items = formats.0[0].items.as_deref().unwrap();
                    let one = parse_fast(&v, fast);
                    prop_assert!(one.is_none() || one == parse_items(&v, items), "{:?}", v);
                    prop_assert_eq!(formats.parse(&v), slow.parse(&v), "{:?}", v);
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
                prop_assert_eq!(parse_date(&crate::values::CrmDateTime::of(back, false).to_string(), &[]), Some(back));
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
