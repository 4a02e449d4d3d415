//! Migrations (issue 13): `template init --from FILE` proposes a whole linked template from a
//! customer's export — keys from the data, owners mapped to the CRM's users — and `import` with
//! that template, unedited, builds the right records.

use crate::common::{against, root, say};
use serde_json::{json, Map, Value};
use smbatch::crm::{CrmClient, Entity, RetryPolicy};
use smbatch::sandbox::{Sandbox, SandboxConfig, UserSpec};
use std::path::{Path, PathBuf};
use std::process::Output;

fn start() -> Sandbox {
    Sandbox::start(SandboxConfig {
        users: vec![
            UserSpec::new("petrova@firm.ru", "Петрова Анна", true),
            UserSpec::new("semenov@firm.ru", "Семёнов Пётр", true),
        ],
        ..SandboxConfig::default()
    })
    .unwrap()
}

fn run(sb: &Sandbox, dir: &Path, args: &[&str]) -> Output {
    against(sb, args).current_dir(dir).output().unwrap()
}

fn list(sb: &Sandbox, entity: Entity) -> Vec<Map<String, Value>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = CrmClient::new(&sb.connection()).unwrap();
    let mut params = Map::new();
    params.insert("order".into(), json!(entity.id_field()));
    rt.block_on(client.list_page(entity, &params, 0, &RetryPolicy::immediate(1)))
        .unwrap()
        .rows
}

/// (company, INN, contact, phone, e-mail, owner, Excel day number, comment)
type Contact = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    f64,
    &'static str,
);

const ROWS: &[Contact] = &[
    (
        "ООО «Ромашка»",
        "7701234567",
        "Иванов Иван",
        "+7 900 111-11-11",
        "ivanov@romashka.ru",
        "Петрова Анна",
        45321.0,
        "Первый звонок",
    ),
    // The same contact again, the company spelled another way under the same INN.
    (
        "Ромашка",
        "7701234567",
        "Иванов Иван",
        "+7 900 111-11-11",
        "ivanov@romashka.ru",
        "петрова анна",
        45322.0,
        "Отправили КП",
    ),
    (
        "ООО «Ромашка»",
        "7701234567",
        "Смирнова Ольга",
        "+7 900 222-22-22",
        "smirnova@romashka.ru",
        "Петрова Анна",
        45323.0,
        "Счёт",
    ),
    // Namesakes of the first contact, both at another company: three different people.
    (
        "АО «Лютик»",
        "5904338272",
        "Иванов Иван",
        "+7 900 333-33-33",
        "ivanov@lutik.ru",
        "Семенов Петр",
        45324.0,
        "Встреча",
    ),
    (
        "АО «Лютик»",
        "5904338272",
        "Иванов Иван",
        "+7 900 444-44-44",
        "i.ivanov@lutik.ru",
        "Семенов Петр",
        45325.0,
        "Звонок",
    ),
];

/// A contacts export as a customer's XLSX: dates as Excel date cells.
fn write_export(dir: &Path) -> PathBuf {
    let path = dir.join("export.xlsx");
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet();
    let date = rust_xlsxwriter::Format::new().set_num_format("dd.mm.yyyy");
    let head = [
        "Компания",
        "ИНН",
        "Контактное лицо",
        "Телефон",
        "E-mail",
        "Ответственный",
        "Дата создания",
        "Комментарий",
    ];
    for (c, h) in head.iter().enumerate() {
        ws.write_string(0, c as u16, *h).unwrap();
    }
    for (i, r) in ROWS.iter().enumerate() {
        let row = i as u32 + 1;
        for (c, v) in [r.0, r.1, r.2, r.3, r.4, r.5].iter().enumerate() {
            ws.write_string(row, c as u16, *v).unwrap();
        }
        ws.write_number_with_format(row, 6, r.6, &date).unwrap();
        ws.write_string(row, 7, r.7).unwrap();
    }
    wb.save(&path).unwrap();
    path
}

