//! Connection settings: URL and login from flags, environment or a profile; the API key from
//! `SMBATCH_APIKEY` or the profile. The key is wrapped so it never prints.

use crate::cli::ConnectionArgs;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("profile '{profile}' is not in {path} (profiles there: {available})")]
    NoProfile {
        profile: String,
        path: PathBuf,
        available: String,
    },
    #[error("no CRM {what} given: {hint}")]
    Missing { what: &'static str, hint: String },
}

/// An API key. Debug and Display never show it, so it cannot leak into logs, reports or panics.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(key.into())
    }
    /// The key itself, for the one place that needs it: the request header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Everything needed to talk to one CRM.
#[derive(Debug, Clone)]
pub struct Connection {
    /// Base URL without a trailing slash, e.g. `http://127.0.0.1:8090`.
    pub url: String,
    pub login: String,
    pub apikey: ApiKey,
}

#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    default_profile: Option<String>,
    #[serde(default)]
    profile: BTreeMap<String, Profile>,
}

#[derive(Debug, Default, Clone, Deserialize)]
struct Profile {
    url: Option<String>,
    login: Option<String>,
    apikey: Option<String>,
}

/// `SMBATCH_CONFIG`, else `~/.config/smbatch/config.toml` (XDG_CONFIG_HOME honoured).
pub fn config_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SMBATCH_CONFIG") {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("smbatch").join("config.toml"))
}

fn load_profile(path: &Path, name: Option<&str>) -> Result<Profile, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && name.is_none() => {
            return Ok(Profile::default())
        }
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let file: ConfigFile = toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.message().to_string(),
    })?;
    let wanted = name.map(str::to_string).or(file.default_profile.clone());
    match wanted {
        None => Ok(file.profile.get("default").cloned().unwrap_or_default()),
        Some(p) => file
            .profile
            .get(&p)
            .cloned()
            .ok_or_else(|| ConfigError::NoProfile {
                profile: p,
                path: path.to_path_buf(),
                available: file.profile.keys().cloned().collect::<Vec<_>>().join(", "),
            }),
    }
}

impl ConnectionArgs {
    /// Resolve flags, environment and profile into a connection. Flags and environment win over
    /// the profile; the key comes only from `SMBATCH_APIKEY` or the profile.
    pub fn resolve(&self) -> Result<Connection, ConfigError> {
        let profile = match config_path() {
            Some(path) => load_profile(&path, self.profile.as_deref())?,
            None => Profile::default(),
        };
        let url = self
            .url
            .clone()
            .or(profile.url)
            .ok_or_else(|| ConfigError::Missing {
                what: "URL",
                hint: "pass --url, set SMBATCH_URL, or put url in a config profile".into(),
            })?;
        let login = self
            .login
            .clone()
            .or(profile.login)
            .ok_or_else(|| ConfigError::Missing {
                what: "login",
                hint: "pass --login, set SMBATCH_LOGIN, or put login in a config profile".into(),
            })?;
        let apikey = std::env::var("SMBATCH_APIKEY")
            .ok()
            .filter(|k| !k.is_empty())
            .or(profile.apikey)
            .ok_or_else(|| ConfigError::Missing {
                what: "API key",
                hint: "set SMBATCH_APIKEY or put apikey in a config profile".into(),
            })?;
        Ok(Connection {
            url: url.trim_end_matches('/').to_string(),
            login,
            apikey: ApiKey::new(apikey),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_never_prints() {
        let k = ApiKey::new("secret-key-123");
        assert!(!format!("{k:?} {k}").contains("secret"));
        let c = Connection {
            url: "u".into(),
            login: "l".into(),
            apikey: k,
        };
        assert!(!format!("{c:?}").contains("secret"));
    }

    #[test]
    fn profile_is_read_and_missing_profile_lists_available() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "[profile.prod]\nurl = \"https://crm.example.ru/\"\nlogin = \"a@b.ru\"\napikey = \"k\"\n",
        )
        .unwrap();
        let p = load_profile(&path, Some("prod")).unwrap();
        assert_eq!(p.login.as_deref(), Some("a@b.ru"));
        let err = load_profile(&path, Some("test")).unwrap_err().to_string();
        assert!(err.contains("'test'") && err.contains("prod"), "{err}");
    }
}
