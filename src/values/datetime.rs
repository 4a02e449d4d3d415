//! Dates and times as the CRM sends and accepts them (NOTES.md §7): `YYYY-MM-DD HH:MM:SS`, also
//! `YYYY-MM-DD HH:MM`, `YYYY-MM-DDTHH:MM[:SS]`, `YYYY/MM/DD HH:MM[:SS]` and a bare date; the
//! non-strict MySQL `0000-00-00 00:00:00` means "no date". Export reads two of these a row, so
//! the parser is hand-written (no regex, no format strings).

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use std::fmt;

/// A CRM date or datetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CrmDateTime {
    /// `0000-00-00` / `0000-00-00 00:00:00`: the field holds no date.
    Zero,
    /// A date without time of day (`YYYY-MM-DD`).
    Date(NaiveDate),
    DateTime(NaiveDateTime),
}

impl CrmDateTime {
    /// A moment, or its day only when `date_only` (what a template's date field sends).
    pub fn of(at: NaiveDateTime, date_only: bool) -> CrmDateTime {
        if date_only {
            CrmDateTime::Date(at.date())
        } else {
            CrmDateTime::DateTime(at)
        }
    }

    /// Reads every form the CRM sends or accepts (surrounding white space ignored); `None` for
    /// anything else, impossible dates (`2023-02-29`) and times (`24:00`) included. Month, day
    /// and time parts may have one digit, as MySQL and chrono's formats allow.
    pub fn parse(s: &str) -> Option<CrmDateTime> {
        let b = s.trim().as_bytes();
        let mut i = 0;
        let year = digits(b, &mut i, 4, 4)?;
        let sep = *b.get(i).filter(|c| **c == b'-' || **c == b'/')?;
        i += 1;
        let month = digits(b, &mut i, 1, 2)?;
        if b.get(i) != Some(&sep) {
            return None;
        }
        i += 1;
        let day = digits(b, &mut i, 1, 2)?;
        if i == b.len() {
            if (year, month, day) == (0, 0, 0) {
                return Some(CrmDateTime::Zero);
            }
            return NaiveDate::from_ymd_opt(year as i32, month, day).map(CrmDateTime::Date);
        }
        if b[i] != b' ' && b[i] != b'T' {
            return None;
        }
        i += 1;
        let hour = digits(b, &mut i, 1, 2)?;
        if b.get(i) != Some(&b':') {
            return None;
        }
        i += 1;
        let minute = digits(b, &mut i, 1, 2)?;
        let second = if b.get(i) == Some(&b':') {
            i += 1;
            digits(b, &mut i, 1, 2)?
        } else {
            0
        };
        if i != b.len() {
            return None;
        }
        if (year, month, day, hour, minute, second) == (0, 0, 0, 0, 0, 0) {
            return Some(CrmDateTime::Zero);
        }
        NaiveDate::from_ymd_opt(year as i32, month, day)?
            .and_hms_opt(hour, minute, second)
            .map(CrmDateTime::DateTime)
    }

    /// The moment: a date alone is its midnight; `None` for [`CrmDateTime::Zero`].
    pub fn moment(self) -> Option<NaiveDateTime> {
        match self {
            CrmDateTime::Zero => None,
            CrmDateTime::Date(d) => Some(d.and_time(NaiveTime::MIN)),
            CrmDateTime::DateTime(at) => Some(at),
        }
    }

    /// The day; `None` for [`CrmDateTime::Zero`].
    pub fn date(self) -> Option<NaiveDate> {
        self.moment().map(|at| at.date())
    }

    /// Always `YYYY-MM-DD HH:MM:SS` (a date alone at midnight): what a DATETIME column stores.
    pub fn to_datetime_string(self) -> String {
        match self {
            CrmDateTime::Date(d) => CrmDateTime::DateTime(d.and_time(NaiveTime::MIN)).to_string(),
            other => other.to_string(),
        }
    }
}

/// `min..=max` ASCII digits at `*i`, moving `*i` past them.
fn digits(b: &[u8], i: &mut usize, min: usize, max: usize) -> Option<u32> {
    let start = *i;
    let mut n = 0u32;
    while *i < b.len() && *i - start < max && b[*i].is_ascii_digit() {
        n = n * 10 + u32::from(b[*i] - b'0');
        *i += 1;
    }
    (*i - start >= min).then_some(n)
}

impl CrmDateTime {
    /// The CRM text (what `Display` writes) written into `buf`, without `core::fmt`: for code
    /// that writes a date per row (the validate path hashes it). `None` for a year outside
    /// 0..=9999, whose text does not fit (use `Display` then).
    pub fn crm_text(self, buf: &mut [u8; 19]) -> Option<&str> {
        // Each arm checks a slice of known length for ASCII (a few word tests).
        match self {
            CrmDateTime::Zero => {
                *buf = *b"0000-00-00 00:00:00";
                Some(ascii(buf))
            }
            CrmDateTime::Date(d) if (0..=9999).contains(&d.year()) => {
                let date = buf.first_chunk_mut().expect("ten bytes");
                put_date(date, &d);
                Some(ascii(date))
            }
            CrmDateTime::DateTime(at) if (0..=9999).contains(&at.year()) => {
                put_datetime(buf, &at);
                Some(ascii(buf))
            }
            CrmDateTime::Date(_) | CrmDateTime::DateTime(_) => None,
        }
    }
}

