//! Payments in (issue 14): a payment record pays an invoice through `invoice/do`, which is not
//! idempotent (paying again adds the sum again; a second partial payment of a paid row shrinks
//! the recorded payment, NOTES §12). So a payment is never sent on the strength of the file
//! alone. For each payment, in turn:
//!
//! 1. an earlier attempt the journal holds (`actions` table, `sent`) is settled first by reading
//!    the row it went to (`invoice/info`: paid or not) — a lost answer is never resent blindly;
//! 2. the invoice's rows are read (`invoice/list` by number, or by deal): a partial payment
//!    splits a row into a paid row and an unpaid remainder with the same number, so the rows
//!    together are the invoice, the paid ones its payments so far;
//! 3. [`decide`]: a paid row of this amount not yet accounted to another payment is this
//!    payment, already recorded (`existing`); an invoice paid in full is `existing`; an amount
//!    above what is unpaid is refused; otherwise the unpaid row is paid with this amount
//!    (`actions::run_action`, journaled `sent` before the call).
//!
//! Payments of one invoice (one number, or one deal) go one after another, so two never race for
//! its unpaid row; payments of different invoices go concurrently under the upload's adaptive
//! limit (invoice/do: 85 / 118 / 147 per second at 1 / 2 / 4 in flight, throughput.md).

use super::actions::{self, Action, Done, Kind};
use super::journal::{State, Update};
use super::{payload, Ctx, UploadError};
use crate::crm::{ContractApi, CrmError, Entity};
use crate::export::{self, Filters};
use crate::report::Progress;
use crate::values::{value_id, value_text, Money};
use rusqlite::params;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Mutex;

/// One row of an invoice as invoice/list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceRow {
    pub crid: i64,
    pub number: String,
    pub did: i64,
    pub summa: Money,
    pub paid: bool,
}

impl InvoiceRow {
    /// A row of invoice/list (`do`: true when paid, `summa`: the row's amount).
    pub fn from_list(row: &Map<String, Value>) -> Option<InvoiceRow> {
        let paid = match row.get("do") {
            Some(Value::Bool(b)) => *b,
            Some(v) => matches!(value_text(v).trim(), "on" | "yes" | "1" | "true"),
            None => false,
        };
        Some(InvoiceRow {
            crid: value_id(row.get("crid").or_else(|| row.get("id")))?,
            number: row.get("invoice").map(value_text).unwrap_or_default(),
            did: value_id(row.get("did")).unwrap_or(0),
            summa: row.get("summa").and_then(Money::from_json)?,
            paid,
        })
    }
}

/// What to do with one payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Already recorded: this paid row is the payment (or the invoice is paid in full).
    Existing { crid: i64, why: String },
    /// Pay `summa` on the unpaid row `crid`.
    Pay { crid: i64, summa: Money, full: bool },
    /// Not paid: the reason, for the report.
    Refuse(String),
}

