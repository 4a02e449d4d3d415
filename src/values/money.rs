//! Sums of money, exact: a [`Money`] is a count of ten-thousandths, so adding and comparing
//! never go through binary floating point (0.1 + 0.2 is 0.30 here). It reads amounts as Russian
//! users and the CRM write them and writes them the one way the server reads right: NOTES.md
//! (v3-deal-add-kol-thousands-comma) shows the server reading `"1,500.75"` as 1.50, so we never
//! send a separator it could misread.

use std::fmt;
use thiserror::Error;

/// Amount fields of the CRM's entities (deal `kol` = sum, `marga` = margin, `kol_fact` = sum
/// actually sold; invoice `summa`).
pub const MONEY_FIELDS: &[&str] = &[
    "kol", "marga", "kol_fact", "summa", "sum", "price", "amount", "credit",
];

/// Is this field an amount of money?
pub fn is_money_field(name: &str) -> bool {
    MONEY_FIELDS.contains(&name)
}

/// Ten-thousandths per unit: the CRM stores two decimals, prices may carry four.
const SCALE: i128 = 10_000;
const DECIMALS: usize = 4;
/// More integer digits than any amount has; keeps every value far inside `i128`.
const MAX_DIGITS: usize = 24;

/// An exact amount of money.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(i128);

/// Why a text is not an amount (the caller names file, row, column and value).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MoneyError {
    #[error("is not a number")]
    NotAnAmount,
    /// `1,500`: thousands in English, one and a half in Russian.
    #[error("is ambiguous (thousands, or a decimal comma?): write {whole} or {decimal}")]
    Ambiguous { whole: String, decimal: String },
    #[error("is too large for an amount of money")]
    TooLarge,
}

impl Money {
    pub const ZERO: Money = Money(0);

    /// Whole units (roubles).
    pub fn from_units(units: i64) -> Money {
        Money(i128::from(units) * SCALE)
    }

    /// Reads `1500.75`, `1 500,75`, `30 000,00`, `30000`, NBSP or thin-space thousands,
    /// `1,500.75` and `1.500,75` (the last separator is the decimal one), `1,500,000`. A single
    /// comma before exactly three digits (`1,500`) is refused as ambiguous. Beyond four decimals
    /// the amount is rounded half away from zero.
    pub fn parse(s: &str) -> Result<Money, MoneyError> {
        let t = s.trim();
        let (neg, body) = match t.as_bytes().first() {
            Some(b'-') => (true, &t[1..]),
            Some(b'+') => (false, &t[1..]),
            _ => (false, t),
        };
        // Digits and separators only; white space is a thousands separator wherever it stands.
        let mut chars: Vec<u8> = Vec::with_capacity(body.len());
        for c in body.chars() {
            match c {
                '0'..='9' | ',' | '.' => chars.push(c as u8),
                c if c.is_whitespace() => {}
                _ => return Err(MoneyError::NotAnAmount),
            }
        }
        if !chars.iter().any(u8::is_ascii_digit) {
            return Err(MoneyError::NotAnAmount);
        }
        let commas = chars.iter().filter(|c| **c == b',').count();
        let dots = chars.iter().filter(|c| **c == b'.').count();
        // Which separator is the decimal one, if any; the other one groups thousands.
        let decimal = match (commas, dots) {
            (0, 0) => None,
            (_, 0) | (0, _) if commas + dots > 1 => None,
            (1, 0) => Some(b','),
            (0, 1) => Some(b'.'),
            _ => {
                let last = *chars
                    .iter()
                    .rev()
                    .find(|c| **c == b',' || **c == b'.')
                    .unwrap_or(&b'.');
                Some(last)
            }
        };
        let (int, frac) = match decimal {
            Some(d) => {
                let at = chars.iter().rposition(|c| *c == d).unwrap_or(0);
                if chars.iter().filter(|c| **c == d).count() > 1 {
                    return Err(MoneyError::NotAnAmount);
                }
                (&chars[..at], &chars[at + 1..])
            }
            None => (&chars[..], &[][..]),
        };
        if frac.iter().any(|c| !c.is_ascii_digit()) {
            return Err(MoneyError::NotAnAmount);
        }
        let int_digits: Vec<u8> = if int.iter().all(u8::is_ascii_digit) {
            int.to_vec()
        } else {
            grouped(int).ok_or(MoneyError::NotAnAmount)?
        };
        if decimal == Some(b',')
            && dots == 0
            && frac.len() == 3
            && (1..=3).contains(&int_digits.len())
            && int_digits[0] != b'0'
        {
            let int = std::str::from_utf8(&int_digits).unwrap_or("");
            let frac = std::str::from_utf8(frac).unwrap_or("");
            let sign = if neg { "-" } else { "" };
            let mut cents = frac.trim_end_matches('0').to_string();
            while cents.len() < 2 {
                cents.push('0');
            }
            if cents.len() == 3 {
                cents.push('0');
            }
            let whole = format!("{sign}{int}{frac}");
            let decimal = format!("{sign}{int},{cents}");
            return Err(MoneyError::Ambiguous { whole, decimal });
        }
        let int_digits = strip_zeros(&int_digits);
        if int_digits.len() > MAX_DIGITS {
            return Err(MoneyError::TooLarge);
        }
        let mut units: i128 = 0;
        for d in int_digits {
            units = units * 10 + i128::from(d - b'0');
        }
        units *= SCALE;
        let mut scale = SCALE / 10;
        for d in frac.iter().take(DECIMALS) {
            units += i128::from(d - b'0') * scale;
            scale /= 10;
        }
        if frac.get(DECIMALS).is_some_and(|d| *d >= b'5') {
            units += 1;
        }
        Ok(Money(if neg { -units } else { units }))
    }

