//! Replays every recorded request/response pair from the real SalesMan server
//! (`tests/fixtures/salesman-real/`) against a freshly seeded sandbox and checks the answer has
//! the same shape: status, keys, JSON value types, `result` values, error codes, array vs object,
//! empty bodies, and per-row results of batches.

use serde_json::{json, Value};
use smbatch::sandbox::{Sandbox, SandboxConfig, UserSpec};
use std::path::PathBuf;

pub const LOGIN: &str = "admin@salesman.local";
pub const APIKEY: &str = "APIKEY";

pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/salesman-real")
}

/// The fixtures were recorded with this login and the placeholder key "APIKEY".
pub fn start() -> Sandbox {
    start_with(Vec::new())
}

fn start_with(users: Vec<UserSpec>) -> Sandbox {
    Sandbox::start(SandboxConfig {
        login: LOGIN.into(),
        apikey: APIKEY.into(),
        users,
        ..SandboxConfig::default()
    })
    .expect("sandbox starts")
}

/// The users of the recording server: besides the admin, manager2 (U-2) and a user who left
/// (U-3), both inserted straight into its database because user/add is broken there.
fn recorded_users(fixture: &str) -> Vec<UserSpec> {
    // Recorded while the admin was the only user: user/add of manager2 was not a duplicate yet.
    if [
        "v3-user-add-fails-uppercase-table",
        "v3-user-list-ok",
        "v3-user-list-after-add",
    ]
    .contains(&fixture)
    {
        return Vec::new();
    }
    vec![
        UserSpec::new("manager2@salesman.local", "Менеджер Второй", true),
        UserSpec::new("fired@salesman.local", "Уволенный Сотрудник", false),
    ]
}

pub async fn call(client: &reqwest::Client, base: &str, path: &str, body: Value) -> Value {
    let resp = client
        .post(format!("{base}{path}"))
        .header("Content-Type", "application/json")
        .header("login", LOGIN)
        .header("apikey", APIKEY)
        .body(body.to_string())
        .send()
        .await
        .expect("request");
    resp.json().await.expect("json answer")
}

