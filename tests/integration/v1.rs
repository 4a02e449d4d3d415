//! Older servers (issue 14): against a sandbox without the v3 invoice actions
//! (`--no-v3-invoices`), invoices, payments, a deal's step and its close go through the v1
//! contract actions, chosen automatically; nothing is paid twice; the API key, which v1 carries
//! in the URL, shows nowhere.

use crate::common::{root, say, Case};
use crate::payments::payments;
use calamine::{open_workbook, Reader, Xlsx};
use serde_json::{json, Value};
use smbatch::crm::{CrmClient, Entity};
use smbatch::sandbox::SandboxConfig;
use std::path::Path;
use std::process::Output;

const KEY: &str = "v1-secret-KEY-7f3a";

const DEALS: &str = r#"
name = "Deals"
[source]
delimiter = ";"
[[entity]]
type = "deal"
key = "{Сделка}"
[entity.fields]
title        = { column = "Название" }
step         = { column = "Этап" }
status_close = { column = "Итог" }
kol_fact     = { column = "Факт" }
"#;

const INVOICES: &str = "\
Сделка;Номер счета;Сумма;Оплатить до;Договор
D-1;СЧ-101;60 000,00;30.11.2026;Д-1/2026
D-2;СЧ-201;50000.00;30.11.2026;
";

/// Part of СЧ-101, СЧ-201 in full, and an invoice the CRM does not have.
const BANK: &str = "\
Номер счета;Дата оплаты;Сумма
СЧ-101;05.11.2026;20 000,00
СЧ-201;07.11.2026;50000.00
СЧ-999;08.11.2026;100,00
";

/// An older CRM with deals D-1 (100 000) and D-2 (50 000), both with a specification.
fn old_crm() -> Case {
    let c = Case::new(
        SandboxConfig {
            apikey: KEY.into(),
            no_v3_invoices: true,
            ..SandboxConfig::default()
        },
        DEALS,
    );
    let clid = c.call(
        Entity::Client,
        "add",
        json!({"title": "ООО «Альфа»", "type": "client"}),
    )["data"]
        .as_i64()
        .unwrap();
    for (uid, sum) in [("D-1", 100_000), ("D-2", 50_000)] {
        let r = c.call(
            Entity::Deal,
            "add",
            json!({"title": format!("Поставка {uid}"), "clid": clid, "uid": uid, "step": 20,
                   "speka": [{"title": "Трубы", "price": sum, "kol": 1, "nds": 20}]}),
        );
        assert!(r["data"].as_i64().is_some(), "{r}");
    }
    c
}

