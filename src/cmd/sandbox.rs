//! `smbatch sandbox`: serve the SalesMan API from SQLite until Ctrl-C.

use crate::sandbox::{FaultConfig, Sandbox, SandboxConfig};
use crate::{Exit, Result};
use clap::Args;
use std::net::SocketAddr;

/// Key served when neither --apikey nor SMBATCH_APIKEY is given: the fixed key every fresh
/// SalesMan install ships with, so a rehearsal setup looks like a real one.
const DEFAULT_APIKEY: &str = "VaSeZvkTfh5HMjJpNnge1W7Bloim0S";

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// SQLite database file (created if missing), or :memory:
    #[arg(long, default_value = "sandbox.sqlite")]
    pub db: String,
    /// Login the API accepts
    #[arg(long = "login", default_value = "admin@example.ru")]
    pub sandbox_login: String,
    /// API key the sandbox accepts (default: $SMBATCH_APIKEY, else SalesMan's shipped default key)
    #[arg(long)]
    pub apikey: Option<String>,
    /// Fault injection, e.g. "error_rate=0.05,drop_after_commit=0.02,latency_ms=20..400,html_fatal=0.01,seed=7"
    #[arg(long)]
    pub faults: Option<String>,
}

pub fn run(args: SandboxArgs) -> Result<Exit> {
    let faults: FaultConfig = match &args.faults {
        Some(spec) => spec.parse()?,
        None => FaultConfig::default(),
    };
    let apikey = args
        .apikey
        .clone()
        .or_else(|| {
            std::env::var("SMBATCH_APIKEY")
                .ok()
                .filter(|k| !k.is_empty())
        })
        .unwrap_or_else(|| DEFAULT_APIKEY.to_string());
    let config = SandboxConfig {
        db: args.db.clone(),
        login: args.sandbox_login.clone(),
        apikey: apikey.clone(),
        faults: faults.clone(),
    };
    let sandbox = Sandbox::start_on(config, args.listen)?;
    // Printing the key is the point here: the user needs it to connect. It is the sandbox's
    // own key, never a real CRM's.
    println!("SalesMan sandbox listening on {}", sandbox.url());
    println!("  database: {}", args.db);
    println!("  login:    {}", args.sandbox_login);
    println!("  apikey:   {apikey}");
    if !faults.is_off() {
        println!("  faults:   {}", args.faults.as_deref().unwrap_or(""));
    }
    println!(
        "Try: SMBATCH_URL={} SMBATCH_LOGIN={} SMBATCH_APIKEY=... smbatch fields person",
        sandbox.url(),
        args.sandbox_login
    );
    println!("Press Ctrl-C to stop.");
    let rt = super::runtime(None)?;
    rt.block_on(async {
        let _ = tokio::signal::ctrl_c().await;
    });
    sandbox.stop();
    eprintln!("sandbox stopped");
    Ok(Exit::Clean)
}
