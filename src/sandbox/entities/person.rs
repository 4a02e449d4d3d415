//! person/*: contacts (NOTES §5, §6, §14). v2's person/list and person/add.list land here too.

use super::{
    add_each, add_one, info, known_with_extras, like, pick, picked_rows, rows, wanted_fields,
    with_extras, Ctx, Params, Table, R,
};
use crate::crm::Entity;
use crate::sandbox::api::error;
use crate::sandbox::fields::FieldSet;
use crate::sandbox::text::{clean_field, now, utf8mb3_error, value_int, value_str};
use crate::sandbox::users::Users;
use rusqlite::types::Value as Sql;
use rusqlite::{Connection, ParamsFromIter};
use serde_json::{json, Map, Value};

actions! {
    /// person/* actions; an unknown one is answered as recorded in v3-error-unknown-action.
    PersonAction, unknown = error(404, "Неизвестный метод");
    Fields = "fields", List = "list", Info = "info", Add = "add", AddList = "add.list",
    Update = "update", Delete = "delete",
}

const TABLE: Table = Table {
    name: "person",
    id: "pid",
    alias: "p",
    select: PERSON_SELECT,
    params: &["pid"],
    missing: "Отсутствуют параметры - pid контакта",
    not_found: "",
};

const PERSON_TEXT: [&str; 7] = ["person", "ptitle", "tel", "fax", "mob", "mail", "input7"];
const PERSON_KNOWN: [&str; 12] = [
    "pid",
    "date_create",
    "date_edit",
    "clid",
    "ptitle",
    "person",
    "tel",
    "fax",
    "mob",
    "mail",
    "iduser",
    "input7",
];

pub(super) fn handle(ctx: &mut Ctx, a: PersonAction) -> R {
    match a {
        PersonAction::Fields => Ok(ctx.fields.answer(Entity::Person)),
        PersonAction::List => list(ctx),
        PersonAction::Info => person_info(ctx),
        PersonAction::Add => add_one(ctx, insert),
        PersonAction::AddList => add_each(ctx, "persons", insert),
        PersonAction::Update => update(ctx),
        PersonAction::Delete => delete(ctx),
    }
}

fn fail(msg: &str, line: u32) -> Value {
    json!({"result": "", "data": 0, "error": format!("Ошибка{msg} в строке {line}")})
}

/// Cleaned person text fields, or the MySQL strict-mode error the row would fail with.
fn text_values(row: &Params) -> Result<Vec<Option<String>>, Value> {
    let mut vals = Vec::with_capacity(PERSON_TEXT.len());
    for f in PERSON_TEXT {
        let v = value_str(row.get(f), ", ").map(|s| clean_field(&s));
        if let Some(s) = &v {
            if let Some(e) = utf8mb3_error(s, "app_personcat", f) {
                return Err(fail(&e, 1366));
            }
            if s.chars().count() > 250 {
                return Err(fail(
                    &format!("Data too long for column '{f}' at row 1"),
                    1406,
                ));
            }
        }
        vals.push(v);
    }
    Ok(vals)
}

/// SQL arguments: the text fields (?1 to ?7, in [`PERSON_TEXT`] order), then `rest`.
fn text_args(
    vals: Vec<Option<String>>,
    rest: impl IntoIterator<Item = Sql>,
) -> ParamsFromIter<Vec<Sql>> {
    let args: Vec<Sql> = vals
        .into_iter()
        .map(|v| v.map_or(Sql::Null, Sql::Text))
        .chain(rest)
        .collect();
    rusqlite::params_from_iter(args)
}

fn insert(conn: &Connection, users: &Users, row: &Params, set: &FieldSet) -> R {
    let name = value_str(row.get("person"), ", ")
        .map(|s| clean_field(&s))
        .unwrap_or_default();
    if name.is_empty() {
        return Ok(json!({"result": "", "data": 0, "error": ""}));
    }
    let vals = or_answer!(text_values(row));
    let owner = users.owner(row);
    let clid = value_int(row.get("clid")).unwrap_or(0);
    conn.prepare_cached(
        "INSERT INTO person (person, ptitle, tel, fax, mob, mail, input7, date_create, clid, iduser)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(text_args(
        vals,
        [Sql::Text(now()), Sql::Integer(clid), Sql::Integer(owner)],
    ))?;
    let pid = conn.last_insert_rowid();
    set.store(conn, Entity::Person, pid, row, false)?;
    Ok(json!({"result": "Контакт добавлен", "data": pid, "error": ""}))
}

