//! `smbatch reconcile` against the in-process sandbox: import the sample, then damage the CRM
//! through the API (delete, edit, duplicate); reconcile must list exactly that, and `--fix` must
//! restore the missing records only.

use crate::common::{against, root, say};
use calamine::{open_workbook, Data, Reader, Xlsx};
use serde_json::{json, Map, Value};
use smbatch::crm::{CrmClient, Entity, RetryPolicy};
use smbatch::sandbox::{Sandbox, SandboxConfig};
use std::path::Path;
use std::process::Output;

fn smbatch(sb: &Sandbox, sub: &str, args: &[&str]) -> Output {
    let sample = root().join("samples/migration-cp1251.csv");
    let template = root().join("templates/migration-flat.toml");
    let (sample, template) = (sample.to_str().unwrap(), template.to_str().unwrap());
    against(sb, &[&[sub, sample, "--template", template], args].concat())
        .output()
        .unwrap()
}

fn summary(o: &Output) -> Value {
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON summary\n{}", say(o)));
    serde_json::from_str(line).unwrap()
}

fn all_rows(
    client: &CrmClient,
    rt: &tokio::runtime::Runtime,
    entity: Entity,
) -> Vec<Map<String, Value>> {
    let mut params = Map::new();
    params.insert("order".into(), json!(entity.id_field()));
    params.insert("first".into(), json!("old"));
    if entity == Entity::History {
        params.insert("dateStart".into(), json!("2000-01-01"));
        params.insert("dateEnd".into(), json!("2037-12-31"));
    }
    let mut rows = Vec::new();
    for page in 0.. {
        let p = rt
            .block_on(client.list_page(entity, &params, page, &RetryPolicy::immediate(1)))
            .unwrap();
        if p.rows.is_empty() {
            break;
        }
        rows.extend(p.rows);
    }
    rows
}

fn find<'a>(rows: &'a [Map<String, Value>], field: &str, value: &str) -> &'a Map<String, Value> {
    rows.iter()
        .find(|r| r.get(field).and_then(Value::as_str) == Some(value))
        .unwrap_or_else(|| panic!("no row with {field} = {value}"))
}

fn sheet(path: &Path, name: &str) -> Vec<Vec<String>> {
    let mut wb: Xlsx<_> = open_workbook(path).unwrap();
    let range = wb.worksheet_range(name).unwrap();
    range
        .rows()
        .map(|r| {
            r.iter()
                .map(|c| match c {
                    Data::String(s) => s.clone(),
                    Data::Float(f) => f.to_string(),
                    Data::Int(i) => i.to_string(),
                    Data::Empty => String::new(),
                    other => other.to_string(),
                })
                .collect()
        })
        .collect()
}

