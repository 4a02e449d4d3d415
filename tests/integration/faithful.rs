//! What the real server does and the sandbox now copies (issue 15): requisites (`recv`) must be
//! an object, a record the server always dies on is found and failed (not retried forever and
//! not called a lost answer), and deal numbers stay unique whatever the concurrency.

use crate::common::{root, say};
use crate::fixtures::{call, start};
use crate::import::{import, p};
use serde_json::json;
use smbatch::crm::Entity;
use std::collections::HashSet;
use std::path::Path;

fn csv_report(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_migration_creates_clients_with_requisites_as_objects() {
    let sb = start();
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.xlsx");
    let out = import(
        &sb,
        &[
            p(&root().join("samples/migration-cp1251.csv")),
            "--template",
            p(&root().join("templates/migration-flat.toml")),
            "--report",
            p(&report),
            "--quiet",
        ],
    );
    // Exit 1: the sample has invalid rows on purpose; every valid record arrives.
    assert_eq!(out.status.code(), Some(1), "{}", say(&out));
    assert_eq!(
        (
            sb.count(Entity::Client),
            sb.count(Entity::Person),
            sb.count(Entity::History)
        ),
        (6, 27, 18),
        "{}",
        say(&out)
    );
    let c = reqwest::Client::new();
    let base = sb.url();
    let list = call(
        &c,
        &base,
        "/developer/v3/client/list",
        json!({"order": "clid"}),
    )
    .await;
    let clients = list["data"].as_array().unwrap().clone();
    assert_eq!(clients.len(), 6, "{list}");
    for cl in &clients {
        let info = call(
            &c,
            &base,
            "/developer/v3/client/info",
            json!({"clid": cl["clid"], "bankinfo": true}),
        )
        .await;
        let bank = &info["data"]["bankinfo"];
        let inn = bank["castInn"].as_str().unwrap_or("");
        assert!(
            inn.len() >= 10 && inn.chars().all(|ch| ch.is_ascii_digit()),
            "{info}"
        );
        assert_eq!(Some(inn), cl["uid"].as_str(), "{info}");
        assert!(
            !bank["castUrName"].as_str().unwrap_or("").is_empty(),
            "{info}"
        );
    }
    // Persons are linked to their clients.
    let persons = call(
        &c,
        &base,
        "/developer/v3/person/list",
        json!({"order": "pid"}),
    )
    .await;
    let rows = persons["data"].as_array().unwrap();
    assert_eq!(rows.len(), 27);
    let clids: HashSet<i64> = clients.iter().filter_map(|c| c["clid"].as_i64()).collect();
    assert!(
        rows.iter()
            .all(|r| r["clid"].as_i64().is_some_and(|id| clids.contains(&id))),
        "{persons}"
    );
}

#[test]
fn a_template_with_a_plain_recv_is_refused_before_anything_is_sent() {
    let sb = start();
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("flat.toml");
    std::fs::write(
        &template,
        "[[entity]]\ntype = \"client\"\nkey = \"{ИНН}\"\n[entity.fields]\ntitle = { column = \"Компания\", required = true }\nuid   = \"ИНН\"\nrecv  = { value = \"ИНН {ИНН}\" }\n",
    )
    .unwrap();
    let input = dir.path().join("c.csv");
    std::fs::write(&input, "Компания;ИНН\nООО Ромашка;5904338272\n").unwrap();
    let out = import(
        &sb,
        &[
            p(&input),
            "--template",
            p(&template),
            "--report",
            p(&dir.path().join("r.xlsx")),
            "--quiet",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", say(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("flat.toml:7: client field 'recv' is an object on the server (requisites); write recv.castInn = ..., recv.castKpp = ..."),
        "{err}"
    );
    assert_eq!(sb.count(Entity::Client), 0);
    // validate says the same without a server.
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("smbatch"))
        .env("SMBATCH_DATA_DIR", crate::common::data_dir())
        .args(["validate", p(&input), "--template", p(&template)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", say(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("flat.toml:7: client field 'recv'"),
        "{}",
        say(&out)
    );
}

#[test]
fn a_record_the_server_always_dies_on_fails_alone_and_the_rest_arrive_once() {
    let sb = start();
    // The server dies (PHP TypeError page) on any request carrying this title.
    sb.set_fatal_on(Some("ООО Ядовитое"));
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("Компания;ИНН\n");
    for i in 0..30 {
        if i == 17 {
            csv.push_str("ООО Ядовитое;5904000170\n");
        } else {
            csv.push_str(&format!("ООО Компания {i:02};59040{i:05}\n"));
        }
    }
    let input = dir.path().join("c.csv");
    std::fs::write(&input, csv).unwrap();
    let template = dir.path().join("c.toml");
    std::fs::write(
        &template,
        "[[entity]]\ntype = \"client\"\nkey = \"{ИНН}\"\n[entity.fields]\ntitle = { column = \"Компания\", required = true }\nuid = \"ИНН\"\n\"recv.castInn\" = \"ИНН\"\n",
    )
    .unwrap();
    let report = dir.path().join("r.csv");
    let out = import(
        &sb,
        &[
            p(&input),
            "--template",
            p(&template),
            "--csv-report",
            p(&report),
            "--report",
            p(&dir.path().join("r.xlsx")),
            "--chunk",
            "100",
            "--concurrency",
            "1",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", say(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains("run the same command again"),
        "a re-run cannot help a record the server dies on: {}",
        say(&out)
    );
    // 29 created exactly once, the poisonous one not at all.
    assert_eq!(sb.count(Entity::Client), 29, "{}", say(&out));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let list = rt.block_on(call(
        &reqwest::Client::new(),
        &sb.url(),
        "/developer/v3/client/list",
        json!({"order": "clid"}),
    ));
    let titles: HashSet<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["title"].as_str())
        .collect();
    assert_eq!(titles.len(), 29, "{list}");
    assert!(!titles.contains("Ядовитое, ООО"));
    let lines = csv_report(&report);
    let bad: Vec<&String> = lines.iter().filter(|l| l.contains(";failed;")).collect();
    assert_eq!(bad.len(), 1, "{lines:#?}");
    assert!(
        bad[0].contains("5904000170")
            && bad[0].contains("Uncaught TypeError")
            && !bad[0].contains("<b>")
            && !bad[0].contains("crm-root"),
        "{}",
        bad[0]
    );
    assert_eq!(lines.iter().filter(|l| l.contains(";created;")).count(), 29);
}

#[test]
fn deals_imported_concurrently_keep_distinct_numbers() {
    let sb = start();
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("Номер;Сделка;Компания;ИНН;Дата план;Сумма;Этап\n");
    for i in 0..40 {
        csv.push_str(&format!(
            "D-{i:03};Поставка {i};ООО Ромашка;5904338272;31.12.2027;{};20\n",
            1000 + i
        ));
    }
    let input = dir.path().join("d.csv");
    std::fs::write(&input, csv).unwrap();
    let out = import(
        &sb,
        &[
            p(&input),
            "--template",
            p(&root().join("templates/deal.toml")),
            "--report",
            p(&dir.path().join("r.xlsx")),
            "--concurrency",
            "8",
            "--quiet",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let numbers = rt.block_on(crate::sandbox::deal_numbers(
        &reqwest::Client::new(),
        &sb.url(),
    ));
    assert_eq!(numbers.len(), 40);
    let distinct: HashSet<&String> = numbers.iter().collect();
    assert_eq!(distinct.len(), 40, "duplicate deal numbers: {numbers:?}");
}
