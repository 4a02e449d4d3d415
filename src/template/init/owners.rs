//! Owners as a file writes them (a full name, a login, an e-mail) matched to the CRM's users
//! (`user/list`, NOTES §13): the `[users]` table of a proposed template.

use crate::crm::CrmUser;
use crate::values::norm_text;

/// One owner of the file and what it became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerMatch {
    /// As the file writes it (the first spelling seen).
    pub value: String,
    /// Rows that name it.
    pub rows: usize,
    /// The CRM login, empty when no user matched.
    pub login: String,
    /// How it matched, or why not.
    pub how: String,
}

/// A full name compared in any case, `ё` as `е`, words in any order ("Иванов Иван" is
/// "иван иванов").
fn name_key(s: &str) -> String {
    let n = norm_text(s);
    let mut w: Vec<&str> = n.split(' ').filter(|w| !w.is_empty()).collect();
    w.sort_unstable();
    w.join(" ")
}

/// Match each distinct owner value (with its row count) to a user: by login, by e-mail, by full
/// name (the user's title). Without a user list a value that looks like a login is kept as one.
pub fn match_owners(values: &[(String, usize)], users: Option<&[CrmUser]>) -> Vec<OwnerMatch> {
    values
        .iter()
        .map(|(value, rows)| {
            let v = value.trim();
            let lc = v.to_lowercase();
            let (login, how) = match users {
                None if v.contains('@') => (
                    v.to_string(),
                    "looks like a login (no CRM was asked: check it)".to_string(),
                ),
                None => (
                    String::new(),
                    "no CRM was asked (give --url or --sandbox to match names to users)"
                        .to_string(),
                ),
                Some(users) => {
                    let by_login = users.iter().find(|u| u.login.to_lowercase() == lc);
                    let by_mail = || {
                        users
                            .iter()
                            .find(|u| !u.email.is_empty() && u.email.to_lowercase() == lc)
                    };
                    let key = name_key(v);
                    let by_name: Vec<&CrmUser> =
                        users.iter().filter(|u| name_key(&u.title) == key).collect();
                    if let Some(u) = by_login {
                        (u.login.clone(), "the login of a CRM user".to_string())
                    } else if let Some(u) = by_mail() {
                        (
                            u.login.clone(),
                            format!("the e-mail of CRM user {}", u.title),
                        )
                    } else if by_name.len() == 1 {
                        let u = by_name[0];
                        let left = if u.active {
                            ""
                        } else {
                            " (has left the company)"
                        };
                        (
                            u.login.clone(),
                            format!("the name of CRM user {}{left}", u.login),
                        )
                    } else if by_name.len() > 1 {
                        let logins: Vec<&str> = by_name.iter().map(|u| u.login.as_str()).collect();
                        (
                            String::new(),
                            format!(
                                "several CRM users have this name ({}): choose one",
                                logins.join(", ")
                            ),
                        )
                    } else {
                        (
                            String::new(),
                            "no CRM user has this name, login or e-mail: fill in a login"
                                .to_string(),
                        )
                    }
                }
            };
            OwnerMatch {
                value: value.clone(),
                rows: *rows,
                login,
                how,
            }
        })
        .collect()
}

/// Distinct owner values of a column (one spelling per name as [`name_key`] compares them,
/// case and ё aside), with how many rows name each, in first-seen order.
pub fn distinct_owners<'a>(cells: impl IntoIterator<Item = &'a str>) -> Vec<(String, usize)> {
    let mut out: Vec<(String, usize, String)> = Vec::new();
    for c in cells {
        let c = c.trim();
        if c.is_empty() {
            continue;
        }
        let k = norm_text(c);
        match out.iter_mut().find(|(_, _, key)| *key == k) {
            Some(e) => e.1 += 1,
            None => out.push((c.to_string(), 1, k)),
        }
    }
    out.into_iter().map(|(v, n, _)| (v, n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: i64, login: &str, title: &str, email: &str) -> CrmUser {
        CrmUser {
            iduser: id,
            login: login.into(),
            title: title.into(),
            email: email.into(),
            active: true,
        }
    }

    #[test]
    fn owners_match_by_name_login_or_mail_and_the_rest_are_listed() {
        let users = vec![
            user(1, "admin", "Администратор", "boss@firm.ru"),
            user(2, "petrova", "Петрова Анна", ""),
            user(3, "semenov", "Семёнов Пётр", ""),
        ];
        let values = distinct_owners([
            "Петрова Анна",
            "петрова  анна",
            "Анна Петрова",
            "Семенов Петр",
            "boss@firm.ru",
            "ADMIN",
            "Никто Никтович",
            "",
        ]);
        assert_eq!(values[0], ("Петрова Анна".to_string(), 2));
        let m = match_owners(&values, Some(&users));
        let login = |v: &str| m.iter().find(|o| o.value == v).unwrap().login.clone();
        assert_eq!(login("Петрова Анна"), "petrova");
        assert_eq!(login("Анна Петрова"), "petrova", "words in any order");
        assert_eq!(login("Семенов Петр"), "semenov", "ё and е are one letter");
        assert_eq!(login("boss@firm.ru"), "admin", "by e-mail");
        assert_eq!(login("ADMIN"), "admin", "by login, any case");
        assert_eq!(login("Никто Никтович"), "");
        // Without a CRM only a login-like value is kept.
        let m = match_owners(&values, None);
        assert_eq!(m.iter().filter(|o| !o.login.is_empty()).count(), 1);
    }
}