#[test]
fn reconcile_lists_exactly_the_damage_and_fix_restores_only_the_missing() {
    let sb = Sandbox::start(SandboxConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n).to_str().unwrap().to_string();

    let imported = smbatch(&sb, "import", &["--report", &d("import.xlsx"), "-q"]);
    assert_eq!(imported.status.code(), Some(1), "{}", say(&imported));

    // Straight after the import everything matches.
    let clean = smbatch(&sb, "reconcile", &["-o", &d("clean.xlsx"), "--json", "-q"]);
    assert_eq!(clean.status.code(), Some(0), "{}", say(&clean));
    assert_eq!(summary(&clean)["entities"]["person"]["matched"], 27);

    // Damage: delete one person and one activity, edit a position, duplicate a person.
    let client = CrmClient::new(&sb.connection()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let persons = all_rows(&client, &rt, Entity::Person);
    let deleted = find(&persons, "mail", "user1@example.ru").clone();
    let edited = find(&persons, "mail", "user2@example.ru").clone();
    let doubled = find(&persons, "mail", "user3@example.ru").clone();
    rt.block_on(client.delete(Entity::Person, deleted["pid"].as_i64().unwrap()))
        .unwrap();
    let mut update = edited.clone();
    update.insert("ptitle".into(), json!("Уволен"));
    update.insert("iduser".into(), json!(1));
    rt.block_on(client.call(Entity::Person, "update", &Value::Object(update)))
        .unwrap();
    let mut copy = Map::new();
    for f in ["person", "ptitle", "tel", "mail", "clid"] {
        copy.insert(f.into(), doubled[f].clone());
    }
    let added = rt
        .block_on(client.add_list(Entity::Person, &[copy]))
        .unwrap();
    let dup_pid = match added[0] {
        smbatch::crm::ItemOutcome::Created(id) => id,
        ref other => panic!("{other:?}"),
    };
    let history = all_rows(&client, &rt, Entity::History);
    let gone = history
        .iter()
        .find(|h| {
            h["content"]
                .as_str()
                .is_some_and(|c| c.contains("поставку №0"))
        })
        .unwrap();
    let mut del = Map::new();
    del.insert("cid".into(), gone["cid"].clone());
    rt.block_on(client.call(Entity::History, "delete", &Value::Object(del)))
        .unwrap();

    let report = d("reconcile.xlsx");
    let out = smbatch(&sb, "reconcile", &["-o", &report, "--json", "-q"]);
    assert_eq!(out.status.code(), Some(1), "{}", say(&out));
    let s = summary(&out);
    let p = &s["entities"]["person"];
    assert_eq!(
        (
            &p["missing"],
            &p["different"],
            &p["duplicated"],
            &p["only_in_crm"]
        ),
        (&json!(1), &json!(1), &json!(1), &json!(0)),
        "{s}"
    );
    // Deleting a person keeps its activity (it is also linked to the client) with the pid
    // cleared, as the real server does: only the deleted activity is missing.
    let h = &s["entities"]["history"];
    assert_eq!(
        (&h["missing"], &h["different"], &h["only_in_crm"]),
        (&json!(1), &json!(0), &json!(0)),
        "{s}"
    );
    let unlinked = all_rows(&client, &rt, Entity::History);
    let kept = unlinked
        .iter()
        .find(|h| {
            h["content"]
                .as_str()
                .is_some_and(|c| c.contains("поставку №1;"))
        })
        .expect("the deleted person's activity stays");
    assert!(kept.get("person").is_none(), "{kept:?}");
    assert_eq!(kept["clid"], deleted["clid"]);
    assert_eq!(s["entities"]["client"]["missing"], 0);

    let missing = sheet(Path::new(&report), "Missing");
    assert_eq!(missing.len(), 3, "{missing:?}");
    assert!(
        missing
            .iter()
            .any(|r| r[0] == "person" && r[1] == "EXT-1001"),
        "{missing:?}"
    );
    assert!(missing.iter().any(|r| r[0] == "history"), "{missing:?}");
    let different = sheet(Path::new(&report), "Different");
    assert_eq!(different.len(), 2, "{different:?}");
    assert_eq!(different[1][1], "EXT-1002");
    assert_eq!(
        &different[1][4..7],
        &["ptitle", "Менеджер по закупкам", "Уволен"]
    );
    let dups = sheet(Path::new(&report), "Duplicates");
    assert_eq!(dups.len(), 2, "{dups:?}");
    assert_eq!(dups[1][1], "EXT-1003");
    assert!(dups[1][4].contains(&dup_pid.to_string()));

    // --fix sends the three missing records and nothing else.
    let before = sb.count(Entity::Person);
    let history_before = sb.count(Entity::History);
    let fixed = smbatch(
        &sb,
        "reconcile",
        &["-o", &d("fixed.xlsx"), "--json", "-q", "--fix"],
    );
    assert_eq!(fixed.status.code(), Some(1), "{}", say(&fixed));
    let s = summary(&fixed);
    assert_eq!(s["entities"]["person"]["missing"], 0, "{s}");
    assert_eq!(s["entities"]["history"]["missing"], 0, "{s}");
    // The edit and the duplicate are reported, not "fixed" behind the user's back.
    assert_eq!(s["entities"]["person"]["different"], 1, "{s}");
    assert_eq!(s["entities"]["person"]["duplicated"], 1, "{s}");
    // The re-created person has a new pid; its old activity is still unlinked, and says so
    // instead of counting as matched.
    assert_eq!(s["entities"]["history"]["different"], 1, "{s}");
    // The fix says what it sent this time — not the journal's totals: one person and one
    // activity created, everything else already there from before.
    assert_eq!(s["fix"]["person"]["created"], 1, "{s}");
    assert_eq!(s["fix"]["history"]["created"], 1, "{s}");
    assert_eq!(s["fix"]["person"]["failed"], 0, "{s}");
    assert!(s["fix"]["person"]["earlier"].as_u64().unwrap() > 0, "{s}");
    assert!(
        String::from_utf8_lossy(&fixed.stdout).lines().count() == 1,
        "--json prints one JSON line and nothing else: {}",
        say(&fixed)
    );
    assert_eq!(sb.count(Entity::Person), before + 1);
    assert_eq!(sb.count(Entity::History), history_before + 1);
    let restored_pid = all_rows(&client, &rt, Entity::Person)
        .iter()
        .find(|r| r["mail"] == "user1@example.ru")
        .and_then(|r| r["pid"].as_i64())
        .unwrap();
    let different = sheet(&dir.path().join("fixed.xlsx"), "Different");
    let pid_row = different
        .iter()
        .find(|r| r[0] == "history" && r[4] == "pid")
        .unwrap_or_else(|| panic!("{different:?}"));
    assert!(pid_row[1].starts_with("EXT-1001/"), "{pid_row:?}");
    assert_eq!(pid_row[5], format!("{restored_pid} (person EXT-1001)"));
    assert_eq!(pid_row[6], "");
    let restored = all_rows(&client, &rt, Entity::Person);
    assert_eq!(
        restored
            .iter()
            .filter(|r| r["mail"] == "user1@example.ru")
            .count(),
        1
    );

    // A second --fix finds nothing to send.
    let again = smbatch(
        &sb,
        "reconcile",
        &["-o", &d("again.xlsx"), "--json", "-q", "--fix"],
    );
    assert_eq!(sb.count(Entity::Person), before + 1, "{}", say(&again));
}

#[test]
fn a_created_record_hidden_from_list_is_invisible_and_never_resent() {
    let sb = Sandbox::start(SandboxConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let journal = d("import.journal.sqlite");
    let imported = smbatch(
        &sb,
        "import",
        &["--journal", &journal, "--report", &d("import.xlsx"), "-q"],
    );
    assert_eq!(imported.status.code(), Some(1), "{}", say(&imported));

    // The owner of one imported person becomes 0 (as an unknown `user` login or a person/update
    // without iduser leaves it on the real server): list no longer shows it, info still does.
    let client = CrmClient::new(&sb.connection()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let persons = all_rows(&client, &rt, Entity::Person);
    let hidden = find(&persons, "mail", "user5@example.ru").clone();
    let mut update = hidden.clone();
    update.insert("iduser".into(), json!(0));
    rt.block_on(client.call(Entity::Person, "update", &Value::Object(update)))
        .unwrap();
    assert_eq!(
        all_rows(&client, &rt, Entity::Person).len(),
        persons.len() - 1
    );
    let pid = hidden["pid"].as_i64().unwrap();

    let persons_before = sb.count(Entity::Person);
    let history_before = sb.count(Entity::History);
    for round in ["fix1", "fix2"] {
        let report = d(&format!("{round}.xlsx"));
        let out = smbatch(
            &sb,
            "reconcile",
            &[
                "--journal",
                &journal,
                "--fix",
                "-o",
                &report,
                "--json",
                "-q",
            ],
        );
        assert_eq!(out.status.code(), Some(1), "{}", say(&out));
        let s = summary(&out);
        let p = &s["entities"]["person"];
        assert_eq!(
            (&p["missing"], &p["invisible"]),
            (&json!(0), &json!(1)),
            "{s}"
        );
        assert_eq!(s["clean"], false, "{s}");
        // Nothing was sent: the person is not created again, round after round.
        assert_eq!(sb.count(Entity::Person), persons_before, "{round}: {s}");
        assert_eq!(sb.count(Entity::History), history_before, "{round}: {s}");
        let invisible = sheet(Path::new(&report), "Invisible");
        assert_eq!(invisible.len(), 2, "{invisible:?}");
        assert_eq!(invisible[1][0], "person");
        assert_eq!(invisible[1][1], "EXT-1005");
        assert_eq!(invisible[1][3], pid.to_string());
        assert_eq!(invisible[1][4], "none (owner 0)");
    }
    // Without the journal nothing proves the record was created: it is missing, as before.
    let out = smbatch(&sb, "reconcile", &["-o", &d("plain.xlsx"), "--json", "-q"]);
    let s = summary(&out);
    assert_eq!(s["entities"]["person"]["missing"], 1, "{s}");
    assert_eq!(s["entities"]["person"]["invisible"], 0, "{s}");
}
