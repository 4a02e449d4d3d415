//! What the test modules share: the repository root, the CLI started against a sandbox, the
//! text of an Output for a failing assertion, and (from the benches' common module) the persons
//! input at size and a child's own peak RSS.

use assert_cmd::cargo::CommandCargoExt;
use smbatch::sandbox::Sandbox;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

#[path = "../../benches/common/mod.rs"]
mod bulk;
pub use bulk::{run_with_peak_rss, write_persons, PERSONS_TEMPLATE};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `smbatch args` against `sb` (its URL, login and key), no config file or profile from the
/// environment, stdin closed.
pub fn against(sb: &Sandbox, args: &[&str]) -> Command {
    let conn = sb.connection();
    let mut c = Command::cargo_bin("smbatch").unwrap();
    c.args(args)
        .arg("--url")
        .arg(&conn.url)
        .arg("--login")
        .arg(&conn.login)
        .env("SMBATCH_APIKEY", conn.apikey.expose())
        .env("SMBATCH_CONFIG", "/nonexistent/smbatch.toml")
        .env_remove("SMBATCH_PROFILE")
        .stdin(Stdio::null());
    c
}

/// stdout and stderr of a finished command, for an assertion's message.
pub fn say(o: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
