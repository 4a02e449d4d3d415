//! What a column's values are, sampled over the whole file: e-mails, phones, dates in which
//! layout (Excel serial numbers, `dd.mm.yyyy`, spreadsheet dates), several values in one cell.
//! `template init --from` chooses transforms, checks and date formats from it.

use crate::template::rules::{excel_serial, is_email, is_phone, DateFormats};

/// Counts over a column's non-empty cells.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    pub filled: usize,
    pub emails: usize,
    pub phones: usize,
    /// Cells with several values (`a@x.ru, b@x.ru`), e-mails or phones.
    pub multi: usize,
    /// Excel serial day numbers (`45321`).
    pub serials: usize,
    /// `dd.mm.yyyy` (with or without a time).
    pub dmy: usize,
    /// `YYYY-MM-DD[ HH:MM[:SS]]` (what the XLSX reader gives for a date cell).
    pub iso: usize,
    /// Dates with a time of day.
    pub with_time: usize,
    /// Cells of only digits (spaces and dashes aside), e.g. an INN.
    pub digits: usize,
}

fn parts(v: &str) -> Vec<&str> {
    v.split([',', ';', '\n'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

/// Phones, one or several; 10 or 12 bare digits are an INN more often than a phone.
fn is_phones(ps: &[&str], v: &str) -> bool {
    let inn_like = v.bytes().all(|b| b.is_ascii_digit()) && matches!(v.len(), 10 | 12);
    !ps.is_empty() && ps.iter().all(|x| is_phone(x)) && !v.contains('.') && !inn_like
}

impl Profile {
    pub fn of<'a>(values: impl IntoIterator<Item = &'a str>) -> Profile {
        let mut p = Profile::default();
        let dates = DateFormats::new(&[]);
        for v in values {
            let v = v.trim();
            if v.is_empty() {
                continue;
            }
            p.filled += 1;
            let ps = parts(v);
            if !ps.is_empty() && ps.iter().all(|x| is_email(x)) {
                p.emails += 1;
                p.multi += usize::from(ps.len() > 1);
            } else if is_phones(&ps, v) {
                p.phones += 1;
                p.multi += usize::from(ps.len() > 1);
            }
            if excel_serial(v).is_some() {
                p.serials += 1;
            } else if let Some(d) = dates.parse(v) {
                let b = v.as_bytes();
                if b.len() >= 10 && b[2] == b'.' && b[5] == b'.' {
                    p.dmy += 1;
                } else {
                    p.iso += 1;
                }
                p.with_time += usize::from(d.time() != chrono::NaiveTime::MIN);
            }
            if v.chars()
                .all(|c| c.is_ascii_digit() || c == ' ' || c == '-')
            {
                p.digits += 1;
            }
        }
        p
    }

    /// Most filled cells are of this kind (at least 80%).
    fn mostly(&self, n: usize) -> bool {
        self.filled > 0 && n * 5 >= self.filled * 4
    }

    pub fn is_email(&self) -> bool {
        self.mostly(self.emails)
    }

    pub fn is_phone(&self) -> bool {
        self.mostly(self.phones)
    }

    pub fn is_date(&self) -> bool {
        self.mostly(self.serials + self.dmy + self.iso)
    }

    /// The TOML of a date field's `transform`/`date` keys for these values.
    pub fn date_spec(&self) -> String {
        let mut s = String::new();
        if self.serials > 0 {
            s.push_str(", transform = [\"excel_date\"]");
        }
        if self.dmy > 0 {
            s.push_str(", date = [\"%d.%m.%Y\", \"%d.%m.%Y %H:%M\", \"%d.%m.%Y %H:%M:%S\"]");
        }
        s
    }

    /// Words for the report: what the values are.
    pub fn describe(&self) -> String {
        let mut kinds = Vec::new();
        if self.serials > 0 {
            kinds.push(format!("{} Excel serial dates", self.serials));
        }
        if self.dmy > 0 {
            kinds.push(format!("{} dd.mm.yyyy dates", self.dmy));
        }
        if self.iso > 0 {
            kinds.push(format!("{} spreadsheet dates", self.iso));
        }
        if self.emails > 0 {
            kinds.push(format!("{} e-mails", self.emails));
        }
        if self.phones > 0 {
            kinds.push(format!("{} phones", self.phones));
        }
        if self.multi > 0 {
            kinds.push(format!("{} cells with several values", self.multi));
        }
        if kinds.is_empty() {
            format!("{} filled", self.filled)
        } else {
            format!("{} filled: {}", self.filled, kinds.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_tell_dates_phones_and_mails_apart() {
        let p = Profile::of(["45321", "45322.5", "", "30.01.2024"]);
        assert_eq!((p.filled, p.serials, p.dmy), (3, 2, 1));
        assert!(p.is_date());
        assert!(p.date_spec().contains("excel_date") && p.date_spec().contains("%d.%m.%Y"));
        let p = Profile::of(["a@x.ru", "b@x.ru, c@x.ru", "нет"]);
        assert!(!p.is_email(), "2 of 3 is not mostly");
        assert_eq!((p.emails, p.multi), (2, 1));
        let p = Profile::of(["+7 900 111-11-11", "8 (342) 200-00-00; +7 901 000-00-00"]);
        assert!(p.is_phone() && p.multi == 1, "{p:?}");
        let p = Profile::of(["2024-01-30", "2024-01-31 10:00:00"]);
        assert_eq!((p.iso, p.with_time), (2, 1));
        assert_eq!(
            p.date_spec(),
            "",
            "the default formats read spreadsheet dates"
        );
    }
}
