//! A pattern a whole value must match: a template's `regex` check and the e-mail check.
//!
//! Both run on every cell of their column, so a pattern is compiled to a full DFA when that is
//! small: a match is then one table step a byte, with no search set-up and no per-thread cache.
//! The `regex` crate's general engine spent ≈ 600 instructions matching a 10-digit INN (most of
//! them setting up the search); the DFA spends a few dozen. A pattern whose DFA would be big
//! (wide Unicode classes repeated many times) or that a DFA cannot run (a Unicode `\b`) keeps
//! the `regex` crate, with the same answers.

use regex::Regex;
use regex_automata::dfa::{dense, Automaton, StartKind};
use regex_automata::util::primitives::StateID;
use regex_automata::{Anchored, Input};

/// The most memory a pattern's DFA may take; past it the pattern runs on the `regex` crate.
const DFA_LIMIT: usize = 2 << 20;

#[derive(Debug, Clone)]
pub struct WholeMatch {
    /// The pattern as the user wrote it, for messages.
    source: String,
    dfa: Option<Box<Dfa>>,
    regex: Regex,
}

#[derive(Debug, Clone)]
struct Dfa {
    dfa: dense::DFA<Vec<u32>>,
    /// The start state when it does not depend on what precedes the value (the usual case):
    /// then a match skips working it out.
    start: Option<StateID>,
}

impl WholeMatch {
    pub fn new(pattern: &str) -> Result<WholeMatch, regex::Error> {
        // Anchored both ends: the pattern describes the whole value, not a substring of it.
        let whole = format!("^(?:{pattern})$");
        let regex = Regex::new(&whole)?;
        // The DFA's search is anchored at the start already; leaving `^` out lets its start
        // state be the same for every value.
        let dfa = dense::Builder::new()
            .configure(
                dense::Config::new()
                    .start_kind(StartKind::Anchored)
                    .dfa_size_limit(Some(DFA_LIMIT))
                    .determinize_size_limit(Some(DFA_LIMIT)),
            )
            .build(&format!("(?:{pattern})$"))
            .ok()
            .map(|dfa| {
                Box::new(Dfa {
                    start: dfa.universal_start_state(Anchored::Yes),
                    dfa,
                })
            });
        Ok(WholeMatch {
            source: pattern.to_string(),
            dfa,
            regex,
        })
    }

    /// The pattern as the user wrote it.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Does all of `v` match?
    pub fn is_match(&self, v: &str) -> bool {
        match &self.dfa {
            Some(dfa) => whole_match(dfa, v).unwrap_or_else(|| self.regex.is_match(v)),
            None => self.regex.is_match(v),
        }
    }

    #[cfg(test)]
    fn has_dfa(&self) -> bool {
        self.dfa.is_some()
    }
}

/// Run the DFA over all of `v`; `None` when it gives up (a quit state), for the caller to ask
/// the `regex` crate instead.
fn whole_match(Dfa { dfa, start }: &Dfa, v: &str) -> Option<bool> {
    let mut state = match start {
        Some(s) => *s,
        None => dfa
            .start_state_forward(&Input::new(v).anchored(Anchored::Yes))
            .ok()?,
    };
    for &b in v.as_bytes() {
        state = dfa.next_state(state, b);
        if dfa.is_special_state(state) {
            if dfa.is_dead_state(state) {
                return Some(false);
            }
            if dfa.is_quit_state(state) {
                return None;
            }
        }
    }
    // A DFA reports a match one step late: the end of the value is that last step. The
    // pattern ends in `$`, so a match can only end there.
    let end = dfa.next_eoi_state(state);
    if dfa.is_quit_state(end) {
        return None;
    }
    Some(dfa.is_match_state(end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PATTERNS: &[&str] = &[
        "[0-9]{10}|[0-9]{12}",
        r"\d{6}",
        r"[А-ЯЁ][а-яё]+",
        r"(?i)ооо|зао|ип",
        r"\w+",
        r"[^\s@,;<>()\[\]]+@[^\s@,;<>()\[\]]+\.[\p{L}]{2,}",
        "",
        "a|",
        r"\bслово\b",
        "x*",
        r"\p{Lu}\p{Ll}*(-\p{Lu}\p{Ll}*)?",
        r"^ab|c$",
        r"(?m)^\d+$",
    ];

    #[test]
    fn usual_template_patterns_get_a_dfa() {
        for p in [
            "[0-9]{10}|[0-9]{12}",
            r"\d{6}",
            r"[А-ЯЁ][а-яё]+",
            r"(?i)ооо|зао|ип",
            PATTERNS[5],
        ] {
            assert!(WholeMatch::new(p).unwrap().has_dfa(), "{p}");
        }
        // A Unicode word boundary is beyond a DFA: the regex crate answers.
        let b = WholeMatch::new(r"\bслово\b").unwrap();
        assert!(!b.has_dfa());
        assert!(b.is_match("слово"));
        assert!(!b.is_match("слово2"));
    }

    #[test]
    fn the_whole_value_must_match() {
        let inn = WholeMatch::new("[0-9]{10}|[0-9]{12}").unwrap();
        assert!(inn.is_match("7707083893"));
        assert!(inn.is_match("770708389312"));
        assert!(!inn.is_match("77070838931"), "11 digits");
        assert!(!inn.is_match("7707083893 "), "a trailing space");
        assert!(!inn.is_match("x7707083893"));
        assert!(!inn.is_match(""));
        assert_eq!(inn.as_str(), "[0-9]{10}|[0-9]{12}", "shown as written");
        assert!(WholeMatch::new("(").is_err());
    }

    proptest! {
        /// The DFA gives the `regex` crate's answer on any text, for every pattern above.
        #[test]
        fn dfa_agrees_with_regex(v in "\\PC{0,24}", i in 0..PATTERNS.len()) {
            let p = WholeMatch::new(PATTERNS[i]).unwrap();
            let re = Regex::new(&format!("^(?:{})$", PATTERNS[i])).unwrap();
            prop_assert_eq!(p.is_match(&v), re.is_match(&v));
        }

        /// Same on text made of what the patterns look for (digits, Cyrillic, @ and dots), where
        /// arbitrary text would rarely match at all.
        #[test]
        fn dfa_agrees_with_regex_near_matches(v in "[0-9а-яА-ЯёЁa-z@. \\-]{0,16}", i in 0..PATTERNS.len()) {
            let p = WholeMatch::new(PATTERNS[i]).unwrap();
            let re = Regex::new(&format!("^(?:{})$", PATTERNS[i])).unwrap();
            prop_assert_eq!(p.is_match(&v), re.is_match(&v));
        }
    }
}
