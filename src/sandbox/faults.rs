//! Fault injection: the failure modes a real SalesMan install shows under load, on demand and
//! reproducible (seeded), so retry/resume logic can be tested against them.

use super::SandboxError;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::str::FromStr;

/// Which faults to inject and how often. All rates are probabilities per API request (0.0..=1.0).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultConfig {
    /// HTTP 500/502/503 before the request touches any data.
    pub error_rate: f64,
    /// The request is fully processed (rows stored), then the connection is dropped unanswered.
    pub drop_after_commit: f64,
    /// Random delay in milliseconds, uniformly from the inclusive range.
    pub latency_ms: Option<(u64, u64)>,
    /// HTTP 200 with the real server's HTML fatal-error page, before touching data.
    pub html_fatal: f64,
    /// Seed of the fault RNG: the same seed and request order give the same faults.
    pub seed: u64,
}

impl FaultConfig {
    pub fn is_off(&self) -> bool {
        self.error_rate <= 0.0
            && self.drop_after_commit <= 0.0
            && self.html_fatal <= 0.0
            && self.latency_ms.is_none()
    }
}

fn bad(spec: &str, why: impl Into<String>) -> SandboxError {
    SandboxError::BadFaultSpec {
        spec: spec.to_string(),
        reason: why.into(),
    }
}

fn rate(spec: &str, key: &str, v: &str) -> Result<f64, SandboxError> {
    let r: f64 = v.trim().parse().map_err(|_| {
        bad(
            spec,
            format!("{key} must be a number between 0 and 1, got '{v}'"),
        )
    })?;
    if !(0.0..=1.0).contains(&r) {
        return Err(bad(spec, format!("{key} must be between 0 and 1, got {r}")));
    }
    Ok(r)
}

impl FromStr for FaultConfig {
    type Err = SandboxError;

    /// `error_rate=0.05,drop_after_commit=0.02,latency_ms=20..400,html_fatal=0.01,seed=7`;
    /// any subset, in any order; empty string = no faults.
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let mut f = FaultConfig::default();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| bad(spec, format!("'{part}' is not key=value")))?;
            let key = key.trim();
            match key {
                "error_rate" => f.error_rate = rate(spec, key, value)?,
                "drop_after_commit" => f.drop_after_commit = rate(spec, key, value)?,
                "html_fatal" => f.html_fatal = rate(spec, key, value)?,
                "seed" => {
                    f.seed = value
                        .trim()
                        .parse()
                        .map_err(|_| bad(spec, format!("seed must be an integer, got '{value}'")))?
                }
                "latency_ms" => {
                    let v = value.trim();
                    let (a, b) = v.split_once("..").unwrap_or((v, v));
                    let parse = |s: &str| {
                        s.trim().parse::<u64>().map_err(|_| {
                            bad(spec, format!("latency_ms must be A..B in milliseconds, got '{v}'"))
                        })
                    };
                    let (a, b) = (parse(a)?, parse(b)?);
                    if a > b {
                        return Err(bad(spec, format!("latency_ms range {a}..{b} is reversed")));
                    }
                    f.latency_ms = Some((a, b));
                }
                other => {
                    return Err(bad(
                        spec,
                        format!(
                            "unknown fault '{other}' (known: error_rate, drop_after_commit, latency_ms, html_fatal, seed)"
                        ),
                    ))
                }
            }
        }
        Ok(f)
    }
}

/// What to do with one request, decided up front so the RNG sequence depends only on the seed
/// and the request order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub delay_ms: u64,
    pub error_status: Option<u16>,
    pub html_fatal: bool,
    pub drop_after_commit: bool,
}

/// The fault config plus its RNG; lives behind a mutex in the server state.
pub struct FaultState {
    pub config: FaultConfig,
    rng: SmallRng,
}

impl FaultState {
    pub fn new(config: FaultConfig) -> Self {
        let rng = SmallRng::seed_from_u64(config.seed);
        FaultState { config, rng }
    }

