//! Exports for the books. Invoices: each listed invoice becomes one row with the columns an
//! accountant asks for, the deal's (number, title, stage, owner) and the client's (title, INN,
//! KPP) joined in. Deals: each listed deal gets its paid and unpaid invoice totals (one pass
//! over invoice/list, summed by did) and the client's INN. Deals and clients are read once per
//! distinct id (`deal/info`, `client/info` with `bankinfo`), shared by all pages in flight and
//! fetched while the pages are (a few at a time within a page).

use super::pager::{PageJoin, Row};
use crate::crm::{CrmClient, CrmError, Entity, RetryPolicy};
use crate::report::summary::MoneyTotals;
use crate::values::{split_deal_number, Money};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

/// The columns of an invoice export, in order.
pub const COLUMNS: &[&str] = &[
    "crid",
    "invoice",
    "contract",
    "date_create",
    "date_plan",
    "date_paid",
    "summa",
    "paid_summa",
    "vat",
    "paid",
    "did",
    "deal_number",
    "deal_title",
    "deal_stage",
    "deal_owner",
    "clid",
    "client",
    "client_inn",
    "client_kpp",
];

#[derive(Debug, Clone, Default)]
struct DealInfo {
    number: Value,
    title: Value,
    stage: Value,
    owner: Value,
}

#[derive(Debug, Clone, Default)]
struct ClientInfo {
    inn: Value,
    kpp: Value,
}

type Cache<T> = Mutex<HashMap<i64, Arc<OnceCell<T>>>>;

