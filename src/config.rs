//! Connection settings: URL and login from flags, environment or a profile; the API key from
//! `SMBATCH_APIKEY` or the profile. The key is wrapped so it never prints.

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
    #[error("'{url}' is not a URL: write {suggestion}")]
    NotUrl { url: String, suggestion: String },
}

/// An API key. Debug and Display never show it, so it cannot leak into logs, reports or panics.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(key.into())
    }
    /// The key itself, for the places that send it: the v3 request header and the v1 query
    /// string (never the URL an error shows, see `crm::v1`).
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

/// What the user said about the connection (flags or environment), before the profile fills in
/// the rest. Plain values: the command layer's clap group converts into this.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionOverrides {
    pub url: Option<String>,
    pub login: Option<String>,
    pub profile: Option<String>,
}

impl ConnectionOverrides {
    /// A CRM was named (a URL or a profile): commands where the CRM is optional check against it.
    pub fn names_a_crm(&self) -> bool {
        self.url.is_some() || self.profile.is_some()
    }
}

/// Resolve flags, environment and profile into a connection. Flags and environment win over the
/// profile; the key comes only from `SMBATCH_APIKEY` or the profile.
pub fn resolve(overrides: &ConnectionOverrides) -> Result<Connection, ConfigError> {
    // An empty --profile / SMBATCH_PROFILE= means "no profile", like the other settings.
    let wanted = given(overrides.profile.as_deref());
    let profile = match config_path() {
        Some(path) => load_profile(&path, wanted.as_deref())?,
        None => Profile::default(),
    };
    overrides.resolve_with(profile, std::env::var("SMBATCH_APIKEY").ok())
}

impl ConnectionOverrides {
    fn resolve_with(
        &self,
        profile: Profile,
        env_apikey: Option<String>,
    ) -> Result<Connection, ConfigError> {
        let url = given(self.url.as_deref())
            .or(given(profile.url.as_deref()))
            .ok_or_else(|| ConfigError::Missing {
                what: "URL",
                hint: "pass --url, set SMBATCH_URL, or put url in a config profile".into(),
            })?;
        let url = check_url(&url)?;
        let login = given(self.login.as_deref())
            .or(given(profile.login.as_deref()))
            .ok_or_else(|| ConfigError::Missing {
                what: "login",
                hint: "pass --login, set SMBATCH_LOGIN, or put login in a config profile".into(),
            })?;
        let apikey = given(env_apikey.as_deref())
            .or(given(profile.apikey.as_deref()))
            .ok_or_else(|| ConfigError::Missing {
                what: "API key",
                hint: "set SMBATCH_APIKEY or put apikey in a config profile".into(),
            })?;
        Ok(Connection {
            url,
            login,
            apikey: ApiKey::new(apikey),
        })
    }
}

/// A setting that is absent, empty or only whitespace (`SMBATCH_URL=` in a script) is not given.
fn given(v: Option<&str>) -> Option<String> {
    v.map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// The base URL without a trailing slash; a host without `http://` or `https://` is refused with
/// the URL the user probably meant, instead of the HTTP client's "relative URL without a base".
fn check_url(url: &str) -> Result<String, ConfigError> {
    let lower = url.to_ascii_lowercase();
    let ok = ["http://", "https://"]
        .iter()
        .any(|s| lower.starts_with(s) && lower.len() > s.len());
    if ok && !url.contains(char::is_whitespace) {
        return Ok(url.trim_end_matches('/').to_string());
    }
    let suggestion = match url.split_once("://") {
        Some((_, rest)) => format!("https://{rest}"),
        None => format!("https://{}", url.trim_start_matches('/')),
    };
    Err(ConfigError::NotUrl {
        url: url.to_string(),
        suggestion: if url.contains(char::is_whitespace) {
            "the address without spaces, e.g. https://crm.example.ru".into()
        } else {
            suggestion
        },
    })
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

    fn args(url: Option<&str>, login: Option<&str>) -> ConnectionOverrides {
        ConnectionOverrides {
            url: url.map(str::to_string),
            login: login.map(str::to_string),
            profile: None,
        }
    }

    fn prod() -> Profile {
        Profile {
            url: Some("https://crm.example.ru/".into()),
            login: Some("a@b.ru".into()),
            apikey: Some("k".into()),
        }
    }

    #[test]
    fn empty_or_blank_settings_count_as_unset() {
        // SMBATCH_URL= and --url "" fall back to the profile instead of failing on an empty URL.
        let c = args(Some(""), Some("  "))
            .resolve_with(prod(), Some(String::new()))
            .unwrap();
        assert_eq!(c.url, "https://crm.example.ru");
        assert_eq!(c.login, "a@b.ru");
        assert_eq!(c.apikey.expose(), "k");
        // Without a profile an empty URL is "no CRM URL given", not a URL parse error.
        let err = args(Some(" "), Some("x@y.ru"))
            .resolve_with(Profile::default(), Some("k".into()))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("no CRM URL given"), "{err}");
        let err = args(Some("http://h"), Some(""))
            .resolve_with(Profile::default(), Some("k".into()))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("no CRM login given"), "{err}");
    }

    #[test]
    fn flags_win_over_the_profile() {
        let c = args(Some("http://127.0.0.1:8090/"), Some("me@x.ru"))
            .resolve_with(prod(), None)
            .unwrap();
        assert_eq!(c.url, "http://127.0.0.1:8090");
        assert_eq!(c.login, "me@x.ru");
    }

    #[test]
    fn url_without_scheme_says_what_to_write() {
        let err = args(Some("crm.example.ru"), Some("a@b.ru"))
            .resolve_with(Profile::default(), Some("k".into()))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "'crm.example.ru' is not a URL: write https://crm.example.ru"
        );
        let err = check_url("ftp://crm.пример.рф").unwrap_err().to_string();
        assert_eq!(
            err,
            "'ftp://crm.пример.рф' is not a URL: write https://crm.пример.рф"
        );
        assert!(check_url("https://").is_err());
        assert_eq!(
            check_url("HTTPS://crm.example.ru/").unwrap(),
            "HTTPS://crm.example.ru"
        );
    }
}