const PERSON_SELECT: &str = "SELECT p.pid, p.date_create, p.date_edit, p.clid,
    CASE WHEN p.clid = 0 OR p.clid IS NULL THEN '' ELSE COALESCE(c.title, '--не найден--') END AS client,
    p.ptitle, p.person, p.tel, p.fax, p.mob, p.mail, p.iduser, p.input7
    FROM person p LEFT JOIN client c ON c.clid = p.clid";

fn list(ctx: &mut Ctx) -> R {
    let mut wh = vec![ctx.users.visible("p.iduser")];
    if let Some(u) = ctx.user_filter() {
        wh.push(format!("p.iduser = {u}"));
    }
    let mut args: Vec<Sql> = Vec::new();
    if let Some(w) = ctx.str("word") {
        wh.push("(p.person LIKE ? OR p.tel LIKE ? OR p.mob LIKE ? OR p.mail LIKE ?)".into());
        for _ in 0..4 {
            args.push(like(&w));
        }
    }
    if let Some(Value::Object(f)) = ctx.p.get("filter") {
        for (k, v) in f {
            if PERSON_KNOWN.contains(&k.as_str()) {
                wh.push(format!("p.{k} = ?"));
                args.push(match v {
                    Value::Number(_) => Sql::Integer(value_int(Some(v)).unwrap_or(0)),
                    _ => Sql::Text(value_str(Some(v), ",").unwrap_or_default()),
                });
            }
        }
    }
    // Raw string BETWEEN on date_create, as the real server does (NOTES §6).
    match (ctx.str("dateStart"), ctx.str("dateEnd")) {
        (Some(s), Some(e)) => {
            wh.push("p.date_create BETWEEN ? AND ?".into());
            args.extend([Sql::Text(s), Sql::Text(e)]);
        }
        (Some(s), None) => {
            wh.push("p.date_create > ?".into());
            args.push(Sql::Text(s));
        }
        (None, Some(e)) => {
            wh.push("p.date_create < ?".into());
            args.push(Sql::Text(e));
        }
        (None, None) => {}
    }
    let order = ctx
        .order(&PERSON_KNOWN)
        .unwrap_or_else(|| "date_create".into());
    let dir = ctx.dir();
    let (total, found) = TABLE.page(ctx, &wh, &args, &format!("p.{order} {dir}, p.pid {dir}"))?;
    let data = picked_rows(ctx, Entity::Person, &PERSON_KNOWN, "pid", found, |r| {
        let mut extra = Map::new();
        extra.insert("client".into(), r["client"].take());
        extra.insert("user".into(), ctx.user_name(&r["iduser"]));
        extra
    })?;
    let mut out = Map::new();
    if !data.is_empty() {
        out.insert("data".into(), Value::Array(data));
    }
    out.insert("count".into(), json!(total));
    Ok(Value::Object(out))
}

fn person_info(ctx: &mut Ctx) -> R {
    let pid = ctx.int("pid").unwrap_or(0);
    let found = rows(
        ctx.conn,
        &format!("{PERSON_SELECT} WHERE p.pid = ?"),
        &[Sql::Integer(pid)],
    )?;
    // A record with an empty name counts as not found: an object of nulls, not an error.
    let mut row = found
        .into_iter()
        .find(|r| r["person"].as_str().is_some_and(|s| !s.is_empty()));
    if let Some(r) = &mut row {
        let pid = r["pid"].as_i64().unwrap_or(0);
        with_extras(ctx, Entity::Person, pid, r)?;
    }
    let known = known_with_extras(&PERSON_KNOWN, ctx);
    let mut full = Map::new();
    for f in known.iter().copied() {
        let v = match &row {
            Some(r) if f == "iduser" => ctx.user_name(&r["iduser"]),
            Some(r) => r[f].clone(),
            None if f == "iduser" => json!(""),
            None => Value::Null,
        };
        full.insert(f.to_string(), v);
    }
    let mut extra = Map::new();
    extra.insert(
        "client".into(),
        row.as_ref()
            .map(|r| r["client"].clone())
            .unwrap_or(json!("")),
    );
    let fields = wanted_fields(ctx, &known);
    let mut data = pick(&full, &fields, &known, &extra);
    // info reports the owner as a login under `iduser` and has no separate `user` key.
    if let Value::Object(m) = &mut data {
        m.shift_remove("user");
        if ctx.str("socinfo").as_deref() == Some("yes") {
            let socials: Map<String, Value> = [
                "blog", "mysite", "twitter", "icq", "skype", "google", "yandex", "mykrug",
            ]
            .iter()
            .map(|k| (k.to_string(), Value::Null))
            .collect();
            m.insert("socials".into(), Value::Object(socials));
        }
    }
    Ok(info(data))
}

