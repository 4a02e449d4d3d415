//! User data inside messages: shown as written (Cyrillic, combining marks, emoji stay), but
//! characters that would garble a terminal or a log — control characters, bidirectional
//! overrides, zero-width characters — are shown escaped (`\u{0}`, `\u{202e}`), and very long
//! values are cut. Every error that quotes a header, cell, sheet or file name goes through here.

use std::borrow::Cow;
use std::fmt::Write;
use std::path::Path;

/// How many characters of a value a message quotes before cutting it with `…`.
pub const MAX_SHOWN_CHARS: usize = 80;

/// Characters a message never prints raw.
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(c,
            // bidirectional marks, embeddings, overrides and isolates
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
            // zero-width space/joiners, word joiner, invisible operators, BOM
            | '\u{200B}'..='\u{200D}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}'
            // line/paragraph separators break lines like a newline does
            | '\u{2028}' | '\u{2029}')
}

/// `s` with hidden characters escaped (`\u{7}`); borrowed when there are none.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(hidden) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        push_char(&mut out, c);
    }
    Cow::Owned(out)
}

/// Like [`escape`], but line breaks stay: for messages that are laid out over several lines by
/// the library that wrote them (a TOML error shows the offending line and a caret under it).
pub fn escape_multiline(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c != '\n' && hidden(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c == '\n' {
            out.push(c);
        } else {
            push_char(&mut out, c);
        }
    }
    Cow::Owned(out)
}

fn push_char(out: &mut String, c: char) {
    if hidden(c) {
        let _ = write!(out, "\\u{{{:x}}}", c as u32);
    } else {
        out.push(c);
    }
}

/// A value for a message: escaped, and cut after [`MAX_SHOWN_CHARS`] characters with `…`.
pub fn display(s: &str) -> Cow<'_, str> {
    match s.char_indices().nth(MAX_SHOWN_CHARS) {
        None => escape(s),
        Some((cut, _)) => {
            let mut out = String::with_capacity(cut + 8);
            for c in s[..cut].chars() {
                push_char(&mut out, c);
            }
            out.push('…');
            Cow::Owned(out)
        }
    }
}

/// A file name for a message: never cut (it must stay findable), escaped; bytes that are not
/// UTF-8 show as U+FFFD.
pub fn display_path(p: &Path) -> String {
    let s = p.display().to_string();
    escape(&s).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_invisible_and_control_characters_but_keeps_cyrillic() {
        assert_eq!(display("Иванов Иван"), "Иванов Иван");
        assert_eq!(display("a\0b\x07c\nd"), "a\\u{0}b\\u{7}c\\u{a}d");
        assert_eq!(display("x\u{202E}y\u{200D}z"), "x\\u{202e}y\\u{200d}z");
        assert_eq!(escape_multiline("a\n\x1b[2Jb\n"), "a\n\\u{1b}[2Jb\n");
        // Combining marks and emoji are text, not hidden characters.
        assert_eq!(display("й\u{301}😀"), "й\u{301}😀");
    }

    #[test]
    fn long_values_are_cut_on_a_character_boundary() {
        let long = "Я".repeat(20_000);
        let d = display(&long);
        assert_eq!(d.chars().count(), MAX_SHOWN_CHARS + 1);
        assert!(d.ends_with("ЯЯ…"));
        let exact = "ж".repeat(MAX_SHOWN_CHARS);
        assert_eq!(display(&exact), exact);
    }
}
