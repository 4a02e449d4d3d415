//! Phone numbers: the one normalisation a template's `phone` transform writes
//! (`+7 (342) 200-00-00`), the check a `phone` rule makes, and the comparison form reconcile and
//! the import's lookups use (digits only, as the server may store them either way).

/// `8 342 200 00 00`, `+7(342)2000000`, `3422000000` → `+7 (342) 200-00-00`. An extension
/// (`доб. 12`, `ext 12`) is kept after the number. `None` when it is not a Russian number.
pub fn normalize_phone(v: &str) -> Option<String> {
    // Only digits and punctuation (the common case): the digits are gathered in the same pass,
    // with no extension to look for and no Unicode look-ups.
    let mut digits = Digits::default();
    for &c in v.as_bytes() {
        if c.is_ascii_digit() {
            digits.push(c)?;
        } else if !matches!(c, b' ' | b'+' | b'-' | b'(' | b')' | b'.') {
            return normalize_written_out(v);
        }
    }
    digits.written(None)
}

/// [`normalize_phone`] of a value with more than digits and punctuation in it: an extension,
/// or no phone at all.
fn normalize_written_out(v: &str) -> Option<String> {
    let (main, ext) = split_extension(v);
    // Digits of other scripts (full-width, Arabic-Indic) would silently drop out of the number.
    if main.chars().any(|c| c.is_numeric() && !c.is_ascii_digit()) {
        return None;
    }
    if main.chars().any(|c| c.is_alphabetic()) {
        return None;
    }
    let mut digits = Digits::default();
    for c in main.bytes().filter(u8::is_ascii_digit) {
        digits.push(c)?;
    }
    digits.written(ext.as_deref())
}

/// The number and the digits of its extension (`доб. 12`, `ext 12`), if it has one.
fn split_extension(v: &str) -> (&str, Option<String>) {
    // The marker is searched on `v` itself, never at offsets found in a lower-cased copy:
    // lower-casing changes byte lengths (`K` Kelvin sign → `k`, `İ` → `i̇`), so such offsets can
    // split a character.
    match find_ignore_case(v, "доб").or_else(|| find_ignore_case(v, "ext")) {
        Some(i) => (
            &v[..i],
            Some(v[i..].chars().filter(|c| c.is_ascii_digit()).collect()),
        ),
        None => (v, None),
    }
}

/// A number's ASCII digits, on the stack: more than 11 is never a Russian number.
#[derive(Default)]
struct Digits {
    buf: [u8; 11],
    n: usize,
}

impl Digits {
    /// `None` when there are too many.
    fn push(&mut self, digit: u8) -> Option<()> {
        *self.buf.get_mut(self.n)? = digit;
        self.n += 1;
        Some(())
    }

    /// `+7 (342) 200-00-00[ доб. ext]`, when the digits are a Russian number.
    fn written(&self, ext: Option<&str>) -> Option<String> {
        let d = match self.n {
            11 if self.buf[0] == b'7' || self.buf[0] == b'8' => &self.buf[1..],
            10 => &self.buf[..10],
            _ => return None,
        };
        // The digits put into the written form: `format!` or a `push_str` per part cost more
        // than the rest of the normalisation.
        let mut written = *NORMALIZED;
        for (&at, &digit) in NORMALIZED_DIGITS.iter().zip(d) {
            written[at] = digit;
        }
        let mut s = Vec::with_capacity(32);
        s.extend_from_slice(&written);
        if let Some(e) = ext.filter(|e| !e.is_empty()) {
            s.extend_from_slice(" доб. ".as_bytes());
            s.extend_from_slice(e.as_bytes());
        }
        // SAFETY: ASCII (the shape's literal and the digits, all checked `is_ascii_digit`) and
        // whole `str`s. Checking it again with `String::from_utf8` cost a fifth of this function.
        Some(unsafe { String::from_utf8_unchecked(s) })
    }
}

/// What [`normalize_phone`] writes, and where its ten digits go.
const NORMALIZED: &[u8; 18] = b"+7 (000) 000-00-00";
const NORMALIZED_DIGITS: [usize; 10] = [4, 5, 6, 9, 10, 11, 13, 14, 16, 17];

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
    let Ok(b) = <&[u8; 18]>::try_from(v.as_bytes()) else {
        return false;
    };
    // A fixed length and no early exit: the compiler unrolls this into one test per byte.
    const SHAPE: &[u8; 18] = b"+7 (ddd) ddd-dd-dd";
    let mut ok = true;
    for (&c, &shape) in b.iter().zip(SHAPE) {
        ok &= if shape == b'd' {
            c.is_ascii_digit()
        } else {
            c == shape
        };
    }
    ok
}

