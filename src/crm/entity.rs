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
    /// Invoices (payments schedule of deals): read by export only, never imported.
    Invoice,
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

    /// The path segment in `/developer/v3/{entity}/{action}`.
    pub fn as_str(self) -> &'static str {
        match self {
            Entity::Client => "client",
            Entity::Person => "person",
            Entity::Deal => "deal",
            Entity::Task => "task",
            Entity::History => "history",
            Entity::Invoice => "invoice",
        }
    }

    /// Rows a `list` page holds: fixed at 200 (`limit` is ignored, NOTES §6); invoice/list
    /// pages by the `num_client` setting, 30 on a default install (NOTES §12).
    pub fn list_page_size(self) -> usize {
        match self {
            Entity::Invoice => 30,
            _ => 200,
        }
    }

    /// The `offset` of a list's first page. `offset` is a page number; invoice/list answers
    /// page 1 for both 0 and 1, so its pages are asked for as 1, 2, 3...
    pub fn first_offset(self) -> u64 {
        match self {
            Entity::Invoice => 1,
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
            Entity::Invoice => "crid",
        }
    }

    /// The key `info` takes the record id under: the id field, except task and invoice, whose
    /// `info` wants `id` (NOTES §6, §12).
    pub fn info_key(self) -> &'static str {
        match self {
            Entity::Task | Entity::Invoice => "id",
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
            Entity::Deal | Entity::Task | Entity::Invoice => None,
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
            "unknown entity '{}' (known: client, person, deal, task, history, invoice)",
            self.0
        )
    }
}

impl std::error::Error for UnknownEntity {}

impl FromStr for Entity {
    type Err = UnknownEntity;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Entity::EVERY
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| UnknownEntity(s.to_string()))
    }
}
