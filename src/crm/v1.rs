//! The v1 contract API of older servers (api/contract-v1.txt; NOTES §10, §12): the wire format
//! of the actions smbatch falls back to when a server has no v3 invoice actions —
//! `addinvoice`, `addpaiment`, `addpaimentpart`, `changestep`, `close` — and of the reads that
//! tell what an invoice holds (`info` and `list` with their `invoice` blocks).
//!
//! v1 is `GET /developer/v1/contract?login=…&apikey=…&action=…`: the API key travels in the
//! URL, so the URL an error shows is [`redacted_url`], never the one sent.

use super::{CrmClient, CrmError, ItemOutcome, RetryPolicy};
use crate::values::{value_id, value_text};
use serde_json::{Map, Value};

/// v1 lists page by 200 rows; `offset` is the page number from 0.
const LIST_PAGE: usize = 200;
/// A scan stops here (2,000,000 deals) rather than loop on a server that repeats its pages.
const MAX_PAGES: u64 = 10_000;

impl CrmClient {
    /// The invoice rows of a deal ([`invoices_of_deal`]), read with v1 `contract info`. A
    /// read: retried per `policy`.
    pub async fn v1_deal_invoices(
        &self,
        did: i64,
        policy: &RetryPolicy,
    ) -> Result<Vec<Map<String, Value>>, CrmError> {
        let params = [("did", did.to_string()), ("speka", "no".to_string())];
        let answer = policy
            .run(|| self.call_v1("contract", "info", &params))
            .await?;
        Ok(invoices_of_deal(answer.get("data").unwrap_or(&answer)))
    }

    /// Every invoice row of the CRM that `keep` keeps, read with v1 `contract list` (open
    /// deals, then closed ones; 200 deals a page with their invoices): v1 has no invoice list,
    /// so an invoice known only by its number is found this way.
    pub async fn v1_all_invoices(
        &self,
        policy: &RetryPolicy,
        keep: impl Fn(&Map<String, Value>) -> bool,
    ) -> Result<Vec<Map<String, Value>>, CrmError> {
        let mut out = Vec::new();
        for active in ["yes", "no"] {
            for page in 0..MAX_PAGES {
                let params = [("active", active.to_string()), ("offset", page.to_string())];
                let answer = policy
                    .run(|| self.call_v1("contract", "list", &params))
                    .await?;
                let deals = match answer.get("data") {
                    Some(Value::Array(d)) => d.clone(),
                    _ => Vec::new(),
                };
                for d in &deals {
                    out.extend(invoices_of_deal(d).into_iter().filter(|r| keep(r)));
                }
                if deals.len() < LIST_PAGE {
                    break;
                }
            }
        }
        Ok(out)
    }
}

/// Which API a server has for invoices, payments, deal steps and closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContractApi {
    /// v3 `invoice/*`, `deal/change.step`, `deal/close`.
    V3,
    /// An older server: the v1 contract actions.
    V1,
}

/// The URL of a v1 call as errors show it: the values as written, the key as `***`.
pub fn redacted_url(
    base: &str,
    method: &str,
    login: &str,
    action: &str,
    params: &[(&str, String)],
) -> String {
    let mut url = format!("{base}/developer/v1/{method}?login={login}&apikey=***&action={action}");
    for (k, v) in params {
        url.push('&');
        url.push_str(k);
        url.push('=');
        url.push_str(v);
    }
    url
}

fn put(out: &mut Vec<(&'static str, String)>, name: &'static str, v: Option<&Value>) {
    if let Some(v) = v.filter(|v| !v.is_null()) {
        let t = value_text(v);
        if !t.trim().is_empty() {
            out.push((name, t.trim().to_string()));
        }
    }
}

/// `addinvoice` parameters of an invoice record (its v3 `invoice/add` payload): the deal,
/// sum, number, dates (`date.plan` → `date_plan`, `date.do` → `date_do`), contract, VAT,
/// account and type; `do` as v1's `yes`/`no`.
pub fn add_invoice(payload: &Map<String, Value>) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for (v3, v1) in [
        ("did", "did"),
        ("uid", "uid"),
        ("summa", "summa"),
        ("invoice", "invoice"),
        ("date", "date"),
        ("date.plan", "date_plan"),
        ("date_plan", "date_plan"),
        ("contract", "contract"),
        ("nds", "nds"),
        ("rs", "rs"),
        ("tip", "tip"),
        ("date.do", "date_do"),
    ] {
        put(&mut out, v1, payload.get(v3));
    }
    if let Some(d) = payload.get("do").map(value_text) {
        let paid = matches!(d.trim(), "on" | "yes" | "1" | "true");
        out.push(("do", if paid { "yes" } else { "no" }.into()));
    }
    out
}

/// The answer of `addinvoice`: `{"result":"Счет добавлен в платежи","data":{"id":10,…}}`.
pub fn added_invoice(answer: &Value) -> ItemOutcome {
    match value_id(answer.get("data").and_then(|d| d.get("id"))) {
        Some(id) => ItemOutcome::Created(id),
        None => ItemOutcome::Failed {
            code: None,
            text: format!(
                "addinvoice answered '{}' without an invoice id",
                answer.get("result").map(value_text).unwrap_or_default()
            ),
        },
    }
}