/// Decide one payment of `amount` from the invoice's rows. `claimed`: paid rows already
/// accounted to other payments (of this file, by the journal or earlier in the run). `exact`:
/// the invoice was found by deal and amount, so only a row of exactly this amount is it (a
/// partial payment needs the invoice's number).
pub fn decide(rows: &[InvoiceRow], amount: Money, claimed: &HashSet<i64>, exact: bool) -> Decision {
    if amount <= Money::ZERO {
        return Decision::Refuse(format!(
            "the amount {} is not a payment",
            amount.fixed2(false)
        ));
    }
    let mut total = Money::ZERO;
    let mut paid = Money::ZERO;
    for r in rows {
        total = total.checked_add(r.summa).unwrap_or(total);
        if r.paid {
            paid = paid.checked_add(r.summa).unwrap_or(paid);
        }
    }
    let mut rows: Vec<&InvoiceRow> = rows.iter().collect();
    rows.sort_by_key(|r| r.crid);
    // This very payment, recorded earlier (its journal lost, or paid by hand in the CRM).
    if let Some(r) = rows
        .iter()
        .find(|r| r.paid && r.summa == amount && !claimed.contains(&r.crid))
    {
        return Decision::Existing {
            crid: r.crid,
            why: format!(
                "already recorded: invoice row {} holds a payment of {}",
                r.crid,
                amount.fixed2(false)
            ),
        };
    }
    let unpaid: Vec<&InvoiceRow> = rows.iter().copied().filter(|r| !r.paid).collect();
    if unpaid.is_empty() {
        let crid = rows
            .iter()
            .find(|r| r.paid && !claimed.contains(&r.crid))
            .or(rows.first())
            .map_or(0, |r| r.crid);
        return Decision::Existing {
            crid,
            why: format!(
                "the invoice is paid in full ({} of {}): not paid again",
                paid.fixed2(false),
                total.fixed2(false)
            ),
        };
    }
    let fits = |r: &&&InvoiceRow| -> bool {
        if exact {
            r.summa == amount
        } else {
            r.summa >= amount
        }
    };
    match unpaid.iter().find(fits) {
        Some(r) => Decision::Pay {
            crid: r.crid,
            summa: amount,
            full: r.summa == amount,
        },
        None if exact => Decision::Refuse(format!(
            "the deal has no unpaid invoice of exactly {}: give the invoice number to pay part of one",
            amount.fixed2(false)
        )),
        None => {
            let open = unpaid
                .iter()
                .fold(Money::ZERO, |s, r| s.checked_add(r.summa).unwrap_or(s));
            Decision::Refuse(format!(
                "over-payment: {} is more than the {} still unpaid of {} (paid so far {}); not paid",
                amount.fixed2(false),
                open.fixed2(false),
                total.fixed2(false),
                paid.fixed2(false)
            ))
        }
    }
}

/// How a payment names its invoice.
enum Target {
    Number(String),
    Deal(i64),
}

impl Target {
    fn describe(&self) -> String {
        match self {
            Target::Number(n) => format!("invoice '{n}'"),
            Target::Deal(d) => format!("the invoice of deal {d}"),
        }
    }
}

/// The rows of an invoice: by number (`word` searches numbers, contracts and titles, so the
/// number is compared exactly), or every invoice row of a deal.
async fn invoice_rows(ctx: &Ctx, target: &Target) -> Result<Vec<InvoiceRow>, CrmError> {
    let policy = &ctx.opts.lookup_retry;
    if ctx.client.contract_api(policy).await? == ContractApi::V1 {
        // An older server has no invoice/list: a deal's invoices come with v1 contract info,
        // an invoice known by number only is looked for among all deals' invoices.
        let rows = match target {
            Target::Deal(did) => ctx.client.v1_deal_invoices(*did, policy).await?,
            Target::Number(n) => {
                ctx.client
                    .v1_all_invoices(policy, |r| {
                        r.get("invoice").map(value_text).unwrap_or_default().trim() == n.trim()
                    })
                    .await?
            }
        };
        return Ok(rows.iter().filter_map(InvoiceRow::from_list).collect());
    }
    let mut filters = Filters::default();
    match target {
        Target::Number(n) => filters.word = Some(n.clone()),
        Target::Deal(d) => filters.deal = Some(*d),
    }
    let progress = Progress::new("invoice", None, true);
    let mut out = Vec::new();
    let read = export::fetch_all(
        &ctx.client,
        Entity::Invoice,
        &filters,
        None,
        1,
        &ctx.opts.lookup_retry,
        &progress,
        |row| {
            if let Some(r) = InvoiceRow::from_list(&row) {
                out.push(r);
            }
        },
    )
    .await;
    progress.finish();
    match read {
        Ok(()) => {}
        Err(export::ExportError::PageFailed { source, .. }) => return Err(source),
        Err(e) => return Err(CrmError::Setup(e.to_string())),
    }
    if let Target::Number(n) = target {
        out.retain(|r| r.number.trim() == n.trim());
    }
    Ok(out)
}

/// A payment to make: its key, and its fields (or why they could not be had).
type Planned = (String, Result<Map<String, Value>, String>);

