//! The value layer: what a CRM date, phone number, sum of money and piece of text are, how each
//! is read from what users and the server write, how it is written back, and how two writings
//! are compared. Template, export, reconcile, the import's lookups and the sandbox all use these,
//! so one value means the same everywhere. It depends on nothing else in the crate (the sandbox
//! uses it too, so it cannot live under the HTTP client); `crm::values` names the same module.

mod datetime;
mod money;
pub mod phone;
mod text;

pub use datetime::CrmDateTime;
pub use money::{is_money_field, Money, MoneyError, MONEY_FIELDS};
pub use phone::{is_phone, norm_phone, normalize_phone};
pub use text::{
    norm_field, norm_text, norm_title, split_deal_number, strip_deal_number, strip_tags, trim,
    value_id, value_text,
};

/// Hostile text for property tests: characters that break naive text handling (case mappings
/// that change byte lengths, other scripts' digits, bidi marks), mixed with what phones, dates
/// and sums are made of.
#[cfg(test)]
pub(crate) mod hostile {
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

    /// The property tests' settings: 2000 cases, no failure files in the source tree.
    pub fn config() -> ProptestConfig {
        ProptestConfig {
            failure_persistence: None,
            ..ProptestConfig::with_cases(2000)
        }
    }

    pub fn nasty_string() -> impl Strategy<Value = String> {
        prop::collection::vec(nasty_char(), 0..40).prop_map(String::from_iter)
    }
}
