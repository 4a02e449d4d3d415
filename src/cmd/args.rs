//! Argument groups several commands share. They are clap's, so they live in the command layer;
//! each converts into the library's plain type (`config::ConnectionOverrides`,
//! `source::SourceOverrides`, `job::Target`).

use crate::job::{names, Target};
use crate::{Error, Result};
use clap::Args;
use std::path::{Path, PathBuf};

/// Where the CRM is and who we are there. The API key is never a flag (it would land in shell
/// history and process lists): it comes from `SMBATCH_APIKEY` or the config file's profile.
#[derive(Debug, Clone, Default, Args)]
pub struct ConnectionArgs {
    /// Base URL of the CRM, e.g. https://crm.example.ru
    #[arg(long, env = "SMBATCH_URL", global = true)]
    pub url: Option<String>,
    /// CRM user login (e-mail) the API key belongs to
    #[arg(long, env = "SMBATCH_LOGIN", global = true)]
    pub login: Option<String>,
    /// Profile in ~/.config/smbatch/config.toml (or SMBATCH_CONFIG)
    #[arg(long, env = "SMBATCH_PROFILE", global = true)]
    pub profile: Option<String>,
}

/// The CRM a command talks to: one named by --url/--login/--profile (or the environment), or
/// the embedded sandbox on a SQLite file, the same file `smbatch sandbox` serves by default.
#[derive(Debug, Clone, Default, Args)]
pub struct CrmArgs {
    #[command(flatten)]
    pub conn: ConnectionArgs,
    /// Use the embedded sandbox CRM on this SQLite file instead (default smbatch-sandbox.sqlite,
    /// the file `smbatch sandbox` serves); put it after the positional arguments
    #[arg(long, num_args = 0..=1, default_missing_value = names::SANDBOX_DB, value_name = "DB")]
    pub sandbox: Option<PathBuf>,
}

impl CrmArgs {
    /// The sandbox if `--sandbox` was given, else the CRM the connection flags, environment and
    /// profile name (resolved when the job first needs it).
    pub fn target(&self) -> Target {
        match &self.sandbox {
            Some(db) => Target::Sandbox(db.clone()),
            None => Target::Configured(self.conn.overrides()),
        }
    }

    /// A CRM was named (`--sandbox`, a URL or a profile): commands where the CRM is optional
    /// (validate, template init) check against it only then.
    pub fn names_a_crm(&self) -> bool {
        self.sandbox.is_some() || self.conn.overrides().names_a_crm()
    }

    /// Start the sandbox (if it is one) and say where to connect; the sandbox runs while the
    /// returned handle lives.
    pub fn connect(&self) -> Result<(Option<crate::sandbox::Sandbox>, crate::config::Connection)> {
        self.target().connect()
    }
}

/// How much a command prints: the same two flags on every command.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct OutputMode {
    /// Print the summary as JSON on stdout (and nothing else there)
    #[arg(long)]
    pub json: bool,
    /// Quiet: no progress display and no line per row or problem (errors and warnings still
    /// print)
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

impl OutputMode {
    /// Progress and per-row lines on stderr: neither with --quiet nor with --json.
    pub fn chatty(&self) -> bool {
        !(self.quiet || self.json)
    }
}

/// A summary as `--json` prints it: pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(summary: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(summary)
        .map_err(|e| Error::Internal(format!("summary as JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

/// Refuse an output file the command cannot write: its format follows the extension, so
/// `-o report.pdf` would silently get XLSX inside. `writes` are the extensions it can write
/// (lowercase, no dot); the check ignores case.
pub fn check_output(flag: &str, path: &Path, writes: &[&str]) -> Result<()> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if writes.iter().any(|w| ext.eq_ignore_ascii_case(w)) {
        return Ok(());
    }
    let can: Vec<String> = writes.iter().map(|w| format!(".{w}")).collect();
    let got = if ext.is_empty() {
        "a file without an extension".to_string()
    } else {
        format!("'.{ext}'")
    };
    Err(Error::Usage(format!(
        "{flag} {}: this command writes {} files, not {got}",
        path.display(),
        can.join(" or ")
    )))
}

/// The report flags of `import` and `validate`: `-o` an XLSX, `--csv-report` a CSV.
pub fn check_reports(xlsx: Option<&Path>, csv: Option<&Path>) -> Result<()> {
    if let Some(o) = xlsx {
        check_output("--output", o, &["xlsx"])?;
    }
    if let Some(o) = csv {
        check_output("--csv-report", o, &["csv"])?;
    }
    Ok(())
}

/// How to read the input file: overrides of what is sniffed and of the template's `[source]`.
#[derive(Debug, Clone, Default, Args)]
pub struct SourceArgs {
    /// CSV encoding: auto, utf-8, windows-1251, utf-16 (overrides the template)
    #[arg(long)]
    pub encoding: Option<String>,
    /// CSV delimiter: one character, or tab (overrides the template)
    #[arg(long)]
    pub delimiter: Option<String>,
    /// Sheet name or 1-based number (overrides the template)
    #[arg(long)]
    pub sheet: Option<String>,
}

impl ConnectionArgs {
    /// The plain overrides the library resolves (`config::resolve`).
    pub fn overrides(&self) -> crate::config::ConnectionOverrides {
        crate::config::ConnectionOverrides {
            url: self.url.clone(),
            login: self.login.clone(),
            profile: self.profile.clone(),
        }
    }

    /// Flags, environment and profile resolved into a connection.
    pub fn resolve(&self) -> Result<crate::config::Connection, crate::config::ConfigError> {
        crate::config::resolve(&self.overrides())
    }
}

impl SourceArgs {
    /// The plain overrides the library applies over a template's `[source]`.
    pub fn overrides(&self) -> crate::source::SourceOverrides {
        crate::source::SourceOverrides {
            encoding: self.encoding.clone(),
            delimiter: self.delimiter.clone(),
            sheet: self.sheet.clone(),
        }
    }

    /// The reader options: these flags first, then the template's `[source]`, then detection.
    pub fn options(
        &self,
        template: Option<&crate::template::Template>,
    ) -> crate::Result<crate::source::SourceOptions> {
        Ok(self.overrides().options(template.map(|t| &t.source))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_extension_the_command_cannot_write_is_refused_naming_what_it_can() {
        assert!(check_output("-o", Path::new("out/Клиенты.XLSX"), &["xlsx", "csv"]).is_ok());
        assert!(check_output("-o", Path::new("p.csv"), &["xlsx", "csv"]).is_ok());
        let err = check_output("-o", Path::new("out/отчёт.pdf"), &["xlsx", "csv"])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "-o out/отчёт.pdf: this command writes .xlsx or .csv files, not '.pdf'"
        );
        let err = check_output("--output", Path::new("report"), &["xlsx"])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "--output report: this command writes .xlsx files, not a file without an extension"
        );
    }
}