    /// An amount the CRM answered with: a JSON number or text in any form [`Money::parse`] reads.
    pub fn from_json(v: &serde_json::Value) -> Option<Money> {
        match v {
            serde_json::Value::Number(n) => Money::parse(&n.to_string()).ok(),
            serde_json::Value::String(s) => Money::parse(s).ok(),
            _ => None,
        }
    }

    /// As the server reads it right: a JSON number (`1500.75`) where the number is exact, else
    /// the plain text ([`Display`](fmt::Display)), never with thousands separators.
    pub fn to_json(self) -> serde_json::Value {
        let plain = self.to_string();
        match plain
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
        {
            Some(n) if Money::parse(&n.to_string()) == Ok(self) => serde_json::Value::Number(n),
            _ => serde_json::Value::String(plain),
        }
    }

    /// Nearest binary float, for spreadsheet cells (XLSX stores numbers as doubles).
    pub fn to_f64(self) -> f64 {
        // Below 2^53 both are exact doubles and IEEE division rounds correctly.
        if self.0.unsigned_abs() < 1 << 53 {
            self.0 as f64 / SCALE as f64
        } else {
            self.to_string().parse().unwrap_or(0.0)
        }
    }

    /// Two decimals (rounded half away from zero), `.` or `,` as the decimal separator: what
    /// CSV and report cells show.
    pub fn fixed2(self, decimal_comma: bool) -> String {
        let cents = (self.0.abs() + SCALE / 200) / (SCALE / 100);
        let sign = if self.0 < 0 && cents != 0 { "-" } else { "" };
        let sep = if decimal_comma { ',' } else { '.' };
        format!("{sign}{}{sep}{:02}", cents / 100, cents % 100)
    }

    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }
}

/// Thousands groups (`1,500,000`, `1.500`): the digits, if every group after the first has three.
fn grouped(int: &[u8]) -> Option<Vec<u8>> {
    let mut groups = int.split(|c| !c.is_ascii_digit());
    let first = groups.next()?;
    if first.is_empty() || first.len() > 3 {
        return None;
    }
    let mut out = first.to_vec();
    for g in groups {
        if g.len() != 3 {
            return None;
        }
        out.extend_from_slice(g);
    }
    Some(out)
}

fn strip_zeros(d: &[u8]) -> &[u8] {
    let start = d.iter().position(|c| *c != b'0').unwrap_or(d.len());
    &d[start..]
}

/// The plain form the server parses right: `-1500.75`, `30000`, `0.1234`; no thousands
/// separators, at least two decimals when there is a fraction.
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let (int, frac) = (abs / SCALE as u128, abs % SCALE as u128);
        if frac == 0 {
            return write!(f, "{sign}{int}");
        }
        let mut digits = format!("{frac:0width$}", width = DECIMALS);
        while digits.len() > 2 && digits.ends_with('0') {
            digits.pop();
        }
        write!(f, "{sign}{int}.{digits}")
    }
}

impl std::ops::Add for Money {
    type Output = Money;
    fn add(self, other: Money) -> Money {
        Money(self.0 + other.0)
    }
}