/// Seed data so every fixture replay has something to find: ids referenced by the fixtures
/// (pid 1/9/11/466, the next pid is 467 like the recording, cid 2/12, tid 1, did 1, clid 1) exist, lists have rows, and pages 0..2 of
/// persons and 0..1 of history (2024-06-27) are non-empty.
pub async fn seed(client: &reqwest::Client, base: &str) {
    let r = call(
        client,
        base,
        "/developer/v3/client/add.list",
        json!({"client": [{
            "uid": "EXT-1001", "type": "client", "title": "ООО «Ромашка»",
            "phone": ["+7(342)550-10-30", "+7(342)550-10-31"], "mail_url": "info@romashka.example",
            "site_url": "romashka.example", "recv": {"castInn": "590456789008"}
        }]}),
    )
    .await;
    assert_eq!(r[0]["data"], 1, "{r}");
    // clid 2, which the deal/add recordings name.
    let r = call(
        client,
        base,
        "/developer/v3/client/add",
        json!({"type": "client", "title": "ИП Бета Сервис", "phone": "8 (812) 333-44-55"}),
    )
    .await;
    assert_eq!(r["data"], 2, "{r}");
    let mut persons = vec![
        json!({"clid": 1, "person": "Апиров Апист Иванович", "ptitle": "Технический директор",
        "tel": "+7(342)250-50-50", "mob": "+7(922)250-50-50", "mail": "a.i.apirov@example.com"}),
    ];
    persons.push(json!({"clid": 1, "person": "Тест 911", "mail": "test911@example.com"}));
    persons.push(json!({"clid": 1, "person": "Тест 912", "mail": "test912@example.com"}));
    for i in persons.len()..466 {
        persons.push(
            json!({"person": format!("Пейджинг {i:04}"), "clid": if i % 2 == 0 { 1 } else { 0 }}),
        );
    }
    for chunk in persons.chunks(200) {
        call(
            client,
            base,
            "/developer/v3/person/add.list",
            json!({"persons": chunk}),
        )
        .await;
    }
    // The first row is linked to no contact, like the recordings' first rows: history/list adds
    // `person` only to linked rows.
    let mut hist = Vec::new();
    for i in 0..10 {
        let pid = if i == 0 { 0 } else { 1 };
        hist.push(
            json!({"content": format!("Сегодня {i}"), "clid": 1, "pid": pid, "tip": "Встреча"}),
        );
    }
    hist.push(json!({"content": "d3 seconds", "clid": 1, "datum": "2024-06-25 10:11:12"}));
    hist.push(json!({"content": "Отправлено КП", "clid": 1, "pid": 1, "datum": "2024-06-25 14:25", "tip": "Предложение"}));
    hist.push(json!({"content": "Хорошая запись", "clid": 1, "datum": "2024-06-26 10:00", "tip": "Встреча"}));
    for i in 0..250 {
        hist.push(json!({"content": format!("Пейджинг истории {i}"), "clid": 1, "datum": "2024-06-27 12:00:00", "tip": "Встреча"}));
    }
    for chunk in hist.chunks(200) {
        call(
            client,
            base,
            "/developer/v3/history/add.list",
            json!({"list": chunk}),
        )
        .await;
    }
    let today = chrono::Local::now().format("%Y-%m-%d").to_string();
    call(client, base, "/developer/v3/task/add", json!({"datum": today, "totime": "15:30",
        "title": "Перезвонить клиенту", "des": "Описание задачи", "tip": "Задача", "priority": 2, "clid": 1, "pid": "1"})).await;
    call(
        client,
        base,
        "/developer/v3/task/add",
        json!({"datum": "2024-07-01", "totime": "10:00",
        "title": "Задача в прошлом", "tip": "Задача", "clid": 1}),
    )
    .await;
    call(client, base, "/developer/v3/deal/add", json!({"title": "Тестовая сделка 1", "uid": "DEAL-1",
        "clid": 1, "payer": 1, "step": 20, "datum_plan": "2027-05-30", "kol": 100000.0, "marga": 20000.0})).await;
}

/// The deals and invoices the invoice recordings name: deals up to did 26 (17 and the one with
/// uid INV-DEAL-1 without a specification, 23/24/25 with one, 26 with sum 0), then invoices
/// 1–6 on deals 23, 24 and 25 as recorded (INV-001…INV-004, number "3", crid 6 paid on add).
async fn seed_invoices(client: &reqwest::Client, base: &str) {
    for did in 2..=26 {
        let mut deal = json!({"title": format!("Сделка {did}"), "clid": 2, "kol": 1000});
        match did {
            23 | 24 => {
                deal["speka"] = json!([{"title": "Услуга", "price": 100000, "kol": 1, "nds": 20}])
            }
            25 => {
                deal["clid"] = json!(1);
                deal["speka"] = json!([{"title": "Услуга", "price": 30000, "kol": 1, "nds": 20}]);
            }
            26 => deal["kol"] = json!(0),
            2 => deal["uid"] = json!("INV-DEAL-1"),
            _ => {}
        }
        let r = call(client, base, "/developer/v3/deal/add", deal).await;
        assert_eq!(r["data"], did, "{r}");
    }
    // In the recorded order: crid 5 is the one the partial-payment recordings pay.
    for inv in [
        json!({"did": 23, "summa": 30000, "invoice": "INV-001", "contract": "Д-1/2026", "date.plan": "2026-12-10"}),
        json!({"did": 23, "summa": 100}),
        json!({"did": 24, "summa": 20000.5, "invoice": "3", "date.plan": "2026-12-01"}),
        json!({"did": 24, "summa": 1.5, "invoice": "INV-002"}),
        json!({"did": 25, "summa": 30000, "invoice": "INV-003", "date.plan": "2026-12-15"}),
        json!({"did": 24, "summa": 5000, "invoice": "INV-004", "do": "on", "date.do": "2026-11-20"}),
    ] {
        let r = call(client, base, "/developer/v3/invoice/add", inv).await;
        assert!(r["data"]["id"].is_number(), "{r}");
    }
}

