//! `smbatch sandbox`: serve the SalesMan API from SQLite until Ctrl-C.

use crate::crm::{CrmClient, Entity, RetryPolicy};
use crate::sandbox::{
    mirror_fields, EmulateConfig, FaultConfig, FieldSpec, Sandbox, SandboxConfig, UserSpec,
};
use crate::{Exit, Result};
use clap::Args;
use std::net::SocketAddr;

/// Key served when neither --apikey nor SMBATCH_APIKEY is given: the fixed key every fresh
/// SalesMan install ships with, so a rehearsal setup looks like a real one.
const DEFAULT_APIKEY: &str = "VaSeZvkTfh5HMjJpNnge1W7Bloim0S";

pub const EXAMPLES: &str = "\
Examples:
  smbatch sandbox                                   # serves smbatch-sandbox.sqlite, what `import --sandbox` wrote
  smbatch sandbox --db :memory: --field 'person.input1=Дата рождения'
  smbatch sandbox --listen 127.0.0.1:9000 --json    # one JSON line: url, database, login, apikey";

#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
#[command(mut_arg("json", |a| a.help("Print the URL, database, login and key as one JSON line (for scripts)")))]
#[command(mut_arg("quiet", |a| a.help("Print nothing while serving (errors still print)")))]
pub struct SandboxArgs {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// SQLite database file (created if missing), or :memory:; the default is the file every
    /// other command's --sandbox uses
    #[arg(long, default_value = crate::job::names::SANDBOX_DB)]
    pub db: String,
    #[command(flatten)]
    pub mode: super::args::OutputMode,
    /// Login the API accepts (default admin@example.ru); with --fields-from also the login used
    /// there (else $SMBATCH_LOGIN or the profile's)
    #[arg(long = "login")]
    pub sandbox_login: Option<String>,
    /// API key the sandbox accepts (default: $SMBATCH_APIKEY, else SalesMan's shipped default key)
    #[arg(long)]
    pub apikey: Option<String>,
    /// Fault injection, e.g. "error_rate=0.05,drop_after_commit=0.02,latency_ms=20..400,html_fatal=0.01,seed=7"
    #[arg(long)]
    pub faults: Option<String>,
    /// Answer as slowly as a real server: a preset (real-2core, big, shared-hosting) and/or
    /// settings, e.g. "real-2core" or "workers=8,cores=2,request_ms=11,row_ms=1.4,wait_ms=20,wait_row_ms=1,seed=1"
    #[arg(long, value_name = "PRESET|SETTINGS")]
    pub emulate: Option<String>,
    /// Switch on a field with its title, as a CRM administrator does, e.g.
    /// 'person.input1=Дата рождения' (repeatable; stored in the database)
    #[arg(long = "field", value_name = "ENTITY.NAME=TITLE")]
    pub fields: Vec<FieldSpec>,
    /// A CRM user records can be owned by, e.g. 'manager2@firm.ru=Менеджер Второй' (repeatable;
    /// stored in the database). The API user (--login) is always user 1.
    #[arg(long = "user", value_name = "LOGIN=FULL NAME")]
    pub users: Vec<UserSpec>,
    /// A user who has left (inactive): listed by user/list, still an owner, cannot log in
    #[arg(long = "inactive-user", value_name = "LOGIN=FULL NAME")]
    pub inactive_users: Vec<UserSpec>,
    /// Copy the field set of a real CRM (read-only `fields` calls; key from SMBATCH_APIKEY or
    /// the profile) into the database
    #[arg(long, value_name = "URL")]
    pub fields_from: Option<String>,
    /// Profile in ~/.config/smbatch/config.toml for --fields-from
    #[arg(long, requires = "fields_from")]
    pub profile: Option<String>,
    /// Act as an older server without the v3 invoice methods (and without deal change.step /
    /// close): invoices, payments, steps and closes then go through the v1 contract actions
    #[arg(long)]
    pub no_v3_invoices: bool,
}

const DEFAULT_LOGIN: &str = "admin@example.ru";

/// The field settings `--fields-from` copies: every entity's `fields` answer of that CRM.
fn fetch_field_set(args: &SandboxArgs, url: &str) -> Result<Vec<FieldSpec>> {
    let conn = crate::config::resolve(&crate::config::ConnectionOverrides {
        url: Some(url.to_string()),
        login: args.sandbox_login.clone().or_else(|| {
            std::env::var("SMBATCH_LOGIN")
                .ok()
                .filter(|l| !l.is_empty())
        }),
        profile: args.profile.clone(),
    })?;
    let client = CrmClient::new(&conn)?;
    let rt = crate::job::runtime(None)?;
    let mut out = Vec::new();
    for e in Entity::ALL {
        let fetched = rt.block_on(client.fields(e, &RetryPolicy::default()))?;
        println!("  {e}: {} fields copied from {}", fetched.len(), conn.url);
        out.extend(mirror_fields(e, &fetched));
    }
    Ok(out)
}

