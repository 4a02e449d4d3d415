//! The template is checked against the CRM's field list before the first write, and the
//! sandbox's field set is configurable (`--field`, stored in its database).

use crate::common::{against, offline, root, say};
use crate::import::p;
use assert_cmd::cargo::CommandCargoExt;
use serde_json::{json, Map, Value};
use smbatch::crm::{CrmClient, Entity, RetryPolicy};
use smbatch::sandbox::{FieldSpec, Sandbox, SandboxConfig};
use smbatch::template::server::ServerFacts;
use smbatch::template::Template;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A person template whose 5th line sends the e-mail column to `mail_field`, plus `extra`.
fn template(dir: &Path, mail_field: &str, extra: &str) -> PathBuf {
    let t = format!(
        "[[entity]]\ntype = \"person\"\nkey = \"{{E-mail}}\"\n[entity.fields]\n{mail_field} = {{ column = \"E-mail\" }}\nperson = {{ column = \"ФИО\", required = true }}\n{extra}"
    );
    let path = dir.join("persons.toml");
    std::fs::write(&path, t).unwrap();
    path
}

fn input(dir: &Path) -> PathBuf {
    let path = dir.join("persons.csv");
    std::fs::write(
        &path,
        "ФИО;E-mail;Дата рождения\nИванов Иван;ivanov@firm.ru;01.02.1990\nПетрова Анна;petrova@firm.ru;03.04.1985\n",
    )
    .unwrap();
    path
}

fn import(sb: &Sandbox, dir: &Path, tpl: &Path, more: &[&str]) -> Output {
    let (input, report) = (input(dir), dir.join("report.xlsx"));
    let args = [
        "import",
        p(&input),
        "--template",
        p(tpl),
        "--report",
        p(&report),
    ];
    against(sb, &[&args[..], more].concat()).output().unwrap()
}

/// Every person as `person/list` answers it (all fields it lists by default).
fn persons(sb: &Sandbox) -> Vec<Map<String, Value>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = CrmClient::new(&sb.connection()).unwrap();
    let mut params = Map::new();
    params.insert("order".into(), json!("pid"));
    params.insert("first".into(), json!("old"));
    rt.block_on(client.list_page(Entity::Person, &params, 0, &RetryPolicy::immediate(1)))
        .unwrap()
        .rows
}

#[test]
fn a_typo_in_a_template_field_stops_import_before_anything_is_sent() {
    let sb = Sandbox::start(SandboxConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tpl = template(dir.path(), "mial", "");
    let out = import(&sb, dir.path(), &tpl, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", say(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:5: person field 'mial'", tpl.display())),
        "names the template line\n{}",
        say(&out)
    );
    assert!(err.contains("did you mean `mail`"), "{}", say(&out));
    assert!(
        err.starts_with("smbatch: error:"),
        "the refusal comes before anything else\n{}",
        say(&out)
    );
    assert_eq!(
        err.matches("did you mean").count(),
        1,
        "said once\n{}",
        say(&out)
    );
    assert_eq!(sb.count(Entity::Person), 0, "nothing was created");
    // The report still accounts for every row: none was sent.
    assert!(dir.path().join("report.xlsx").exists(), "{}", say(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("not sent"),
        "{}",
        say(&out)
    );

    let out = import(&sb, dir.path(), &tpl, &["--allow-unknown-fields"]);
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("warning:"),
        "{}",
        say(&out)
    );
    assert_eq!(sb.count(Entity::Person), 2);
    // The server dropped the unknown field, exactly what the check warned about.
    assert!(persons(&sb)
        .iter()
        .all(|p| p["mail"].as_str().unwrap_or("").is_empty()));
}

#[test]
fn a_custom_field_is_refused_until_the_crm_has_it_switched_on() {
    let dir = tempfile::tempdir().unwrap();
    let tpl = template(
        dir.path(),
        "mail",
        "input1 = { column = \"Дата рождения\" }\n",
    );

    let fresh = Sandbox::start(SandboxConfig::default()).unwrap();
    let out = import(&fresh, dir.path(), &tpl, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", say(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(":7: person field 'input1'") && err.contains("field settings"),
        "{}",
        say(&out)
    );
    assert_eq!(fresh.count(Entity::Person), 0);

    let configured = Sandbox::start(SandboxConfig {
        fields: vec![FieldSpec::enabled(
            Entity::Person,
            "input1",
            "Дата рождения",
        )],
        ..SandboxConfig::default()
    })
    .unwrap();
    let out = import(&configured, dir.path(), &tpl, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    let list = persons(&configured);
    let ivanov = list
        .iter()
        .find(|p| p["person"] == "Иванов Иван")
        .unwrap_or_else(|| panic!("{list:?}"));
    assert_eq!(ivanov["input1"], "01.02.1990", "{ivanov:?}");
    assert_eq!(ivanov["mail"], "ivanov@firm.ru");
}

/// `smbatch sandbox --field` stores the setting in its database; `import --sandbox DB` later
/// starts its own sandbox on that file and sees it.
#[test]
fn sandbox_field_switch_is_kept_in_the_database_for_later_commands() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rehearsal.sqlite");
    // The banner is printed once the settings are stored and the server listens.
    let banner = sandbox_banner(
        &[
            "--db",
            db.to_str().unwrap(),
            "--field",
            "person.input1=Дата рождения",
        ],
        None,
    );
    assert!(
        banner.contains("field:    person.input1 = Дата рождения"),
        "{banner}"
    );

    let tpl = template(
        dir.path(),
        "mail",
        "input1 = { column = \"Дата рождения\" }\n",
    );
    let out = offline(dir.path(), &["import"])
        .arg(input(dir.path()))
        .arg("--template")
        .arg(&tpl)
        .arg("--report")
        .arg(dir.path().join("report.xlsx"))
        .arg("--sandbox")
        .arg(&db)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));

    let sb = Sandbox::start(SandboxConfig {
        db: db.display().to_string(),
        ..SandboxConfig::default()
    })
    .unwrap();
    let list = persons(&sb);
    assert_eq!(list.len(), 2, "{list:?}");
    let anna = list.iter().find(|p| p["person"] == "Петрова Анна").unwrap();
    assert_eq!(anna["input1"], "03.04.1985", "{anna:?}");
}

