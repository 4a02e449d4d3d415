//! Text as the CRM answers it, and how values are compared. The real server rewrites text on the
//! way in (NOTES.md §8: quotes become `”`, tags are stripped, history loses quotes and gains
//! `<br />` in lists, client titles move the legal form to the end), so whoever compares what we
//! sent with what it shows (lookups after a lost answer, reconcile) uses the normalised forms
//! here, which forgive exactly those changes, and case and spacing.

use super::{is_money_field, norm_phone, CrmDateTime, Money};
use serde_json::Value;

/// Legal forms the server moves (`ООО «Ромашка»` → `Ромашка, ООО`) or users write either way.
const LEGAL_FORMS: [&str; 8] = ["ооо", "оао", "зао", "пао", "ао", "ип", "нко", "ано"];

/// `str::trim`, answered at once for text that starts and ends with a character that is not
/// white space (most cells): every cell of a file is trimmed several times on its way through
/// a template, and the general case decodes characters from both ends.
#[inline]
pub fn trim(s: &str) -> &str {
    let b = s.as_bytes();
    let (Some(&first), Some(&last)) = (b.first(), b.last()) else {
        return s;
    };
    // ASCII above the space is never white space. Of the two-byte characters (first byte
    // 0xC2–0xDF: Latin-1, Greek, Cyrillic, «»…) only U+0085 and U+00A0 are; the rest of
    // Unicode's white space takes three bytes (first byte 0xE1–0xE3) and goes the long way.
    let two_byte_space = |lead: u8, next: u8| lead == 0xC2 && (next == 0x85 || next == 0xA0);
    let starts = (0x21..0x80).contains(&first)
        || ((0xC2..=0xDF).contains(&first) && b.len() >= 2 && !two_byte_space(first, b[1]));
    let ends = (0x21..0x80).contains(&last)
        || (last >= 0x80 && b.len() >= 2 && {
            let lead = b[b.len() - 2];
            (0xC2..=0xDF).contains(&lead) && !two_byte_space(lead, last)
        });
    if starts && ends {
        s
    } else {
        s.trim()
    }
}

/// A JSON value as comparable text: strings as they are, numbers without a trailing `.0`,
/// arrays joined with ", " (the server joins array values that way), null as empty.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            _ => n.to_string(),
        },
        Value::Bool(b) => b.to_string(),
        Value::Array(items) => items.iter().map(value_text).collect::<Vec<_>>().join(", "),
        Value::Object(_) => v.to_string(),
    }
}

/// A record id: a positive integer, sent as a number or a string.
pub fn value_id(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|id| *id > 0)
}

/// Text with HTML tags removed (`<b>`, `<br />`), everything else as it is: what the server
/// stores of a text field, and the readable part of its error pages.
pub fn strip_tags(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// Text as the server's mangling and a human reader would not distinguish it: tags stripped,
/// quotes of every kind removed, case folded, `ё` as `е`, runs of white space as one space.
/// One pass, one allocation: reconcile runs this on every compared field.
pub fn norm_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_tag = false;
    let mut space = false;
    for c in s.chars() {
        if in_tag {
            if c == '>' {
                in_tag = false;
                space = true;
            }
            continue;
        }
        match c {
            '<' => in_tag = true,
            '"' | '\'' | '«' | '»' | '”' | '“' | '„' | '`' => {}
            c if c.is_whitespace() => space = true,
            c => {
                if space && !out.is_empty() {
                    out.push(' ');
                }
                space = false;
                for l in c.to_lowercase() {
                    out.push(if l == 'ё' { 'е' } else { l });
                }
            }
        }
    }
    out
}

