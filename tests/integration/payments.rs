//! Payments in and invoices in (issue 14): a month of deals, invoices and a bank file against the
//! sandbox. invoice/do is not idempotent there as on the real server, so every assertion that
//! nothing was paid twice is about the invoice rows the CRM holds.

use crate::common::{counts, json_of, root, say, Case};
use crate::export::{api, export_json, sheet, text};
use calamine::Data;
use serde_json::{json, Value};
use smbatch::sandbox::Sandbox;
use std::path::{Path, PathBuf};
use std::process::Output;

const INVOICES: &str = "\
Сделка;Номер счета;Сумма;Оплатить до;Договор
D-1;СЧ-101;60 000,00;30.11.2026;Д-1/2026
D-1;СЧ-102;40 000,00;15.12.2026;Д-1/2026
D-2;СЧ-201;50000.00;30.11.2026;
D-3;СЧ-301;30000;30.11.2026;
D-3;СЧ-302;;30.11.2026;
D-4;СЧ-401;1 000,00;30.11.2026;
";

/// Part of СЧ-101 then the rest, СЧ-201 in full, part of СЧ-301; an over-payment of СЧ-102
/// and an invoice the CRM does not have.
const BANK: &str = "\
Номер счета;Дата оплаты;Сумма;Плательщик
СЧ-101;05.11.2026;20 000,00;ООО «Альфа»
СЧ-101;12.11.2026;40 000,00;ООО «Альфа»
СЧ-201;07.11.2026;50000.00;ООО «Бета»
СЧ-301;20.11.2026;10 000,00;ООО «Гамма»
СЧ-102;25.11.2026;50 000,00;ООО «Альфа»
СЧ-999;25.11.2026;100,00;ООО «Дельта»
";

/// A [`Case`] on the fixtures' sandbox (the login [`api`] calls with), holding a month's deals.
struct Month {
    c: Case,
}

impl Month {
    /// Deals D-1…D-3 with a specification (100 000, 50 000, 30 000) and D-4 without one.
    fn new() -> Month {
        let sb = crate::fixtures::start();
        let r = api(
            &sb,
            "/developer/v3/client/add",
            json!({"title": "ООО «Альфа»", "type": "client"}),
        );
        let clid = r["data"].as_i64().unwrap_or_else(|| panic!("{r}"));
        for (uid, sum) in [("D-1", 100_000), ("D-2", 50_000), ("D-3", 30_000)] {
            let r = api(
                &sb,
                "/developer/v3/deal/add",
                json!({"title": format!("Поставка {uid}"), "clid": clid, "uid": uid,
                       "speka": [{"title": "Трубы", "price": sum, "kol": 1, "nds": 20}]}),
            );
            assert!(r["data"].as_i64().is_some(), "{r}");
        }
        let r = api(
            &sb,
            "/developer/v3/deal/add",
            json!({"title": "Без спецификации", "clid": clid, "uid": "D-4", "kol": 1000}),
        );
        assert!(r["data"].as_i64().is_some(), "{r}");
        let c = Case {
            dir: tempfile::tempdir().unwrap(),
            sb,
        };
        Month { c }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.c.path(name)
    }

    /// `import RUN.csv -t TEMPLATE --json` of `rows`, with the journal `journal` and the report
    /// `RUN.xlsx`.
    fn import(&self, rows: &str, template: &Path, run: &str, journal: &str) -> (Output, Value) {
        self.import_with(rows, template, run, journal, &[])
    }

    fn import_with(
        &self,
        rows: &str,
        template: &Path,
        run: &str,
        journal: &str,
        extra: &[&str],
    ) -> (Output, Value) {
        let file = self.c.write(&format!("{run}.csv"), rows);
        let out = self
            .c
            .command("import", &file, template, run, journal, extra)
            .output()
            .unwrap();
        let v = json_of(&out);
        (out, v)
    }

    fn pay(&self, rows: &str, run: &str, journal: &str) -> (Output, Value) {
        self.import(rows, &root().join("templates/payments.toml"), run, journal)
    }