#[test]
fn reconcile_fix_refuses_a_template_with_unknown_fields_before_writing() {
    let sb = Sandbox::start(SandboxConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tpl = template(dir.path(), "mial", "");
    let out = Command::cargo_bin("smbatch")
        .unwrap()
        .arg("reconcile")
        .arg(input(dir.path()))
        .arg("--template")
        .arg(&tpl)
        .arg("--fix")
        .arg("-o")
        .arg(dir.path().join("reconcile.xlsx"))
        .arg("--url")
        .arg(sb.url())
        .arg("--login")
        .arg(sb.connection().login)
        .env("SMBATCH_APIKEY", sb.connection().apikey.expose())
        .env("SMBATCH_CONFIG", "/nonexistent/smbatch.toml")
        .env("SMBATCH_DATA_DIR", crate::common::data_dir())
        .env_remove("SMBATCH_PROFILE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", say(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("did you mean `mail`"),
        "{}",
        say(&out)
    );
    assert_eq!(sb.count(Entity::Person), 0);
}

/// The templates the tool ships write only fields a fresh SalesMan install has switched on.
#[test]
fn shipped_templates_pass_a_fresh_install() {
    let sb = Sandbox::start(SandboxConfig::default()).unwrap();
    let client = CrmClient::new(&sb.connection()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut seen = 0;
    for entry in std::fs::read_dir(root().join("templates")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        seen += 1;
        let t = Template::load(&path).unwrap();
        let facts = rt
            .block_on(ServerFacts::fetch_fields(
                &client,
                &t,
                &RetryPolicy::immediate(1),
            ))
            .unwrap();
        let unknown = facts.unknown_fields(&t);
        assert!(unknown.is_empty(), "{}: {unknown:?}", path.display());
    }
    assert!(seen >= 6, "the shipped templates are found");
}

/// Run `smbatch sandbox` with `args` until its banner is out (settings stored), then stop it.
fn sandbox_banner(args: &[&str], apikey: Option<&str>) -> String {
    let mut c = Command::cargo_bin("smbatch").unwrap();
    c.args(["sandbox", "--listen", "127.0.0.1:0"])
        .args(args)
        .env("SMBATCH_CONFIG", "/nonexistent/smbatch.toml")
        .env("SMBATCH_DATA_DIR", crate::common::data_dir())
        .env_remove("SMBATCH_PROFILE")
        .env_remove("SMBATCH_LOGIN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    match apikey {
        Some(k) => c.env("SMBATCH_APIKEY", k),
        None => c.env_remove("SMBATCH_APIKEY"),
    };
    let mut server = c.spawn().unwrap();
    let mut banner = String::new();
    for line in std::io::BufReader::new(server.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        banner.push_str(&line);
        banner.push('\n');
        if line.starts_with("Press Ctrl-C") {
            break;
        }
    }
    server.kill().unwrap();
    server.wait().unwrap();
    banner
}

#[test]
fn fields_from_copies_another_crms_field_set_without_printing_its_key() {
    let real = Sandbox::start(SandboxConfig {
        fields: vec![FieldSpec::enabled(Entity::Person, "input3", "Хобби")],
        ..SandboxConfig::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("copy.sqlite");
    let key = real.connection().apikey.expose().to_string();
    let banner = sandbox_banner(
        &[
            "--db",
            db.to_str().unwrap(),
            "--fields-from",
            &real.url(),
            "--login",
            &real.connection().login,
        ],
        Some(&key),
    );
    assert!(banner.contains("person: "), "{banner}");
    assert!(
        !banner.contains(&key),
        "the real CRM's key is not printed\n{banner}"
    );

    let copy = Sandbox::start(SandboxConfig {
        db: db.display().to_string(),
        ..SandboxConfig::default()
    })
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = CrmClient::new(&copy.connection()).unwrap();
    let fields = rt
        .block_on(client.fields(Entity::Person, &RetryPolicy::immediate(1)))
        .unwrap();
    assert!(
        fields
            .iter()
            .any(|f| f.name == "input3" && f.title == "Хобби"),
        "{fields:?}"
    );
    assert!(!fields.iter().any(|f| f.name == "input1"), "{fields:?}");
}