fn update(ctx: &mut Ctx) -> R {
    // Without a pid the real server still answers success, with data 0
    // [v3-person-update-missing-pid]; an unknown pid too.
    let pid = ctx.id("pid").unwrap_or(0);
    // A FULL replace: omitted fields are blanked and the owner is reset unless `iduser` is
    // numeric (NOTES §5). This is the real server's data-loss hazard, kept on purpose.
    let mut vals = or_answer!(text_values(ctx.p));
    for v in &mut vals {
        if v.is_none() {
            *v = Some(String::new());
        }
    }
    let iduser = match ctx.p.get("iduser") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    let clid = ctx.int("clid");
    ctx.conn.execute(
        "UPDATE person SET person = ?1, ptitle = ?2, tel = ?3, fax = ?4, mob = ?5, mail = ?6,
         input7 = ?7, iduser = ?8, clid = COALESCE(?9, clid), date_edit = ?10 WHERE pid = ?11",
        text_args(
            vals,
            [
                iduser.map_or(Sql::Null, Sql::Integer),
                clid.map_or(Sql::Null, Sql::Integer),
                Sql::Text(now()),
                Sql::Integer(pid),
            ],
        ),
    )?;
    ctx.fields
        .store(ctx.conn, Entity::Person, pid, ctx.p, true)?;
    Ok(json!({"result": "Данные контакта обновлены", "data": pid, "error": ""}))
}

fn delete(ctx: &mut Ctx) -> R {
    // Without a pid the real server deletes "pid 0" and answers success with data 0
    // [v3-person-delete-missing-pid]: the history and tasks linked to nothing go.
    let pid = ctx.id("pid").unwrap_or(0);
    let tx = ctx.conn.transaction()?;
    tx.execute("DELETE FROM person WHERE pid = ?1", [pid])?;
    // As the real Person::delete: history and tasks whose only link was this person go; those
    // also linked to a client or deal stay, with the pid cleared (NOTES §14). The message counts
    // both, as the real one does.
    let unlink = |sql: &str| {
        if pid > 0 {
            tx.execute(sql, [pid])
        } else {
            Ok(0)
        }
    };
    let h = tx.execute(
        "DELETE FROM history WHERE pid = ?1 AND clid < 1 AND did < 1",
        [pid],
    )? + unlink("UPDATE history SET pid = 0 WHERE pid = ?1")?;
    let t = tx.execute(
        "DELETE FROM task WHERE pid = ?1 AND clid < 1 AND did < 1",
        [pid],
    )? + unlink("UPDATE task SET pid = 0 WHERE pid = ?1")?;
    tx.commit()?;
    Ok(json!({
        "message": format!("Успешно: Контакт удален. Также удалено {h} записи истории активностей. Удалено {t} записей напоминаний. Удалено 0 файлов.\n\t\t\t"),
        "result": "Клиент удален",
        "data": pid
    }))
}

#[cfg(test)]
mod tests {
    use super::super::testkit::Crm;
    use crate::sandbox::api::Reply;
    use serde_json::json;