    /// Every row of one invoice number: (amount, paid), oldest first.
    fn rows_of(&self, number: &str) -> Vec<(String, bool)> {
        let r = api(
            &self.c.sb,
            "/developer/v3/invoice/list",
            json!({"word": number, "offset": 1, "order": "datum", "first": "old"}),
        );
        let mut rows: Vec<(i64, String, bool)> = r["data"]
            .as_array()
            .unwrap_or_else(|| panic!("{r}"))
            .iter()
            .filter(|x| x["invoice"] == number)
            .map(|x| {
                (
                    x["crid"].as_i64().unwrap(),
                    format!("{:.2}", x["summa"].as_f64().unwrap()),
                    x["do"] == json!(true),
                )
            })
            .collect();
        rows.sort();
        rows.into_iter().map(|(_, s, p)| (s, p)).collect()
    }

    /// What `export invoice --paid yes` totals (the books' view of payments made).
    fn paid_total(&self, name: &str) -> (u64, String) {
        let out = self.path(&format!("{name}.xlsx"));
        let (s, err) = export_json(&self.c.sb, "invoice", &out, &["--paid", "yes"]);
        (
            s["rows"].as_u64().unwrap_or_else(|| panic!("{s} {err}")),
            s["control_total"].as_str().unwrap_or_default().to_string(),
        )
    }

    /// The report's lines: (outcome, error column) by source row number.
    fn report_lines(&self, run: &str) -> Vec<(String, String)> {
        let r = sheet(&self.path(&format!("{run}.xlsx")), "Rows");
        let col = |name: &str| crate::export::col(&r, name);
        (1..r.height())
            .map(|i| {
                (
                    text(r.get((i, col("outcome")))),
                    text(r.get((i, col("error")))),
                )
            })
            .collect()
    }

    fn invoices(&self) {
        let (out, v) = self.import(
            INVOICES,
            &root().join("templates/invoices.toml"),
            "invoices",
            "inv",
        );
        assert_eq!(out.status.code(), Some(1), "{}", say(&out));
        let inv = &v["entities"]["invoice"];
        assert_eq!(inv["created"], 4, "{v} {:?}", self.report_lines("invoices"));
        assert_eq!(inv["failed"], 1, "D-4 has no specification: {v}");
        assert_eq!(inv["invalid"], 1, "СЧ-302 has no sum: {v}");
    }
}

/// Payments (created, existing, failed) in a `--json` summary.
pub(crate) fn payments(v: &Value) -> (u64, u64, u64) {
    let p = counts(v, "payment");
    let n = |k: &str| p[k].as_u64().unwrap_or(0);
    (n("created"), n("existing"), n("failed"))
}

#[test]
fn invoices_in_need_a_sum_a_specification_and_are_added_once() {
    let m = Month::new();
    m.invoices();
    assert_eq!(m.rows_of("СЧ-101"), [("60000.00".to_string(), false)]);
    assert_eq!(m.rows_of("СЧ-102"), [("40000.00".to_string(), false)]);
    assert!(m.rows_of("СЧ-302").is_empty(), "no sum: not sent");
    assert!(m.rows_of("СЧ-401").is_empty());
    let lines = m.report_lines("invoices");
    let (outcome, error) = &lines[5];
    assert_eq!(outcome, "failed");
    assert!(
        error.contains("has no specification") && error.contains("deal "),
        "{error}"
    );
    let (outcome, error) = &lines[4];
    assert_eq!(outcome, "partial", "its deal is there, the invoice not");
    assert!(error.contains("summa"), "{error}");
    // Again, with a journal of its own: matched by number and deal, nothing added.
    let (_, v) = m.import(
        INVOICES,
        &root().join("templates/invoices.toml"),
        "invoices-again",
        "inv-again",
    );
    assert_eq!(v["entities"]["invoice"]["created"], 0, "{v}");
    assert_eq!(v["entities"]["invoice"]["existing"], 4, "{v}");
    assert_eq!(m.rows_of("СЧ-101").len(), 1);
}

