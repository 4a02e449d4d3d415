//! invoice/*: invoices (the payment schedule of deals) and payments (NOTES §12).
//!
//! Emulated as recorded: list pages by 30 and answers page 1 for offset 0 and 1; `dateStart` /
//! `dateEnd` kill the request with an SQL fatal; paid/unpaid is `pay1`/`pay2`; invoice/do is
//! not idempotent, never sets the paid date (`invoice_date`), and a partial payment splits the
//! row. invoice/info shows the creation time 3 h later than invoice/list (the server's session
//! time zone), and the remainder row of a partial payment is stored with that later time.

use super::{count, rows, Ctx, Params};
use crate::sandbox::api::{error, Reply};
use crate::sandbox::text::{now, today, value_str};
use chrono::{Duration, NaiveDate, NaiveDateTime};
use rusqlite::types::Value as Sql;
use serde_json::{json, Value};

actions! {
    /// invoice/* actions; an unknown one is answered like deal's.
    InvoiceAction, unknown = error(402, "Неизвестный метод");
    List = "list", Info = "info", Add = "add", Do = "do", Express = "express",
    Templates = "templates",
}

/// invoice/list's page size: the `num_client` setting, 30 on a default install.
pub const INVOICE_PAGE: i64 = 30;

const DEAL_NOT_FOUND: &str =
    "Сделка с указанным did не найдена в пределах аккаунта указанного пользователя";

/// invoice/add without a did: the id is pasted into SQL (v3-invoice-add-missing-did).
const ADD_NO_DID_FATAL: &str = "<br />\n<b>Fatal error</b>:  Uncaught mysqli_sql_exception: You have an error in your SQL syntax; check the manual that corresponds to your MariaDB server version for the right syntax to use near 'and identity = '1'' at line 1 in <crm-root>/vendor/colshrapnel/safemysql/safemysql.class.php:466\nStack trace:\n#0 <crm-root>/vendor/colshrapnel/safemysql/safemysql.class.php(466): mysqli_query()\n#1 <crm-root>/vendor/colshrapnel/safemysql/safemysql.class.php(233): SafeMySQL-&gt;rawQuery()\n#2 <crm-root>/developer/v3/methods/invoice.php(92): SafeMySQL-&gt;getRow()\n#3 <crm-root>/developer/v3/index.php(171): include_once('...')\n#4 {main}\n  thrown in <b><crm-root>/vendor/colshrapnel/safemysql/safemysql.class.php</b> on line <b>466</b><br />\n";

/// invoice/do with neither id nor number (v3-invoice-do-missing-id).
const DO_NO_ID_FATAL: &str = "<br />\n<b>Fatal error</b>:  Uncaught mysqli_sql_exception: You have an error in your SQL syntax; check the manual that corresponds to your MariaDB server version for the right syntax to use near 'AND identity = '1'' at line 1 in <crm-root>/vendor/colshrapnel/safemysql/safemysql.class.php:466\nStack trace:\n#0 <crm-root>/vendor/colshrapnel/safemysql/safemysql.class.php(466): mysqli_query()\n#1 <crm-root>/vendor/colshrapnel/safemysql/safemysql.class.php(208): SafeMySQL-&gt;rawQuery()\n#2 <crm-root>/developer/v3/methods/invoice.php(205): SafeMySQL-&gt;getOne()\n#3 <crm-root>/developer/v3/index.php(171): include_once('...')\n#4 {main}\n  thrown in <b><crm-root>/vendor/colshrapnel/safemysql/safemysql.class.php</b> on line <b>466</b><br />\n";

/// invoice/add on a deal without a specification: the default VAT divides by the spec sum
/// (v3-invoice-add-deal-without-speka).
const NO_SPEKA_FATAL: &str = "<br />\n<b>Fatal error</b>:  Uncaught DivisionByZeroError: Division by zero in <crm-root>/developer/v3/methods/invoice.php:121\nStack trace:\n#0 <crm-root>/developer/v3/index.php(171): include_once()\n#1 {main}\n  thrown in <b><crm-root>/developer/v3/methods/invoice.php</b> on line <b>121</b><br />\n";