/// A v1 contract call straight to the sandbox.
fn v1(c: &Case, action: &str, params: &[(&str, String)]) -> Value {
    let client = CrmClient::new(&c.sb.connection()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(client.call_v1("contract", action, params))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn did(c: &Case, uid: &str) -> i64 {
    let d = c.call(Entity::Deal, "info", json!({ "uid": uid }));
    d["data"]["did"].as_i64().unwrap_or_else(|| panic!("{d}"))
}

/// The invoice rows of a deal as the CRM holds them: (number, amount, paid, paid day).
fn invoices(c: &Case, uid: &str) -> Vec<(String, String, String, String)> {
    let info = v1(c, "info", &[("did", did(c, uid).to_string())]);
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    info["data"]["invoice"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|i| {
            (
                s(&i["invoice"]),
                s(&i["summa"]),
                s(&i["do"]),
                s(&i["date_do"]),
            )
        })
        .collect()
}

/// Every cell of every sheet of a report, as one text.
fn report_text(path: &Path) -> String {
    let mut wb: Xlsx<_> = open_workbook(path).unwrap();
    let mut out = String::new();
    for name in wb.sheet_names() {
        let range = wb.worksheet_range(&name).unwrap();
        for row in range.rows() {
            for cell in row {
                out.push_str(&cell.to_string());
                out.push('\t');
            }
            out.push('\n');
        }
    }
    out
}

/// Neither the report, the journal nor the console of `run` holds the key.
fn key_shown_nowhere(c: &Case, run: &str, out: &Output) {
    let report = report_text(&c.path(&format!("{run}.xlsx")));
    assert!(!report.contains(KEY), "the key is in the report:\n{report}");
    let journal = std::fs::read(c.path(&format!("{run}.journal.sqlite"))).unwrap();
    assert!(
        !journal.windows(KEY.len()).any(|w| w == KEY.as_bytes()),
        "the key is in the journal"
    );
    assert!(
        !say(out).contains(KEY),
        "the key is on the console:\n{}",
        say(out)
    );
}

#[test]
fn an_older_server_gets_invoices_payments_steps_and_closes_through_v1() {
    let c = old_crm();
    // The server has no v3 invoices: the import finds out by itself.
    let (out, v) = c.import_rows_with(
        INVOICES,
        &root().join("templates/invoices.toml"),
        "invoices",
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    assert_eq!(v["entities"]["invoice"]["created"], 2, "{v}");
    let unpaid = |n: &str, s: &str| {
        (
            n.to_string(),
            s.to_string(),
            "no".to_string(),
            String::new(),
        )
    };
    assert_eq!(invoices(&c, "D-1"), [unpaid("СЧ-101", "60000.00")]);
    assert_eq!(invoices(&c, "D-2"), [unpaid("СЧ-201", "50000.00")]);

    // A partial and a full payment, with their days (v1 records them), and an unknown invoice.
    let bank = root().join("templates/payments.toml");
    let (out, v) = c.import_rows_with(BANK, &bank, "bank", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", say(&out));
    assert_eq!(payments(&v), (2, 0, 1), "{v}");
    let paid = |n: &str, s: &str, d: &str| {
        (
            n.to_string(),
            s.to_string(),
            "on".to_string(),
            d.to_string(),
        )
    };
    assert_eq!(
        invoices(&c, "D-1"),
        [
            paid("СЧ-101", "20000.00", "2026-11-05"),
            unpaid("СЧ-101", "40000.00")
        ]
    );
    assert_eq!(
        invoices(&c, "D-2"),
        [paid("СЧ-201", "50000.00", "2026-11-07")]
    );
    key_shown_nowhere(&c, "bank", &out);

    // The same bank file again, with a journal of its own: each invoice is read first and
    // nothing is paid twice.
    let (out, v) = c.import_rows_with(BANK, &bank, "bank-again", &[]);
    assert_eq!(payments(&v), (0, 2, 1), "{v} {}", say(&out));
    assert_eq!(invoices(&c, "D-1").len(), 2);
    assert_eq!(
        invoices(&c, "D-2"),
        [paid("СЧ-201", "50000.00", "2026-11-07")]
    );

    // D-1 to step 60, D-2 closed: v3 deal/change.step and deal/close are not there.
    let deals = c.write(
        "deals.csv",
        "Сделка;Название;Этап;Итог;Факт\nD-1;Поставка D-1;60;;\nD-2;Поставка D-2;;Победа полная;48000\n",
    );
    let (out, v) = c.import(&deals, "deals", &["--mode", "update"]);
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    assert_eq!(v["entities"]["deal"]["updated"], 2, "{v}");
    let d1 = v1(&c, "info", &[("did", did(&c, "D-1").to_string())]);
    assert_eq!(d1["data"]["step"], "60", "{d1}");
    let d2 = v1(&c, "info", &[("did", did(&c, "D-2").to_string())]);
    assert_eq!(
        (
            &d2["data"]["close"],
            &d2["data"]["status_close"],
            &d2["data"]["kol_fact"]
        ),
        (&json!("yes"), &json!("Победа полная"), &json!("48000.00")),
        "{d2}"
    );
}

#[test]
fn a_v1_error_shows_the_url_without_the_key() {
    let c = old_crm();
    let (out, _) = c.import_rows_with(
        INVOICES,
        &root().join("templates/invoices.toml"),
        "invoices",
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    // Every v1 answer is lost from now on: the payment's read of its invoice fails.
    c.sb.lose_answers_of("/v1/contract", 10_000);
    let (out, _) = c.import_rows_with(
        "Номер счета;Дата оплаты;Сумма\nСЧ-101;05.11.2026;20 000,00\n",
        &root().join("templates/payments.toml"),
        "lost",
        &["--retry-for", "1"],
    );
    assert_ne!(out.status.code(), Some(0), "{}", say(&out));
    let shown = format!("{}{}", say(&out), report_text(&c.path("lost.xlsx")));
    assert!(
        shown.contains("/developer/v1/contract?login=") && shown.contains("apikey=***"),
        "the failing v1 call is named, its key replaced:\n{shown}"
    );
    key_shown_nowhere(&c, "lost", &out);
    assert_eq!(
        invoices_unpaid_after_loss(&c),
        1,
        "nothing was paid while the answers were lost"
    );
}

/// The unpaid rows of D-1 once the sandbox answers again.
fn invoices_unpaid_after_loss(c: &Case) -> usize {
    c.sb.lose_answers_of("/v1/contract", 0);
    invoices(c, "D-1")
        .iter()
        .filter(|(_, _, paid, _)| paid == "no")
        .count()
}
