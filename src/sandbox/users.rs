//! The sandbox's CRM users (NOTES §13): the API user is id 1 ("Администратор"), more come from
//! `smbatch sandbox --user 'LOGIN=Full Name'` (stored in the database like the field settings,
//! so `--sandbox DB` on other commands sees them) or [`super::SandboxConfig::users`].
//!
//! Owners work as on the real server: `user` (a login) on add sets the owner to that user's id;
//! an unknown login gives owner 0 and the record drops out of owner-filtered reads.

use super::SandboxError;
use rusqlite::Connection;
use serde_json::{Map, Value};
use std::str::FromStr;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS app_user (
    iduser INTEGER PRIMARY KEY AUTOINCREMENT, uid TEXT, login TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL, email TEXT, active TEXT NOT NULL DEFAULT 'yes',
    tip TEXT NOT NULL, user_post TEXT NOT NULL
);
";

/// The API user's id.
pub const ADMIN: i64 = 1;

/// One user as `--user 'LOGIN=Full Name'` (or `--inactive-user`) gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSpec {
    pub login: String,
    pub title: String,
    /// `false`: a user who left (secrty "no"): listed, still an owner, cannot log in.
    pub active: bool,
}

impl UserSpec {
    pub fn new(login: &str, title: &str, active: bool) -> UserSpec {
        UserSpec {
            login: login.to_string(),
            title: title.to_string(),
            active,
        }
    }
}

impl FromStr for UserSpec {
    type Err = SandboxError;
    /// `manager2@firm.ru=Менеджер Второй` (the name may be left out).
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let (login, title) = spec.split_once('=').unwrap_or((spec, ""));
        let login = login.trim();
        if login.is_empty() || login.chars().any(char::is_whitespace) {
            return Err(SandboxError::BadUserSpec {
                spec: spec.to_string(),
                reason: "expected LOGIN=Full Name, e.g. 'manager2@firm.ru=Менеджер Второй'".into(),
            });
        }
        let title = title.trim();
        Ok(UserSpec::new(
            login,
            if title.is_empty() { login } else { title },
            true,
        ))
    }
}

/// Make id 1 the API user (whatever login an earlier run gave it) and store `specs` (a login
/// seen before keeps its id; its name and state are updated).
pub fn save(conn: &Connection, admin_login: &str, specs: &[UserSpec]) -> rusqlite::Result<()> {
    conn.execute(
        "DELETE FROM app_user WHERE login = ?1 AND iduser <> ?2",
        rusqlite::params![admin_login, ADMIN],
    )?;
    conn.execute(
        "INSERT INTO app_user (iduser, uid, login, title, email, active, tip, user_post)
         VALUES (?1, NULL, ?2, 'Администратор', ?2, 'yes', 'Руководитель организации', 'Руководитель')
         ON CONFLICT (iduser) DO UPDATE SET login = excluded.login, email = excluded.email",
        rusqlite::params![ADMIN, admin_login],
    )?;
    let mut st = conn.prepare_cached(
        "INSERT INTO app_user (login, title, email, active, tip, user_post)
         VALUES (?1, ?2, ?1, ?3, 'Менеджер продаж', 'Менеджер')
         ON CONFLICT (login) DO UPDATE SET title = excluded.title, active = excluded.active",
    )?;
    for u in specs.iter().filter(|u| u.login != admin_login) {
        st.execute(rusqlite::params![
            u.login,
            u.title,
            if u.active { "yes" } else { "no" }
        ])?;
    }
    // Like the recorded install: user n has uid "U-n" (the admin has none).
    conn.execute(
        "UPDATE app_user SET uid = 'U-' || iduser WHERE uid IS NULL AND iduser <> ?1",
        [ADMIN],
    )?;
    Ok(())
}

#[derive(Debug, Clone)]
pub struct User {
    pub iduser: i64,
    pub login: String,
    pub title: String,
    /// "U-n" for users after the admin (see [`save`]); none for the admin.
    pub uid: Option<String>,
}

/// The users as one request sees them.
#[derive(Debug, Clone, Default)]
pub struct Users {
    all: Vec<User>,
}

