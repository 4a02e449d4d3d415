//! Argument groups several commands share. They are clap's, so they live in the command layer;
//! each converts into the library's plain type (`config::ConnectionOverrides`,
//! `source::SourceOverrides`).

use clap::Args;

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
