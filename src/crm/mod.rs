//! Speaking to SalesMan CRM over HTTP: auth headers, JSON, the error envelope, retry
//! classification, and how each entity's answers are read (see `NOTES.md` of the recordings:
//! the server answers almost everything with HTTP 200, so the body decides).

mod client;
mod entity;
mod outcome;
mod retry;
pub mod values;

pub use client::{CrmClient, CrmUser, DictEntry, FieldInfo, ListPage};
pub use entity::{Entity, UnknownEntity};
pub use outcome::ItemOutcome;
pub use retry::{RetryClass, RetryPolicy, DEFAULT_RETRY_FOR};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum CrmError {
    /// Wrong API key or unknown login: the server says "Неизвестный пользователь" (code 401).
    #[error("the CRM at {url} refused the login '{login}' or its API key ({text}); check --login and SMBATCH_APIKEY")]
    Auth {
        url: String,
        login: String,
        text: String,
    },
    /// The request never reached the server (refused, DNS): nothing can have been applied.
    #[error("cannot connect to the CRM at {url}: {message}")]
    Connect { url: String, message: String },
    /// The request was sent but no full answer came back: it may or may not have been applied.
    #[error("no answer from {url}: {message}")]
    Transport { url: String, message: String },
    #[error("{url} answered HTTP {status}: {snippet}")]
    Http {
        url: String,
        status: u16,
        snippet: String,
    },
    /// The real server reports PHP fatal errors as HTTP 200 with an HTML page.
    #[error(
        "{url} answered with something that is not JSON (a server-side fatal error?): {snippet}"
    )]
    NotJson { url: String, snippet: String },
    /// HTTP 200 with an empty body: the server has no such method.
    #[error("{url} answered with an empty body: the server does not know this method")]
    EmptyBody { url: String },
    /// The server's own error envelope `{"result":"Error","error":{"code":..,"text":..}}`.
    #[error("{url}: the CRM answered error {code}: {text}")]
    Api {
        url: String,
        code: String,
        text: String,
    },
    #[error("{url}: unexpected answer: {what}")]
    Shape { url: String, what: String },
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
}

impl CrmError {
    /// Vector-style classification: which failures are worth another attempt.
    pub fn retry_class(&self) -> RetryClass {
        match self {
            CrmError::Connect { .. }
            | CrmError::Transport { .. }
            | CrmError::NotJson { .. }
            | CrmError::Shape { .. } => RetryClass::Retry,
            CrmError::Http { status, .. } if *status >= 500 || *status == 429 => RetryClass::Retry,
            _ => RetryClass::Stop,
        }
    }

    /// Could the server have applied a write although we got this error? Then resending blindly
    /// may create duplicates: the records must be looked up first.
    pub fn may_have_applied(&self) -> bool {
        !matches!(
            self,
            CrmError::Connect { .. } | CrmError::Auth { .. } | CrmError::Setup(_)
        )
    }

    /// The server as a whole is not answering (not one request's trouble): refused or lost
    /// connections, timeouts, 5xx/429 from the web server in front of it.
    pub fn is_server_trouble(&self) -> bool {
        match self {
            CrmError::Connect { .. } | CrmError::Transport { .. } => true,
            CrmError::Http { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    /// Fatal for the whole run, whatever else is going on.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            CrmError::Auth { .. } | CrmError::EmptyBody { .. } | CrmError::Setup(_)
        )
    }
}
