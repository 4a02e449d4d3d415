//! The CRM entities we speak to, and the per-entity facts of the API (id field, batch array key).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Entity {
    Client,
    Person,
    Deal,
    Task,
    History,
    /// Invoices (payments schedule of deals): exported, and created by an import linked to a deal.
    Invoice,
    /// A payment of an invoice (a bank statement line): not a record of its own in the CRM but
    /// `invoice/do` on an invoice row. A template entity all the same, so the one engine journals,
    /// counts and reports it like any other (its CRM id is the invoice row it paid).
    Payment,
}

impl Entity {
    /// Upload order: an entity may only reference entities earlier in this list.
    pub const ALL: [Entity; 5] = [
        Entity::Client,
        Entity::Person,
        Entity::Deal,
        Entity::Task,
        Entity::History,
    ];

    /// Every entity the API is spoken to about: the upload order, then the read-only ones.
    pub const EVERY: [Entity; 6] = [
        Entity::Client,
        Entity::Person,
        Entity::Deal,
        Entity::Task,
        Entity::History,
        Entity::Invoice,
    ];

    /// What templates build, in import order: [`Entity::ALL`], then invoices (of deals) and
    /// payments (of invoices). An entity may only reference entities earlier in this list.
    pub const IMPORT: [Entity; 7] = [
        Entity::Client,
        Entity::Person,
        Entity::Deal,
        Entity::Task,
        Entity::History,
        Entity::Invoice,
        Entity::Payment,
    ];

    /// The entity whose API actions carry this one's writes and reads (`payment` → `invoice`).
    pub fn api_entity(self) -> Entity {
        match self {
            Entity::Payment => Entity::Invoice,
            e => e,
        }
    }

    /// The path segment in `/developer/v3/{entity}/{action}`.
    pub fn as_str(self) -> &'static str {
        match self {
            Entity::Client => "client",
            Entity::Person => "person",
            Entity::Deal => "deal",
            Entity::Task => "task",
            Entity::History => "history",
            Entity::Invoice => "invoice",
            Entity::Payment => "payment",
        }
    }

    /// Rows a `list` page holds: fixed at 200 (`limit` is ignored, NOTES §6); invoice/list
    /// pages by the `num_client` setting, 30 on a default install (NOTES §12).
    pub fn list_page_size(self) -> usize {
        match self {
            Entity::Invoice | Entity::Payment => 30,
            _ => 200,
        }
    }

    /// The `offset` of a list's first page. `offset` is a page number; invoice/list answers
    /// page 1 for both 0 and 1, so its pages are asked for as 1, 2, 3...
    pub fn first_offset(self) -> u64 {
        match self {
            Entity::Invoice | Entity::Payment => 1,
            _ => 0,
        }
    }

    /// The name of the record id in responses and references (`clid`, `pid`, ...).
    pub fn id_field(self) -> &'static str {
        match self {
            Entity::Client => "clid",
            Entity::Person => "pid",
            Entity::Deal => "did",
            Entity::Task => "tid",
            Entity::History => "cid",
            Entity::Invoice | Entity::Payment => "crid",
        }
    }

    /// The key `info` takes the record id under: the id field, except task and invoice, whose
    /// `info` wants `id` (NOTES §6, §12).
    pub fn info_key(self) -> &'static str {
        match self {
            Entity::Task | Entity::Invoice | Entity::Payment => "id",
            e => e.id_field(),
        }
    }

    /// The JSON array key `add.list` reads its rows from; `None` where the server has no batch add.
    /// A wrong key is silently ignored by the server (answer `[]`), so this must be exact.
    pub fn batch_key(self) -> Option<&'static str> {
        match self {
            Entity::Client => Some("client"),
            Entity::Person => Some("persons"),
            Entity::History => Some("list"),
            Entity::Deal | Entity::Task | Entity::Invoice | Entity::Payment => None,
        }
    }

    /// Its `add` takes a number from a server counter that is read and written back without a
    /// lock (deal "СДn" titles, `app_settings.dNum`; throughput.md): concurrent adds get
    /// duplicate numbers, so they are sent one at a time whatever the concurrency.
    pub fn serial_adds(self) -> bool {
        matches!(self, Entity::Deal | Entity::Invoice)
    }
}

impl Entity {
    /// The name writes and lists use for a field that `fields` lists under its column name:
    /// history's text is `des` there and `content` everywhere else.
    pub fn api_field(self, name: &str) -> &str {
        match (self, name) {
            (Entity::History, "des") => "content",
            _ => name,
        }
    }

    /// The reverse of [`Entity::api_field`]: the name `fields` lists (and the DB stores) for a
    /// field the API calls `name`.
    pub fn listed_field(self, name: &str) -> &str {
        match (self, name) {
            (Entity::History, "content") => "des",
            _ => name,
        }
    }
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownEntity(pub String);

impl fmt::Display for UnknownEntity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown entity '{}' (known: client, person, deal, task, history, invoice, payment)",
            self.0
        )
    }
}

impl std::error::Error for UnknownEntity {}

impl FromStr for Entity {
    type Err = UnknownEntity;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Entity::IMPORT
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| UnknownEntity(s.to_string()))
    }
}