impl Users {
    pub fn load(conn: &Connection) -> rusqlite::Result<Users> {
        let mut st =
            conn.prepare_cached("SELECT iduser, login, title, uid FROM app_user ORDER BY iduser")?;
        let all = st
            .query_map([], |r| {
                Ok(User {
                    iduser: r.get(0)?,
                    login: r.get(1)?,
                    title: r.get(2)?,
                    uid: r.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(Users { all })
    }

    /// Every user's id, as the real server lists them in its SQL ("1,2,3").
    pub fn ids_csv(&self) -> String {
        let ids: Vec<String> = self.all.iter().map(|u| u.iduser.to_string()).collect();
        ids.join(",")
    }

    pub fn id_of(&self, login: &str) -> Option<i64> {
        self.all.iter().find(|u| u.login == login).map(|u| u.iduser)
    }

    pub fn get(&self, iduser: &Value) -> Option<&User> {
        let id = match iduser {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }?;
        self.all.iter().find(|u| u.iduser == id)
    }

    /// Owner id from a row's `user` login: absent or empty → the API user, unknown → 0.
    pub fn owner(&self, row: &Map<String, Value>) -> i64 {
        match super::text::value_str(row.get("user"), "") {
            None => ADMIN,
            Some(u) if u.is_empty() => ADMIN,
            Some(u) => self.id_of(&u).unwrap_or(0),
        }
    }

    /// The `user` filter of a list: that login's id, or an id nobody has.
    pub fn filter_id(&self, login: &str) -> i64 {
        self.id_of(login).unwrap_or(-1)
    }

    /// SQL condition for the records the API user sees in lists: those owned by a user of
    /// the CRM (owner 0 or NULL is nobody's, NOTES §4).
    pub fn visible(&self, column: &str) -> String {
        let ids: Vec<String> = self.all.iter().map(|u| u.iduser.to_string()).collect();
        match ids.as_slice() {
            [one] => format!("{column} = {one}"),
            _ => format!("{column} IN ({})", ids.join(", ")),
        }
    }

    /// An owner's login as lists show it under `user` ("" for nobody).
    pub fn login_of(&self, iduser: &Value) -> Value {
        Value::String(
            self.get(iduser)
                .map(|u| u.login.clone())
                .unwrap_or_default(),
        )
    }

    /// An owner's name as deal lists show it under `userTitle`.
    pub fn title_of(&self, iduser: &Value) -> Value {
        Value::String(
            self.get(iduser)
                .map(|u| u.title.clone())
                .unwrap_or_else(|| "Не определен".into()),
        )
    }

    /// An owner's uid as deal/info shows it under `userUID` ("" for none).
    pub fn uid_of(&self, iduser: &Value) -> Value {
        Value::String(
            self.get(iduser)
                .and_then(|u| u.uid.clone())
                .unwrap_or_default(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn user_specs_and_owners() {
        let u: UserSpec = "m2@firm.ru = Менеджер Второй".parse().unwrap();
        assert_eq!(u, UserSpec::new("m2@firm.ru", "Менеджер Второй", true));
        assert!("=Имя".parse::<UserSpec>().is_err());
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        save(
            &conn,
            "admin@x",
            &[u, UserSpec::new("gone@x", "Ушёл", false)],
        )
        .unwrap();
        // A second start with another admin login keeps the users and their ids.
        save(&conn, "boss@x", &[]).unwrap();
        let users = Users::load(&conn).unwrap();
        assert_eq!(users.id_of("boss@x"), Some(1));
        assert_eq!(users.id_of("admin@x"), None);
        assert_eq!(users.id_of("m2@firm.ru"), Some(2));
        let row = |l: &str| json!({ "user": l }).as_object().unwrap().clone();
        assert_eq!(users.owner(&row("gone@x")), 3);
        assert_eq!(users.owner(&row("ghost@x")), 0);
        assert_eq!(users.owner(&Map::new()), 1);
        assert_eq!(users.title_of(&json!(2)), json!("Менеджер Второй"));
        assert_eq!(users.title_of(&json!(0)), json!("Не определен"));
        assert_eq!(users.uid_of(&json!(2)), json!("U-2"));
        assert_eq!(users.uid_of(&json!(1)), json!(""), "the admin has no uid");
        assert_eq!(users.uid_of(&json!(9)), json!(""));
    }
}