/// invoice/list with dateStart/dateEnd (v3-invoice-list-dateStart-dateEnd): the dates are
/// pasted into broken SQL, the page quotes them.
fn date_filter_fatal(start: &str, end: &str) -> String {
    format!("<br />\n<b>Fatal error</b>:  Uncaught mysqli_sql_exception: You have an error in your SQL syntax; check the manual that corresponds to your MariaDB server version for the right syntax to use near '( DATE(crd.datum) &gt;= '{start}' AND DATE(crd.datum) &lt;= '{end}' ) AND a...' at line 25 in <crm-root>/vendor/colshrapnel/safemysql/safemysql.class.php:466\nStack trace:\n#0 <crm-root>/vendor/colshrapnel/safemysql/safemysql.class.php(466): mysqli_query()\n#1 <crm-root>/vendor/colshrapnel/safemysql/safemysql.class.php(140): SafeMySQL-&gt;rawQuery()\n#2 <crm-root>/inc/class/Invoice.php(396): SafeMySQL-&gt;query()\n#3 <crm-root>/developer/v3/methods/invoice.php(38): Salesman\\Invoice-&gt;list()\n#4 <crm-root>/developer/v3/index.php(171): include_once('...')\n#5 {{main}}\n  thrown in <b><crm-root>/vendor/colshrapnel/safemysql/safemysql.class.php</b> on line <b>466</b><br />\n")
}

/// The +3 h the real server adds to creation times in invoice/info (and to the remainder row
/// of a partial payment): its PHP session runs in UTC+3 over a UTC-stored time.
const INFO_SHIFT_HOURS: i64 = 3;

pub(super) fn handle(ctx: &mut Ctx, a: InvoiceAction) -> rusqlite::Result<Reply> {
    match a {
        InvoiceAction::List => list(ctx),
        InvoiceAction::Info => info(ctx).map(Reply::Json),
        InvoiceAction::Add => add(ctx, false),
        InvoiceAction::Express => add(ctx, true),
        InvoiceAction::Do => pay(ctx),
        InvoiceAction::Templates => Ok(Reply::Json(json!({"result": "Success", "data": [
            {"id": 1, "title": "Счет", "file": "invoice.tpl", "typeid": 4},
            {"id": 2, "title": "Базовый шаблон", "file": "invoice.tpl", "typeid": 4}]}))),
    }
}

/// A sum as PHP reads it (`(float)` after the CRM's `pre_format`): spaces dropped, the comma
/// made a point, then the longest number at the start: "20 000,50" → 20000.50, but
/// "1,500.50" → "1.500.50" → 1.50 (NOTES §11/§12). `None` when no number starts the text.
pub(super) fn php_sum(v: Option<&Value>) -> Option<f64> {
    match v? {
        Value::Number(n) => n.as_f64(),
        other => {
            let s = value_str(Some(other), "")?;
            let s: String = s
                .chars()
                .filter(|c| !c.is_whitespace())
                .map(|c| if c == ',' { '.' } else { c })
                .collect();
            let mut end = 0;
            let mut dot = false;
            for (i, c) in s.char_indices() {
                if c.is_ascii_digit() || (i == 0 && c == '-') {
                    end = i + 1;
                } else if c == '.' && !dot {
                    dot = true;
                } else {
                    break;
                }
            }
            s[..end].parse::<f64>().ok()
        }
    }
}

/// "20 000,50": how the CRM writes sums for people.
pub(super) fn ru(v: f64) -> String {
    let cents = (v * 100.0).round() as i64;
    let (int, frac) = (cents.abs() / 100, cents.abs() % 100);
    let digits = int.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    format!("{}{out},{frac:02}", if cents < 0 { "-" } else { "" })
}