const NO_AUTO_HISTORY: &str = "the events the CRM writes by itself on add (client, deal, invoice; \
    NOTES §14) are not emulated: these lists of client 8 / deal 23 hold only such rows";

/// Fixtures not replayed, each with the reason. Keep this short and honest.
const SKIPPED: &[(&str, &str)] = &[
    (
        "v1-task-",
        "v1 is served for the contract actions only (the fallback of older servers)",
    ),
    (
        "v1-person-",
        "v1 is served for the contract actions only (the fallback of older servers)",
    ),
    (
        "v1-error-",
        "recorded on v1 task, which the sandbox does not serve",
    ),
    (
        "-nonstrict-sqlmode",
        "behaviour of a MySQL server in non-strict sql_mode; the sandbox emulates the default strict mode",
    ),
    ("v3-history-list-after-client-add", NO_AUTO_HISTORY),
    ("v3-history-list-after-deal-add-by-clid", NO_AUTO_HISTORY),
    ("v3-history-list-after-history-add", NO_AUTO_HISTORY),
    ("v3-history-list-after-invoice-add-and-do", NO_AUTO_HISTORY),
    ("v3-history-list-after-task-add", NO_AUTO_HISTORY),
    ("v3-history-list-after-updates-by-clid", NO_AUTO_HISTORY),
    (
        "v3-person-add.list-body-over-post_max_size",
        "a 15.8 MB body; covered by sandbox::huge_body_gets_json_error (the sandbox answers a JSON error)",
    ),
];

/// Fixtures whose recorded answer is the real server being broken (HTML or invalid JSON); the
/// sandbox deliberately answers valid JSON instead (README, "The sandbox"), checked here.
fn deviation(name: &str, status: u16, body: &str) -> Option<Result<(), String>> {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let is_error = |v: &Option<Value>| {
        v.as_ref()
            .is_some_and(|v| v["result"] == "Error" && v["error"]["code"].is_number())
    };
    let r = match name {
        "v3-client-list-ok" | "v3-client-list-fields" | "v3-person-add-cp1251-body" => {
            if status == 200 && is_error(&parsed) {
                Ok(())
            } else {
                Err(format!(
                    "expected a JSON error envelope, got {status} {body}"
                ))
            }
        }
        "v3-person-info-backslash" => match parsed {
            Some(v)
                if v["data"]["person"]
                    .as_str()
                    .is_some_and(|p| p.contains('\\')) =>
            {
                Ok(())
            }
            _ => Err(format!(
                "expected valid JSON with the backslash kept, got {body}"
            )),
        },
        _ => return None,
    };
    Some(r)
}

/// Deal changes name deals 2..26 (14 the one they change, 23 with invoices): the invoice seed.
fn needs_deals(name: &str) -> bool {
    name.starts_with("v3-invoice-")
        || (name.starts_with("v1-contract-") && name != "v1-contract-list-get")
        || [
            "v3-deal-update-",
            "v3-deal-change.",
            "v3-deal-close-",
            "v3-deal-delete-",
        ]
        .iter()
        .any(|p| name.starts_with(p))
}

