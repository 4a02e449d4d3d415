//! `smbatch export invoice` for the books: invoices with their deal and client, paid filters,
//! the Totals sheet, Russian CSV, and a nightly `--state` run around a payment.

use crate::export::{api, col, csv_column, export_json, sheet, smbatch, text};
use crate::fixtures::start;
use calamine::Data;
use serde_json::{json, Value};
use smbatch::sandbox::Sandbox;

/// A client with requisites, two deals with a specification, and `n` invoices spread over the
/// two deals (sums 1000.25 + i, planned in December 2026 and January 2027). Returns the crids.
fn seed_invoices(sb: &Sandbox, n: usize) -> Vec<i64> {
    let r = api(
        sb,
        "/developer/v3/client/add",
        json!({"title": "ООО «Альфа»", "type": "client",
               "recv": {"castInn": "5904338272", "castKpp": "590401001"}}),
    );
    let clid = r["data"].as_i64().unwrap_or_else(|| panic!("{r}"));
    let deal = |title: &str| {
        let r = api(
            sb,
            "/developer/v3/deal/add",
            json!({"title": title, "clid": clid, "step": 40,
                   "speka": [{"title": "Услуга", "price": 10_000_000, "kol": 1, "nds": 20}]}),
        );
        r["data"].as_i64().unwrap_or_else(|| panic!("{r}"))
    };
    let dids = [deal("Поставка"), deal("Монтаж")];
    (0..n)
        .map(|i| {
            let plan = if i % 2 == 0 {
                "2026-12-10"
            } else {
                "2027-01-15"
            };
            let r = api(
                sb,
                "/developer/v3/invoice/add",
                json!({"did": dids[i % 2], "summa": format!("{},25", 1000 + i),
                       "invoice": format!("СЧ-{i:03}"), "date.plan": plan}),
            );
            r["data"]["id"].as_i64().unwrap_or_else(|| panic!("{r}"))
        })
        .collect()
}

fn pay(sb: &Sandbox, crid: i64) {
    let r = api(sb, "/developer/v3/invoice/do", json!({ "id": crid }));
    assert_eq!(r["result"], "Успешно", "{r}");
}

fn number(d: Option<&Data>) -> f64 {
    match d {
        Some(Data::Float(f)) => *f,
        Some(Data::Int(i)) => *i as f64,
        other => panic!("not a number: {other:?}"),
    }
}

#[test]
fn invoice_export_joins_deal_and_client_filters_paid_and_totals_equal_the_rows() {
    let sb = start();
    let crids = seed_invoices(&sb, 35);
    for &c in &crids[..7] {
        pay(&sb, c);
    }
    let dir = tempfile::tempdir().unwrap();
    let all = dir.path().join("all.xlsx");
    let (s, err) = export_json(&sb, "invoice", &all, &[]);
    // 35 invoices on two 30-row pages, none missed or repeated.
    assert_eq!(s["rows"], 35, "{err}");
    assert_eq!(s["server_count"], 35);
    assert_eq!(s["count_mismatch"], json!([]));
    let r = sheet(&all, "invoice");
    let ids: std::collections::HashSet<String> =
        (1..r.height()).map(|i| text(r.get((i, 0)))).collect();
    assert_eq!(ids.len(), 35);
    let row1 = (1..r.height())
        .find(|&i| text(r.get((i, col(&r, "invoice")))) == "СЧ-000")
        .unwrap();
    let get = |c: &str| text(r.get((row1, col(&r, c))));
    assert_eq!(get("deal_title"), "Поставка");
    assert_eq!(get("deal_stage"), "Отправлено КП");
    assert!(!get("deal_number").is_empty());
    assert_eq!(get("client"), "Альфа, ООО");
    assert_eq!(get("client_inn"), "5904338272");
    assert_eq!(get("client_kpp"), "590401001");
    assert_eq!(get("paid"), "да");
    assert_eq!(number(r.get((row1, col(&r, "summa")))), 1000.25);

    let paid = dir.path().join("paid.xlsx");
    let (s, err) = export_json(&sb, "invoice", &paid, &["--paid", "yes"]);
    assert_eq!(s["rows"], 7, "{err}");
    let r = sheet(&paid, "invoice");
    let sum: f64 = (1..r.height())
        .map(|i| number(r.get((i, col(&r, "summa")))))
        .sum();
    assert!((1..r.height()).all(|i| text(r.get((i, col(&r, "paid")))) == "да"));
    // 1000.25 + … + 1006.25
    assert!((sum - 7022.75).abs() < 1e-6, "{sum}");
    assert_eq!(s["control_total"], "7022.75");
    let t = sheet(&paid, "Totals");
    let control = (0..t.height())
        .find(|&i| text(t.get((i, 0))).starts_with("control total"))
        .expect("a control total line");
    assert_eq!(number(t.get((control, 1))), 7022.75);
    assert_eq!(text(t.get((control, 0))), "control total (7 rows)");
    let unpaid = dir.path().join("unpaid.xlsx");
    let (s, _) = export_json(&sb, "invoice", &unpaid, &["--paid", "no"]);
    assert_eq!(s["rows"], 28);
    // Planned-date filter: only December's invoices (the even ones).
    let dec = dir.path().join("dec.xlsx");
    let (s, _) = export_json(
        &sb,
        "invoice",
        &dec,
        &["--from", "2026-12-01", "--to", "2026-12-31"],
    );
    assert_eq!(s["rows"], 18);
}