impl std::iter::Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, |a, b| a + b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Money {
        Money::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn russian_and_plain_amounts_are_read() {
        let x = Money(15_007_500);
        for s in [
            "1500.75",
            "1500,75",
            "1 500,75",
            "1\u{a0}500,75",
            "1\u{202f}500,75",
            " 1500.750 ",
            "1,500.75",
            "1.500,75",
            "+1500.75",
        ] {
            assert_eq!(m(s), x, "{s}");
        }
        assert_eq!(m("30 000,00"), Money::from_units(30_000));
        assert_eq!(m("30000"), Money::from_units(30_000));
        assert_eq!(m("1,500,000"), Money::from_units(1_500_000));
        assert_eq!(m("1,5"), m("1.50"));
        assert_eq!(m("0,500"), m("0.5"));
        assert_eq!(m("1234,500"), m("1234.5"));
        assert_eq!(m("-2,5"), Money(-25_000));
        assert_eq!(m("0.30000000000000004"), m("0.3"));
        assert_eq!(m("0.00005"), Money(1));
    }

    #[test]
    fn what_the_server_would_misread_or_nobody_could_read_is_refused() {
        assert!(matches!(
            Money::parse("1,500"),
            Err(MoneyError::Ambiguous { .. })
        ));
        let e = Money::parse("12,500").unwrap_err().to_string();
        assert!(e.contains("write 12500 or 12,50"), "{e}");
        assert!(Money::parse("1,000")
            .unwrap_err()
            .to_string()
            .contains("write 1000 or 1,00"));
        for bad in [
            "",
            "abc",
            "1,500.75.3",
            "1,50,0",
            "1.5,0,0",
            "12 руб.",
            "1e5",
            "--1",
            ",",
        ] {
            assert!(Money::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Money::parse(&"9".repeat(40)), Err(MoneyError::TooLarge));
    }

    #[test]
    fn written_for_the_server_and_for_spreadsheets() {
        assert_eq!(m("1 500,75").to_string(), "1500.75");
        assert_eq!(m("30 000,00").to_string(), "30000");
        assert_eq!(m("0,1234").to_string(), "0.1234");
        assert_eq!(m("-0,5").to_string(), "-0.50");
        assert_eq!(m("1 500,75").to_json(), serde_json::json!(1500.75));
        assert_eq!(m("30000").to_json(), serde_json::json!(30000.0));
        let huge = m("123456789012345678.25");
        assert_eq!(huge.to_json(), serde_json::json!("123456789012345678.25"));
        assert_eq!(m("1500.755").fixed2(true), "1500,76");
        assert_eq!(m("1500").fixed2(false), "1500.00");
        assert_eq!(m("-0.001").fixed2(false), "0.00");
        assert_eq!(m("-3.999").fixed2(false), "-4.00");
        assert_eq!(
            Money::from_json(&serde_json::json!(150000.5)),
            Some(m("150000.50"))
        );
        assert_eq!(
            Money::from_json(&serde_json::json!("0.00")),
            Some(Money::ZERO)
        );
    }

    #[test]
    fn sums_are_exact() {
        let total: Money = std::iter::repeat_n(m("0,1"), 10).sum();
        assert_eq!(total, m("1"));
        assert_eq!(m("0.1") + m("0.2"), m("0.3"));
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(crate::values::hostile::config())]

            #[test]
            fn written_amounts_read_back(units in -(10i128.pow(22))..10i128.pow(22)) {
                let x = Money(units);
                prop_assert_eq!(Money::parse(&x.to_string()), Ok(x));
                if let serde_json::Value::Number(n) = x.to_json() {
                    prop_assert_eq!(Money::parse(&n.to_string()), Ok(x));
                }
                if units.unsigned_abs() < 1 << 53 {
                    prop_assert_eq!(x.to_f64(), x.to_string().parse::<f64>().unwrap());
                }
                let cents = Money((units / 100) * 100);
                prop_assert_eq!(Money::parse(&cents.fixed2(true)), Ok(cents));
                prop_assert_eq!(Money::parse(&cents.fixed2(false)), Ok(cents));
            }

            #[test]
            fn never_panics(s in "[0-9 ,.+-]{0,30}|\\PC{0,30}", h in crate::values::hostile::nasty_string()) {
                for s in [s, h] {
                    if let Ok(m) = Money::parse(&s) {
                        prop_assert_eq!(Money::parse(&m.to_string()), Ok(m));
                    }
                }
            }
        }
    }
}