/// Pay every planned payment not yet settled: a page at a time, its payments in lanes by
/// invoice (serial within a lane, lanes concurrent, each payment under a limiter permit).
pub(super) async fn pay_entity(ctx: &Ctx, progress: &Progress) -> Result<(), UploadError> {
    let entity = Entity::Payment;
    // Paid rows already accounted to a payment of this journal.
    let mut claimed: HashSet<i64> = actions::acted_on(ctx, entity, Kind::Pay)?
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    {
        let journal = ctx.journal_lock();
        let read = || -> rusqlite::Result<Vec<i64>> {
            let mut st = journal.conn.prepare(
                "SELECT crm_id FROM records WHERE entity = ?1 AND crm_id IS NOT NULL
                 AND state IN ('created', 'existing')",
            )?;
            let ids = st.query_map(params![entity.as_str()], |r| r.get(0))?;
            ids.collect()
        };
        claimed.extend(read().map_err(|e| UploadError::journal(journal.path(), e))?);
    }
    let claimed = Mutex::new(claimed);
    for page in ctx.plan_pages(entity) {
        let page = page?;
        // Lanes: the payments of one invoice, in file order.
        let mut lanes: HashMap<String, Vec<Planned>> = HashMap::new();
        let mut order: Vec<String> = Vec::new();
        for rec in page {
            if rec.state.is_some_and(State::is_settled) {
                continue;
            }
            let fields = {
                let journal = ctx.journal_lock();
                payload(&journal, entity, &rec)?
            };
            let lane = match &fields {
                Ok(f) if !text(f, "invoice").is_empty() => format!("n:{}", text(f, "invoice")),
                Ok(f) => format!("d:{}", text(f, "did")),
                Err(_) => format!("k:{}", rec.key),
            };
            if !lanes.contains_key(&lane) {
                order.push(lane.clone());
            }
            lanes.entry(lane).or_default().push((rec.key, fields));
        }
        let runs = order
            .into_iter()
            .filter_map(|l| lanes.remove(&l))
            .map(|lane| {
                let claimed = &claimed;
                async move {
                    for (key, fields) in lane {
                        if ctx.stop.load(Ordering::SeqCst) {
                            return Ok(());
                        }
                        let permit = ctx.limiter.acquire().await;
                        let up = match fields {
                            Ok(fields) => pay_one(ctx, &key, &fields, claimed).await?,
                            Err(why) => failed(&key, None, why),
                        };
                        drop(permit);
                        ctx.journal_record(std::slice::from_ref(&up))?;
                        if !matches!(up.state, State::Pending | State::Sent) {
                            progress.inc(1);
                        }
                    }
                    Ok::<(), UploadError>(())
                }
            });
        for r in futures_util::future::join_all(runs).await {
            r?;
        }
        if ctx.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
    }
    Ok(())
}

fn failed(key: &str, crid: Option<i64>, why: String) -> Update {
    Update {
        entity: Entity::Payment,
        key: key.to_string(),
        state: State::Failed,
        crm_id: crid,
        error: Some(why),
        resolved: false,
    }
}

/// A field's trimmed text, "" when absent or blank (one reading with `actions`).
fn text(fields: &Map<String, Value>, f: &str) -> String {
    actions::text(fields, f).unwrap_or_default()
}