#[test]
fn a_month_of_payments_is_paid_once_whatever_is_run_again_or_lost() {
    let m = Month::new();
    m.invoices();

    // A dry run reads and decides, pays nothing.
    let (_, v) = m.import_with(
        BANK,
        &root().join("templates/payments.toml"),
        "dry",
        "dry",
        &["--dry-run"],
    );
    assert_eq!(payments(&v), (4, 0, 2), "would pay 4, refuse 2: {v}");
    let dry = m.report_lines("dry");
    assert!(dry[0].1.contains("would pay part 20000.00"), "{dry:?}");
    assert_eq!(m.rows_of("СЧ-101"), [("60000.00".to_string(), false)]);

    // The first payment's answer is lost: the invoice is read back, not paid again.
    m.c.sb.lose_answers_of("/invoice/do", 1);
    let (out, v) = m.pay(BANK, "bank", "bank");
    assert_eq!(out.status.code(), Some(1), "{}", say(&out));
    assert_eq!(payments(&v), (4, 0, 2), "{v}");
    assert_eq!(v["entities"]["payment"]["ambiguous_resolved"], 1, "{v}");
    let paid = |s: &str| (s.to_string(), true);
    assert_eq!(m.rows_of("СЧ-101"), [paid("20000.00"), paid("40000.00")]);
    assert_eq!(m.rows_of("СЧ-201"), [paid("50000.00")]);
    assert_eq!(
        m.rows_of("СЧ-301"),
        [paid("10000.00"), ("20000.00".to_string(), false)]
    );
    assert_eq!(
        m.rows_of("СЧ-102"),
        [("40000.00".to_string(), false)],
        "over-payment refused"
    );
    assert_eq!(m.paid_total("after-bank"), (4, "120000.00".to_string()));
    // The report keeps each payment's date, which the CRM drops.
    let lines = m.report_lines("bank");
    for (i, day) in ["2026-11-05", "2026-11-12", "2026-11-07", "2026-11-20"]
        .iter()
        .enumerate()
    {
        let (outcome, note) = &lines[i];
        assert_eq!(outcome, "created", "{lines:?}");
        assert!(note.contains(day), "row {}: {note}", i + 2);
    }
    assert!(lines[0].1.contains("paid part 20000.00"), "{}", lines[0].1);
    let (outcome, why) = &lines[4];
    assert_eq!(outcome, "failed");
    assert!(why.contains("over-payment"), "{why}");
    assert!(why.contains("СЧ-102") && why.contains("40000.00"), "{why}");
    assert!(
        lines[5].1.contains("'СЧ-999' is not in the CRM"),
        "{}",
        lines[5].1
    );

    // The same file again (same journal): nothing paid.
    let (_, v) = m.pay(BANK, "bank-again", "bank");
    assert_eq!(payments(&v).0, 0, "{v}");
    // The same file with a journal of its own: every payment is found recorded.
    let (_, v) = m.pay(BANK, "bank-fresh", "fresh");
    assert_eq!(payments(&v), (0, 4, 2), "{v}");
    assert_eq!(m.paid_total("after-again"), (4, "120000.00".to_string()));
    assert_eq!(
        m.rows_of("СЧ-101").len(),
        2,
        "no row paid twice or split again"
    );

    // A run that cannot tell whether its first payment went through (the answer and every
    // read-back lost, as when it is killed right after the call): unresolved, then resumed.
    let rest =
        "Номер счета;Дата оплаты;Сумма\nСЧ-301;27.11.2026;20 000,00\nСЧ-102;28.11.2026;15 000,00\n";
    m.c.sb.lose_answers_of("/invoice/do", 1);
    m.c.sb.lose_answers_of("/invoice/info", 1000);
    let (out, v) = m.pay(rest, "rest", "rest");
    assert_eq!(out.status.code(), Some(1), "{}", say(&out));
    assert_eq!(v["entities"]["payment"]["unresolved"], 1, "{v}");
    assert_eq!(payments(&v).0, 1, "{v}");
    m.c.sb.lose_answers_of("/invoice/info", 0);
    let (out, v) = m.pay(rest, "rest-resumed", "rest");
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    assert_eq!(v["entities"]["payment"]["created"], 1, "{v}");
    assert_eq!(
        m.rows_of("СЧ-301"),
        [paid("10000.00"), paid("20000.00")],
        "paid once: no third row, no shrunk payment"
    );
    assert_eq!(
        m.rows_of("СЧ-102"),
        [paid("15000.00"), ("25000.00".to_string(), false)]
    );
    // The books: what export invoice --paid yes totals is what was paid.
    assert_eq!(m.paid_total("final"), (6, "155000.00".to_string()));
    let r = sheet(&m.path("final.xlsx"), "invoice");
    assert_eq!(r.height(), 1 + 6, "a header and the six paid rows");
    assert!(r.rows().skip(1).all(|row| row
        .iter()
        .any(|c| matches!(c, Data::String(s) if s.starts_with("СЧ-")))));
}

