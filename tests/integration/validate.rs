//! `smbatch validate` and `smbatch template init` through the real CLI.

use crate::common::root;
use assert_cmd::Command;
use calamine::{open_workbook, Data, Reader, Xlsx};
use std::path::Path;

fn smbatch(args: &[&str]) -> (i32, String, String) {
    let out = Command::cargo_bin("smbatch")
        .unwrap()
        .env("SMBATCH_DATA_DIR", crate::common::data_dir())
        .current_dir(root())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.display().to_string()
}

fn sheet(path: &str, name: &str) -> Vec<Vec<String>> {
    let mut wb: Xlsx<_> = open_workbook(path).unwrap();
    let r = wb.worksheet_range(name).unwrap();
    r.rows()
        .map(|row| {
            row.iter()
                .map(|c| match c {
                    Data::Float(f) => f.to_string(),
                    Data::Empty => String::new(),
                    other => other.to_string(),
                })
                .collect()
        })
        .collect()
}

const PERSON_T: &str = r#"
[[entity]]
type = "person"
key = "{ID}"
[entity.fields]
person = { column = "ФИО", required = true }
mail = { column = "Почта", transform = ["trim", "lower"], check = "email" }
"#;

#[test]
fn cp1251_sample_is_sniffed_and_reports_cyrillic_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.xlsx").display().to_string();
    let csv = dir.path().join("r.csv").display().to_string();
    let (code, out, err) = smbatch(&[
        "validate",
        "samples/migration-cp1251.csv",
        "--template",
        "templates/migration-flat.toml",
        "--report",
        &report,
        "--csv-report",
        &csv,
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("windows-1251") && out.contains("delimiter ';'"),
        "{out}"
    );
    assert!(out.contains("Rows: 30 read"), "{out}");
    assert!(
        err.contains("value 'позвонить после обеда' is not a phone number"),
        "{err}"
    );
    let problems = sheet(&report, "Problems");
    assert_eq!(
        problems[0][..6],
        ["File", "Sheet", "Row", "Column", "Value", "Message"]
    );
    assert!(problems.iter().any(|r| r[2] == "27"
        && r[3] == "Телефон"
        && r[4] == "позвонить после обеда"
        && r[6] == "person"));
    assert!(problems
        .iter()
        .any(|r| r[4] == "31.02.2024 10:00" && r[5].contains("not a date")));
    let rows = sheet(&report, "Rows");
    assert_eq!(rows[0][3], "Компания");
    assert_eq!(rows.len(), 31);
    assert!(rows
        .iter()
        .any(|r| r[1] == "partly invalid" && r[3] == "ЗАО «Камский берег»"));
    let csv_text = std::fs::read_to_string(&csv).unwrap();
    assert!(csv_text.starts_with('\u{feff}') && csv_text.contains("petrova.example.ru"));
    assert!(std::fs::read_to_string(dir.path().join("r.rows.csv"))
        .unwrap()
        .contains("Иванов Иван Иванович"));
}

#[test]
fn all_samples_validate_with_some_invalid_rows() {
    for f in [
        "samples/migration-utf8-bom.csv",
        "samples/migration.xlsx",
        "samples/migration.xls",
    ] {
        let (code, out, err) = smbatch(&[
            "validate",
            f,
            "--template",
            "templates/migration-flat.toml",
            "--json",
        ]);
        assert_eq!(code, 1, "{f}: {out}{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["rows_read"], 30, "{f}");
        assert!(v["invalid_rows"].as_u64().unwrap() >= 4, "{f}");
        assert_eq!(
            v["entities"]["client"]["distinct_keys"], 6,
            "{f}: INN kept whole"
        );
    }
}

#[test]
fn utf16_tab_and_pipe_files_are_sniffed_and_all_valid_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let t = write(dir.path(), "t.toml", PERSON_T.as_bytes());
    let text = "ID\tФИО\tПочта\r\n1\tИванов Иван\tIvanov@Example.ru\r\n";
    let mut utf16 = vec![0xFF, 0xFE];
    for u in text.encode_utf16() {
        utf16.extend_from_slice(&u.to_le_bytes());
    }
    let f = write(dir.path(), "u16.csv", &utf16);
    let (code, out, err) = smbatch(&["validate", &f, "--template", &t]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("utf-16le") && out.contains("delimiter tab"),
        "{out}"
    );
    let f = write(
        dir.path(),
        "p.csv",
        "ID|ФИО|Почта\n1|\"Петров | Пётр\"|p@x.ru\n".as_bytes(),
    );
    let (code, out, _) = smbatch(&["validate", &f, "--template", &t]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("delimiter '|'"), "{out}");
}

