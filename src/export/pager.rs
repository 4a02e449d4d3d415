//! Paging through `list`: page 0 first (it tells the count and the columns), then the following
//! pages fetched concurrently (bounded) and handed over strictly in page order. Without a count
//! (history, task) pages are fetched ahead speculatively and paging stops at the first short or
//! empty page. Rows are deduplicated by id across pages, so a page that shifted under concurrent
//! inserts cannot produce the same record twice.

use super::ExportError;
use crate::crm::{CrmClient, CrmError, Entity, RetryPolicy};
use serde_json::{Map, Value};
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use tokio::task::JoinHandle;

pub type Row = Map<String, Value>;

/// Work done on each page's rows as soon as it arrives, inside the page's fetch task (so it
/// overlaps with the other pages in flight): invoice rows get their deal and client columns.
pub trait PageJoin: Send + Sync {
    fn join(
        self: Arc<Self>,
        rows: Vec<Row>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<Row>, CrmError>> + Send>>;
}

/// What one paging run saw.
#[derive(Debug, Clone, Default)]
pub struct PageStats {
    /// `count` of the first page, where the entity reports one.
    pub server_count: Option<u64>,
    pub pages: u64,
    /// Rows received, before deduplication.
    pub received: u64,
    /// Rows dropped because their id was already exported.
    pub duplicates: u64,
    /// Rows without a usable id (kept, but not deduplicated).
    pub without_id: u64,
}

/// Remembers the ids already exported (as 64-bit keys, so memory stays small).
#[derive(Default)]
pub struct Seen {
    ids: HashSet<u64>,
}

impl Seen {
    /// `Some(true)` for a new id, `Some(false)` for a repeat, `None` when the row has no id.
    fn insert(&mut self, id_field: &str, row: &Row) -> Option<bool> {
        let key = match row.get(id_field)? {
            Value::Number(n) => n.as_u64().unwrap_or_else(|| self.hash(&n.to_string())),
            Value::String(s) => match s.trim().parse::<u64>() {
                Ok(n) => n,
                Err(_) if s.is_empty() => return None,
                Err(_) => self.hash(s),
            },
            _ => return None,
        };
        Some(self.ids.insert(key))
    }

    fn hash(&self, s: &str) -> u64 {
        // Keep hashed keys apart from numeric ids.
        crate::hash::fast_one(s) | (1 << 63)
    }
}

/// Where pages go, in page order.
pub trait PageSink {
    /// The first page of a pass, before any of its rows is handed over (to choose columns and
    /// size the progress display).
    fn first_page(&mut self, rows: &[Row], count: Option<u64>) -> Result<(), ExportError>;
    /// One new (not yet exported) row.
    fn row(&mut self, row: Row) -> Result<(), ExportError>;
    /// A page is done; `received` rows came with it, duplicates included.
    fn page_done(&mut self, _received: u64) {}
}

/// One paging run over one pass of an entity.
pub struct Pager {
    pub client: CrmClient,
    pub entity: Entity,
    pub params: Arc<Map<String, Value>>,
    pub policy: RetryPolicy,
    pub concurrency: usize,
    /// Applied to every page's rows before they are handed over.
    pub join: Option<Arc<dyn PageJoin>>,
}

type Fetch = JoinHandle<Result<Vec<Row>, CrmError>>;

impl Pager {
    /// The `offset` of page `page` (0 = the first page): a page number, from where the
    /// entity's pages start (invoice/list: 1, since 0 and 1 both answer page 1).
    fn offset(&self, page: u64) -> u64 {
        self.entity.first_offset() + page
    }

    fn spawn(&self, page: u64) -> Fetch {
        let client = self.client.clone();
        let params = self.params.clone();
        let policy = self.policy.clone();
        let entity = self.entity;
        let offset = self.offset(page);
        let join = self.join.clone();
        tokio::spawn(async move {
            let rows = client
                .list_page(entity, &params, offset, &policy)
                .await?
                .rows;
            match join {
                Some(j) => j.join(rows).await,
                None => Ok(rows),
            }
        })
    }

    fn failed(&self, page: u64, source: CrmError) -> ExportError {
        ExportError::PageFailed {
            entity: self.entity,
            page,
            source,
        }
    }