/// The state a change was recorded in that no other fixture records: calls made after the
/// seed (and before the preludes). Tasks up to tid 12 and clients up to clid 7 as recorded;
/// deal 14 at the step the change.step recording started from.
async fn scene(client: &reqwest::Client, base: &str, name: &str) {
    let mut calls: Vec<(&str, Value)> = Vec::new();
    let step = |s: &str| {
        (
            "/developer/v3/deal/change.step",
            json!({"did": 14, "step": s}),
        )
    };
    if ["v3-task-update-", "v3-task-doit-", "v3-task-delete-"]
        .iter()
        .any(|p| name.starts_with(p))
    {
        for i in 3..=12 {
            calls.push((
                "/developer/v3/task/add",
                json!({"title": format!("Задача {i}"), "clid": 2, "tip": "Звонок"}),
            ));
        }
    }
    if name.starts_with("v3-client-delete-") {
        for i in 3..=7 {
            calls.push((
                "/developer/v3/client/add",
                json!({"title": format!("Удаляемый {i}")}),
            ));
        }
    }
    if needs_deals(name) && name.starts_with("v1-contract-") {
        // Deals 27 (open, 60,000) and 28 (7,000, margin 700) and the v1 invoices the
        // payment recordings name (V1-INV-1 of 20,000, V1-INV-3 of 30,000).
        calls.push((
            "/developer/v3/deal/add",
            json!({"title": "Сделка 27", "clid": 2, "kol": 60000, "step": 20}),
        ));
        calls.push((
            "/developer/v3/deal/add",
            json!({"title": "Сделка 28", "clid": 2, "kol": 7000, "marga": 700}),
        ));
    }
    match name {
        "v3-client-update-by-uid" => calls.push((
            "/developer/v3/client/update",
            json!({"clid": 1, "uid": "CL-A"}),
        )),
        "v3-client-delete-with-deals" => calls.push((
            "/developer/v3/deal/add",
            json!({"title": "Сделка удаляемого клиента", "clid": 7}),
        )),
        "v3-deal-change.step-forward" => calls.push(step("40")),
        "v3-deal-change.step-backward" => calls.push(step("60")),
        "v3-deal-change.step-same-step" | "v3-deal-change.step-unknown-step" => {
            calls.push(step("20"))
        }
        "v3-deal-delete-by-uid-only" => calls.push((
            "/developer/v3/deal/add",
            json!({"title": "Сделка для стирания", "clid": 1, "uid": "WIPE-1"}),
        )),
        // cid 40 has clid 1: gone with its client (whose deal goes first).
        "v3-history-info-after-client-delete" => {
            calls.push(("/developer/v3/deal/delete", json!({"did": 1})));
            calls.push(("/developer/v3/client/delete", json!({"clid": 1})));
        }
        // cid 61 is tied to no deal: gone with deal/delete by uid.
        "v3-history-info-after-deal-delete-by-uid" => {
            calls.push(("/developer/v3/deal/delete", json!({"uid": "DEAL-1"})))
        }
        _ => {}
    }
    for (path, body) in calls {
        call(client, base, path, body).await;
    }
    if name.starts_with("v1-contract-addpaiment") {
        for q in [
            "did=27&summa=20000&invoice=V1-INV-1&date=2026-11-29",
            "did=27&summa=30000&invoice=V1-INV-3",
        ] {
            let r: Value = client
                .get(format!(
                    "{base}/developer/v1/contract?login=admin%40salesman.local&apikey=APIKEY&action=addinvoice&{q}"
                ))
                .send()
                .await
                .expect("request")
                .json()
                .await
                .expect("json answer");
            assert!(r["data"]["id"].is_number(), "{r}");
        }
    }
}