#[test]
fn quoted_newlines_ragged_rows_and_row_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let t = write(dir.path(), "t.toml", PERSON_T.as_bytes());
    let csv = "ID,ФИО,Почта\n1,\"Иванов\nИван, \"\"Ваня\"\"\",a@b.ru\n2,Петров,p@b.ru,лишнее\n3,Сидоров\n4,,bad\n";
    let f = write(dir.path(), "r.csv", csv.as_bytes());
    let (code, _out, err) = smbatch(&["validate", &f, "--template", &t, "--delimiter", ","]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("row 3: warning: value 'лишнее' row has 4 cells"),
        "{err}"
    );
    assert!(err.contains("row 4: warning: row has 2 cells"), "{err}");
    assert!(
        err.contains("row 5 column 'ФИО' person: error: is required but empty"),
        "{err}"
    );
    assert!(
        err.contains("row 5 column 'Почта' person: error: value 'bad' is not a valid e-mail"),
        "{err}"
    );
}

#[test]
fn xlsx_dates_and_identifiers_survive() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.xlsx");
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet();
    ws.set_name("Данные").unwrap();
    let fmt = rust_xlsxwriter::Format::new().set_num_format("dd.mm.yyyy hh:mm");
    for (i, h) in ["ID", "Дата", "Содержание", "Телефон", "Код"]
        .iter()
        .enumerate()
    {
        ws.write_string(0, i as u16, *h).unwrap();
    }
    ws.write_number(1, 0, 1.0).unwrap();
    let dt = rust_xlsxwriter::ExcelDateTime::from_ymd(2024, 6, 25)
        .unwrap()
        .and_hms(14, 25, 0)
        .unwrap();
    ws.write_datetime_with_format(1, 1, &dt, &fmt).unwrap();
    ws.write_string(1, 2, "Звонок").unwrap();
    ws.write_number(1, 3, 79_012_345_678.0).unwrap();
    ws.write_string(1, 4, "007").unwrap();
    wb.save(&path).unwrap();
    let t = write(
        dir.path(),
        "t.toml",
        r#"
[[entity]]
type = "history"
key = "{ID}"
[entity.fields]
datum = { column = "Дата", required = true }
des = { value = "{Содержание} {Телефон} {Код}" }
"#
        .as_bytes(),
    );
    let report = dir.path().join("rep.xlsx").display().to_string();
    let (code, out, err) = smbatch(&[
        "validate",
        path.to_str().unwrap(),
        "--template",
        &t,
        "--sheet",
        "Данные",
        "--report",
        &report,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let rows = sheet(&report, "Rows");
    assert_eq!(rows[1][4], "2024-06-25 14:25:00");
    assert_eq!(rows[1][6], "79012345678");
    assert_eq!(rows[1][7], "007");
    let (code, _, err) = smbatch(&[
        "validate",
        path.to_str().unwrap(),
        "--template",
        &t,
        "--sheet",
        "Нет",
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("no sheet 'Нет'") && err.contains("Данные"),
        "{err}"
    );
}

#[test]
fn every_check_type_reports_its_problem() {
    let dir = tempfile::tempdir().unwrap();
    let t = write(
        dir.path(),
        "t.toml",
        r#"
[[entity]]
type = "deal"
key = "{ID}"
[entity.fields]
title = { column = "Name", max_length = 5 }
kol = { column = "Sum", check = "number" }
step = { column = "Step", one_of = ["1", "2"] }
uid = { column = "Code", regex = "[A-Z]{3}" }
datum_plan = { column = "Date", date = ["%d.%m.%Y"] }
tip = { column = "Phone", check = "phone" }
direction = { column = "Mail", check = "email" }
"#
        .as_bytes(),
    );
    let f = write(dir.path(), "c.csv", "ID;Name;Sum;Step;Code;Date;Phone;Mail\n1;ok;1 000,5;1;ABC;01.02.2024;+7 342 200 00 00;a@b.ru\n2;toolong;x;3;abcd;2024-99-99;call me;no\n3;😀;;;;;;\n".as_bytes());
    let (code, _, err) = smbatch(&["validate", &f, "--template", &t]);
    assert_eq!(code, 1);
    for m in [
        "value 'toolong' is 7 characters long; the CRM column holds at most 5",
        "value 'x' is not a number",
        "value '3' is not one of: 1, 2",
        "value 'abcd' does not match the pattern",
        "value '2024-99-99' is not a date",
        "value 'call me' is not a phone number",
        "value 'no' is not a valid e-mail address",
        "contains the character '😀'",
    ] {
        assert!(err.contains(m), "missing {m}: {err}");
    }
    assert!(!err.contains("row 2 column 'Name' deal: error: value 'ok'"));
}

#[test]
fn unusable_inputs_exit_2_and_say_where() {
    let dir = tempfile::tempdir().unwrap();
    let t = write(dir.path(), "t.toml", PERSON_T.as_bytes());
    let f = write(dir.path(), "x.csv", "ID;Имя;Почта\n1;a;b@c.ru\n".as_bytes());
    let (code, _, err) = smbatch(&["validate", &f, "--template", &t]);
    assert_eq!(code, 2);
    assert!(
        err.contains("person field 'person' names the column 'ФИО'")
            && err.contains("'ID', 'Имя', 'Почта'"),
        "{err}"
    );
    let bad = write(dir.path(), "bad.toml", b"[[entity]]\ntype = \"person\"\nkey = \"{ID}\"\n[entity.fields]\nmail = { column = \"A\", check = \"emial\" }\n");
    let (code, _, err) = smbatch(&["validate", &f, "--template", &bad]);
    assert_eq!(code, 2);
    assert!(
        err.contains("bad.toml") && err.contains("person field 'mail'") && err.contains("emial"),
        "{err}"
    );
    let (code, _, err) = smbatch(&["validate", "nope.csv", "--template", &t]);
    assert_eq!(code, 2);
    assert!(err.contains("nope.csv"), "{err}");
}

#[test]
fn template_init_matches_titles_and_lists_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.toml").display().to_string();
    let (code, _, err) = smbatch(&[
        "template",
        "init",
        "person",
        "--from",
        "samples/migration.xlsx",
        "-o",
        &out,
    ]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.contains("person   = { column = \"Контактное лицо\""),
        "{text}"
    );
    assert!(text.contains("mail     = { column = \"E-mail\""), "{text}");
    assert!(text.contains("# ??? = { column = \"ИНН\" }"), "{text}");
    let (code, _, err) = smbatch(&["validate", "samples/migration.xlsx", "--template", &out]);
    assert!(code == 0 || code == 1, "{err}");
}

fn smbatch_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::cargo_bin("smbatch").unwrap();
    cmd.env("SMBATCH_DATA_DIR", crate::common::data_dir());
    cmd.current_dir(root()).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const SERVER_T: &str = r#"name = "checked against a CRM"

[[entity]]
type = "person"
key = "{ID}"
[entity.fields]
person  = { column = "ФИО", required = true }
rol     = { column = "Роль" }
loyalty = { column = "Лояльность" }
clientpath = { value = "{ID}", map = { "1" = "Сайт" }, default = 0 }
user    = { column = "Ответственный" }

[[entity]]
type = "history"
key = "{ID}"
[entity.fields]
des  = { column = "Текст", required = true }
tip  = { column = "Тип" }
pid  = { ref = "person" }

[[entity]]
type = "task"
key = "{ID}"
[entity.fields]
title = { column = "Текст" }
datum = { value = "2030-01-01" }
tip   = { column = "Тип", map = { "Звонок" = "Звонок", "Письмо" = "Почта!" }, default = "Встреча" }
"#;

#[test]
fn url_checks_template_against_the_crm_without_writing() {
    use smbatch::sandbox::{Sandbox, SandboxConfig};
    let sb = Sandbox::start(SandboxConfig::default()).unwrap();
    let conn = sb.connection();
    let dir = tempfile::tempdir().unwrap();
    let t = write(dir.path(), "t.toml", SERVER_T.as_bytes());
    let f = write(
        dir.path(),
        "p.csv",
        format!(
            "ID;ФИО;Роль;Лояльность;Ответственный;Текст;Тип\n\
             1;Иванов Иван;ЛПР;Лояльный;{login};Позвонил;Звонок\n\
             2;Петров Пётр;;2;nobody@example.ru;Написал;Письмо\n",
            login = conn.login
        )
        .as_bytes(),
    );
    let url = sb.url();
    let report = dir.path().join("r.xlsx").display().to_string();
    let csv = dir.path().join("r.csv").display().to_string();
    let (code, out, err) = smbatch_env(
        &[
            "validate",
            &f,
            "--template",
            &t,
            "--url",
            &url,
            "--login",
            &conn.login,
            "--report",
            &report,
            "--csv-report",
            &csv,
        ],
        &[("SMBATCH_APIKEY", conn.apikey.expose())],
    );
    assert_eq!(code, 1, "{out}{err}");
    // The findings are in the report too: sheet "CRM check" and r.crm.csv.
    let crm = sheet(&report, "CRM check");
    assert_eq!(
        crm[0],
        ["Entity", "Field", "Template line", "Problem", "Fix"]
    );
    assert!(
        crm.iter()
            .any(|r| r[0] == "person" && r[1] == "rol" && r[2] == "8"),
        "{crm:?}"
    );
    let crm_csv = std::fs::read_to_string(dir.path().join("r.crm.csv")).unwrap();
    assert!(crm_csv.contains("nobody@example.ru"), "{crm_csv}");
    let all = format!("{out}\n{err}");
    // A field the CRM has disabled, with the template line and what to do.
    assert!(
        all.contains(&format!("{t}:8: person field 'rol'")) && all.contains("unknown or disabled"),
        "{all}"
    );
    // loyalty read as text from the file; clientpath mapped to text in the template.
    assert!(
        all.contains("person field 'loyalty'") && all.contains("'Лояльный'"),
        "{all}"
    );
    assert!(
        all.contains(&format!("{t}:10: person field 'clientpath'")) && all.contains("\"Сайт\""),
        "{all}"
    );
    // tip values: from the file (history, no map) and template constants (task map).
    assert!(
        all.contains("history field 'tip'") && all.contains("'Звонок'") && all.contains("'Письмо'"),
        "{all}"
    );
    assert!(
        all.contains("task field 'tip'") && all.contains("'Почта!'"),
        "{all}"
    );
    // Owner logins: the unknown one is named, the API user is fine.
    assert!(
        all.contains("person field 'user'") && all.contains("'nobody@example.ru'"),
        "{all}"
    );
    assert!(
        !all.contains(&format!("'{}' do not exist", conn.login)),
        "{all}"
    );
    assert!(out.contains(&format!("Checked against {url}")), "{out}");
    // Nothing was written.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = smbatch::crm::CrmClient::new(&conn).unwrap();
    let page = rt
        .block_on(client.list_page(
            smbatch::crm::Entity::Person,
            &serde_json::Map::new(),
            0,
            &smbatch::crm::RetryPolicy::immediate(1),
        ))
        .unwrap();
    assert!(page.rows.is_empty(), "{:?}", page.rows);

    // A template that fits the CRM passes the server check (exit 0 when the rows are valid).
    let ok = write(
        dir.path(),
        "ok.toml",
        "[[entity]]\ntype = \"person\"\nkey = \"{ID}\"\n[entity.fields]\nperson = \"ФИО\"\n\
         ptitle = { column = \"Роль\" }\n"
            .as_bytes(),
    );
    let (code, out, err) = smbatch_env(
        &[
            "validate",
            &f,
            "--template",
            &ok,
            "--url",
            &url,
            "--login",
            &conn.login,
        ],
        &[("SMBATCH_APIKEY", conn.apikey.expose())],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("fields, types and owners all match"), "{out}");
}

#[test]
fn template_init_with_url_uses_live_titles_and_skips_disabled_fields() {
    use smbatch::sandbox::{Sandbox, SandboxConfig};
    let sb = Sandbox::start(SandboxConfig::default()).unwrap();
    let conn = sb.connection();
    let dir = tempfile::tempdir().unwrap();
    // "Моб." and "Куратор" are the server's own titles; "Лояльность" is a disabled field there.
    let f = write(
        dir.path(),
        "h.csv",
        "ID;Ф.И.О.;Моб.;Лояльность\n1;Иванов;89120000000;3\n".as_bytes(),
    );
    let url = sb.url();
    let (code, out, err) = smbatch_env(
        &[
            "template",
            "init",
            "person",
            "--from",
            &f,
            "--url",
            &url,
            "--login",
            &conn.login,
        ],
        &[("SMBATCH_APIKEY", conn.apikey.expose())],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("mob      = { column = \"Моб.\""), "{out}");
    assert!(out.contains("person   = { column = \"Ф.И.О.\""), "{out}");
    assert!(out.contains("# ??? = { column = \"Лояльность\" }"), "{out}");
    assert!(!out.contains("loyalty"), "{out}");
}

#[test]
fn deal_template_links_every_deal_to_its_client() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "d.csv",
        "Номер;Сделка;Компания;ИНН;Дата план;Сумма;Этап\n\
         D-1;Поставка;ООО Ромашка;5902000001;01.07.2025;1 200,50;20\n\
         D-2;Монтаж;;;01.08.2025;500;20\n"
            .as_bytes(),
    );
    let (code, out, err) = smbatch(&[
        "validate",
        &f,
        "--template",
        "templates/deal.toml",
        "--json",
    ]);
    assert_eq!(code, 1, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["entities"]["deal"]["valid"], 1, "{out}");
    assert_eq!(v["entities"]["deal"]["invalid"], 1, "{out}");
    assert!(
        v["top_problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["message"] == "this row has no client record to reference"),
        "{out}"
    );
}

#[test]
fn shipped_migration_preset_matches_a_fresh_crm() {
    use smbatch::sandbox::{Sandbox, SandboxConfig};
    let sb = Sandbox::start(SandboxConfig::default()).unwrap();
    let conn = sb.connection();
    let url = sb.url();
    let (code, out, err) = smbatch_env(
        &[
            "validate",
            "samples/migration-cp1251.csv",
            "--template",
            "templates/migration-flat.toml",
            "--url",
            &url,
            "--login",
            &conn.login,
            "--json",
        ],
        &[("SMBATCH_APIKEY", conn.apikey.expose())],
    );
    // Exit 1 for the sample's deliberately bad rows, but nothing between template and CRM.
    assert_eq!(code, 1, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["server"], url.as_str(), "{out}");
    assert_eq!(v["server_findings"], serde_json::json!([]), "{out}");
}