    /// Fetch every page into `sink`, in order. A page that keeps failing ends the run with
    /// [`ExportError::PageFailed`].
    pub async fn run(
        &self,
        seen: &mut Seen,
        sink: &mut impl PageSink,
    ) -> Result<PageStats, ExportError> {
        let id_field = self.entity.id_field();
        let mut page0 = self
            .client
            .list_page(self.entity, &self.params, self.offset(0), &self.policy)
            .await
            .map_err(|e| self.failed(0, e))?;
        if let Some(j) = &self.join {
            let rows = std::mem::take(&mut page0.rows);
            page0.rows = j.clone().join(rows).await.map_err(|e| self.failed(0, e))?;
        }
        let entity_page = self.entity.list_page_size();
        let mut stats = PageStats {
            server_count: page0.count,
            ..PageStats::default()
        };
        sink.first_page(&page0.rows, page0.count)?;
        // A server with a smaller page than ours shows it on page 0 when more rows exist.
        let page_size = match page0.count {
            Some(c) if (page0.rows.len() as u64) < c && !page0.rows.is_empty() => {
                page0.rows.len().min(entity_page)
            }
            _ => entity_page.max(page0.rows.len()),
        };
        let mut ended = self.take_page(seen, id_field, page0.rows, page_size, &mut stats, sink)?;
        // With a count we know the last page; one more is allowed so that rows added during
        // the export (they land at the end) are not cut off at a page boundary.
        let last_page = page0.count.map(|c| c.div_ceil(page_size as u64));
        let mut next: u64 = 1;
        let mut inflight: VecDeque<(u64, Fetch)> = VecDeque::new();
        let concurrency = self.concurrency.max(1);
        while !ended {
            while inflight.len() < concurrency && last_page.is_none_or(|l| next <= l) {
                inflight.push_back((next, self.spawn(next)));
                next += 1;
            }
            let Some((page, handle)) = inflight.pop_front() else {
                break;
            };
            let rows = match handle.await {
                Ok(Ok(rows)) => rows,
                Ok(Err(e)) => {
                    abort_all(&mut inflight);
                    return Err(self.failed(page, e));
                }
                Err(join) => {
                    abort_all(&mut inflight);
                    return Err(ExportError::Internal(format!(
                        "fetching page {page} of {}: {join}",
                        self.entity
                    )));
                }
            };
            if rows.is_empty() {
                break;
            }
            let full = rows.len() >= page_size;
            let before = stats.received - stats.duplicates;
            ended = self.take_page(seen, id_field, rows, page_size, &mut stats, sink)?;
            // A full page of nothing new means the server ignores `offset`: stop instead of
            // paging forever.
            if full && stats.received - stats.duplicates == before && stats.without_id == 0 {
                abort_all(&mut inflight);
                return Err(ExportError::PagingStuck {
                    entity: self.entity,
                    page,
                });
            }
        }
        abort_all(&mut inflight);
        Ok(stats)
    }

    /// Hand one page's new rows over; `true` when it was the last page.
    fn take_page(
        &self,
        seen: &mut Seen,
        id_field: &str,
        rows: Vec<Row>,
        page_size: usize,
        stats: &mut PageStats,
        sink: &mut impl PageSink,
    ) -> Result<bool, ExportError> {
        stats.pages += 1;
        let last = rows.len() < page_size;
        let n = rows.len() as u64;
        for row in rows {
            stats.received += 1;
            match seen.insert(id_field, &row) {
                Some(false) => stats.duplicates += 1,
                Some(true) => sink.row(row)?,
                None => {
                    stats.without_id += 1;
                    sink.row(row)?
                }
            }
        }
        sink.page_done(n);
        Ok(last)
    }
}

fn abort_all(inflight: &mut VecDeque<(u64, Fetch)>) {
    for (_, h) in inflight.drain(..) {
        h.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn seen_dedupes_numeric_and_string_ids() {
        let mut s = Seen::default();
        let r = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(s.insert("pid", &r(json!({"pid": 5}))), Some(true));
        assert_eq!(s.insert("pid", &r(json!({"pid": "5"}))), Some(false));
        assert_eq!(s.insert("pid", &r(json!({"pid": "x-1"}))), Some(true));
        assert_eq!(s.insert("pid", &r(json!({"pid": "x-1"}))), Some(false));
        assert_eq!(s.insert("pid", &r(json!({"person": "a"}))), None);
    }
}