/// The v1 action and parameters that do what the v3 deal or invoice action `v3_action` with
/// `body` does: `change.step` → `changestep`, `close` → `close` (v1 takes no closing day: the
/// deal closes today), `do` → `addpaiment` (the whole row) or `addpaimentpart` (part of it).
/// `extra` carries what v1 needs beyond the v3 body: a payment's invoice `number`, `full`
/// (`true` for the whole row) and the payment `date` (v1 records it, v3 does not).
pub fn action(
    v3_action: &str,
    body: &Map<String, Value>,
    extra: &Map<String, Value>,
) -> Option<(&'static str, Vec<(&'static str, String)>)> {
    let mut out = Vec::new();
    let name = match v3_action {
        "change.step" => {
            put(&mut out, "did", body.get("did"));
            put(&mut out, "step", body.get("step"));
            "changestep"
        }
        "close" => {
            for k in ["did", "status_close", "kol_fact", "des_fact"] {
                put(&mut out, k, body.get(k));
            }
            "close"
        }
        "do" => {
            put(&mut out, "id", body.get("id"));
            put(&mut out, "invoice", extra.get("number"));
            put(&mut out, "date_do", extra.get("date"));
            if extra.get("full") == Some(&Value::Bool(true)) {
                "addpaiment"
            } else {
                put(&mut out, "summa", body.get("summa"));
                "addpaimentpart"
            }
        }
        _ => return None,
    };
    Some((name, out))
}

/// The invoice rows of a v1 deal (`info`'s `data`, or a `list` row), in the shape of
/// `invoice/list` rows: `crid`, `invoice`, `did`, `summa`, `do` (paid: true), `date_do`.
pub fn invoices_of_deal(deal: &Value) -> Vec<Map<String, Value>> {
    let did = deal.get("did").cloned().unwrap_or(Value::Null);
    let Some(Value::Array(items)) = deal.get("invoice") else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|i| {
            let mut row = Map::new();
            row.insert("crid".into(), Value::from(value_id(i.get("id"))?));
            row.insert(
                "invoice".into(),
                Value::from(i.get("invoice").map(value_text).unwrap_or_default()),
            );
            row.insert("did".into(), did.clone());
            row.insert(
                "summa".into(),
                i.get("summa").cloned().unwrap_or(Value::Null),
            );
            let paid = i
                .get("do")
                .map(value_text)
                .is_some_and(|d| d.trim() == "on");
            row.insert("do".into(), Value::Bool(paid));
            row.insert(
                "date_do".into(),
                i.get("date_do").cloned().unwrap_or(Value::Null),
            );
            Some(row)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn the_key_never_shows_in_a_v1_url() {
        let url = redacted_url(
            "https://crm.example.ru",
            "contract",
            "admin@x.ru",
            "addpaiment",
            &[("invoice", "СЧ-1".into())],
        );
        assert_eq!(
            url,
            "https://crm.example.ru/developer/v1/contract?login=admin@x.ru&apikey=***&action=addpaiment&invoice=СЧ-1"
        );
    }

    #[test]
    fn payments_map_to_addpaiment_or_addpaimentpart_with_the_date() {
        let body = map(json!({"id": 12, "summa": "12000.50"}));
        let full = map(json!({"number": "V1-INV-3", "full": true, "date": "2026-11-26"}));
        let (name, p) = action("do", &body, &full).unwrap();
        assert_eq!(name, "addpaiment");
        assert_eq!(
            p,
            [
                ("id", "12".to_string()),
                ("invoice", "V1-INV-3".into()),
                ("date_do", "2026-11-26".into())
            ]
        );
        let part = map(json!({"number": "V1-INV-3", "full": false}));
        let (name, p) = action("do", &body, &part).unwrap();
        assert_eq!(name, "addpaimentpart");
        assert!(p.contains(&("summa", "12000.50".into())), "{p:?}");
        let close = map(
            json!({"did": 28, "status_close": "Победа полная", "kol_fact": 6500.5,
                               "datum": "2026-11-28"}),
        );
        let (name, p) = action("close", &close, &Map::new()).unwrap();
        assert_eq!(name, "close");
        assert!(p.iter().all(|(k, _)| *k != "datum"), "{p:?}");
        assert!(action("change.user", &close, &Map::new()).is_none());
    }

    #[test]
    fn an_invoice_record_becomes_addinvoice_and_its_answer_an_id() {
        let p = add_invoice(&map(
            json!({"did": 27, "summa": 20000, "invoice": "V1-INV-1",
            "date.plan": "2026-12-20", "contract": "V1-Д", "do": "on"}),
        ));
        assert!(p.contains(&("date_plan", "2026-12-20".into())), "{p:?}");
        assert!(p.contains(&("do", "yes".into())), "{p:?}");
        let answer =
            json!({"result": "Счет добавлен в платежи", "data": {"id": 10, "invoice": "V1-INV-1"}});
        assert_eq!(added_invoice(&answer), ItemOutcome::Created(10));
        let rows = invoices_of_deal(&json!({"did": "27", "invoice": [
            {"id": "10", "invoice": "V1-INV-1", "summa": "20000.00", "do": "on", "date_do": "2026-11-27"},
            {"id": "13", "invoice": "V1-INV-3", "summa": "17999.50", "do": "no", "date_do": null}]}));
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0]["crid"].clone(), rows[0]["do"].clone()),
            (json!(10), json!(true))
        );
        assert_eq!(rows[1]["do"], json!(false));
    }
}
