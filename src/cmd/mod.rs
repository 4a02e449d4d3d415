//! One file per subcommand; each only wires pipeline stages together.

pub mod args;
pub mod export;
pub mod fields;
pub mod import;
pub mod reconcile;
pub mod sandbox;
pub mod template;
pub mod validate;

use crate::Result;

/// The CRM a command talks to: the embedded sandbox on its SQLite file (`--sandbox [DB]`), or the
/// one the connection flags, environment or profile name. The sandbox runs while the returned
/// handle lives.
pub(crate) fn connect(
    sandbox: Option<&std::path::Path>,
    conn: &args::ConnectionArgs,
) -> Result<(Option<crate::sandbox::Sandbox>, crate::config::Connection)> {
    match sandbox {
        Some(db) => {
            let s = crate::sandbox::Sandbox::start(crate::sandbox::SandboxConfig {
                db: db.display().to_string(),
                ..crate::sandbox::SandboxConfig::default()
            })?;
            let c = s.connection();
            Ok((Some(s), c))
        }
        None => Ok((None, conn.resolve()?)),
    }
}

/// What a journal records as the run's target. The sandbox listens on a new port each run: its
/// database file is what identifies it.
pub(crate) fn target_name(
    sandbox: Option<&std::path::Path>,
    conn: Option<&crate::config::Connection>,
) -> String {
    match (sandbox, conn) {
        (Some(db), _) => format!("sandbox {}", db.display()),
        (None, Some(c)) => format!("{} as {}", c.url, c.login),
        (None, None) => String::new(),
    }
}

/// The async runtime a command does its HTTP on: `workers` threads (two suit the 2-core
/// machines this runs on, shared with the server), or the calling thread alone for a few calls.
pub(crate) fn runtime(workers: Option<usize>) -> Result<tokio::runtime::Runtime> {
    let mut builder = match workers {
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_current_thread(),
    };
    builder.enable_all().build().map_err(crate::Error::Runtime)
}