/// A company title without its legal form, wherever the form stands.
pub fn norm_title(s: &str) -> String {
    norm_text(&s.replace(',', " "))
        .split(' ')
        .filter(|w| !LEGAL_FORMS.contains(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The real server puts a deal's number before its title on add ("СД24: Поставка"; NOTES:
/// deal/add). The prefix: a short word without spaces before ": ".
fn deal_prefix(title: &str) -> Option<(&str, &str)> {
    title
        .split_once(": ")
        .filter(|(head, _)| !head.is_empty() && !head.contains(' '))
}

/// A deal's title without its number prefix, as titles are compared ("СД2: Поставка" →
/// "Поставка"); a title without one is kept whole.
pub fn strip_deal_number(title: &str) -> &str {
    match deal_prefix(title) {
        Some((head, rest)) if head.len() <= 12 => rest,
        _ => title,
    }
}

/// "СД24: Поставка" → (24, "Поставка"): the deal's number and its bare title; a title whose
/// prefix is not "СДn" is kept whole, with no number.
pub fn split_deal_number(title: &str) -> (Option<i64>, &str) {
    let number = deal_prefix(title)
        .and_then(|(head, rest)| Some((head.strip_prefix("СД")?.parse().ok()?, rest)));
    match number {
        Some((n, rest)) => (Some(n), rest),
        None => (None, title),
    }
}

/// How a field's values are compared, given as text (see [`value_text`]).
pub fn norm_field(field: &str, text: &str) -> String {
    match field {
        "tel" | "mob" | "fax" | "phone" => norm_phone(text),
        "title" => norm_title(text),
        // Dates: the server answers `YYYY-MM-DD HH:MM:SS`; `YYYY-MM-DD` means midnight.
        "datum" | "date_create" | "datum_plan" | "birthday" => match CrmDateTime::parse(text) {
            Some(d) => d.to_datetime_string(),
            None => text.trim().replace('T', " "),
        },
        // Sums: `100000`, `100000.00` and `100 000,00` are one amount.
        f if is_money_field(f) => match Money::parse(text) {
            Ok(m) => m.to_string(),
            Err(_) => norm_text(text),
        },
        _ => norm_text(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    mod props {
        use super::super::trim;
        use crate::values::hostile::nasty_string;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(crate::values::hostile::config())]

            #[test]
            fn trim_is_str_trim(v in nasty_string(), pad in prop::sample::select(vec!["", " ", "\u{a0}", "\u{3000}", "\t"])) {
                let padded = format!("{pad}{v}{pad}");
                prop_assert_eq!(trim(&padded), padded.trim());
                prop_assert_eq!(trim(&v), v.trim());
            }
        }
    }

    #[test]
    fn trim_agrees_with_str_trim_on_every_two_byte_character_at_either_end() {
        for c in '\u{80}'..='\u{7FF}' {
            for s in [
                format!("{c}"),
                format!("{c}x"),
                format!("x{c}"),
                format!("{c}д{c}"),
            ] {
                assert_eq!(trim(&s), s.trim(), "{s:?}");
            }
        }
    }

    #[test]
    fn deal_titles_lose_their_number_prefix() {
        assert_eq!(strip_deal_number("СД2: Поставка"), "Поставка");
        // Any short word counts as the prefix (a space or a long word does not)...
        assert_eq!(strip_deal_number("Этап: монтаж"), "монтаж");
        assert_eq!(
            strip_deal_number("Поставка труб: этап 2"),
            "Поставка труб: этап 2"
        );
        assert_eq!(strip_deal_number("Поставка: этап 2"), "Поставка: этап 2");
        assert_eq!(strip_deal_number("Поставка"), "Поставка");
        assert_eq!(split_deal_number("СД24: Поставка"), (Some(24), "Поставка"));
        assert_eq!(split_deal_number("Без номера: x"), (None, "Без номера: x"));
        // ...but only "СДn" gives a number.
        assert_eq!(split_deal_number("Этап: x"), (None, "Этап: x"));
    }

    #[test]
    fn server_mangling_is_forgiven() {
        assert_eq!(
            norm_text("Иван \"Ваня\" <b>Петров</b>"),
            norm_text("иван ”ваня”  петров")
        );
        assert_eq!(
            norm_text("Позвонил<br />\nобсудили"),
            norm_text("Позвонил\nобсудили")
        );
        assert_eq!(norm_title("ООО «Ромашка»"), norm_title("Ромашка, ООО"));
        assert_eq!(strip_tags("a <b>Петров</b> > 2<br />"), "a Петров > 2");
        assert_ne!(norm_title("ООО Ромашка"), norm_title("ООО Лютик"));
        assert_eq!(
            norm_field("tel", "8 (342) 200-00-00"),
            norm_field("tel", "+7(342)200-00-00")
        );
        assert_eq!(
            norm_field("kol", &value_text(&json!(100000.0))),
            norm_field("kol", &value_text(&json!("100000")))
        );
        assert_eq!(
            norm_field("datum", &value_text(&json!("2024-06-25 14:25"))),
            norm_field("datum", &value_text(&json!("2024-06-25 14:25:00")))
        );
        assert_eq!(
            norm_field("datum", "2024-06-25T14:25"),
            norm_field("datum", "2024-06-25 14:25:00")
        );
        assert_eq!(
            norm_field("kol", &value_text(&json!("150000.50"))),
            norm_field("kol", &value_text(&json!(150000.5)))
        );
        assert_eq!(norm_field("kol", "1 500,75"), norm_field("kol", "1500.75"));
        assert_ne!(norm_field("kol", "1500.75"), norm_field("kol", "1500.7"));
    }
}