/// The distinct ids not read yet.
fn uncached<T>(cache: &Cache<T>, ids: Vec<i64>) -> Vec<i64> {
    let c = cache.lock().unwrap_or_else(|p| p.into_inner());
    let mut ids: Vec<i64> = ids
        .into_iter()
        .filter(|i| c.get(i).is_none_or(|cell| !cell.initialized()))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Deal and client lookups of one page run this many at a time.
const LOOKUPS: usize = 8;

/// Joins deal and client columns into invoice rows.
pub struct InvoiceJoin {
    client: CrmClient,
    policy: RetryPolicy,
    /// Stage percent ("40") → stage name, from deal/steplist (read once).
    steps: OnceCell<HashMap<String, String>>,
    deals: Cache<DealInfo>,
    clients: Cache<ClientInfo>,
    /// Read each invoice's VAT (`nds`): only invoice/info shows it, one read per invoice.
    vat: bool,
    /// Read the deals (deal/info) and clients (client/info) for their columns.
    lookups: bool,
}

/// The columns that need a deal/info or client/info read.
pub const LOOKUP_COLUMNS: &[&str] = &["deal_stage", "deal_owner", "client_inn", "client_kpp"];

impl InvoiceJoin {
    pub fn new(client: CrmClient, policy: RetryPolicy) -> InvoiceJoin {
        InvoiceJoin {
            client,
            policy,
            steps: OnceCell::new(),
            deals: Mutex::new(HashMap::new()),
            clients: Mutex::new(HashMap::new()),
            vat: false,
            lookups: true,
        }
    }

    /// Read deals and clients only when one of their columns is wanted (`deal_number`,
    /// `deal_title` and `client` come from the invoice list itself).
    pub fn with_lookups(mut self, lookups: bool) -> InvoiceJoin {
        self.lookups = lookups;
        self
    }

    /// Also fill the `vat` column (one invoice/info per invoice: invoice/list has no VAT).
    pub fn with_vat(mut self, vat: bool) -> InvoiceJoin {
        self.vat = vat;
        self
    }

    /// The VAT of each invoice of a page (by `crid`), `LOOKUPS` reads at a time; an invoice
    /// whose info shows none (or that is gone) gets no VAT.
    async fn vats(&self, rows: &[Row]) -> Result<Vec<Value>, CrmError> {
        let mut out = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(LOOKUPS) {
            let reads = chunk.iter().map(|r| async move {
                let Some(crid) = id(r, "crid").or_else(|| id(r, "id")) else {
                    return Ok(Value::Null);
                };
                let v = self
                    .client
                    .info(Entity::Invoice, crid, &[], &self.policy)
                    .await?;
                Ok::<_, CrmError>(match v["data"].get("nds") {
                    Some(n) if !n.is_null() => match Money::parse(&crate::values::value_text(n)) {
                        Ok(m) => m.to_json(),
                        Err(_) => Value::Null,
                    },
                    _ => Value::Null,
                })
            });
            for v in futures_util::future::join_all(reads).await {
                out.push(v?);
            }
        }
        Ok(out)
    }

    fn cell<T>(cache: &Cache<T>, id: i64) -> Arc<OnceCell<T>> {
        cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id)
            .or_default()
            .clone()
    }

    async fn steps(&self) -> Result<&HashMap<String, String>, CrmError> {
        self.steps
            .get_or_try_init(|| async {
                let list = self
                    .client
                    .deal_dictionary("steplist", &self.policy)
                    .await?;
                Ok(list
                    .into_iter()
                    .map(|e| (e.title.clone(), e.content.unwrap_or(e.title)))
                    .collect())
            })
            .await
    }

    async fn deal(&self, did: i64) -> Result<DealInfo, CrmError> {
        let cell = Self::cell(&self.deals, did);
        let info = cell
            .get_or_try_init(|| async {
                let v = self
                    .client
                    .info(Entity::Deal, did, &[], &self.policy)
                    .await?;
                // A deal the login cannot see (owner 0, deleted) leaves its columns empty.
                let Some(d) = v.get("data").filter(|d| d.is_object()) else {
                    return Ok(DealInfo::default());
                };
                let title = d["title"].as_str().unwrap_or("");
                let (number, bare) = split_deal_number(title);
                let pct = match &d["stepTitle"] {
                    Value::Number(n) => n.to_string(),
                    Value::String(s) => s.clone(),
                    _ => String::new(),
                };
                let stage = self
                    .steps()
                    .await?
                    .get(&pct)
                    .map_or(Value::Null, |s| json!(s));
                Ok::<_, CrmError>(DealInfo {
                    number: number.map_or(Value::Null, |n| json!(n)),
                    title: json!(bare),
                    stage,
                    owner: d.get("user").cloned().unwrap_or(Value::Null),
                })
            })
            .await?;
        Ok(info.clone())
    }

    async fn client_info(&self, clid: i64) -> Result<ClientInfo, CrmError> {
        let cell = Self::cell(&self.clients, clid);
        let info = cell
            .get_or_try_init(|| async {
                let v = self
                    .client
                    .info(
                        Entity::Client,
                        clid,
                        &[("bankinfo", json!(true))],
                        &self.policy,
                    )
                    .await?;
                let bank = &v["data"]["bankinfo"];
                let text = |k: &str| match bank.get(k) {
                    Some(Value::String(s)) if !s.trim().is_empty() => json!(s.trim()),
                    _ => Value::Null,
                };
                Ok::<_, CrmError>(ClientInfo {
                    inn: text("castInn"),
                    kpp: text("castKpp"),
                })
            })
            .await?;
        Ok(info.clone())
    }

    /// Read the deals and clients of a page that are not cached yet, `LOOKUPS` at a time.
    async fn prefetch(self: &Arc<Self>, dids: Vec<i64>, clids: Vec<i64>) -> Result<(), CrmError> {
        let dids = uncached(&self.deals, dids);
        let clids = uncached(&self.clients, clids);
        let jobs: Vec<(bool, i64)> = dids
            .into_iter()
            .map(|d| (true, d))
            .chain(clids.into_iter().map(|c| (false, c)))
            .collect();
        for chunk in jobs.chunks(LOOKUPS) {
            let mut set = tokio::task::JoinSet::new();
            for &(is_deal, id) in chunk {
                let me = self.clone();
                set.spawn(async move {
                    if is_deal {
                        me.deal(id).await.map(|_| ())
                    } else {
                        me.client_info(id).await.map(|_| ())
                    }
                });
            }
            while let Some(r) = set.join_next().await {
                r.map_err(|e| CrmError::Setup(format!("lookup task failed: {e}")))??;
            }
        }
        Ok(())
    }

    async fn join_rows(self: Arc<Self>, rows: Vec<Row>) -> Result<Vec<Row>, CrmError> {
        if self.lookups {
            let dids = rows.iter().filter_map(|r| id(r, "did")).collect();
            let clids = rows.iter().filter_map(|r| id(r, "clid")).collect();
            self.prefetch(dids, clids).await?;
        }
        let vats = if self.vat {
            self.vats(&rows).await?
        } else {
            Vec::new()
        };
        let mut out = Vec::with_capacity(rows.len());
        for (i, r) in rows.into_iter().enumerate() {
            let did = id(&r, "did");
            let clid = id(&r, "clid");
            let deal = match did {
                Some(d) if self.lookups => self.deal(d).await?,
                _ => DealInfo::default(),
            };
            let client = match clid {
                Some(c) if self.lookups => self.client_info(c).await?,
                _ => ClientInfo::default(),
            };
            let mut row = invoice_row(&r, deal, client);
            row.insert("vat".into(), vats.get(i).cloned().unwrap_or(Value::Null));
            out.push(row);
        }
        Ok(out)
    }
}

impl PageJoin for InvoiceJoin {
    fn join(
        self: Arc<Self>,
        rows: Vec<Row>,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Row>, CrmError>> + Send>> {
        Box::pin(self.join_rows(rows))
    }
}

fn id(r: &Row, k: &str) -> Option<i64> {
    match r.get(k)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|&i| i > 0)
}