/// A read that survives the sandbox's injected faults (it is retried until it answers).
fn read(sb: &Sandbox, path: &str, body: Value) -> Value {
    let client = smbatch::crm::CrmClient::new(&sb.connection()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (entity, action) = path.rsplit_once('/').unwrap();
    let entity: smbatch::crm::Entity = entity.rsplit('/').next().unwrap().parse().unwrap();
    for _ in 0..50 {
        if let Ok(v) = rt.block_on(client.call_raw(entity, action, &body)) {
            return v;
        }
    }
    panic!("{path} never answered")
}

/// How many invoice rows the CRM shows paid, and their total (invoice/list `pay1`).
fn paid_rows(sb: &Sandbox) -> (u64, f64) {
    let (mut n, mut sum) = (0, 0.0);
    for page in 1.. {
        let r = read(
            sb,
            "/developer/v3/invoice/list",
            json!({"pay1": "yes", "offset": page}),
        );
        let rows = r["data"].as_array().cloned().unwrap_or_default();
        for row in &rows {
            n += 1;
            sum += row["summa"].as_f64().unwrap_or(0.0);
        }
        if rows.len() < 30 {
            break;
        }
    }
    (n, sum)
}

#[test]
fn a_bank_file_killed_mid_run_and_resumed_pays_every_invoice_once() {
    let m = Month::new();
    let n = 90;
    // One deal with room for every invoice, n invoices of 1,000.50 each.
    let r = api(
        &m.c.sb,
        "/developer/v3/deal/add",
        json!({"title": "Абонентское обслуживание", "clid": 1, "uid": "D-9",
               "speka": [{"title": "Месяц", "price": 1_000_000, "kol": 1, "nds": 20}]}),
    );
    let did = r["data"].as_i64().unwrap_or_else(|| panic!("{r}"));
    for i in 0..n {
        let r = api(
            &m.c.sb,
            "/developer/v3/invoice/add",
            json!({"did": did, "summa": "1000.50", "invoice": format!("К-{i:03}")}),
        );
        assert!(r["data"]["id"].as_i64().is_some(), "{r}");
    }
    let bank: String = std::iter::once("Номер счета;Дата оплаты;Сумма;Плательщик\n".to_string())
        .chain((0..n).map(|i| format!("К-{i:03};10.11.2026;1 000,50;ООО «Альфа»\n")))
        .collect();
    let file = m.c.write("bank.csv", &bank);
    // invoice/do writes one history row per call, paid twice or not: the count of calls.
    let history_before = m.c.sb.count(smbatch::crm::Entity::History);
    let template = root().join("templates/payments.toml");
    // Every run the same report and journal.
    let bank = || {
        m.c.command("import", &file, &template, "bank", "bank", &["--quiet"])
    };
    // Slow answers, some of them lost after the server applied the payment.
    m.c.sb.set_faults(smbatch::sandbox::FaultConfig {
        drop_after_commit: 0.05,
        latency_ms: Some((10, 30)),
        seed: 5,
        ..Default::default()
    });
    // Each run is killed (SIGKILL) once a few more invoices are paid than before.
    let mut seen = Vec::new();
    for step in [15u64, 25] {
        let before = paid_rows(&m.c.sb).0;
        let mut child = bank()
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::time::Instant::now() < deadline
            && paid_rows(&m.c.sb).0 < before + step
            && child.try_wait().unwrap().is_none()
        {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        seen.push(paid_rows(&m.c.sb).0);
    }
    assert!(
        seen.iter().any(|&c| c > 0 && c < n as u64),
        "a kill should land mid-run: {seen:?}"
    );
    m.c.sb.set_faults(smbatch::sandbox::FaultConfig::default());
    // Resumed to the end, then once more: every invoice paid once, in full, nothing twice.
    for _ in 0..2 {
        let out = bank().output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    }
    let (rows, sum) = paid_rows(&m.c.sb);
    assert_eq!(rows, n as u64, "paid invoice rows (after kills: {seen:?})");
    assert!((sum - 1000.5 * n as f64).abs() < 0.01, "paid total {sum}");
    assert_eq!(
        m.c.sb.count(smbatch::crm::Entity::History) - history_before,
        n as u64,
        "invoice/do calls that took effect: one per invoice"
    );
    for i in [0, n / 2, n - 1] {
        let r = m.rows_of(&format!("К-{i:03}"));
        assert_eq!(r.len(), 1, "К-{i:03} was split or paid twice: {r:?}");
    }
}
