//! The sandbox: a SalesMan-compatible API served from SQLite, with fault injection.
//!
//! `Sandbox::start` runs the server on its own thread and tokio runtime, so synchronous tests and
//! commands can use it like any remote CRM. The behaviour copies the real server as recorded in
//! `tests/fixtures/salesman-real/` (see NOTES.md there), quirks included.

mod api;
mod dicts;
pub mod emulate;
mod entities;
mod faults;
mod fields;
mod store;
mod text;
mod users;

pub use emulate::EmulateConfig;
pub use faults::FaultConfig;
pub use fields::{mirror as mirror_fields, FieldSpec};
pub use users::UserSpec;

use crate::config::{ApiKey, Connection};
use crate::crm::Entity;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SandboxError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open sandbox database '{path}': {source}")]
    Db {
        path: String,
        source: rusqlite::Error,
    },
    #[error("bad field '{spec}': {reason}")]
    BadFieldSpec { spec: String, reason: String },
    /// The field or user settings could not be written to the sandbox database.
    #[error("cannot store the {what} in '{path}': {source}")]
    Config {
        what: &'static str,
        path: String,
        source: rusqlite::Error,
    },
    #[error("bad user '{spec}': {reason}")]
    BadUserSpec { spec: String, reason: String },
    #[error("bad fault spec '{spec}': {reason}")]
    BadFaultSpec { spec: String, reason: String },
    #[error("bad --emulate '{spec}': {reason}")]
    BadEmulateSpec { spec: String, reason: String },
    #[error("cannot start the sandbox runtime: {0}")]
    Runtime(std::io::Error),
}

/// How to run a sandbox.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// SQLite file path, or `:memory:` for a throwaway store.
    pub db: String,
    pub login: String,
    pub apikey: String,
    pub faults: FaultConfig,
    /// Answer as slowly as a real server would (see [`emulate`]); `None`: as fast as possible.
    pub emulate: Option<EmulateConfig>,
    /// Field settings stored in the database before serving (on top of what it already holds),
    /// e.g. `person.input1` switched on with its title.
    pub fields: Vec<FieldSpec>,
    /// CRM users stored in the database before serving, besides the API user (id 1, always
    /// there): owners that `user` logins on add resolve to, listed by `user/list`.
    pub users: Vec<UserSpec>,
    /// Act as an older server: v3 `invoice/*` answers an empty body (no such method file) and
    /// `deal/change.step` / `deal/close` answer 402 "Неизвестный метод"; the v1 contract actions
    /// (`addinvoice`, `addpaiment`, `addpaimentpart`, `changestep`, `close`) do that work.
    pub no_v3_invoices: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            db: ":memory:".into(),
            login: "admin@example.ru".into(),
            apikey: "sandbox-key".into(),
            faults: FaultConfig::default(),
            emulate: None,
            fields: Vec::new(),
            users: Vec::new(),
            no_v3_invoices: false,
        }
    }
}

/// A running sandbox server. Dropping it stops the server.
pub struct Sandbox {
    addr: SocketAddr,
    login: String,
    apikey: String,
    state: Arc<api::AppState>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("addr", &self.addr)
            .field("login", &self.login)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// Start on an ephemeral port of 127.0.0.1.
    pub fn start(config: SandboxConfig) -> Result<Sandbox, SandboxError> {
        Self::start_on(config, SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn start_on(config: SandboxConfig, listen: SocketAddr) -> Result<Sandbox, SandboxError> {
        let store = store::Store::open(&config.db)?;
        let stored = |what: &'static str| {
            let path = config.db.clone();
            move |source| SandboxError::Config { what, path, source }
        };
        store
            .save_fields(&config.fields)
            .map_err(stored("field settings"))?;
        store
            .save_users(&config.login, &config.users)
            .map_err(stored("users"))?;
        // Bind synchronously so the caller gets bind errors and the real port right away.
        let listener = TcpListener::bind(listen).map_err(|source| SandboxError::Bind {
            addr: listen,
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| SandboxError::Bind {
            addr: listen,
            source,
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| SandboxError::Bind {
                addr: listen,
                source,
            })?;
        let deal_number = store.next_deal_number();
        let state = Arc::new(api::AppState {
            store,
            deal_number: std::sync::atomic::AtomicI64::new(deal_number),
            fatal_on: Mutex::new(None),
            lose_answers: Mutex::new(Vec::new()),
            login: config.login.clone(),
            apikey: config.apikey.clone(),
            faults: Mutex::new(faults::FaultState::new(config.faults.clone())),
            emulator: config.emulate.clone().map(emulate::Emulator::new),
            no_v3_invoices: config.no_v3_invoices,
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sandbox")
            .enable_all()
            .build()
            .map_err(SandboxError::Runtime)?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = api::router(state.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), std::io::Error>>();
        let thread = std::thread::Builder::new()
            .name("sandbox-server".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => {
                            let _ = ready_tx.send(Ok(()));
                            l
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = rx.await;
                        })
                        .await;
                });
            })
            .map_err(SandboxError::Runtime)?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(source)) => {
                return Err(SandboxError::Bind {
                    addr: listen,
                    source,
                })
            }
            Err(_) => {
                return Err(SandboxError::Runtime(std::io::Error::other(
                    "sandbox thread exited during start",
                )))
            }
        }
        Ok(Sandbox {
            addr,
            login: config.login,
            apikey: config.apikey,
            state,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// Base URL without a trailing slash, e.g. `http://127.0.0.1:38211`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connection settings for talking to this sandbox.
    pub fn connection(&self) -> Connection {
        Connection {
            url: self.url(),
            login: self.login.clone(),
            apikey: ApiKey::new(self.apikey.clone()),
        }
    }

    /// Replace the fault config at runtime; the RNG is reseeded from `faults.seed`.
    pub fn set_faults(&self, faults: FaultConfig) {
        let mut f = self
            .state
            .faults
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *f = faults::FaultState::new(faults);
    }

    /// From now on a write carrying exactly this value (in any field of any row) makes the
    /// server die with a PHP TypeError page, every time and before storing anything of the
    /// request, as the real server does on values it cannot handle (a string `recv`, an array
    /// `kol`, NOTES §15): for testing how a client copes with a record the server always fails
    /// on. `None` switches it off.
    pub fn set_fatal_on(&self, value: Option<&str>) {
        *self
            .state
            .fatal_on
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = value.map(str::to_string);
    }

    /// The next `times` requests whose path ends with `path_end` (e.g. `"/task/doit"`) are
    /// processed and committed, then the connection is dropped unanswered (a lost answer, as
    /// `drop_after_commit` does at random): for testing what a client does when it cannot know
    /// whether one particular call took effect. Each path ending has its own count (a call
    /// sets it, 0 switches it off), so a write's answer and the reads after it can be lost
    /// together: a run that cannot tell, as one killed right after the write would be.
    pub fn lose_answers_of(&self, path_end: &str, times: u32) {
        let mut lose = self
            .state
            .lose_answers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        lose.retain(|(end, _)| end != path_end);
        lose.push((path_end.to_string(), times));
    }

    /// Rows stored for an entity, read directly from the store (includes rows the API hides,
    /// such as persons owned by an unknown user).
    pub fn count(&self, entity: Entity) -> u64 {
        self.state.store.count(entity)
    }

    /// Stop the server gracefully: in-flight requests finish, then the thread exits.
    pub fn stop(mut self) {
        self.shutdown_now();
    }

    fn shutdown_now(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.shutdown_now();
    }
}