    pub fn decide(&mut self) -> Decision {
        let c = &self.config;
        let mut d = Decision {
            delay_ms: 0,
            error_status: None,
            html_fatal: false,
            drop_after_commit: false,
        };
        if c.is_off() {
            return d;
        }
        if let Some((a, b)) = c.latency_ms {
            d.delay_ms = self.rng.random_range(a..=b);
        }
        if c.error_rate > 0.0 && self.rng.random_bool(c.error_rate) {
            d.error_status = Some([500, 502, 503][self.rng.random_range(0..3)]);
        } else if c.html_fatal > 0.0 && self.rng.random_bool(c.html_fatal) {
            d.html_fatal = true;
        } else if c.drop_after_commit > 0.0 && self.rng.random_bool(c.drop_after_commit) {
            d.drop_after_commit = true;
        }
        d
    }
}

/// The body the real server sends (with HTTP 200) when PHP dies, e.g. on memory exhaustion.
pub const HTML_FATAL: &str = "<br />\n<b>Fatal error</b>:  Allowed memory size of 134217728 bytes exhausted (tried to allocate 20480 bytes) in <b>/var/www/salesman/vendor/colshrapnel/safemysql/safemysql.class.php</b> on line <b>466</b><br />\n";

/// The real server's answer to a string `recv` in client/add (`line` 170) and client/add.list
/// (line 182), byte for byte as recorded [v3-client-add-recv-string, v3-client-add.list-recv-string].
pub fn recv_type_error(line: u32) -> String {
    format!(
        "<br />\n<b>Fatal error</b>:  Uncaught TypeError: Cannot access offset of type string on string in <crm-root>/inc/class/Client.php:501\nStack trace:\n#0 <crm-root>/developer/v3/methods/client.php({line}): Salesman\\Client-&gt;add()\n#1 <crm-root>/developer/v3/index.php(171): include_once('...')\n#2 {{main}}\n  thrown in <b><crm-root>/inc/class/Client.php</b> on line <b>501</b><br />\n"
    )
}

/// deal/add with an array `kol`, as recorded [v3-deal-add-kol-array].
pub const KOL_ARRAY_FATAL: &str = "<br />\n<b>Fatal error</b>:  Uncaught TypeError: pre_format(): Argument #1 ($string) must be of type ?string, array given, called in <crm-root>/inc/class/Deal.php on line 667 and defined in <crm-root>/inc/func.php:1030\nStack trace:\n#0 <crm-root>/inc/class/Deal.php(667): pre_format()\n#1 <crm-root>/developer/v3/methods/deal.php(395): Salesman\\Deal-&gt;add()\n#2 <crm-root>/developer/v3/index.php(171): include_once('...')\n#3 {main}\n  thrown in <b><crm-root>/inc/func.php</b> on line <b>1030</b><br />\n";

/// deal/change.step, change.user and delete without `did`: the id is missing from the SQL
/// (`near` is the rest of the query, `line` the line of deal.php), as recorded
/// [v3-deal-change.step-missing-did, v3-deal-change.user-missing-did, v3-deal-delete-missing-did].
pub fn deal_no_did_fatal(near: &str, line: u32) -> String {
    format!(
        "<br />\n<b>Fatal error</b>:  Uncaught mysqli_sql_exception: You have an error in your SQL syntax; check the manual that corresponds to your MariaDB server version for the right syntax to use near '{near}' at line 1 in <crm-root>/vendor/colshrapnel/safemysql/safemysql.class.php:466\nStack trace:\n#0 <crm-root>/vendor/colshrapnel/safemysql/safemysql.class.php(466): mysqli_query()\n#1 <crm-root>/vendor/colshrapnel/safemysql/safemysql.class.php(208): SafeMySQL-&gt;rawQuery()\n#2 <crm-root>/developer/v3/methods/deal.php({line}): SafeMySQL-&gt;getOne()\n#3 <crm-root>/developer/v3/index.php(171): include_once('...')\n#4 {{main}}\n  thrown in <b><crm-root>/vendor/colshrapnel/safemysql/safemysql.class.php</b> on line <b>466</b><br />\n"
    )
}