/// Digits of a phone number, a Russian `8XXXXXXXXXX` read as `7XXXXXXXXXX`: the form two
/// writings of one number share. Several numbers in one field (the server joins them with ",")
/// give the first.
pub fn norm_phone(s: &str) -> String {
    let first = s.split([',', ';']).next().unwrap_or("");
    let mut digits: String = first.chars().filter(char::is_ascii_digit).collect();
    if digits.len() == 11 && digits.starts_with('8') {
        digits.replace_range(0..1, "7");
    }
    if digits.len() == 10 {
        digits.insert(0, '7');
    }
    digits
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
        assert_eq!(
            normalize_phone("8 342 200 00 00 ДОБ. 5").unwrap(),
            "+7 (342) 200-00-00 доб. 5"
        );
        assert_eq!(normalize_phone("12345"), None);
        assert!(is_phone("+7 (342) 200-00-00"));
        assert!(is_phone("+44 20 7946 0958"));
        assert!(!is_phone("звонить утром"));
    }

    #[test]
    fn two_writings_of_one_number_compare_equal() {
        assert_eq!(
            norm_phone("8 (342) 200-00-00"),
            norm_phone("+7(342)200-00-00")
        );
        assert_eq!(norm_phone("342 200 00 00, 8 900 000 00 00"), "73422000000");
        assert_ne!(norm_phone("8 342 200 00 00"), norm_phone("8 342 200 00 01"));
    }

    #[test]
    fn phone_with_case_changing_letters_does_not_split_a_character() {
        // Kelvin sign shrinks and İ grows under to_lowercase: the total byte length stays the
        // same, so offsets from a lower-cased copy used to land inside the Kelvin sign.
        assert_eq!(normalize_phone("\u{212A}ext İİ"), None);
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
        // Digits of other scripts are not silently dropped from the number.
        assert_eq!(normalize_phone("8 342 200 00 00 ٣"), None);
        assert_eq!(normalize_phone("８ ３４２ ２００ ００ ００"), None);
    }

    mod props {
        use super::super::*;
        use crate::values::hostile::nasty_string;
        use proptest::prelude::*;

        /// `normalize_phone` and `is_normalized_phone` as they were before they were tuned
        /// (the extension's split, which was not, is shared).
        fn reference(v: &str) -> (Option<String>, bool) {
            let normalized = (|| {
                let plain = v
                    .bytes()
                    .all(|c| c.is_ascii_digit() || b" +-().".contains(&c));
                let (main, ext) = if plain { (v, None) } else { split_extension(v) };
                if main.chars().any(|c| c.is_numeric() && !c.is_ascii_digit())
                    || main.chars().any(|c| c.is_alphabetic())
                {
                    return None;
                }
                let digits: String = main.chars().filter(char::is_ascii_digit).collect();
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
            })();
            let shape = b"+7 (ddd) ddd-dd-dd";
            let b = v.as_bytes();
            let is_normalized = b.len() == shape.len()
                && b.iter().zip(shape).all(|(c, s)| {
                    if *s == b'd' {
                        c.is_ascii_digit()
                    } else {
                        c == s
                    }
                });
            (normalized, is_normalized)
        }

        proptest! {
            #![proptest_config(crate::values::hostile::config())]

            #[test]
            fn phones_read_as_the_reference_reads_them(
                v in prop_oneof![
                    nasty_string(),
                    "[0-9 +().-]{0,20}",
                    "\\+7 \\([0-9]{3}\\) [0-9]{3}-[0-9]{2}-[0-9]{2}",
                    "[+7 (0-9) -]{18}",
                    "[78]? ?[0-9 ()-]{10,16}( (доб|ext|ДОБ)\\.? ?[0-9]{0,4})?",
                ]
            ) {
                let (normalized, is_normalized) = reference(&v);
                prop_assert_eq!(normalize_phone(&v), normalized, "{:?}", v);
                prop_assert_eq!(is_normalized_phone(&v), is_normalized, "{:?}", v);
            }

            #[test]
            fn phone_normalisation_is_well_formed_and_idempotent(v in nasty_string()) {
                if let Some(p) = normalize_phone(&v) {
                    let re = regex::Regex::new(r"^\+7 \(\d{3}\) \d{3}-\d{2}-\d{2}( доб\. \d+)?$").unwrap();
                    prop_assert!(re.is_match(&p), "{v:?} → {p:?}");
                    prop_assert_eq!(normalize_phone(&p), Some(p.clone()));
                    prop_assert!(is_phone(&p));
                }
                let _ = norm_phone(&v);
            }
        }
    }
}