    #[test]
    fn add_answers_contact_added_and_info_shows_the_owner_login_under_iduser() {
        let crm = Crm::new();
        let pid = crm.add(
            "person",
            json!({"person": "  Иван Петров ", "tel": "+7 900", "user": "manager2@test.ru"}),
        );
        let info = crm.call("person", "info", json!({ "pid": pid }));
        let d = &info["data"];
        assert_eq!(d["person"], "Иван Петров");
        assert_eq!(d["iduser"], "manager2@test.ru");
        assert!(d.get("user").is_none(), "info has no separate user key");
        assert_eq!(d["client"], "", "no client: empty title after clid");
        let keys: Vec<&str> = d.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            &keys[..5],
            ["pid", "date_create", "date_edit", "clid", "client"]
        );
    }

    #[test]
    fn add_without_a_name_or_with_a_four_byte_character_stores_nothing() {
        let crm = Crm::new();
        let r = crm.call("person", "add", json!({"tel": "1"}));
        assert_eq!(r, json!({"result": "", "data": 0, "error": ""}));
        let r = crm.call("person", "add", json!({"person": "Смайл 😀"}));
        assert_eq!(r["data"], 0);
        assert!(
            r["error"].as_str().unwrap().ends_with("в строке 1366"),
            "{r}"
        );
        assert_eq!(crm.sql_value("SELECT COUNT(*) FROM person"), json!(0));
    }

    #[test]
    fn update_is_a_full_replace_that_blanks_omitted_fields() {
        let crm = Crm::new();
        let pid = crm.add(
            "person",
            json!({"person": "Анна", "tel": "111", "mail": "a@x.ru"}),
        );
        let r = crm.call("person", "update", json!({"pid": pid, "person": "Анна К."}));
        assert_eq!(r["result"], "Данные контакта обновлены");
        let d = &crm.call("person", "info", json!({ "pid": pid }))["data"];
        assert_eq!(d["person"], "Анна К.");
        assert_eq!(d["tel"], "", "omitted phone blanked");
        assert_eq!(d["mail"], "");
        assert_eq!(d["iduser"], "", "owner reset without a numeric iduser");
        // Without a pid: success with data 0, nothing changed [v3-person-update-missing-pid].
        let r = crm.call("person", "update", json!({"person": "Без pid"}));
        assert_eq!(
            r,
            json!({"result": "Данные контакта обновлены", "data": 0, "error": ""})
        );
        assert_eq!(
            crm.sql_value("SELECT COUNT(*) FROM person WHERE person = 'Без pid'"),
            json!(0)
        );
    }

    #[test]
    fn delete_takes_history_only_linked_to_the_person_and_counts_it() {
        let crm = Crm::new();
        let pid = crm.add("person", json!({"person": "Олег"}));
        crm.sql(&format!(
            "INSERT INTO history (datum, des, pid, clid) VALUES ('2024-01-01 10:00:00', 'только контакт', {pid}, 0);
             INSERT INTO history (datum, des, pid, clid) VALUES ('2024-01-01 10:00:00', 'и клиент', {pid}, 5);"
        ));
        let r = crm.call("person", "delete", json!({ "pid": pid }));
        assert_eq!(r["result"], "Клиент удален");
        assert!(r["message"]
            .as_str()
            .unwrap()
            .contains("удалено 2 записи истории"));
        assert_eq!(
            crm.sql_value("SELECT des || ':' || pid FROM history"),
            json!("и клиент:0")
        );
        // Deleted: info answers an object of nulls, not an error.
        let d = &crm.call("person", "info", json!({ "pid": pid }))["data"];
        assert_eq!(d["person"], json!(null));
        assert_eq!(d["iduser"], "");
    }

    #[test]
    fn list_filters_by_word_and_picks_requested_fields_with_client_after_clid() {
        let crm = Crm::new();
        crm.sql("INSERT INTO client (date_create, title, iduser) VALUES ('2024-01-01', 'ООО Ромашка', 1)");
        crm.add(
            "person",
            json!({"person": "Мария", "clid": 1, "mail": "m@r.ru"}),
        );
        crm.add("person", json!({"person": "Пётр"}));
        crm.add("person", json!({"person": "Чужой", "user": "nobody@x"}));
        let r = crm.call(
            "person",
            "list",
            json!({"word": "m@r", "fields": "person,clid,iduser"}),
        );
        assert_eq!(r["count"], 1);
        assert_eq!(
            r["data"][0],
            json!({"person": "Мария", "clid": 1, "client": "ООО Ромашка", "user": "admin@test.ru", "iduser": 1})
        );
        let all = crm.call("person", "list", json!({}));
        assert_eq!(all["count"], 2, "a person owned by nobody is not listed");
    }

    #[test]
    fn v2_add_list_answers_row_by_row() {
        let crm = Crm::new();
        let Reply::Json(r) = crm.reply(
            2,
            "person",
            "add.list",
            json!({"persons": {"0": {"person": "Один"}, "1": {"tel": "2"}}}),
        ) else {
            panic!("no JSON");
        };
        assert_eq!(r[0]["result"], "Контакт добавлен");
        assert_eq!(r[1], json!({"result": "", "data": 0, "error": ""}));
    }
}