#[test]
fn invoice_csv_in_windows_1251_has_decimal_commas_for_russian_excel() {
    let sb = start();
    seed_invoices(&sb, 2);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("inv.csv");
    let o = smbatch(
        &sb,
        &[
            "invoice",
            "-o",
            out.to_str().unwrap(),
            "--encoding",
            "windows-1251",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let raw = std::fs::read(&out).unwrap();
    let (t, _, bad) = encoding_rs::WINDOWS_1251.decode(&raw);
    assert!(!bad);
    let header: Vec<&str> = t.lines().next().unwrap().split(';').collect();
    let at = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let first: Vec<&str> = t.lines().nth(1).unwrap().split(';').collect();
    assert_eq!(first[at("summa")], "1000,25");
    assert_eq!(first[at("paid_summa")], "0,00");
    assert_eq!(first[at("client")], "Альфа, ООО");
    // VAT is only in invoice/info: the export reads it there, written like every sum.
    let vat = first[at("vat")];
    assert!(vat.contains(',') && vat != "0,00", "{vat}");
}

#[test]
fn paid_from_after_paid_to_is_refused() {
    let sb = start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("inv.xlsx");
    let o = smbatch(
        &sb,
        &[
            "invoice",
            "-o",
            out.to_str().unwrap(),
            "--paid-from",
            "2026-12-31",
            "--paid-to",
            "2026-12-01",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--paid-from 2026-12-31 is after --paid-to 2026-12-01"),
        "{err}"
    );
}

#[test]
fn from_after_to_is_refused_before_any_request() {
    let sb = start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("deals.xlsx");
    let o = smbatch(
        &sb,
        &[
            "deal",
            "-o",
            out.to_str().unwrap(),
            "--from",
            "2026-12-31",
            "--to",
            "2026-12-01",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--from 2026-12-31 is after --to 2026-12-01"),
        "{err}"
    );
    assert!(!out.exists(), "no file is written for a refused range");
}

#[test]
fn state_around_a_payment_exports_exactly_the_paid_invoice_with_the_day_it_was_seen_paid() {
    let sb = start();
    let crids = seed_invoices(&sb, 4);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("books.state");
    let st = state.to_str().unwrap();
    let first = dir.path().join("n1.csv");
    let (s, _) = export_json(&sb, "invoice", &first, &["--state", st]);
    assert_eq!(s["rows"], 4);
    pay(&sb, crids[2]);
    let second = dir.path().join("n2.csv");
    let (s, err) = export_json(&sb, "invoice", &second, &["--state", st]);
    assert_eq!(s["rows"], 1, "{err}");
    assert_eq!(csv_column(&second, "crid"), vec![crids[2].to_string()]);
    assert_eq!(csv_column(&second, "paid"), vec!["да"]);
    // invoice/do records no paid date: the day this run first saw it paid stands in.
    let today = chrono::Local::now().format("%Y-%m-%d").to_string();
    assert_eq!(csv_column(&second, "date_paid"), vec![today.clone()]);
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(
        saved["entities"]["invoice"]["paid_days"][crids[2].to_string()],
        today
    );
    let third = dir.path().join("n3.csv");
    let (s, _) = export_json(&sb, "invoice", &third, &["--state", st]);
    assert_eq!(s["rows"], 0, "nothing repeated");
    // --paid-from picks the day it was seen paid.
    let window = dir.path().join("w.csv");
    let (s, _) = export_json(
        &sb,
        "invoice",
        &window,
        &["--paid-from", &today, "--paid-to", &today, "--state", st],
    );
    assert_eq!(s["unchanged"], 1);
}

#[test]
fn invoice_flags_on_other_entities_are_usage_errors() {
    let sb = start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("d.xlsx");
    let o = smbatch(&sb, &["deal", "-o", out.to_str().unwrap(), "--paid", "yes"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--paid filters invoices"), "{err}");
}

#[test]
fn deal_export_for_the_books_has_paid_and_unpaid_totals_stage_and_client_inn() {
    let sb = start();
    let crids = seed_invoices(&sb, 6);
    // Invoices 0, 2, 4 are on the first deal, 1, 3, 5 on the second; pay 0 and 3.
    pay(&sb, crids[0]);
    pay(&sb, crids[3]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("deals.xlsx");
    let (s, err) = export_json(&sb, "deal", &out, &[]);
    assert_eq!(s["rows"], 2, "{err}");
    let r = sheet(&out, "deal");
    let row = |title: &str| {
        (1..r.height())
            .find(|&i| text(r.get((i, col(&r, "title")))).ends_with(title))
            .unwrap()
    };
    let (a, b) = (row("Поставка"), row("Монтаж"));
    let n = |i: usize, c: &str| number(r.get((i, col(&r, c))));
    assert_eq!(n(a, "paid_total"), 1000.25);
    assert_eq!(n(a, "unpaid_total"), 1002.25 + 1004.25);
    assert_eq!(n(b, "paid_total"), 1003.25);
    assert_eq!(n(b, "unpaid_total"), 1001.25 + 1005.25);
    assert_eq!(text(r.get((a, col(&r, "client_inn")))), "5904338272");
    assert_eq!(text(r.get((a, col(&r, "stepTitle")))), "Отправлено КП");
    for c in [
        "close",
        "datum_close",
        "status_close",
        "kol_fact",
        "des_fact",
    ] {
        col(&r, c);
    }
    // The control total equals the sum of the rows' paid and unpaid totals.
    let rows_sum: f64 = [a, b]
        .iter()
        .map(|&i| n(i, "paid_total") + n(i, "unpaid_total"))
        .sum();
    assert_eq!(s["control_total"], "6016.50");
    assert!((rows_sum - 6016.5).abs() < 1e-6);
    let t = sheet(&out, "Totals");
    let control = (0..t.height())
        .find(|&i| text(t.get((i, 0))).starts_with("control total"))
        .unwrap();
    assert_eq!(number(t.get((control, 1))), 6016.5);
}

#[test]
fn an_invoice_export_of_list_columns_names_the_deal_from_the_list() {
    let sb = start();
    seed_invoices(&sb, 3);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("inv.csv");
    // No deal/client/VAT column asked for: no deal/info, client/info or invoice/info reads.
    let (s, err) = export_json(
        &sb,
        "invoice",
        &out,
        &["--fields", "crid,invoice,summa,deal_number,deal_title"],
    );
    assert_eq!(s["rows"], 3, "{err}");
    let numbers = csv_column(&out, "deal_number");
    // A line each (an empty file would pass every `all` below).
    assert_eq!(numbers.len(), 3, "{numbers:?}");
    assert!(
        numbers.iter().all(|n| n.parse::<u32>().is_ok()),
        "{numbers:?}"
    );
    let titles = csv_column(&out, "deal_title");
    assert_eq!(titles.len(), 3, "{titles:?}");
    assert!(
        titles.iter().all(|t| t == "Поставка" || t == "Монтаж"),
        "{titles:?}"
    );
}
