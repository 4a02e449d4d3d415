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

    /// The path segment in `/developer/v3/{entity}/{action}`.
    pub fn as_str(self) -> &'static str {
        match self {
            Entity::Client => "client",
            Entity::Person => "person",
            Entity::Deal => "deal",
            Entity::Task => "task",
            Entity::History => "history",
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
        }
    }

    /// The JSON array key `add.list` reads its rows from; `None` where the server has no batch add.
    /// A wrong key is silently ignored by the server (answer `[]`), so this must be exact.
    pub fn batch_key(self) -> Option<&'static str> {
        match self {
            Entity::Client => Some("client"),
            Entity::Person => Some("persons"),
            Entity::History => Some("list"),
            Entity::Deal | Entity::Task => None,
        }
    }

    /// Its `add` takes a number from a server counter that is read and written back without a
    /// lock (deal "СДn" titles, `app_settings.dNum`; throughput.md): concurrent adds get
    /// duplicate numbers, so they are sent one at a time whatever the concurrency.
    pub fn serial_adds(self) -> bool {
        matches!(self, Entity::Deal)
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
            "unknown entity '{}' (known: client, person, deal, task, history)",
            self.0
        )
    }
}

impl std::error::Error for UnknownEntity {}

impl FromStr for Entity {
    type Err = UnknownEntity;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Entity::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| UnknownEntity(s.to_string()))
    }
}