#[test]
fn a_proposed_template_imports_a_contacts_export_with_no_hand_edits() {
    let sb = start();
    let dir = tempfile::tempdir().unwrap();
    let file = write_export(dir.path());
    let t = dir.path().join("migration.toml");
    let out = run(
        &sb,
        dir.path(),
        &[
            "template",
            "init",
            "--from",
            "export.xlsx",
            "-o",
            "migration.toml",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    // Every column is accounted for, every key explained with the records it gives.
    for line in [
        "'ИНН' → client recv.castInn and uid",
        "'Дата создания' → history datum",
        "client: key {ИНН} — an INN identifies a company",
        "2 client records from 5 rows",
        "person: key {E-mail}",
        "4 person records from 5 rows",
        "'Петрова Анна' (3 rows) → petrova@firm.ru",
        "'Семенов Петр' (2 rows) → semenov@firm.ru",
        "Rows: 5 read, 5 valid, 0 invalid",
    ] {
        assert!(err.contains(line), "missing {line:?}: {}", say(&out));
    }
    // The owner goes through the [users] table the proposal filled in.
    let text = std::fs::read_to_string(&t).unwrap();
    assert!(
        text.contains("user = { column = \"Ответственный\", users = true }"),
        "{text}"
    );

    let out = run(
        &sb,
        dir.path(),
        &[
            "import",
            &file.display().to_string(),
            "-t",
            "migration.toml",
            "--report",
            "r.xlsx",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));

    let clients = list(&sb, Entity::Client);
    assert_eq!(clients.len(), 2, "one client per INN: {clients:?}");
    let clid_of = |inn: &str| {
        let c = clients
            .iter()
            .find(|c| c["uid"] == inn)
            .unwrap_or_else(|| panic!("no client with uid {inn}: {clients:?}"));
        c["clid"].clone()
    };
    let persons = list(&sb, Entity::Person);
    assert_eq!(persons.len(), 4, "one person per contact: {persons:?}");
    let users = [("petrova@firm.ru", 2), ("semenov@firm.ru", 3)];
    for r in ROWS {
        let p = persons
            .iter()
            .find(|p| p["mail"] == r.4)
            .unwrap_or_else(|| panic!("no person {}: {persons:?}", r.4));
        assert_eq!(p["person"], r.2);
        assert_eq!(p["clid"], clid_of(r.1), "{} linked to its client", r.4);
        let login = if r.5.to_lowercase().starts_with("петрова") {
            "petrova@firm.ru"
        } else {
            "semenov@firm.ru"
        };
        let id = users.iter().find(|(l, _)| *l == login).unwrap().1;
        assert_eq!(p["iduser"], id, "{} owned by {login}", r.4);
    }
    // The clients are owned as well, and every comment is a dated history entry.
    for c in &clients {
        let want = if c["uid"] == "7701234567" { 2 } else { 3 };
        assert_eq!(c["iduser"], want, "{c:?}");
    }
}

#[test]
fn an_owner_no_user_matches_is_listed_and_its_rows_are_reported_before_import() {
    let sb = start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.csv"),
        "Компания;Контактное лицо;E-mail;Ответственный\nООО Ромашка;Иванов Иван;i@r.ru;Петрова Анна\nООО Лютик;Сидоров Олег;s@l.ru;Кузнецов Илья\n",
    )
    .unwrap();
    let out = run(
        &sb,
        dir.path(),
        &["template", "init", "--from", "c.csv", "-o", "t.toml"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", say(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("'Кузнецов Илья' (1 rows) → ?: no CRM user has this name")
            && err.contains("c.csv row 3 column 'Ответственный'")
            && err.contains("fill in \"Кузнецов Илья\" = \"login\""),
        "{}",
        say(&out)
    );
    let text = std::fs::read_to_string(dir.path().join("t.toml")).unwrap();
    assert!(text.contains("\"Кузнецов Илья\" = \"\""), "{text}");
    // Filled in, the template validates clean.
    std::fs::write(
        dir.path().join("t.toml"),
        text.replace(
            "\"Кузнецов Илья\" = \"\"",
            "\"Кузнецов Илья\" = \"semenov@firm.ru\"",
        ),
    )
    .unwrap();
    let out = run(&sb, dir.path(), &["validate", "c.csv", "-t", "t.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
}

#[test]
fn namesakes_in_one_company_without_e_mails_are_keyed_by_name_and_phone() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.csv"),
        "Компания;Контактное лицо;Телефон\nООО Ромашка;Иванов Иван;+7 900 111-11-11\nООО Ромашка;Иванов Иван;+7 900 222-22-22\nООО Лютик;Петров Пётр;+7 900 111-11-11\n",
    )
    .unwrap();
    let out = assert_cmd::Command::cargo_bin("smbatch")
        .unwrap()
        .current_dir(dir.path())
        .env("SMBATCH_CONFIG", "/nonexistent/smbatch.toml")
        .args(["template", "init", "--from", "c.csv"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("person: key {Контактное лицо} + {Телефон}")
            && err.contains("3 person records from 3 rows")
            && err.contains("would merge rows 2 and 3 whose Телефон differ"),
        "{}",
        say(&out)
    );
}

#[test]
fn each_preset_reads_its_sample_export() {
    let sb = start();
    for (preset, sample, persons) in [
        ("amocrm", "amocrm-contacts.csv", 3),
        ("bitrix24", "bitrix24-contacts.csv", 3),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let src = root().join("samples").join(sample);
        let out = run(
            &sb,
            dir.path(),
            &[
                "template",
                "init",
                "--preset",
                preset,
                "--from",
                &src.display().to_string(),
                "-o",
                "t.toml",
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{preset}: {}", say(&out));
        let text = std::fs::read_to_string(dir.path().join("t.toml")).unwrap();
        assert!(text.contains(&format!("# Preset {preset}")), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("{persons} person records")) && err.contains("0 invalid"),
            "{preset}: {}",
            say(&out)
        );
    }
}