/// Is the listed invoice paid? (`do` is `true` or null in invoice/list.)
pub fn is_paid(r: &Row) -> bool {
    matches!(r.get("do"), Some(Value::Bool(true)))
        || matches!(r.get("do"), Some(Value::String(s)) if s == "on")
        || matches!(r.get("paid"), Some(Value::String(s)) if s == "да")
}

fn invoice_row(r: &Row, deal: DealInfo, client: ClientInfo) -> Row {
    let paid = is_paid(r);
    let summa = r.get("summa").cloned().unwrap_or(Value::Null);
    let paid_summa = if paid {
        summa.clone()
    } else {
        Money::default().to_json()
    };
    let get = |k: &str| r.get(k).cloned().unwrap_or(Value::Null);
    let id = r.get("crid").or_else(|| r.get("id")).cloned();
    let mut m = Map::with_capacity(COLUMNS.len());
    m.insert("crid".into(), id.unwrap_or(Value::Null));
    m.insert("invoice".into(), get("invoice"));
    m.insert("contract".into(), get("contract"));
    m.insert("date_create".into(), get("date_create"));
    m.insert("date_plan".into(), get("date_plan"));
    // The server's paid date; filled from the state where it recorded none (see `paid_day`).
    m.insert("date_paid".into(), get("date_fact"));
    m.insert("summa".into(), summa);
    m.insert("paid_summa".into(), paid_summa);
    m.insert("vat".into(), Value::Null);
    m.insert("paid".into(), json!(if paid { "да" } else { "нет" }));
    m.insert("did".into(), get("did"));
    // The list shows the deal's title with its number ("СД26: …"): no deal/info needed for it.
    let listed = split_deal_number(r.get("deal").and_then(Value::as_str).unwrap_or(""));
    m.insert(
        "deal_number".into(),
        if deal.number.is_null() {
            listed.0.map_or(Value::Null, |n| json!(n))
        } else {
            deal.number
        },
    );
    m.insert(
        "deal_title".into(),
        if deal.title.as_str().is_some_and(|t| !t.is_empty()) {
            deal.title
        } else {
            json!(listed.1)
        },
    );
    m.insert("deal_stage".into(), deal.stage);
    m.insert("deal_owner".into(), deal.owner);
    m.insert("clid".into(), get("clid"));
    m.insert("client".into(), get("client"));
    m.insert("client_inn".into(), client.inn);
    m.insert("client_kpp".into(), client.kpp);
    m
}

/// The columns the deal export adds for the books.
pub const DEAL_BOOKS_COLUMNS: &[&str] = &["paid_total", "unpaid_total", "client_inn"];

/// Paid and unpaid invoice sums per deal.
type DealSums = HashMap<i64, (Money, Money)>;

/// Adds `paid_total`, `unpaid_total` (from every invoice, summed by did) and `client_inn` to
/// deal rows.
pub struct DealBooksJoin {
    lookups: Arc<InvoiceJoin>,
    concurrency: usize,
    sums: OnceCell<DealSums>,
}

impl DealBooksJoin {
    pub fn new(client: CrmClient, policy: RetryPolicy, concurrency: usize) -> DealBooksJoin {
        DealBooksJoin {
            lookups: Arc::new(InvoiceJoin::new(client, policy)),
            concurrency,
            sums: OnceCell::new(),
        }
    }

    /// One pass over invoice/list (every invoice, paid and unpaid), summed by did.
    async fn sums(&self) -> Result<&DealSums, CrmError> {
        self.sums
            .get_or_try_init(|| async {
                let mut sums = DealSums::new();
                let progress = crate::report::Progress::new("invoice", None, true);
                let j = &self.lookups;
                let r = super::fetch_all(
                    &j.client,
                    Entity::Invoice,
                    &super::Filters::default(),
                    None,
                    self.concurrency,
                    &j.policy,
                    &progress,
                    |row| {
                        let Some(did) = id(&row, "did") else { return };
                        let sum = row
                            .get("summa")
                            .and_then(Money::from_json)
                            .unwrap_or_default();
                        let slot = sums.entry(did).or_default();
                        if is_paid(&row) {
                            slot.0 = slot.0 + sum;
                        } else {
                            slot.1 = slot.1 + sum;
                        }
                    },
                )
                .await;
                match r {
                    Ok(()) => Ok(sums),
                    Err(super::ExportError::PageFailed { source, .. }) => Err(source),
                    Err(e) => Err(CrmError::Setup(e.to_string())),
                }
            })
            .await
    }