pub fn run(args: SandboxArgs) -> Result<Exit> {
    // The copied set first: --field switches come on top of it.
    let mut fields = match &args.fields_from {
        Some(url) => fetch_field_set(&args, url)?,
        None => Vec::new(),
    };
    fields.extend(args.fields.iter().cloned());
    let login = args
        .sandbox_login
        .clone()
        .unwrap_or_else(|| DEFAULT_LOGIN.to_string());
    let faults: FaultConfig = match &args.faults {
        Some(spec) => spec.parse()?,
        None => FaultConfig::default(),
    };
    let emulate: Option<EmulateConfig> = args.emulate.as_deref().map(str::parse).transpose()?;
    let key_from_env =
        args.apikey.is_none() && std::env::var("SMBATCH_APIKEY").is_ok_and(|k| !k.is_empty());
    let apikey = args
        .apikey
        .clone()
        .or_else(|| {
            std::env::var("SMBATCH_APIKEY")
                .ok()
                .filter(|k| !k.is_empty())
        })
        .unwrap_or_else(|| DEFAULT_APIKEY.to_string());
    let users: Vec<UserSpec> = args
        .users
        .iter()
        .cloned()
        .chain(args.inactive_users.iter().map(|u| UserSpec {
            active: false,
            ..u.clone()
        }))
        .collect();
    let config = SandboxConfig {
        db: args.db.clone(),
        login: login.clone(),
        apikey: apikey.clone(),
        faults: faults.clone(),
        emulate: emulate.clone(),
        fields: fields.clone(),
        users: users.clone(),
        no_v3_invoices: args.no_v3_invoices,
    };
    let sandbox = Sandbox::start_on(config, args.listen)?;
    // The real CRM's key (SMBATCH_APIKEY with --fields-from) is never printed.
    let shown_key = (args.fields_from.is_none() || !key_from_env).then_some(apikey.as_str());
    if args.mode.json {
        let j = serde_json::json!({"url": sandbox.url(), "database": args.db, "login": login, "apikey": shown_key});
        println!("{j}");
    } else if !args.mode.quiet {
        print_banner(
            &args,
            &sandbox,
            &login,
            shown_key,
            &users,
            &faults,
            emulate.as_ref(),
        );
    }
    let rt = crate::job::runtime(None)?;
    rt.block_on(async {
        let _ = tokio::signal::ctrl_c().await;
    });
    sandbox.stop();
    if !args.mode.json && !args.mode.quiet {
        eprintln!("sandbox stopped");
    }
    Ok(Exit::Clean)
}

/// What the sandbox says when it starts: where it listens and how to connect.
fn print_banner(
    args: &SandboxArgs,
    sandbox: &Sandbox,
    login: &str,
    shown_key: Option<&str>,
    users: &[UserSpec],
    faults: &FaultConfig,
    emulate: Option<&EmulateConfig>,
) {
    // Printing the key is the point here: the user needs it to connect. It is the sandbox's
    // own key, never a real CRM's.
    println!("SalesMan sandbox listening on {}", sandbox.url());
    println!("  database: {}", args.db);
    println!("  login:    {login}");
    match shown_key {
        Some(apikey) => println!("  apikey:   {apikey}"),
        None => println!("  apikey:   the one in SMBATCH_APIKEY"),
    }
    for f in &args.fields {
        println!("  field:    {}.{} = {}", f.entity, f.name, f.title);
    }
    for u in users {
        let state = if u.active { "" } else { " (inactive)" };
        println!("  user:     {} = {}{state}", u.login, u.title);
    }
    if !faults.is_off() {
        println!("  faults:   {}", args.faults.as_deref().unwrap_or(""));
    }
    if let Some(e) = emulate {
        println!(
            "  emulate:  {} workers, {} cores, {} ms + {} ms/row CPU, {} ms + {} ms/row wait per request",
            e.workers, e.cores, e.request_ms, e.row_ms, e.wait_ms, e.wait_row_ms
        );
    }
    println!(
        "Try: SMBATCH_URL={} SMBATCH_LOGIN={} SMBATCH_APIKEY=... smbatch fields person",
        sandbox.url(),
        login
    );
    println!("Press Ctrl-C to stop.");
}
