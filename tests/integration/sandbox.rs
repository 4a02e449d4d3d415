//! The sandbox as a user of it sees it: paging, persistence, concurrent writers, faults, auth and
//! hostile input.

use crate::fixtures::{call, start, APIKEY, LOGIN};
use serde_json::{json, Value};
use smbatch::crm::Entity;
use smbatch::sandbox::{FaultConfig, Sandbox, SandboxConfig};
use std::collections::HashSet;

fn persons(from: usize, n: usize) -> Value {
    let rows: Vec<Value> = (from..from + n)
        .map(|i| json!({"person": format!("Человек {i:05}"), "mail": format!("p{i}@example.com")}))
        .collect();
    json!({ "persons": rows })
}

async fn add_persons(client: &reqwest::Client, base: &str, from: usize, n: usize) -> Vec<i64> {
    let r = call(
        client,
        base,
        "/developer/v3/person/add.list",
        persons(from, n),
    )
    .await;
    r.as_array()
        .expect("array")
        .iter()
        .map(|x| {
            assert_eq!(x["result"], "Контакт добавлен", "{x}");
            x["data"].as_i64().unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_uses_page_numbers_and_loses_nothing() {
    let sb = start();
    let c = reqwest::Client::new();
    for chunk in 0..6 {
        add_persons(&c, &sb.url(), chunk * 200, 200).await;
    }
    add_persons(&c, &sb.url(), 1200, 37).await;
    let mut seen = HashSet::new();
    let mut page = 0;
    loop {
        let r = call(
            &c,
            &sb.url(),
            "/developer/v3/person/list",
            json!({"fields": "pid,person", "order": "pid", "first": "old", "offset": page}),
        )
        .await;
        assert_eq!(r["count"], 1237);
        let Some(data) = r.get("data") else { break };
        let data = data.as_array().unwrap();
        assert!(data.len() <= 200);
        for row in data {
            assert!(seen.insert(row["pid"].as_i64().unwrap()), "duplicate {row}");
        }
        page += 1;
    }
    assert_eq!(page, 7, "7 pages of 200 (last one 37 rows)");
    assert_eq!(seen.len(), 1237);
    assert_eq!(sb.count(Entity::Person), 1237);
}

/// Pages are served from ids cached per query; a write between two pages must show in the next
/// page exactly as `LIMIT/OFFSET` over the changed table would show it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_reflect_writes_made_between_them() {
    let sb = start();
    let c = reqwest::Client::new();
    let ids = add_persons(&c, &sb.url(), 0, 450).await;
    let page = |offset: u64, first: &'static str| {
        let c = c.clone();
        let url = sb.url();
        async move {
            let r = call(
                &c,
                &url,
                "/developer/v3/person/list",
                json!({"fields": "pid", "order": "pid", "first": first, "offset": offset}),
            )
            .await;
            let pids: Vec<i64> = r
                .get("data")
                .map(|d| {
                    d.as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x["pid"].as_i64().unwrap())
                        .collect()
                })
                .unwrap_or_default();
            (r["count"].as_i64().unwrap(), pids)
        }
    };
    assert_eq!(page(0, "old").await, (450, ids[..200].to_vec()));
    assert_eq!(page(1, "old").await, (450, ids[200..400].to_vec()));
    // Newest first: the same ids reversed.
    let mut rev = ids.clone();
    rev.reverse();
    assert_eq!(page(2, "new").await, (450, rev[400..].to_vec()));
    // Delete the first record: every later page shifts by one.
    let r = call(
        &c,
        &sb.url(),
        "/developer/v3/person/delete",
        json!({"pid": ids[0]}),
    )
    .await;
    assert_ne!(r["result"], "Error", "{r}");
    assert_eq!(page(1, "old").await, (449, ids[201..401].to_vec()));
    // A new record lands on the last page.
    let added = add_persons(&c, &sb.url(), 450, 1).await;
    assert_eq!(page(2, "old").await.0, 450);
    assert_eq!(page(2, "old").await.1.last(), added.last());
    assert_eq!(page(3, "old").await, (450, vec![]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sb.sqlite").to_string_lossy().into_owned();
    let cfg = SandboxConfig {
        db: db.clone(),
        login: LOGIN.into(),
        apikey: APIKEY.into(),
        ..SandboxConfig::default()
    };
    let first_ids = {
        let sb = Sandbox::start(cfg.clone()).unwrap();
        let c = reqwest::Client::new();
        let ids = add_persons(&c, &sb.url(), 0, 50).await;
        call(
            &c,
            &sb.url(),
            "/developer/v3/client/add",
            json!({"title": "ООО Restart", "uid": "R-1"}),
        )
        .await;
        drop(c);
        sb.stop();
        ids
    };
    let sb = Sandbox::start(cfg).unwrap();
    assert_eq!(sb.count(Entity::Person), 50);
    assert_eq!(sb.count(Entity::Client), 1);
    let c = reqwest::Client::new();
    let r = call(
        &c,
        &sb.url(),
        "/developer/v3/person/info",
        json!({"pid": first_ids[7]}),
    )
    .await;
    assert_eq!(r["data"]["person"], "Человек 00007");
    // Ids continue after the stored ones, never reused.
    let more = add_persons(&c, &sb.url(), 50, 1).await;
    assert_eq!(more[0], first_ids[49] + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_concurrent_writers_lose_nothing() {
    let sb = start();
    let base = sb.url();
    let mut tasks = Vec::new();
    for w in 0..8 {
        let base = base.clone();
        tasks.push(tokio::spawn(async move {
            let c = reqwest::Client::new();
            let mut ids = Vec::new();
            for b in 0..10 {
                ids.extend(add_persons(&c, &base, w * 10_000 + b * 50, 50).await);
            }
            ids
        }));
    }
    let mut all = HashSet::new();
    for t in tasks {
        for id in t.await.unwrap() {
            assert!(all.insert(id), "id {id} handed out twice");
        }
    }
    assert_eq!(all.len(), 4000);
    assert_eq!(sb.count(Entity::Person), 4000);
}

fn raw_client() -> reqwest::Client {
    // No pooling: a dropped connection must not poison the next request.
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

async fn post_raw(
    c: &reqwest::Client,
    base: &str,
    path: &str,
    body: Value,
) -> reqwest::Result<(u16, String)> {
    let r = c
        .post(format!("{base}{path}"))
        .header("Content-Type", "application/json")
        .header("login", LOGIN)
        .header("apikey", APIKEY)
        .body(body.to_string())
        .send()
        .await?;
    let s = r.status().as_u16();
    Ok((s, r.text().await?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_after_commit_stores_rows_but_gives_no_answer() {
    let sb = start();
    sb.set_faults("drop_after_commit=1,seed=1".parse().unwrap());
    let c = raw_client();
    let r = post_raw(
        &c,
        &sb.url(),
        "/developer/v3/person/add.list",
        persons(0, 10),
    )
    .await;
    assert!(r.is_err(), "client must see a transport error, got {r:?}");
    assert_eq!(
        sb.count(Entity::Person),
        10,
        "rows were committed before the drop"
    );
    sb.set_faults(FaultConfig::default());
    let (s, body) = post_raw(&c, &sb.url(), "/developer/v3/person/list", json!({}))
        .await
        .unwrap();
    assert_eq!(s, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["count"], 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_rate_answers_5xx_and_touches_nothing() {
    let sb = start();
    sb.set_faults("error_rate=1,seed=3".parse().unwrap());
    let c = raw_client();
    let mut statuses = HashSet::new();
    for _ in 0..20 {
        let (s, _) = post_raw(
            &c,
            &sb.url(),
            "/developer/v3/person/add.list",
            persons(0, 5),
        )
        .await
        .unwrap();
        assert!((500..600).contains(&s), "{s}");
        statuses.insert(s);
    }
    assert!(statuses.len() > 1, "a mix of 500/502/503: {statuses:?}");
    assert_eq!(sb.count(Entity::Person), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_fatal_is_200_with_html_and_touches_nothing() {
    let sb = start();
    sb.set_faults("html_fatal=1".parse().unwrap());
    let c = raw_client();
    let (s, body) = post_raw(
        &c,
        &sb.url(),
        "/developer/v3/person/add.list",
        persons(0, 5),
    )
    .await
    .unwrap();
    assert_eq!(s, 200);
    assert!(body.starts_with("<br />\n<b>Fatal error</b>"), "{body}");
    assert!(serde_json::from_str::<Value>(&body).is_err());
    assert_eq!(sb.count(Entity::Person), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_delays_answers_and_partial_rates_mix() {
    let sb = start();
    sb.set_faults("latency_ms=150..200".parse().unwrap());
    let c = raw_client();
    let t = std::time::Instant::now();
    let (s, _) = post_raw(&c, &sb.url(), "/developer/v3/person/fields", json!({}))
        .await
        .unwrap();
    assert_eq!(s, 200);
    assert!(
        t.elapsed() >= std::time::Duration::from_millis(150),
        "{:?}",
        t.elapsed()
    );

    // A realistic mix: some requests fail, the rest answer normally; same seed, same outcome.
    let run = |seed: u64| {
        let url = sb.url();
        let c = c.clone();
        sb.set_faults(
            format!("error_rate=0.3,html_fatal=0.2,seed={seed}")
                .parse()
                .unwrap(),
        );
        async move {
            let mut out = Vec::new();
            for _ in 0..30 {
                let (s, b) = post_raw(&c, &url, "/developer/v3/person/fields", json!({}))
                    .await
                    .unwrap();
                out.push((s, b.starts_with('{')));
            }
            out
        }
    };
    let a = run(42).await;
    let b = run(42).await;
    assert_eq!(a, b, "deterministic with a seed");
    assert!(
        a.iter().any(|x| x.0 >= 500)
            && a.iter().any(|x| x.0 == 200 && x.1)
            && a.iter().any(|x| x.0 == 200 && !x.1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_key_or_login_is_401_envelope() {
    let sb = start();
    let c = reqwest::Client::new();
    for (login, key) in [(LOGIN, "wrong"), ("nobody@example.com", APIKEY)] {
        let r: Value = c
            .post(format!("{}/developer/v3/person/add.list", sb.url()))
            .header("Content-Type", "application/json")
            .header("login", login)
            .header("apikey", key)
            .body(persons(0, 3).to_string())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            r,
            json!({"result": "Error", "error": {"code": 401, "text": "Неизвестный пользователь"}})
        );
    }
    assert_eq!(sb.count(Entity::Person), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_body_gets_json_error() {
    let sb = start();
    let c = reqwest::Client::new();
    let big = "x".repeat(2600);
    let rows: Vec<Value> = (0..3300)
        .map(|i| json!({"person": format!("P{i}"), "ptitle": big}))
        .collect();
    let body = json!({ "persons": rows }).to_string();
    assert!(body.len() > 8 * 1024 * 1024);
    let r = c
        .post(format!("{}/developer/v3/person/add.list", sb.url()))
        .header("Content-Type", "application/json")
        .header("login", LOGIN)
        .header("apikey", APIKEY)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["result"], "Error");
    assert_eq!(sb.count(Entity::Person), 0);
    // Still serving afterwards.
    let r = call(&c, &sb.url(), "/developer/v3/person/list", json!({})).await;
    assert_eq!(r, json!({"count": 0}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_never_breaks_the_server() {
    let sb = start();
    let c = reqwest::Client::new();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("/developer/v3/person/add.list", b"{\"persons\": [1, \"x\", null, [], {\"person\": {}}]}".to_vec()),
        ("/developer/v3/person/add.list", b"{\"persons\": {\"a\": 5}}".to_vec()),
        ("/developer/v3/history/add.list", b"{\"list\": [{\"content\": 5, \"clid\": \"abc\", \"datum\": []}]}".to_vec()),
        ("/developer/v3/client/list", b"{\"order\": \"title; DROP TABLE client\"}".to_vec()),
        ("/developer/v3/person/list", b"{\"order\": \"pid; DROP TABLE person\", \"offset\": -5, \"filter\": {\"pid\": \"1 OR 1=1\"}}".to_vec()),
        ("/developer/v3/person/add", vec![0xff, 0xfe, 0x00, 0x7b]),
        ("/developer/v3/person/info", b"[1,2,3]".to_vec()),
        ("/developer/v3/deal/add", b"{\"clid\": 99999999999999999999999}".to_vec()),
    ];
    for (path, body) in cases {
        let r = c
            .post(format!("{}{path}", sb.url()))
            .header("Content-Type", "application/json")
            .header("login", LOGIN)
            .header("apikey", APIKEY)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        let text = r.text().await.unwrap();
        assert!(
            serde_json::from_str::<Value>(&text).is_ok(),
            "{path}: {text}"
        );
    }
    let r = call(
        &c,
        &sb.url(),
        "/developer/v3/person/add.list",
        persons(0, 2),
    )
    .await;
    assert_eq!(r.as_array().unwrap().len(), 2);
    assert_eq!(sb.count(Entity::Person), 2, "junk rows store nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_lookup_by_uid_and_duplicate_rules() {
    let sb = start();
    let c = reqwest::Client::new();
    let base = sb.url();
    let r = call(
        &c,
        &base,
        "/developer/v3/client/add",
        json!({"title": "ООО «Ромашка»", "uid": "EXT-1", "phone": "+7 1"}),
    )
    .await;
    assert_eq!(r["data"], 1);
    let r = call(
        &c,
        &base,
        "/developer/v3/client/add",
        json!({"title": "ООО Ромашка", "phone": "+7 1"}),
    )
    .await;
    assert_eq!(r["exists"], 1);
    assert_eq!(r["error"]["code"], 304);
    let r = call(
        &c,
        &base,
        "/developer/v3/client/list",
        json!({"order": "clid", "uid": "EXT-1"}),
    )
    .await;
    assert_eq!(r["count"], 1);
    assert_eq!(r["data"][0]["title"], "Ромашка, ООО");
    let r = call(&c, &base, "/developer/v3/client/list", json!({})).await;
    assert_eq!(
        r["result"], "Error",
        "no order: JSON error instead of the real HTML fatal"
    );
}

#[test]
fn start_reports_bind_and_db_errors() {
    let a = Sandbox::start(SandboxConfig::default()).unwrap();
    let e = Sandbox::start_on(SandboxConfig::default(), a.addr()).unwrap_err();
    assert!(e.to_string().contains("cannot listen"), "{e}");
    let e = Sandbox::start(SandboxConfig {
        db: "/nonexistent-dir/x/y.sqlite".into(),
        ..SandboxConfig::default()
    })
    .unwrap_err();
    assert!(
        e.to_string().contains("cannot open sandbox database"),
        "{e}"
    );
    let conn = a.connection();
    assert_eq!(conn.url, a.url());
    assert!(!conn.url.ends_with('/'));
    a.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_string_recv_kills_the_whole_client_batch_and_an_object_is_kept() {
    let sb = start();
    let c = raw_client();
    // One string recv among good rows: the PHP TypeError page, and not one row stored.
    let batch = json!({"client": [
        {"title": "ООО Без реквизитов"},
        {"title": "ООО Строкой", "recv": "ИНН 5904338272"},
        {"title": "ООО После"}
    ]});
    let (s, body) = post_raw(&c, &sb.url(), "/developer/v3/client/add.list", batch)
        .await
        .unwrap();
    assert_eq!(s, 200);
    assert!(
        body.contains("Uncaught TypeError: Cannot access offset of type string on string"),
        "{body}"
    );
    assert_eq!(sb.count(Entity::Client), 0, "the whole batch is lost");
    // The object form is stored and comes back under bankinfo.
    let r = call(
        &c,
        &sb.url(),
        "/developer/v3/client/add",
        json!({"title": "ООО Объектом", "recv": {"castInn": "5904338272", "castKpp": "590401001"}}),
    )
    .await;
    let clid = r["data"].as_i64().expect("created");
    let info = call(
        &c,
        &sb.url(),
        "/developer/v3/client/info",
        json!({"clid": clid, "bankinfo": true}),
    )
    .await;
    assert_eq!(info["data"]["bankinfo"]["castInn"], "5904338272", "{info}");
    assert_eq!(info["data"]["bankinfo"]["castKpp"], "590401001", "{info}");
}

/// Deal numbers of the titles ("СД12: ...") of every deal in the sandbox.
pub async fn deal_numbers(c: &reqwest::Client, base: &str) -> Vec<String> {
    let mut out = Vec::new();
    for page in 0.. {
        let r = call(
            c,
            base,
            "/developer/v3/deal/list",
            json!({"active": "yes", "offset": page, "order": "did", "first": "old"}),
        )
        .await;
        let rows = r["data"].as_array().cloned().unwrap_or_default();
        if rows.is_empty() {
            break;
        }
        for d in rows {
            let title = d["title"].as_str().unwrap_or("").to_string();
            out.push(title.split(':').next().unwrap_or("").to_string());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deal_adds_share_numbers_like_the_real_counter() {
    let sb = start();
    let c = raw_client();
    let r = call(
        &c,
        &sb.url(),
        "/developer/v3/client/add",
        json!({"title": "ООО Сделки"}),
    )
    .await;
    let clid = r["data"].as_i64().unwrap();
    // 40 adds, 8 at a time, by a plain client.
    let mut tasks = tokio::task::JoinSet::new();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(8));
    for i in 0..40 {
        let (c, base, sem) = (c.clone(), sb.url(), sem.clone());
        tasks.spawn(async move {
            let _p = sem.acquire_owned().await.unwrap();
            call(
                &c,
                &base,
                "/developer/v3/deal/add",
                json!({"title": format!("Сделка {i}"), "clid": clid}),
            )
            .await
        });
    }
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap()["result"], "Успешно");
    }
    let numbers = deal_numbers(&c, &sb.url()).await;
    assert_eq!(numbers.len(), 40);
    let distinct: HashSet<&String> = numbers.iter().collect();
    assert!(
        distinct.len() < 40,
        "concurrent adds all got distinct numbers: {numbers:?}"
    );
}