/// deal/change.freeze on a default install, for every did (the freeze date field setting is
/// empty) [v3-deal-change.freeze-first-call, -second-call, -notfound].
pub const FREEZE_FATAL: &str = "<br />\n<b>Fatal error</b>:  Uncaught Exception: SafeMySQL: Empty value for identifier (?n) placeholder in <crm-root>/vendor/colshrapnel/safemysql/safemysql.class.php:623\nStack trace:\n#0 <crm-root>/vendor/colshrapnel/safemysql/safemysql.class.php(569): SafeMySQL-&gt;error()\n#1 <crm-root>/vendor/colshrapnel/safemysql/safemysql.class.php(608): SafeMySQL-&gt;escapeIdent()\n#2 <crm-root>/vendor/colshrapnel/safemysql/safemysql.class.php(525): SafeMySQL-&gt;createSET()\n#3 <crm-root>/vendor/colshrapnel/safemysql/safemysql.class.php(140): SafeMySQL-&gt;prepareQuery()\n#4 <crm-root>/inc/class/Deal.php(3351): SafeMySQL-&gt;query()\n#5 <crm-root>/developer/v3/methods/deal.php(538): Salesman\\Deal-&gt;changeFreeze()\n#6 <crm-root>/developer/v3/index.php(171): include_once('...')\n#7 {main}\n  thrown in <b><crm-root>/vendor/colshrapnel/safemysql/safemysql.class.php</b> on line <b>623</b><br />\n";

/// deal/change.freeze without `date` [v3-deal-change.freeze-missing-did].
pub const FREEZE_NO_DATE_FATAL: &str = "<br />\n<b>Fatal error</b>:  Uncaught TypeError: Salesman\\Deal::changeFreeze(): Argument #2 ($date) must be of type string, null given, called in <crm-root>/developer/v3/methods/deal.php on line 538 and defined in <crm-root>/inc/class/Deal.php:3336\nStack trace:\n#0 <crm-root>/developer/v3/methods/deal.php(538): Salesman\\Deal-&gt;changeFreeze()\n#1 <crm-root>/developer/v3/index.php(171): include_once('...')\n#2 {main}\n  thrown in <b><crm-root>/inc/class/Deal.php</b> on line <b>3336</b><br />\n";

/// The page for a [`super::Sandbox::set_fatal_on`] value: the same TypeError the real server shows for a value it
/// cannot handle, in the class of the entity written.
pub fn value_type_error(class: &str) -> String {
    format!(
        "<br />\n<b>Fatal error</b>:  Uncaught TypeError: pre_format(): Argument #1 ($string) must be of type ?string, array given, called in <crm-root>/inc/class/{class}.php on line 420 and defined in <crm-root>/inc/func.php:1030\nStack trace:\n#0 <crm-root>/inc/class/{class}.php(420): pre_format()\n#1 {{main}}\n  thrown in <b><crm-root>/inc/func.php</b> on line <b>1030</b><br />\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_spec() {
        let f: FaultConfig =
            "error_rate=0.05,drop_after_commit=0.02,latency_ms=20..400,html_fatal=0.01,seed=7"
                .parse()
                .unwrap();
        assert_eq!(
            f,
            FaultConfig {
                error_rate: 0.05,
                drop_after_commit: 0.02,
                latency_ms: Some((20, 400)),
                html_fatal: 0.01,
                seed: 7
            }
        );
        assert_eq!("".parse::<FaultConfig>().unwrap(), FaultConfig::default());
    }

    #[test]
    fn rejects_bad_specs_clearly() {
        for (spec, needle) in [
            ("error_rate=2", "between 0 and 1"),
            ("error_rate=x", "number"),
            ("latency_ms=5..1", "reversed"),
            ("latency_ms=a..b", "A..B"),
            ("bogus=1", "unknown fault 'bogus'"),
            ("error_rate", "key=value"),
        ] {
            let e = spec.parse::<FaultConfig>().unwrap_err().to_string();
            assert!(e.contains(needle), "{spec}: {e}");
        }
    }

    #[test]
    fn same_seed_same_faults() {
        let c: FaultConfig = "error_rate=0.3,html_fatal=0.3,seed=9".parse().unwrap();
        let (mut a, mut b) = (FaultState::new(c.clone()), FaultState::new(c));
        let da: Vec<_> = (0..50).map(|_| a.decide()).collect();
        let db: Vec<_> = (0..50).map(|_| b.decide()).collect();
        assert_eq!(da, db);
        assert!(da.iter().any(|d| d.error_status.is_some()));
        assert!(da.iter().any(|d| d.html_fatal));
    }
}