fn shifted(datum: &str) -> String {
    NaiveDateTime::parse_from_str(datum, "%Y-%m-%d %H:%M:%S")
        .map(|t| {
            (t + Duration::hours(INFO_SHIFT_HOURS))
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|_| datum.to_string())
}

pub(super) fn date_of(v: Option<&Value>) -> Option<NaiveDate> {
    let s = value_str(v, "")?;
    let s = s.trim();
    NaiveDate::parse_from_str(s.get(..10)?, "%Y-%m-%d")
        .ok()
        .or_else(|| NaiveDate::parse_from_str(s, "%d.%m.%Y").ok())
}

const SELECT: &str = "SELECT i.*, COALESCE(c.title, '') AS client_title,
    COALESCE(d.title, '') AS deal_title, d.kol AS deal_kol,
    (SELECT COUNT(*) FROM invoice x WHERE x.did = i.did) AS parts
    FROM invoice i LEFT JOIN client c ON c.clid = i.clid LEFT JOIN deal d ON d.did = i.did";

fn list(ctx: &mut Ctx) -> rusqlite::Result<Reply> {
    if ctx.p.contains_key("dateStart") || ctx.p.contains_key("dateEnd") {
        let (s, e) = (ctx.str("dateStart"), ctx.str("dateEnd"));
        return Ok(Reply::Fatal(date_filter_fatal(
            s.as_deref().unwrap_or(""),
            e.as_deref().unwrap_or(""),
        )));
    }
    let mut wh: Vec<String> = vec!["1 = 1".into()];
    let mut args: Vec<Sql> = Vec::new();
    let paid_on = matches!(ctx.p.get("pay"), Some(Value::Object(o)) if o.get("on").is_some_and(|v| v == &json!(true) || v == "yes"));
    if ctx.str("pay1").as_deref() == Some("yes") || paid_on {
        wh.push("i.do = 'on'".into());
    }
    if ctx.str("pay2").as_deref() == Some("yes") {
        wh.push("i.do != 'on'".into());
    }
    for k in ["did", "clid", "iduser"] {
        if let Some(v) = ctx.id(k) {
            wh.push(format!("i.{k} = {v}"));
        }
    }
    if let Some(w) = ctx.str("word") {
        wh.push(
            "(i.invoice LIKE ?1 OR i.invoice_chek LIKE ?1 OR d.title LIKE ?1 OR c.title LIKE ?1)"
                .into(),
        );
        args.push(Sql::Text(format!("%{w}%")));
    }
    // Creation: raw datetimes; plan and fact: dates. Start and end together are an inclusive
    // BETWEEN; a lone start is `>`, a lone end `<` (v3-invoice-list-datePlan*, -dateFact-range).
    for (key, col) in [
        ("dateCreate", "i.datum"),
        ("datePlan", "i.datum_credit"),
        ("dateFact", "i.invoice_date"),
    ] {
        let start = ctx.str(&format!("{key}Start"));
        let end = ctx.str(&format!("{key}End"));
        let n = args.len();
        match (start, end) {
            (Some(s), Some(e)) => {
                wh.push(format!("{col} BETWEEN ?{} AND ?{}", n + 1, n + 2));
                args.extend([Sql::Text(s), Sql::Text(e)]);
            }
            (Some(s), None) => {
                wh.push(format!("{col} > ?{}", n + 1));
                args.push(Sql::Text(s));
            }
            (None, Some(e)) => {
                wh.push(format!("{col} < ?{}", n + 1));
                args.push(Sql::Text(e));
            }
            (None, None) => {}
        }
    }
    let ord = match ctx.str("order").as_deref() {
        Some("datum") => "datum",
        Some("invoice_date") => "invoice_date",
        Some("summa") | Some("summa_credit") => "summa_credit",
        Some("invoice") => "invoice",
        Some(_) => "datum_credit",
        None => "datum",
    };
    let dir = ctx.dir();
    // `invoice` is cast to a number: "BI-…" numbers all sort equal.
    let order = if ord == "invoice" {
        format!("CAST(i.invoice AS REAL) {dir}, i.crid {dir}")
    } else {
        format!("i.{ord} {dir}, i.crid {dir}")
    };
    let where_sql = wh.join(" AND ");
    let from =
        "FROM invoice i LEFT JOIN client c ON c.clid = i.clid LEFT JOIN deal d ON d.did = i.did";
    let total = count(
        ctx.conn,
        &format!("SELECT COUNT(*) {from} WHERE {where_sql}"),
        &args,
    )?;
    // offset 0 and 1 both answer page 1.
    let page = ctx.int("offset").unwrap_or(0).max(1);
    let sql = format!(
        "{SELECT} WHERE {where_sql} ORDER BY {order} LIMIT {INVOICE_PAGE} OFFSET {}",
        (page - 1) * INVOICE_PAGE
    );
    let found = rows(ctx.conn, &sql, &args)?;
    let data: Vec<Value> = found.iter().map(list_row).collect();
    Ok(Reply::Json(json!({
        "data": data,
        "params": {
            "page": page,
            "pageall": (total + INVOICE_PAGE - 1) / INVOICE_PAGE,
            "ord": ord, "tuda": dir, "valuta": "р.", "count": total
        },
        "count": total
    })))
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn list_row(r: &Params) -> Value {
    let paid = r["do"] == "on";
    let summa = num(&r["summa_credit"]);
    let kol = num(&r["deal_kol"]);
    let delta = if kol > 0.0 { summa / kol * 100.0 } else { 0.0 };
    let created = r["datum"].as_str().unwrap_or("");
    let short = NaiveDateTime::parse_from_str(created, "%Y-%m-%d %H:%M:%S")
        .map(|t| t.format("%d.%m.%y").to_string())
        .unwrap_or_default();
    let dmy = |v: &Value| {
        v.as_str()
            .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
            .map(|d| d.format("%d.%m.%Y").to_string())
            .unwrap_or_default()
    };
    let parts = r["parts"].as_i64().unwrap_or(1);
    let parts_text = match parts % 10 {
        1 if parts % 100 != 11 => format!("{parts} часть"),
        2..=4 if !(12..=14).contains(&(parts % 100)) => format!("{parts} части"),
        _ => format!("{parts} частей"),
    };
    let yes = |b: bool| if b { json!(true) } else { Value::Null };
    json!({
        "id": r["crid"], "crid": r["crid"], "date_create": r["datum"], "date_createf": short,
        "date_plan": r["datum_credit"], "date_planf": dmy(&r["datum_credit"]),
        "date_fact": r["invoice_date"], "date_factf": dmy(&r["invoice_date"]),
        "contract": r["invoice_chek"], "invoice": r["invoice"], "summaf": ru(summa),
        "summa": r["summa_credit"], "color": if paid { Value::Null } else { json!("redbg-sublite") },
        "ddo": yes(paid), "warning": null, "do": yes(paid), "cando": yes(!paid), "view": 1,
        "clid": r["clid"], "client": r["client_title"], "pid": r["pid"], "person": null,
        "did": r["did"], "deal": r["deal_title"], "isclose": null, "count": parts_text,
        "dole": if paid { Value::Null } else { json!(ru(delta)) },
        "company": "ООО ”Брикет Солюшн”", "mc": 1, "deltaf": ru(delta), "delta": delta
    })
}

fn info(ctx: &mut Ctx) -> rusqlite::Result<Value> {
    let Some(id) = ctx.p.get("id").filter(|v| !v.is_null()) else {
        return Ok(error(405, "Отсутствуют параметры - id Счета"));
    };
    let id = super::value_int(Some(id)).unwrap_or(0);
    let found = rows(
        ctx.conn,
        "SELECT * FROM invoice WHERE crid = ?1",
        &[Sql::Integer(id)],
    )?;
    let template = json!({"id": 2, "title": "Базовый шаблон", "file": "invoice.tpl", "typeid": 4});
    // An unknown or non-numeric id answers an empty record, no error (v3-invoice-info-notfound).
    let d = match found.first() {
        None => json!({
            "crid": 0, "invoice": null, "datum": null, "datum_credit": null, "invoice_date": null,
            "contractnum": null, "summa": 0, "nds": 0, "clid": 0, "pid": 0, "did": 0, "tip": null,
            "rs": 0, "iduser": 0, "do": null, "suffix": "", "valuta": "р.", "template": template,
            "idcurrency": 0, "currency": [], "idcourse": 0, "course": [], "signer": null
        }),
        Some(r) => json!({
            "crid": r["crid"], "invoice": r["invoice"],
            "datum": r["datum"].as_str().map(shifted), "datum_credit": r["datum_credit"],
            "invoice_date": r["invoice_date"], "contractnum": r["invoice_chek"],
            "summa": r["summa_credit"], "nds": r["nds_credit"], "clid": r["clid"], "pid": r["pid"],
            "did": r["did"], "tip": r["tip"], "rs": r["rs"], "iduser": r["iduser"], "do": r["do"],
            "suffix": "", "valuta": "р.", "template": template, "idcurrency": 0, "currency": [],
            "idcourse": 0, "course": [], "signer": null
        }),
    };
    Ok(json!({ "data": d }))
}

/// The deal an add names by `did` or `uid`: (did, clid, kol), or the answer.
fn deal_of(ctx: &Ctx) -> rusqlite::Result<Result<(i64, i64, f64), Reply>> {
    let (cond, arg) = match (ctx.p.get("did"), ctx.str("uid")) {
        (Some(v), _) => match super::value_int(Some(v)).filter(|_| !is_non_numeric(v)) {
            Some(did) => ("did = ?1", Sql::Integer(did)),
            // "abc" is pasted into the SQL too.
            None => return Ok(Err(Reply::Fatal(ADD_NO_DID_FATAL.to_string()))),
        },
        (None, Some(uid)) => ("uid = ?1", Sql::Text(uid)),
        (None, None) => return Ok(Err(Reply::Fatal(ADD_NO_DID_FATAL.to_string()))),
    };
    let found = rows(
        ctx.conn,
        &format!("SELECT did, clid, payer, kol FROM deal WHERE {cond} ORDER BY did LIMIT 1"),
        &[arg],
    )?;
    Ok(match found.first() {
        None => Err(Reply::Json(error(403, DEAL_NOT_FOUND))),
        Some(d) => {
            let clid = d["clid"].as_i64().filter(|&c| c > 0);
            let clid = clid.or(d["payer"].as_i64()).unwrap_or(0);
            Ok((d["did"].as_i64().unwrap_or(0), clid, num(&d["kol"])))
        }
    })
}

/// A string that is not a number ("abc"): pasted into SQL by the real server.
fn is_non_numeric(v: &Value) -> bool {
    matches!(v, Value::String(s) if s.trim().parse::<f64>().is_err())
}

/// The next number of `invoice: "auto"`: the counter `inum` (one past the highest number).
pub(super) fn next_number(ctx: &Ctx) -> rusqlite::Result<i64> {
    count(
        ctx.conn,
        "SELECT COALESCE(MAX(CAST(invoice AS INTEGER)), 0) + 1 FROM invoice",
        &[],
    )
    .map(|n| {
        n.max(
            count(
                ctx.conn,
                "SELECT COALESCE(MAX(crid), 0) + 1 FROM invoice",
                &[],
            )
            .unwrap_or(1),
        )
    })
}

fn add(ctx: &mut Ctx, express: bool) -> rusqlite::Result<Reply> {
    let (did, clid, kol) = match deal_of(ctx)? {
        Ok(d) => d,
        Err(reply) => return Ok(reply),
    };
    let invoiced = {
        let mut st = ctx
            .conn
            .prepare_cached("SELECT COALESCE(SUM(summa_credit), 0) FROM invoice WHERE did = ?1")?;
        st.query_row([did], |r| r.get::<_, f64>(0))?
    };
    if kol <= 0.0 || invoiced >= kol {
        return Ok(Reply::Json(error(
            406,
            "Уже выставлены все возможные счета",
        )));
    }
    // The default VAT is the spec's tax over the spec's sum: no spec → division by zero.
    let (spec_sum, spec_tax): (f64, f64) = ctx.conn.query_row(
        "SELECT COALESCE(SUM(price * kol), 0), COALESCE(SUM(price * kol * nds / (100 + nds)), 0)
         FROM speka WHERE did = ?1",
        [did],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if spec_sum == 0.0 && !express {
        return Ok(Reply::Fatal(NO_SPEKA_FATAL.to_string()));
    }
    let summa = php_sum(ctx.p.get("summa"))
        .filter(|&s| s > 0.0)
        .unwrap_or(kol);
    let nds = match php_sum(ctx.p.get("nds")) {
        Some(n) => n,
        // The tax share of the not yet invoiced remainder, not of this invoice (NOTES §12).
        None if spec_sum > 0.0 => ((kol - invoiced) * spec_tax / spec_sum * 100.0).round() / 100.0,
        None => 0.0,
    };
    let hm = now()[10..16].to_string();
    let datum = match date_of(ctx.p.get("date")) {
        Some(d) => format!("{}{hm}:00", d.format("%Y-%m-%d")),
        None => format!("{}:00", &now()[..16]),
    };
    let plan = date_of(ctx.p.get("date.plan"))
        .unwrap_or_else(|| chrono::Local::now().date_naive() + Duration::days(5))
        .format("%Y-%m-%d")
        .to_string();
    let number = match ctx.str("invoice") {
        Some(n) if n == "auto" => Some(next_number(ctx)?.to_string()),
        other => other,
    };
    let on_add = express || value_str(ctx.p.get("do"), "").is_some_and(|d| d == "on" || d == "yes");
    let paid_day = on_add
        .then(|| {
            date_of(ctx.p.get("date.do"))
                .map(|d| d.format("%Y-%m-%d").to_string())
                .unwrap_or_else(today)
        })
        .filter(|_| !express);
    let owner = ctx.owner(ctx.p);
    ctx.conn.execute(
        "INSERT INTO invoice (did, clid, datum, datum_credit, summa_credit, nds_credit, iduser,
            do, invoice, invoice_chek, invoice_date, rs, tip)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        rusqlite::params![
            did,
            clid,
            datum,
            plan,
            summa,
            nds,
            owner,
            if on_add { "on" } else { "no" },
            number,
            ctx.str("contract"),
            paid_day,
            ctx.int("rs").unwrap_or(1),
            ctx.str("tip").unwrap_or_else(|| "Счет-договор".into()),
        ],
    )?;
    let crid = ctx.conn.last_insert_rowid();
    let data = json!({"id": crid, "invoice": number.clone().unwrap_or_default()});
    if express {
        let messages = [
            format!("Внесена оплата {} р.", ru(summa)),
            format!("На р/с Основной расчетный счет внесена оплата в размере {summa} р."),
            "Счет добавлен в платежи".to_string(),
        ];
        return Ok(Reply::Json(json!({
            "result": format!("Успешно;{}", messages.join("<br>")),
            "data": data,
            "messages": messages
        })));
    }
    Ok(Reply::Json(
        json!({"result": "Успешно;Счет добавлен в платежи", "data": data}),
    ))
}

/// invoice/do: mark paid. Not idempotent (every call "pays" again), never sets `invoice_date`;
/// a smaller `summa` makes this row the paid part and adds an unpaid row with the remainder.
fn pay(ctx: &mut Ctx) -> rusqlite::Result<Reply> {
    let (cond, arg) = match (ctx.id("id"), ctx.str("invoice")) {
        (Some(id), _) => ("crid = ?1", Sql::Integer(id)),
        (None, Some(n)) => ("invoice = ?1", Sql::Text(n)),
        (None, None) => return Ok(Reply::Fatal(DO_NO_ID_FATAL.to_string())),
    };
    let found = rows(
        ctx.conn,
        &format!("SELECT * FROM invoice WHERE {cond} ORDER BY crid LIMIT 1"),
        &[arg],
    )?;
    let Some(r) = found.first() else {
        return Ok(Reply::Json(error(403, "Счет по ID или Номеру не найден")));
    };
    let crid = r["crid"].as_i64().unwrap_or(0);
    let summa = num(&r["summa_credit"]);
    // PHP's (float): "abc" → 0 → the full sum.
    let paid = php_sum(ctx.p.get("summa"))
        .filter(|&s| s > 0.0)
        .unwrap_or(summa);
    let tx = ctx.conn.transaction()?;
    tx.execute(
        "UPDATE invoice SET do = 'on', summa_credit = ?1 WHERE crid = ?2",
        rusqlite::params![paid, crid],
    )?;
    let mut text = format!("Внесена оплата по графику {} р.", ru(paid));
    let mut newdata = None;
    if paid < summa {
        let rest = ((summa - paid) * 100.0).round() / 100.0;
        let datum = r["datum"].as_str().map(shifted);
        tx.execute(
            "INSERT INTO invoice (did, clid, pid, datum, datum_credit, summa_credit, nds_credit,
                iduser, do, invoice, invoice_chek, rs, tip)
             SELECT did, clid, pid, ?1, datum_credit, ?2, 0, iduser, 'no', invoice, invoice_chek,
                rs, tip FROM invoice WHERE crid = ?3",
            rusqlite::params![datum, rest, crid],
        )?;
        newdata = Some(tx.last_insert_rowid());
        text.push_str(&format!(
            "<br>Поступившая оплата отличается от планируемой.<br>Добавлен дополнительный платеж {} р.",
            ru(rest)
        ));
    }
    text.push_str(&format!(
        "<br>На р/с Основной расчетный счет внесена оплата в размере {} р.",
        ru(paid)
    ));
    // Every call writes its event to the deal's history, paid before or not
    // (v3-invoice-do-full-sum db_new_history_rows): the trace of a double payment.
    let did = r["did"].as_i64().unwrap_or(0);
    super::history::write_auto(&tx, "СобытиеCRM", &text.replace("<br>", ""), (0, 0, did))?;
    tx.commit()?;
    let mut answer = json!({"result": "Успешно", "data": text});
    if let Some(n) = newdata {
        answer["newdata"] = json!(n);
    }
    Ok(Reply::Json(answer))
}

#[cfg(test)]
mod tests {
    use super::super::testkit::Crm;
    use super::php_sum;
    use serde_json::json;

    fn deal_with_spec(crm: &Crm, kol: i64) -> i64 {
        let clid = crm.add("client", json!({"title": "Клиент счетов"}));
        crm.add(
            "deal",
            json!({"title": "Сделка", "clid": clid,
                   "speka": [{"title": "Услуга", "price": kol, "kol": 1, "nds": 20}]}),
        )
    }

    #[test]
    fn sums_read_like_php_thousands_comma_included() {
        assert_eq!(php_sum(Some(&json!("20 000,50"))), Some(20000.5));
        assert_eq!(php_sum(Some(&json!("1,500.50"))), Some(1.5));
        assert_eq!(php_sum(Some(&json!("abc"))), None);
        assert_eq!(php_sum(Some(&json!(30000))), Some(30000.0));
    }

    #[test]
    fn add_needs_a_spec_and_stops_at_the_deal_sum() {
        let crm = Crm::new();
        let clid = crm.add("client", json!({"title": "Без спецификации"}));
        let bare = crm.add(
            "deal",
            json!({"title": "Пустая", "clid": clid, "kol": 1000}),
        );
        let page = crm.fatal("invoice", "add", json!({"did": bare, "summa": 100}));
        assert!(page.contains("DivisionByZeroError"), "{page}");
        let did = deal_with_spec(&crm, 100000);
        let r = crm.call(
            "invoice",
            "add",
            json!({"did": did, "summa": 30000, "invoice": "INV-1"}),
        );
        assert_eq!(r["result"], "Успешно;Счет добавлен в платежи");
        assert_eq!(r["data"]["invoice"], "INV-1");
        // No summa: the whole deal sum again (130,000 invoiced on a 100,000 deal).
        crm.call("invoice", "add", json!({ "did": did }));
        let r = crm.call("invoice", "add", json!({"did": did, "summa": 1}));
        assert_eq!(r["error"]["code"], 406);
        let r = crm.call("invoice", "add", json!({"did": 9999, "summa": 1}));
        assert_eq!(r["error"]["code"], 403);
    }

    #[test]
    fn list_pages_by_30_from_offset_1_and_filters_paid() {
        let crm = Crm::new();
        let did = deal_with_spec(&crm, 1_000_000);
        for i in 0..31 {
            crm.call("invoice", "add", json!({"did": did, "summa": 100 + i}));
        }
        let p0 = crm.call("invoice", "list", json!({"offset": 0}));
        let p1 = crm.call("invoice", "list", json!({"offset": 1}));
        assert_eq!(p0, p1, "offset 0 and 1 are both page 1");
        assert_eq!(p1["data"].as_array().unwrap().len(), 30);
        assert_eq!(p1["count"], 31);
        let p2 = crm.call("invoice", "list", json!({"offset": 2}));
        assert_eq!(p2["data"].as_array().unwrap().len(), 1);
        let first = p1["data"][0]["crid"].as_i64().unwrap();
        crm.call("invoice", "do", json!({ "id": first }));
        let paid = crm.call("invoice", "list", json!({"pay1": "yes"}));
        assert_eq!(paid["count"], 1);
        assert_eq!(paid["data"][0]["do"], true);
        assert_eq!(
            paid["data"][0]["date_fact"],
            json!(null),
            "do never sets the paid date"
        );
        let unpaid = crm.call("invoice", "list", json!({"pay2": "yes", "active": "no"}));
        assert_eq!(unpaid["count"], 30);
        let page = crm.fatal("invoice", "list", json!({"dateStart": "2026-11-01"}));
        assert!(page.contains("mysqli_sql_exception"), "{page}");
    }

    #[test]
    fn do_is_not_idempotent_and_a_partial_payment_splits_the_row() {
        let crm = Crm::new();
        let did = deal_with_spec(&crm, 100000);
        let crid = crm.call("invoice", "add", json!({"did": did, "summa": 30000}))["data"]["id"]
            .as_i64()
            .unwrap();
        let r = crm.call("invoice", "do", json!({"id": crid, "summa": "10 000"}));
        assert_eq!(r["result"], "Успешно");
        let rest = r["newdata"].as_i64().unwrap();
        let info = &crm.call("invoice", "info", json!({ "id": rest }))["data"];
        assert_eq!(info["summa"], 20000);
        assert_eq!(info["do"], "no");
        let again = crm.call("invoice", "do", json!({ "id": crid }));
        assert_eq!(again["result"], "Успешно", "paying twice succeeds again");
        let paid = &crm.call("invoice", "info", json!({ "id": crid }))["data"];
        assert_eq!(paid["summa"], 10000);
        assert_eq!(paid["invoice_date"], json!(null));
        // Each call leaves its event in the deal's history: two calls, two rows.
        let events = crm.sql_value(&format!(
            "SELECT COUNT(*) FROM history WHERE did = {did} AND tip = 'СобытиеCRM' AND des LIKE 'Внесена оплата%'"
        ));
        assert_eq!(events, json!(2));
        let r = crm.call("invoice", "do", json!({"id": 999}));
        assert_eq!(r["error"]["code"], 403);
        let missing = crm.call("invoice", "info", json!({"id": 999}));
        assert_eq!(missing["data"]["crid"], 0);
    }

    #[test]
    fn info_shows_the_creation_time_3_hours_later_than_list() {
        let crm = Crm::new();
        let did = deal_with_spec(&crm, 1000);
        let crid = crm.call("invoice", "add", json!({"did": did, "date": "2026-11-29"}))["data"]
            ["id"]
            .as_i64()
            .unwrap();
        crm.sql(&format!(
            "UPDATE invoice SET datum = '2026-11-29 08:55:00' WHERE crid = {crid}"
        ));
        let listed = crm.call("invoice", "list", json!({}));
        assert_eq!(listed["data"][0]["date_create"], "2026-11-29 08:55:00");
        let info = crm.call("invoice", "info", json!({ "id": crid }));
        assert_eq!(info["data"]["datum"], "2026-11-29 11:55:00");
    }
}