/// Requests to replay first, so a fixture sees the state it was recorded in.
fn preludes(name: &str) -> &'static [&'static str] {
    match name {
        "v3-person-info-after-update" => &["v3-person-update-ok"],
        "v3-person-info-after-full-update" => &["v3-person-update-full"],
        "v3-person-info-after-user-update" => {
            &["v3-person-update-full", "v3-person-update-with-user-login"]
        }
        "v3-person-delete-again" => &["v3-person-delete-ok"],
        "v3-client-delete-again" => &["v3-client-delete-ok"],
        "v3-person-info-backslash" => &["v3-person-add-backslash"],
        "v3-history-info-newlines-html" => &["v3-history-add-newlines-html"],
        "v3-client-list-after-recv-string" => &["v3-client-add.list-recv-string"],
        "v3-client-info-after-array-phone-bad-iduser" | "v3-client-update-restore-iduser" => {
            &["v3-client-update-array-phone-bad-iduser"]
        }
        "v3-client-info-after-empty-title" => &["v3-client-update-empty-title"],
        "v3-client-update-same-data" => &["v3-client-update-partial-phone-only"],
        "v3-deal-close-again" => &["v3-deal-close-win-by-title"],
        "v1-contract-close-again" => &["v1-contract-close-ok"],
        "v3-deal-close-again-after-unknown-status" => &["v3-deal-close-unknown-status"],
        "v3-deal-delete-again" => &["v3-deal-delete-ok-second"],
        "v3-deal-update-same-data" => &["v3-deal-update-title-kol-marga"],
        "v3-deal-update-step-ignored" => &["v3-deal-update-clid-change"],
        "v3-task-delete-again" => &["v3-task-delete-ok"],
        "v3-task-doit-twice" => &["v3-task-doit-with-description"],
        _ => &[],
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Same shape: same keys, same value types (null matches any scalar: it depends on the data),
/// same `result` values and error codes; top-level arrays (batch results) match row by row.
pub fn same_shape(exp: &Value, got: &Value, path: &str, depth: usize) -> Result<(), String> {
    match (exp, got) {
        (Value::Object(e), Value::Object(g)) => {
            let mut ek: Vec<_> = e.keys().collect();
            let mut gk: Vec<_> = g.keys().collect();
            ek.sort();
            gk.sort();
            if ek != gk {
                return Err(format!(
                    "{path}: keys differ\n  expected {ek:?}\n  got      {gk:?}"
                ));
            }
            for (k, ev) in e {
                let p = format!("{path}.{k}");
                // Outcomes must match exactly: `result` of an answer or batch row, error codes
                // (including their int-vs-string type).
                if ((k == "result" && depth <= 1) || k == "code") && ev != &g[k] {
                    return Err(format!("{p}: expected {ev}, got {}", g[k]));
                }
                same_shape(ev, &g[k], &p, depth + 1)?;
            }
            Ok(())
        }
        (Value::Array(e), Value::Array(g)) => {
            if depth == 0 {
                if e.len() != g.len() {
                    return Err(format!(
                        "{path}: {} rows expected, got {}",
                        e.len(),
                        g.len()
                    ));
                }
                for (i, (ev, gv)) in e.iter().zip(g).enumerate() {
                    same_shape(ev, gv, &format!("{path}[{i}]"), depth + 1)?;
                }
                return Ok(());
            }
            if e.is_empty() != g.is_empty() && depth <= 1 {
                return Err(format!(
                    "{path}: expected {} array, got {} rows",
                    if e.is_empty() {
                        "an empty"
                    } else {
                        "a non-empty"
                    },
                    g.len()
                ));
            }
            match (e.first(), g.first()) {
                (Some(ev), Some(gv)) => same_shape(ev, gv, &format!("{path}[0]"), depth + 1),
                _ => Ok(()),
            }
        }
        (Value::Null, g) | (g, Value::Null) if !g.is_array() && !g.is_object() => Ok(()),
        (e, g) if kind(e) == kind(g) => Ok(()),
        (e, g) => Err(format!(
            "{path}: expected {} ({e}), got {} ({g})",
            kind(e),
            kind(g)
        )),
    }
}

struct Fixture {
    name: String,
    raw: Value,
}

fn load_all() -> Vec<Fixture> {
    let mut out: Vec<Fixture> = std::fs::read_dir(fixture_dir())
        .expect("fixture dir")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| Fixture {
            name: p.file_stem().unwrap().to_string_lossy().into_owned(),
            raw: serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap(),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The request body exactly as recorded, or synthesised where the fixture only describes it.
fn body_of(f: &Fixture) -> Vec<u8> {
    let persons = |first: bool| {
        let mut vars = Vec::new();
        let auth = [
            "login=admin%40salesman.local",
            "apikey=APIKEY",
            "action=add.list",
        ];
        if first {
            vars.extend(auth.iter().map(|s| s.to_string()));
        }
        for i in 0..300 {
            for f in ["person", "ptitle", "mail", "tel", "mob"] {
                vars.push(format!("persons%5B{i}%5D%5B{f}%5D=x{i}"));
            }
        }
        if !first {
            vars.extend(auth.iter().map(|s| s.to_string()));
        }
        vars.join("&").into_bytes()
    };
    match f.name.as_str() {
        "v2-person-add.list-form-over-max_input_vars" => persons(true),
        "v2-person-add.list-form-over-max_input_vars-auth-last" => persons(false),
        // "Кириллица Windows-1251" in cp1251, as the recorded request really was.
        "v3-person-add-cp1251-body" => {
            let mut b = b"{\"person\": \"".to_vec();
            b.extend_from_slice(&[0xCA, 0xE8, 0xF0, 0xE8, 0xEB, 0xEB, 0xE8, 0xF6, 0xE0]);
            b.extend_from_slice(b" Windows-1251\"}");
            b
        }
        _ => match &f.raw["body"] {
            Value::Null => Vec::new(),
            Value::String(s) => s.clone().into_bytes(),
            other => other.to_string().into_bytes(),
        },
    }
}

async fn send(client: &reqwest::Client, base: &str, f: &Fixture) -> (u16, String) {
    let method = reqwest::Method::from_bytes(f.raw["method"].as_str().unwrap_or("POST").as_bytes())
        .unwrap_or(reqwest::Method::POST);
    let path = f.raw["path"].as_str().unwrap_or("/");
    let mut req = client.request(method, format!("{base}{path}"));
    if let Some(h) = f.raw["headers"].as_object() {
        for (k, v) in h {
            req = req.header(k.as_str(), v.as_str().unwrap_or(""));
        }
    }
    let body = body_of(f);
    if !body.is_empty() {
        req = req.body(body);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_recorded_fixture_replays_with_the_same_shape() {
    let all = load_all();
    assert!(all.len() > 100, "fixtures missing: {}", all.len());
    let mut failures = Vec::new();
    let mut replayed = 0;
    for f in &all {
        if SKIPPED.iter().any(|(pat, _)| f.name.contains(pat)) {
            continue;
        }
        let sandbox = start_with(recorded_users(&f.name));
        let base = sandbox.url();
        let client = reqwest::Client::new();
        // client/add-ok creates the client the seed would already hold; malformed-json was
        // recorded against an empty server (`{"count":0}`).
        if !["v3-client-add-ok", "v3-error-malformed-json"].contains(&f.name.as_str()) {
            seed(&client, &base).await;
        }
        if needs_deals(&f.name) {
            seed_invoices(&client, &base).await;
        }
        scene(&client, &base, &f.name).await;
        for pre in preludes(&f.name) {
            let pf = all
                .iter()
                .find(|x| x.name == *pre)
                .expect("prelude fixture");
            send(&client, &base, pf).await;
        }
        let (status, body) = send(&client, &base, f).await;
        replayed += 1;
        let expected_status = f.raw["status"].as_u64().unwrap_or(200) as u16;
        let outcome = if let Some(r) = deviation(&f.name, status, &body) {
            r
        } else if status != expected_status {
            Err(format!(
                "status {status}, expected {expected_status}: {body}"
            ))
        } else if let Some(page) = f.raw["response"]
            .as_str()
            .filter(|r| r.contains("<b>Fatal error</b>"))
        {
            // A PHP fatal page (a string recv, an array kol): the same page, byte for byte.
            if body == page {
                Ok(())
            } else {
                Err(format!("expected the fatal page {page:?}, got {body:?}"))
            }
        } else if f.raw["response_is_json"] == false {
            // Recorded as a non-JSON answer: only the empty body of an unknown method is sane.
            if body == f.raw["response"].as_str().unwrap_or("-") {
                Ok(())
            } else {
                Err(format!(
                    "expected body {:?}, got {body:?}",
                    f.raw["response"]
                ))
            }
        } else {
            match serde_json::from_str::<Value>(&body) {
                Ok(got) => same_shape(&f.raw["response"], &got, "$", 0),
                Err(e) => Err(format!("not JSON ({e}): {body:.300}")),
            }
        };
        if let Err(e) = outcome {
            failures.push(format!("{}: {e}", f.name));
        }
        drop(client);
        sandbox.stop();
    }
    assert!(replayed > 120, "only {replayed} fixtures replayed");
    assert!(
        failures.is_empty(),
        "{} of {replayed} fixtures differ:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