/// As the CRM wants it: `YYYY-MM-DD HH:MM:SS`, or `YYYY-MM-DD` for a date.
impl fmt::Display for CrmDateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(text) = self.crm_text(&mut [0; 19]) {
            return f.write_str(text);
        }
        // A year outside 0..=9999 (a sign or a fifth digit).
        match self {
            CrmDateTime::Date(d) => write!(f, "{:04}-{:02}-{:02}", d.year(), d.month(), d.day()),
            CrmDateTime::DateTime(at) => write!(
                f,
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                at.year(),
                at.month(),
                at.day(),
                at.hour(),
                at.minute(),
                at.second()
            ),
            CrmDateTime::Zero => f.write_str("0000-00-00 00:00:00"),
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS` of a moment of the years 0..=9999 into `out`.
fn put_datetime(out: &mut [u8; 19], at: &NaiveDateTime) {
    *out = *b"0000-00-00 00:00:00";
    put_date(out.first_chunk_mut().expect("ten bytes"), &at.date());
    put_pair(&mut out[11..13], at.hour());
    put_pair(&mut out[14..16], at.minute());
    put_pair(&mut out[17..19], at.second());
}

/// `YYYY-MM-DD` of a day of the years 0..=9999 into `out`.
fn put_date(out: &mut [u8; 10], d: &NaiveDate) {
    *out = *b"0000-00-00";
    let year = d.year() as u32;
    put_pair(&mut out[0..2], year / 100);
    put_pair(&mut out[2..4], year % 100);
    put_pair(&mut out[5..7], d.month());
    put_pair(&mut out[8..10], d.day());
}

/// `n` (below 100) as two digits: a pair copied from a table, not two divisions by ten.
fn put_pair(out: &mut [u8], n: u32) {
    const PAIRS: &[u8; 200] = b"\
        0001020304050607080910111213141516171819202122232425262728293031323334353637383940414243444546474849\
        5051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899";
    let i = (n % 100) as usize * 2;
    out.copy_from_slice(&PAIRS[i..i + 2]);
}

/// Digits and the separators written around them as text ("" if anything else crept in).
fn ascii(b: &[u8]) -> &str {
    if !b.is_ascii() {
        return "";
    }
    // SAFETY: ASCII is UTF-8, checked just above. `is_ascii` tests a word at a time;
    // `str::from_utf8` cost as much as writing the digits.
    unsafe { std::str::from_utf8_unchecked(b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    #[test]
    fn every_form_the_crm_sends_or_accepts_is_read() {
        let want = CrmDateTime::DateTime(at("2024-06-25 10:11:12"));
        for s in [
            "2024-06-25 10:11:12",
            "2024-06-25T10:11:12",
            "2024/06/25 10:11:12",
            " 2024-06-25 10:11:12\n",
        ] {
            assert_eq!(CrmDateTime::parse(s), Some(want), "{s}");
        }
        let minute = CrmDateTime::DateTime(at("2024-06-25 10:11:00"));
        for s in ["2024-06-25 10:11", "2024-06-25T10:11", "2024/06/25 10:11"] {
            assert_eq!(CrmDateTime::parse(s), Some(minute), "{s}");
        }
        let day = NaiveDate::from_ymd_opt(2024, 6, 25).unwrap();
        assert_eq!(
            CrmDateTime::parse("2024-06-25"),
            Some(CrmDateTime::Date(day))
        );
        assert_eq!(
            CrmDateTime::parse("2024/06/25"),
            Some(CrmDateTime::Date(day))
        );
        assert_eq!(
            CrmDateTime::parse("2024-6-5 9:05"),
            CrmDateTime::parse("2024-06-05 09:05:00")
        );
        assert_eq!(
            CrmDateTime::parse("0000-00-00 00:00:00"),
            Some(CrmDateTime::Zero)
        );
        assert_eq!(CrmDateTime::parse("0000-00-00"), Some(CrmDateTime::Zero));
    }

    #[test]
    fn anything_else_is_refused() {
        for s in [
            "",
            "25.06.2024 10:11",
            "1719310272",
            "2024-06-25T10:11:12Z",
            "2024-06-25T14:25:00+05:00",
            "2024-06/25",
            "2023-02-29",
            "2024-06-25 24:00:00",
            "2024-06-25 10:00:60",
            "2024-06-25 10",
            "2024-06-25 10:11:12.5",
            "24-06-25",
            "not a date",
            "2024-06-25 10:11:1\u{ff12}",
        ] {
            assert_eq!(CrmDateTime::parse(s), None, "{s}");
        }
    }

    #[test]
    fn written_as_the_crm_wants() {
        let d = at("2024-06-05 04:03:02");
        assert_eq!(CrmDateTime::of(d, false).to_string(), "2024-06-05 04:03:02");
        assert_eq!(CrmDateTime::of(d, true).to_string(), "2024-06-05");
        assert_eq!(
            CrmDateTime::of(d, true).to_datetime_string(),
            "2024-06-05 00:00:00"
        );
        assert_eq!(CrmDateTime::Zero.to_string(), "0000-00-00 00:00:00");
        // Zero-padded at the edges of four-digit years.
        for y in [0, 7, 999, 1000, 9999] {
            let t = NaiveDate::from_ymd_opt(y, 12, 31)
                .unwrap()
                .and_hms_opt(23, 9, 5)
                .unwrap();
            let full = CrmDateTime::of(t, false).to_string();
            assert_eq!(full, t.format("%Y-%m-%d %H:%M:%S").to_string(), "{y}");
            assert_eq!(
                CrmDateTime::of(t, true).to_string(),
                t.format("%Y-%m-%d").to_string()
            );
        }
        let far = NaiveDate::from_ymd_opt(10_000, 1, 2).unwrap();
        assert_eq!(CrmDateTime::Date(far).to_string(), "10000-01-02");
        assert_eq!(CrmDateTime::Zero.moment(), None);
        assert_eq!(
            CrmDateTime::of(d, true).moment(),
            Some(at("2024-06-05 00:00:00"))
        );
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(crate::values::hostile::config())]

            #[test]
            fn written_values_read_back(days in 0i64..3_000_000, secs in 0u32..86_400, date_only in any::<bool>()) {
                let base = NaiveDate::from_ymd_opt(1000, 1, 1).unwrap();
                let day = base.checked_add_days(chrono::Days::new(days as u64)).unwrap();
                prop_assume!(day.year() <= 9999);
                let t = NaiveTime::from_num_seconds_from_midnight_opt(secs, 0).unwrap();
                let v = CrmDateTime::of(day.and_time(t), date_only);
                prop_assert_eq!(CrmDateTime::parse(&v.to_string()), Some(v));
            }

            #[test]
            fn written_as_chrono_formats_it(days in 0i64..3_652_059, secs in 0u32..86_400) {
                let day = NaiveDate::from_ymd_opt(0, 1, 1).unwrap() + chrono::Days::new(days as u64);
                let t = day.and_time(NaiveTime::from_num_seconds_from_midnight_opt(secs, 0).unwrap());
                prop_assert_eq!(CrmDateTime::of(t, false).to_string(), t.format("%Y-%m-%d %H:%M:%S").to_string());
                prop_assert_eq!(CrmDateTime::of(t, true).to_string(), t.format("%Y-%m-%d").to_string());
            }

            /// `crm_text` writes the CRM's text as chrono formats it, for every year it takes
            /// (0..=9999) and no other.
            #[test]
            fn crm_text_is_chronos_text_in_its_years(
                days in prop_oneof![-1000i64..3_653_000, -100_000_000i64..100_000_000],
                secs in 0u32..86_400,
            ) {
                let Some(day) = NaiveDate::from_ymd_opt(0, 1, 1).unwrap().checked_add_signed(chrono::TimeDelta::days(days)) else {
                    return Ok(());
                };
                let t = day.and_time(NaiveTime::from_num_seconds_from_midnight_opt(secs, 0).unwrap());
                let fits = (0..=9999).contains(&day.year());
                for (v, format) in [
                    (CrmDateTime::of(t, false), "%Y-%m-%d %H:%M:%S"),
                    (CrmDateTime::of(t, true), "%Y-%m-%d"),
                ] {
                    let mut buf = [b'x'; 19];
                    let text = v.crm_text(&mut buf).map(str::to_string);
                    prop_assert_eq!(text, fits.then(|| t.format(format).to_string()), "{:?}", v);
                }
                let mut buf = [0; 19];
                prop_assert_eq!(CrmDateTime::Zero.crm_text(&mut buf), Some("0000-00-00 00:00:00"));
            }

            #[test]
            fn agrees_with_chrono(s in "[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}") {
                // chrono reads `:60` as a leap second; MySQL and we refuse it.
                let chrono = NaiveDateTime::parse_from_str(&s, "%Y-%m-%d %H:%M:%S")
                    .ok()
                    .filter(|d| d.and_utc().timestamp_subsec_nanos() < 1_000_000_000);
                let want = if s == "0000-00-00 00:00:00" {
                    Some(CrmDateTime::Zero)
                } else {
                    chrono.map(CrmDateTime::DateTime)
                };
                prop_assert_eq!(CrmDateTime::parse(&s), want);
            }

            #[test]
            fn never_panics(s in "[0-9 :T/-]{0,21}|\\PC{0,24}", h in crate::values::hostile::nasty_string()) {
                for s in [s, h] {
                    if let Some(v) = CrmDateTime::parse(&s) {
                        prop_assert_eq!(CrmDateTime::parse(&v.to_string()), Some(v));
                    }
                }
            }
        }
    }
}
