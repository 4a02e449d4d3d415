//! Speaking to SalesMan CRM over HTTP: auth headers, JSON, the error envelope, retry
//! classification, and how each entity's answers are read (see `NOTES.md` of the recordings:
//! the server answers almost everything with HTTP 200, so the body decides).

mod client;
mod entity;
mod outcome;
mod retry;
pub mod v1;
/// The value layer, under its old name here (it lives below `crm`: the sandbox uses it too).
pub use crate::values;

pub use client::{CrmClient, CrmUser, DictEntry, FieldInfo, ListPage};
pub use entity::{Entity, UnknownEntity};
pub use outcome::ItemOutcome;
pub use retry::{RetryClass, RetryPolicy, DEFAULT_RETRY_FOR};
pub use v1::ContractApi;

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

    /// The server died while handling the request (a PHP fatal error page, or any other non-JSON
    /// answer with HTTP 200): an answer, not a lost one. Returns its message as a user can read
    /// it — the first line without HTML and server file paths — e.g. `Uncaught TypeError: Cannot
    /// access offset of type string on string`. `None` for every other error.
    pub fn server_fatal(&self) -> Option<String> {
        match self {
            CrmError::NotJson { snippet, .. } => Some(fatal_message(snippet)),
            _ => None,
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

/// The readable first line of a PHP fatal page (see [`CrmError::server_fatal`]).
pub fn fatal_message(page: &str) -> String {
    let body = match page.find("Fatal error") {
        Some(i) => &page[i + "Fatal error".len()..],
        None => page,
    };
    // Strip tags and the common entities.
    let text = crate::values::strip_tags(body)
        .replace("&gt;", ">")
        .replace("&lt;", "<")
        .replace("&quot;", "\"")
        .replace("&amp;", "&");
    let text = text.trim_start_matches([':', ' ']);
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .trim_end_matches('…');
    // Cut where server paths start: "… in /var/www/…", ", called in …", "in <crm-root>/…".
    let mut end = line.len();
    for marker in [", called in ", " in /", " in <"] {
        if let Some(i) = line.find(marker) {
            end = end.min(i);
        }
    }
    if let Some(i) = line.find(" in ") {
        let rest = &line[i + 4..];
        let token = rest.split_whitespace().next().unwrap_or("");
        if token.contains('/') || token.contains(".php") {
            end = end.min(i);
        }
    }
    let out = line[..end].trim();
    if out.is_empty() {
        "the server answered with an HTML page instead of JSON".into()
    } else {
        out.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fatal_page_reads_as_its_first_line_without_html_or_paths() {
        let recv = "<br />\n<b>Fatal error</b>:  Uncaught TypeError: Cannot access offset of type string on string in <crm-root>/inc/class/Client.php:501\nStack trace:\n#0 …";
        assert_eq!(
            fatal_message(recv),
            "Uncaught TypeError: Cannot access offset of type string on string"
        );
        let kol = "<br />\n<b>Fatal error</b>:  Uncaught TypeError: pre_format(): Argument #1 ($string) must be of type ?string, array given, called in <crm-root>/inc/class/Deal.php on line 667 and defined in";
        assert_eq!(
            fatal_message(kol),
            "Uncaught TypeError: pre_format(): Argument #1 ($string) must be of type ?string, array given"
        );
        let mem = "<br />\n<b>Fatal error</b>:  Allowed memory size of 134217728 bytes exhausted (tried to allocate 20480 bytes) in <b>/var/www/salesman/vendor/x.php</b> on line <b>466</b><br />";
        assert_eq!(
            fatal_message(mem),
            "Allowed memory size of 134217728 bytes exhausted (tried to allocate 20480 bytes)"
        );
        let lost = CrmError::Transport {
            url: "u".into(),
            message: "timeout".into(),
        };
        assert_eq!(lost.server_fatal(), None, "a lost answer is not a fatal");
    }
}