    async fn join_rows(self: Arc<Self>, rows: Vec<Row>) -> Result<Vec<Row>, CrmError> {
        let sums = self.sums().await?;
        let clids = rows.iter().filter_map(|r| id(r, "clid")).collect();
        self.lookups.prefetch(Vec::new(), clids).await?;
        let mut out = Vec::with_capacity(rows.len());
        for mut r in rows {
            let (paid, unpaid) = id(&r, "did")
                .and_then(|d| sums.get(&d).copied())
                .unwrap_or_default();
            let inn = match id(&r, "clid") {
                Some(c) => self.lookups.client_info(c).await?.inn,
                None => Value::Null,
            };
            r.insert("paid_total".into(), paid.to_json());
            r.insert("unpaid_total".into(), unpaid.to_json());
            r.insert("client_inn".into(), inn);
            out.push(r);
        }
        Ok(out)
    }
}

impl PageJoin for DealBooksJoin {
    fn join(
        self: Arc<Self>,
        rows: Vec<Row>,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Row>, CrmError>> + Send>> {
        Box::pin(self.join_rows(rows))
    }
}

/// Sums for the Totals sheet, gathered from the rows written.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    /// Month of the planned date ("2026-12") → (paid, unpaid).
    pub by_month: BTreeMap<String, (Money, Money)>,
    /// Deal owner → (paid, unpaid).
    pub by_owner: BTreeMap<String, (Money, Money)>,
    pub paid: Money,
    pub unpaid: Money,
    pub rows: u64,
}

impl Totals {
    /// One written row: an invoice (its sum, paid or not), or a deal (its paid and unpaid
    /// invoice totals), by the month of the planned date and by owner.
    pub fn add(&mut self, entity: Entity, row: &Row) {
        let money = |k: &str| row.get(k).and_then(Money::from_json).unwrap_or_default();
        let text = |k: &str| {
            row.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let month = |k: &str| text(k).and_then(|s| s.get(..7).map(str::to_string));
        if entity == Entity::Deal {
            self.put(month("datum_plan"), text("user"), true, money("paid_total"));
            self.put(
                month("datum_plan"),
                text("user"),
                false,
                money("unpaid_total"),
            );
        } else {
            let paid = is_paid(row);
            self.put(month("date_plan"), text("deal_owner"), paid, money("summa"));
        }
        self.rows += 1;
    }

    fn put(&mut self, month: Option<String>, owner: Option<String>, paid: bool, sum: Money) {
        let month = month.unwrap_or_else(|| "—".into());
        let owner = owner.unwrap_or_else(|| "—".into());
        for slot in [
            self.by_month.entry(month).or_default(),
            self.by_owner.entry(owner).or_default(),
        ] {
            if paid {
                slot.0 = slot.0 + sum;
            } else {
                slot.1 = slot.1 + sum;
            }
        }
        if paid {
            self.paid = self.paid + sum;
        } else {
            self.unpaid = self.unpaid + sum;
        }
    }

    /// The control total: the sum of every row's `summa` (deals: paid + unpaid totals).
    pub fn control(&self) -> Money {
        self.paid + self.unpaid
    }

    /// The Totals sheet: paid and unpaid by planned month and by owner, then the control lines.
    pub fn table(&self) -> MoneyTotals {
        let lines = |m: &BTreeMap<String, (Money, Money)>| {
            m.iter()
                .map(|(k, (p, u))| (k.clone(), *p, *u))
                .collect::<Vec<_>>()
        };
        MoneyTotals {
            blocks: vec![
                ("month (planned)".to_string(), lines(&self.by_month)),
                ("owner".to_string(), lines(&self.by_owner)),
            ],
            control: vec![
                ("paid".to_string(), self.paid),
                ("unpaid".to_string(), self.unpaid),
                (
                    format!("control total ({} rows)", self.rows),
                    self.control(),
                ),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_split_paid_and_unpaid_by_month_and_owner_and_add_up() {
        let row = |sum: &str, paid: bool, plan: &str, owner: &str| {
            let mut r = invoice_row(
                json!({"crid": 1, "summa": sum, "do": if paid { json!(true) } else { Value::Null },
                       "date_plan": plan})
                .as_object()
                .unwrap(),
                DealInfo::default(),
                ClientInfo::default(),
            );
            r.insert("deal_owner".into(), json!(owner));
            r
        };
        let mut t = Totals::default();
        t.add(Entity::Invoice, &row("0.10", true, "2026-12-01", "a"));
        t.add(Entity::Invoice, &row("0.20", false, "2026-12-31", "b"));
        t.add(Entity::Invoice, &row("1500.75", false, "2027-01-10", "a"));
        assert_eq!(
            t.control(),
            Money::parse("1501.05").unwrap(),
            "exact, no float drift"
        );
        assert_eq!(
            t.by_month["2026-12"],
            (Money::parse("0.1").unwrap(), Money::parse("0.2").unwrap())
        );
        assert_eq!(t.by_owner["a"].1, Money::parse("1500.75").unwrap());
        assert_eq!(t.paid, Money::parse("0.10").unwrap());
    }
}
