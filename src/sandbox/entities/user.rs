//! user/*: the CRM's users as the API lists them (NOTES §13). Who the users are and how
//! owners resolve lives in [`crate::sandbox::users`].

use super::{Params, R};
use crate::sandbox::api::error;
use crate::sandbox::text::{value_int, value_str};
use rusqlite::Connection;
use serde_json::{json, Map, Value};

actions! {
    /// user/* actions; an unknown one is answered as recorded in v3-error-unknown-action-user.
    UserAction, unknown = json!([]);
    List = "list", Info = "info", Add = "add",
}

fn user_json(r: &rusqlite::Row, info: bool) -> rusqlite::Result<Value> {
    let mut m = Map::new();
    m.insert("iduser".into(), json!(r.get::<_, i64>("iduser")?));
    m.insert("uid".into(), json!(r.get::<_, Option<String>>("uid")?));
    m.insert("oid".into(), json!(false));
    m.insert("title".into(), json!(r.get::<_, String>("title")?));
    m.insert("login".into(), json!(r.get::<_, String>("login")?));
    if info {
        m.insert("active".into(), json!(r.get::<_, String>("active")?));
        m.insert("tip".into(), json!(r.get::<_, String>("tip")?));
        m.insert("user_post".into(), json!(r.get::<_, String>("user_post")?));
        m.insert("email".into(), json!(r.get::<_, Option<String>>("email")?));
        for k in ["phone", "phone_in", "mob"] {
            m.insert(k.into(), Value::Null);
        }
    } else {
        m.insert("email".into(), json!(r.get::<_, Option<String>>("email")?));
        m.insert("active".into(), json!(r.get::<_, String>("active")?));
    }
    Ok(Value::Object(m))
}

/// `user/*` actions as the recordings show them (v3-user-*).
pub(super) fn handle(conn: &Connection, action: UserAction, p: &Params) -> R {
    let text = |k: &str| value_str(p.get(k), ",").filter(|s| !s.is_empty());
    match action {
        UserAction::List => {
            let mut st = conn.prepare_cached("SELECT * FROM app_user ORDER BY iduser")?;
            let data = st
                .query_map([], |r| user_json(r, false))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(json!({ "data": data }))
        }
        UserAction::Info => {
            // By `iduser` (int or numeric string), `user` (login) or `uid`; `login` is no key.
            let (sql, arg): (&str, rusqlite::types::Value) =
                match (value_int(p.get("iduser")), text("user"), text("uid")) {
                    (Some(id), _, _) => ("iduser = ?1", id.into()),
                    (None, Some(login), _) => ("login = ?1", login.into()),
                    (None, None, Some(uid)) => ("uid = ?1", uid.into()),
                    (None, None, None) => return Ok(error(405, "Отсутствуют параметры")),
                };
            let mut st = conn.prepare_cached(&format!("SELECT * FROM app_user WHERE {sql}"))?;
            let found = st
                .query_map([arg], |r| user_json(r, true))?
                .next()
                .transpose()?;
            Ok(match found {
                Some(u) => json!({ "data": u }),
                // No `result` key on this answer, and the code is a string.
                None => json!({"error": {"code": "404", "text": "Пользователь не найден"}}),
            })
        }
        UserAction::Add => {
            let taken = match text("user") {
                Some(login) => conn
                    .query_row(
                        "SELECT COUNT(*) FROM app_user WHERE login = ?1",
                        [login],
                        |r| r.get::<_, i64>(0),
                    )
                    .map(|n| n > 0)?,
                None => false,
            };
            if taken {
                return Ok(error(406, "Ошибка: Такой логин уже существует"));
            }
            // The real user/add then inserts into `app_USER` and fails on Linux (NOTES §13).
            Ok(error(
                500,
                "Table 'salesman.app_USER' doesn't exist в строке 1146",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{Crm, LOGIN};
    use serde_json::json;

    #[test]
    fn list_and_info_show_the_users_and_add_fails_as_recorded() {
        let crm = Crm::new();
        let list = crm.call("user", "list", json!({}));
        let logins: Vec<&str> = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["login"].as_str().unwrap())
            .collect();
        assert_eq!(logins, [LOGIN, "manager2@test.ru"]);
        let d = &crm.call("user", "info", json!({"user": "manager2@test.ru"}))["data"];
        assert_eq!(d["iduser"], 2);
        assert_eq!(d["uid"], "U-2");
        assert_eq!(d["title"], "Менеджер Второй");
        let none = crm.call("user", "info", json!({"iduser": "9"}));
        assert_eq!(
            none,
            json!({"error": {"code": "404", "text": "Пользователь не найден"}})
        );
        assert_eq!(crm.call("user", "info", json!({}))["error"]["code"], 405);
        let taken = crm.call("user", "add", json!({"user": "manager2@test.ru"}));
        assert_eq!(taken["error"]["code"], 406);
        let broken = crm.call("user", "add", json!({"user": "new@test.ru"}));
        assert_eq!(broken["error"]["code"], 500);
        assert_eq!(crm.call("user", "nosuch", json!({})), json!([]));
    }
}
