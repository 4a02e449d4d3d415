//! Finding records a lost answer may have created. Persons and history have no external id and
//! no duplicate check on the server (NOTES.md §3), so after an answer is lost the only safe way
//! on is to look each record up and send only those that are really missing.

use crate::crm::{ContractApi, CrmClient, CrmError, Entity, RetryPolicy};
use crate::values::{norm_text, value_id, value_text, CrmDateTime};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};

/// How many list pages one lookup group may read before giving up (a page: [`Entity::list_page_size`]).
const MAX_PAGES: u64 = 100;

/// One record to find: its payload as it was sent (references already resolved).
pub struct Wanted<'a> {
    pub key: &'a str,
    pub payload: &'a Map<String, Value>,
}

fn value_text_of(v: Option<&Value>) -> String {
    v.map(value_text).unwrap_or_default()
}

/// The first (lowest) invoice row id among `rows` whose invoice number is `number`.
fn invoice_crid(rows: &[Map<String, Value>], number: &str) -> Option<i64> {
    rows.iter()
        .filter(|r| value_text_of(r.get("invoice")).trim() == number.trim())
        .filter_map(|r| value_id(r.get("crid")))
        .min()
}

/// Look records up; returns key → CRM id of those found. Errors only when the CRM cannot be
/// asked (then the records stay ambiguous).
pub async fn find(
    client: &CrmClient,
    entity: Entity,
    wanted: &[Wanted<'_>],
    policy: &RetryPolicy,
) -> Result<HashMap<String, i64>, CrmError> {
    match entity {
        Entity::Client => find_by_uid(client, Entity::Client, wanted, policy).await,
        Entity::Deal => find_by_uid(client, Entity::Deal, wanted, policy).await,
        Entity::Person => find_persons(client, wanted, policy).await,
        Entity::History => find_history(client, wanted, policy).await,
        Entity::Task => find_tasks(client, wanted, policy).await,
        Entity::Invoice => find_invoices(client, wanted, policy).await,
        Entity::Payment => Err(CrmError::Setup(
            "payments are not added: upload::payment reads the invoice instead".into(),
        )),
    }
}

/// Clients and deals carry our key in `uid`: `info` by uid, then a `list` search as a fallback
/// for servers whose `info` ignores uid.
async fn find_by_uid(
    client: &CrmClient,
    entity: Entity,
    wanted: &[Wanted<'_>],
    policy: &RetryPolicy,
) -> Result<HashMap<String, i64>, CrmError> {
    let mut found = HashMap::new();
    for w in wanted {
        let uid = value_text_of(w.payload.get("uid"));
        if uid.is_empty() {
            continue;
        }
        match client
            .call_idempotent(entity, "info", &json!({ "uid": uid }), policy)
            .await
        {
            Ok(v) => {
                let data = v.get("data").unwrap_or(&v);
                let their_uid = value_text_of(data.get("uid"));
                if let Some(i) = value_id(data.get(entity.id_field())) {
                    if their_uid.is_empty() || their_uid == uid {
                        found.insert(w.key.to_string(), i);
                        continue;
                    }
                }
            }
            Err(CrmError::Api { .. }) => {}
            Err(e) => return Err(e),
        }
        let title = value_text_of(w.payload.get("title"));
        let mut params = Map::new();
        params.insert("uid".into(), json!(uid));
        if !title.is_empty() {
            params.insert("word".into(), json!(title));
        }
        params.insert("order".into(), json!(entity.id_field()));
        if entity == Entity::Deal {
            params.insert("active".into(), json!("yes"));
        }
        let page = match client.list_page(entity, &params, 0, policy).await {
            Ok(p) => p,
            Err(CrmError::Api { .. }) => continue,
            Err(e) => return Err(e),
        };
        if let Some(i) = page
            .rows
            .iter()
            .find(|r| value_text_of(r.get("uid")) == uid)
            .and_then(|r| value_id(r.get(entity.id_field())))
        {
            found.insert(w.key.to_string(), i);
        }
    }
    Ok(found)
}

const PERSON_MATCH: [&str; 4] = ["person", "mail", "tel", "mob"];

/// Persons: a `word` search on the most specific key field (mail, phone, then name), within
/// the client; a candidate matches when every name/contact field we sent equals its stored form.
async fn find_persons(
    client: &CrmClient,
    wanted: &[Wanted<'_>],
    policy: &RetryPolicy,
) -> Result<HashMap<String, i64>, CrmError> {
    let mut found = HashMap::new();
    let mut claimed = HashSet::new();
    for w in wanted {
        let Some(word) = ["mail", "tel", "mob", "person"]
            .iter()
            .map(|f| value_text_of(w.payload.get(*f)))
            .find(|v| !v.trim().is_empty())
        else {
            continue;
        };
        let mut params = Map::new();
        params.insert("word".into(), json!(word.trim()));
        params.insert("order".into(), json!("pid"));
        params.insert("first".into(), json!("old"));
        if let Some(clid) = value_id(w.payload.get("clid")) {
            params.insert("filter".into(), json!({ "clid": clid }));
        }
        let want: Vec<(&str, String)> = PERSON_MATCH
            .iter()
            .map(|f| (*f, norm_text(&value_text_of(w.payload.get(*f)))))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        let clid = value_id(w.payload.get("clid"));
        'pages: for page in 0..MAX_PAGES {
            let p = client
                .list_page(Entity::Person, &params, page, policy)
                .await?;
            for r in &p.rows {
                let Some(pid) = value_id(r.get("pid")) else {
                    continue;
                };
                if claimed.contains(&pid) {
                    continue;
                }
                let same_client = match (clid, value_id(r.get("clid"))) {
                    (Some(a), Some(b)) => a == b,
                    (Some(_), None) => false,
                    _ => true,
                };
                let same = want.iter().all(|(f, v)| match r.get(*f) {
                    Some(x) => norm_text(&value_text_of(Some(x))) == *v,
                    None => true,
                });
                if same_client && same {
                    claimed.insert(pid);
                    found.insert(w.key.to_string(), pid);
                    break 'pages;
                }
            }
            if p.rows.len() < Entity::Person.list_page_size() {
                break;
            }
        }
    }
    Ok(found)
}

fn day_of(payload: &Map<String, Value>, field: &str) -> String {
    let d = value_text_of(payload.get(field));
    let d = d.trim();
    // No date: the server stamps "now" (account timezone); today's local date is our guess.
    let day = CrmDateTime::parse(d)
        .and_then(CrmDateTime::date)
        .unwrap_or_else(|| chrono::Local::now().date_naive());
    CrmDateTime::Date(day).to_string()
}

/// History: one listing per (day, client, person) group of the chunk — history/list shows only
/// today unless dateStart/dateEnd are given (NOTES.md §6) — matched on client, person, deal, date
/// and content as the server stores it.
async fn find_history(
    client: &CrmClient,
    wanted: &[Wanted<'_>],
    policy: &RetryPolicy,
) -> Result<HashMap<String, i64>, CrmError> {
    // (day, clid, pid) → records of that group
    type Group = (String, Option<i64>, Option<i64>);
    let mut groups: HashMap<Group, Vec<&Wanted>> = HashMap::new();
    for w in wanted {
        let g = (
            day_of(w.payload, "datum"),
            value_id(w.payload.get("clid")),
            value_id(w.payload.get("pid")),
        );
        groups.entry(g).or_default().push(w);
    }
    let mut found = HashMap::new();
    let mut claimed = HashSet::new();
    for ((day, clid, pid), ws) in groups {
        let mut params = Map::new();
        params.insert("dateStart".into(), json!(day));
        params.insert("dateEnd".into(), json!(day));
        params.insert("order".into(), json!("cid"));
        if let Some(c) = clid {
            params.insert("clid".into(), json!(c));
        }
        if let Some(p) = pid {
            params.insert("pid".into(), json!(p));
        }
        let mut rows = Vec::new();
        for page in 0..MAX_PAGES {
            let p = client
                .list_page(Entity::History, &params, page, policy)
                .await?;
            let n = p.rows.len();
            rows.extend(p.rows);
            if n < Entity::History.list_page_size() {
                break;
            }
        }
        for w in ws {
            let content = norm_text(&value_text_of(w.payload.get("content")));
            let datum = value_text_of(w.payload.get("datum"));
            for r in &rows {
                let Some(cid) = value_id(r.get("cid")) else {
                    continue;
                };
                if claimed.contains(&cid) {
                    continue;
                }
                let same_ref = |f: &str| match value_id(w.payload.get(f)) {
                    Some(x) => value_id(r.get(f)) == Some(x) || r.get(f).is_none(),
                    None => true,
                };
                let same_time = match datum.get(..16) {
                    Some(minute) => value_text_of(r.get("datum")).starts_with(minute),
                    None => true,
                };
                if same_ref("clid")
                    && same_ref("pid")
                    && same_ref("did")
                    && same_time
                    && norm_text(&value_text_of(r.get("content"))) == content
                {
                    claimed.insert(cid);
                    found.insert(w.key.to_string(), cid);
                    break;
                }
            }
        }
    }
    Ok(found)
}

/// Invoices: the deal's invoices (`invoice/list` by `did`, 30 a page, pages from 1), the one with
/// the record's number; a partial payment's remainder row has the same number, so the oldest.
async fn find_invoices(
    client: &CrmClient,
    wanted: &[Wanted<'_>],
    policy: &RetryPolicy,
) -> Result<HashMap<String, i64>, CrmError> {
    let mut found = HashMap::new();
    for w in wanted {
        let number = value_text_of(w.payload.get("invoice"));
        let Some(did) = value_id(w.payload.get("did")) else {
            continue;
        };
        if number.trim().is_empty() {
            continue;
        }
        if client.contract_api(policy).await? == ContractApi::V1 {
            // An older server: the deal's invoices come with v1 contract info.
            let hit = invoice_crid(&client.v1_deal_invoices(did, policy).await?, &number);
            if let Some(crid) = hit {
                found.insert(w.key.to_string(), crid);
            }
            continue;
        }
        let mut params = Map::new();
        params.insert("did".into(), json!(did));
        params.insert("order".into(), json!("datum"));
        params.insert("first".into(), json!("old"));
        let first = Entity::Invoice.first_offset();
        for page in first..first + MAX_PAGES {
            let p = client
                .list_page(Entity::Invoice, &params, page, policy)
                .await?;
            let hit = invoice_crid(&p.rows, &number);
            if let Some(crid) = hit {
                found.insert(w.key.to_string(), crid);
                break;
            }
            if p.rows.len() < Entity::Invoice.list_page_size() {
                break;
            }
        }
    }
    Ok(found)
}

/// Tasks: a `word` search on the title among active tasks of the task's day.
async fn find_tasks(
    client: &CrmClient,
    wanted: &[Wanted<'_>],
    policy: &RetryPolicy,
) -> Result<HashMap<String, i64>, CrmError> {
    let mut found = HashMap::new();
    let mut claimed = HashSet::new();
    for w in wanted {
        let title = value_text_of(w.payload.get("title"));
        if title.trim().is_empty() {
            continue;
        }
        let day = day_of(w.payload, "datum");
        let mut params = Map::new();
        params.insert("word".into(), json!(title));
        params.insert("active".into(), json!("yes"));
        params.insert("dateStart".into(), json!(day));
        params.insert("dateEnd".into(), json!(day));
        let p = client.list_page(Entity::Task, &params, 0, policy).await?;
        let want = norm_text(&title);
        if let Some(tid) = p
            .rows
            .iter()
            .filter(|r| norm_text(&value_text_of(r.get("title"))) == want)
            .filter_map(|r| value_id(r.get("tid")))
            .find(|t| !claimed.contains(t))
        {
            claimed.insert(tid);
            found.insert(w.key.to_string(), tid);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_matches_what_the_server_stores() {
        assert_eq!(
            norm_text("Звонок: \"Ромашка\" <b>ok</b>\n  итог"),
            norm_text("Звонок: Ромашка ok<br />\n итог")
        );
        assert_eq!(norm_text("ООО «Лес»"), norm_text("ООО ”Лес”"));
    }

    #[test]
    fn day_of_a_datum() {
        let mut m = Map::new();
        m.insert("datum".into(), json!("2024-06-25 14:20"));
        assert_eq!(day_of(&m, "datum"), "2024-06-25");
        m.insert("datum".into(), json!("2024/06/25 14:20:00"));
        assert_eq!(day_of(&m, "datum"), "2024-06-25");
    }
}