/// One payment: settle an earlier attempt, read the invoice, decide, pay.
async fn pay_one(
    ctx: &Ctx,
    key: &str,
    fields: &Map<String, Value>,
    claimed: &Mutex<HashSet<i64>>,
) -> Result<Update, UploadError> {
    let claim = |crid: i64| {
        claimed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(crid);
    };
    let entity = Entity::Payment;
    let written = text(fields, "summa");
    let date = text(fields, "date");
    let Some(amount) = fields.get("summa").and_then(Money::from_json) else {
        return Ok(failed(
            key,
            None,
            format!("payment field 'summa' is '{written}', not an amount"),
        ));
    };
    let number = text(fields, "invoice");
    let target = if !number.is_empty() {
        Target::Number(number)
    } else if let Some(did) = fields.get("did").and_then(|v| value_id(Some(v))) {
        Target::Deal(did)
    } else {
        return Ok(failed(
            key,
            None,
            "the payment names no invoice: its number and its deal are both empty".into(),
        ));
    };
    let on = if date.is_empty() {
        "with no date".to_string()
    } else {
        format!("on {date}")
    };
    // v3 invoice/do drops the payment date; an older server's v1 addpaiment records it.
    let v1 = ctx.client.contract_api(&ctx.opts.lookup_retry).await.ok() == Some(ContractApi::V1);
    let dated = if v1 {
        "the CRM records the payment date (v1)"
    } else {
        "the CRM records no payment date"
    };
    let note = |what: &str, crid: i64| {
        format!(
            "{what} {} of {} {on} (invoice row {crid}; {dated})",
            amount.fixed2(false),
            target.describe()
        )
    };
    let done = |state: State, crid: i64, note: String, resolved: bool| Update {
        entity,
        key: key.to_string(),
        state,
        crm_id: Some(crid),
        error: Some(note),
        resolved,
    };
    // 1. An earlier attempt whose answer was lost: did it take effect?
    if let Some((crid, state)) = actions::journaled_any(ctx, entity, key, Kind::Pay)? {
        let probe = Action::pay(crid, amount);
        match state.as_str() {
            "done" => {
                claim(crid);
                return Ok(done(State::Created, crid, note("paid", crid), false));
            }
            "sent" if ctx.opts.dry_run => {}
            "sent" => match actions::took_effect(ctx, entity, crid, &probe).await {
                Ok(true) => {
                    claim(crid);
                    return Ok(done(
                        State::Created,
                        crid,
                        note("paid (answer lost, the invoice shows it paid)", crid),
                        true,
                    ));
                }
                Ok(false) => {
                    // Not applied: the row it went to is still unpaid; decide afresh.
                    claimed
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&crid);
                }
                Err(e) if e.is_fatal() => return Err(UploadError::Fatal(e)),
                Err(e) => {
                    return Ok(Update {
                        state: State::Ambiguous,
                        error: Some(format!(
                            "invoice/do: the answer was lost and reading invoice row {crid} back failed ({e}); run again: it is checked before anything is paid"
                        )),
                        ..done(State::Ambiguous, crid, String::new(), false)
                    })
                }
            },
            _ => {}
        }
    }
    // 2. The invoice as the CRM has it now.
    let rows = match invoice_rows(ctx, &target).await {
        Ok(r) => r,
        Err(e) if e.is_fatal() => return Err(UploadError::Fatal(e)),
        Err(e) => {
            return Ok(Update {
                state: State::Pending,
                error: Some(format!(
                    "reading {} failed ({e}); nothing was paid, run again",
                    target.describe()
                )),
                ..failed(key, None, String::new())
            })
        }
    };
    if rows.is_empty() {
        return Ok(failed(
            key,
            None,
            format!(
                "{} is not in the CRM (invoice/list finds no such invoice); nothing was paid",
                target.describe()
            ),
        ));
    }
    // 3. Decide and pay.
    let decision = {
        let claimed = claimed.lock().unwrap_or_else(|e| e.into_inner());
        decide(&rows, amount, &claimed, matches!(target, Target::Deal(_)))
    };
    match decision {
        Decision::Existing { crid, why } => {
            claim(crid);
            Ok(done(
                State::Existing,
                crid,
                format!("{why}; payment {} {on}", amount.fixed2(false)),
                false,
            ))
        }
        Decision::Refuse(why) => Ok(failed(
            key,
            None,
            format!(
                "payment of {} {on} to {}: {why}",
                amount.fixed2(false),
                target.describe()
            ),
        )),
        Decision::Pay {
            crid,
            summa: _,
            full,
        } if ctx.opts.dry_run => {
            // A dry run reads and decides, and pays nothing: counted as a payment it would make.
            claim(crid);
            let what = if full {
                "would pay in full"
            } else {
                "would pay part"
            };
            Ok(Update {
                state: State::Pending,
                crm_id: None,
                ..done(State::Pending, crid, note(what, crid), false)
            })
        }
        Decision::Pay { crid, summa, full } => {
            claim(crid);
            let (number, did) = rows
                .iter()
                .find(|r| r.crid == crid)
                .map(|r| (r.number.clone(), r.did))
                .unwrap_or_default();
            // On an older server v1 also records the payment date (v3 invoice/do drops it).
            let a = Action::pay(crid, summa).for_v1(&number, full, &date, did);
            let what = if full { "paid in full" } else { "paid part" };
            Ok(
                match actions::run_action(ctx, entity, key, crid, &a).await? {
                    Done::Applied { resolved } => {
                        done(State::Created, crid, note(what, crid), resolved)
                    }
                    Done::Already => done(State::Existing, crid, note("already paid", crid), false),
                    Done::Failed(why) => failed(key, Some(crid), why),
                    Done::Unknown(why) => Update {
                        error: Some(why),
                        ..done(State::Ambiguous, crid, String::new(), false)
                    },
                },
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(crid: i64, summa: &str, paid: bool) -> InvoiceRow {
        InvoiceRow {
            crid,
            number: "101".into(),
            did: 1,
            summa: Money::parse(summa).unwrap(),
            paid,
        }
    }

    fn m(s: &str) -> Money {
        Money::parse(s).unwrap()
    }

    #[test]
    fn an_unpaid_invoice_is_paid_in_full_or_in_part() {
        let none = HashSet::new();
        let rows = [row(5, "30000.00", false)];
        assert_eq!(
            decide(&rows, m("30 000,00"), &none, false),
            Decision::Pay {
                crid: 5,
                summa: m("30000"),
                full: true
            }
        );
        assert_eq!(
            decide(&rows, m("10000"), &none, false),
            Decision::Pay {
                crid: 5,
                summa: m("10000"),
                full: false
            }
        );
    }

    #[test]
    fn a_paid_invoice_is_never_paid_again() {
        let none = HashSet::new();
        // Paid in full, the same payment again: it is the recorded one.
        let paid = [row(5, "30000", true)];
        let d = decide(&paid, m("30000"), &none, false);
        assert!(matches!(d, Decision::Existing { crid: 5, .. }), "{d:?}");
        // Paid in full, another amount: still not paid again.
        let d = decide(&paid, m("100"), &none, false);
        assert!(
            matches!(&d, Decision::Existing { why, .. } if why.contains("paid in full")),
            "{d:?}"
        );
    }

    #[test]
    fn partial_payments_count_against_what_is_recorded() {
        // 100 invoiced, 40 paid (split: paid row 5 of 40, unpaid remainder 9 of 60).
        let rows = [row(5, "40", true), row(9, "60", false)];
        let mut claimed = HashSet::new();
        // The 40 again, its journal lost: the paid row of 40 is it.
        let d = decide(&rows, m("40"), &claimed, false);
        assert!(matches!(d, Decision::Existing { crid: 5, .. }), "{d:?}");
        // A second 40 when the first is accounted to another payment: paid on the remainder.
        claimed.insert(5);
        assert_eq!(
            decide(&rows, m("40"), &claimed, false),
            Decision::Pay {
                crid: 9,
                summa: m("40"),
                full: false
            }
        );
        // More than the 60 still unpaid: an over-payment, refused with the figures.
        match decide(&rows, m("70"), &claimed, false) {
            Decision::Refuse(why) => {
                assert!(why.contains("over-payment"), "{why}");
                assert!(why.contains("60.00") && why.contains("100.00"), "{why}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn by_deal_only_an_invoice_of_exactly_the_amount_is_paid() {
        let none = HashSet::new();
        let rows = [row(3, "500", false), row(4, "1200", false)];
        assert_eq!(
            decide(&rows, m("1200"), &none, true),
            Decision::Pay {
                crid: 4,
                summa: m("1200"),
                full: true
            }
        );
        assert!(matches!(
            decide(&rows, m("700"), &none, true),
            Decision::Refuse(_)
        ));
        assert!(matches!(
            decide(&rows, m("0"), &none, false),
            Decision::Refuse(_)
        ));
    }

    #[test]
    fn list_rows_read_paid_flag_and_amount() {
        let r = serde_json::json!({"crid": 7, "invoice": "101", "did": 2, "summa": "1500.50",
                                   "do": true});
        let row = InvoiceRow::from_list(r.as_object().unwrap()).unwrap();
        assert_eq!((row.crid, row.paid, row.summa), (7, true, m("1500.50")));
        let r = serde_json::json!({"crid": 8, "invoice": "101", "did": 2, "summa": 10, "do": null});
        assert!(!InvoiceRow::from_list(r.as_object().unwrap()).unwrap().paid);
    }
}
