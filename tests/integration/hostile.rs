//! Hostile files through `smbatch validate`: every readable file has all its data rows counted,
//! every unreadable one gets exit 2 and a clean message naming it — never a panic, never raw
//! bytes or control characters on the terminal. The corpus is generated here (tiny files, no
//! binaries in the repository).

use assert_cmd::Command;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const TEMPLATE: &str = r#"
[[entity]]
type = "person"
key = "{ID}"
[entity.fields]
person = { column = "Имя", required = true }
tel    = { column = "Телефон", transform = ["phone"] }
"#;

fn validate(file: &Path, template: &Path) -> (i32, String, String) {
    let out = Command::cargo_bin("smbatch")
        .unwrap()
        .env("SMBATCH_DATA_DIR", crate::common::data_dir())
        .args(["validate", "--json", "--template"])
        .arg(template)
        .arg(file)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("t.toml");
    std::fs::write(&t, TEMPLATE).unwrap();
    (dir, t)
}

/// A readable file: the exit code and every data row counted.
fn assert_rows(dir: &Path, t: &Path, name: &str, bytes: &[u8], code: i32, rows: u64) {
    let f = dir.join(name);
    std::fs::write(&f, bytes).unwrap();
    let (got, out, err) = validate(&f, t);
    assert_eq!(got, code, "{name}: {out}{err}");
    let v: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{name}: {e}: {out}{err}"));
    assert_eq!(v["rows_read"], rows, "{name}: {out}");
    assert!(!err.contains("panicked"), "{name}: {err}");
}

/// An unreadable file: exit 2, one clean line naming the file and saying what is wrong.
fn assert_fatal(dir: &Path, t: &Path, name: &str, bytes: &[u8], says: &str) -> String {
    let f = dir.join(name);
    std::fs::write(&f, bytes).unwrap();
    let (got, out, err) = validate(&f, t);
    assert_eq!(got, 2, "{name}: {out}{err}");
    assert!(err.contains(&f.display().to_string()), "{name}: {err}");
    assert!(err.contains(says), "{name}: {err}");
    assert!(!err.contains("panicked"), "{name}: {err}");
    // One line, no control characters, no undecodable bytes.
    let msg = err.trim_end_matches('\n');
    assert!(
        !msg.chars().any(|c| c.is_control() || c == '\u{FFFD}'),
        "{name}: {msg:?}"
    );
    msg.to_string()
}

fn csv(rows: &[[&str; 3]]) -> Vec<u8> {
    let mut w = csv::WriterBuilder::new()
        .delimiter(b';')
        .from_writer(Vec::new());
    w.write_record(["ID", "Имя", "Телефон"]).unwrap();
    for r in rows {
        w.write_record(r).unwrap();
    }
    w.into_inner().unwrap()
}

fn xlsx(rows: &[[&str; 3]]) -> Vec<u8> {
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet();
    for (c, h) in ["ID", "Имя", "Телефон"].iter().enumerate() {
        ws.write_string(0, c as u16, *h).unwrap();
    }
    for (r, row) in rows.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            ws.write_string(r as u32 + 1, c as u16, *v).unwrap();
        }
    }
    wb.save_to_buffer().unwrap()
}

/// The same package without one of its parts.
fn without_part(xlsx: &[u8], part: &str) -> Vec<u8> {
    let mut src = zip::ZipArchive::new(std::io::Cursor::new(xlsx)).unwrap();
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for i in 0..src.len() {
        let mut f = src.by_index(i).unwrap();
        if f.name() == part {
            continue;
        }
        let mut data = Vec::new();
        f.read_to_end(&mut data).unwrap();
        out.start_file(f.name(), zip::write::SimpleFileOptions::default())
            .unwrap();
        out.write_all(&data).unwrap();
    }
    out.finish().unwrap().into_inner()
}

fn utf16(text: &str, le: bool) -> Vec<u8> {
    text.encode_utf16()
        .flat_map(|u| if le { u.to_le_bytes() } else { u.to_be_bytes() })
        .collect()
}

#[test]
fn case_changing_letters_in_a_phone_column_no_longer_end_the_run_early() {
    // The issue's file: row 20,000's phone is "Kext İİ" (Kelvin sign), and every row after it
    // used to vanish behind a panic.
    let (dir, t) = setup();
    let mut text = String::from("ID;Имя;Телефон\n");
    for i in 1..=50_000 {
        let phone = if i == 19_999 {
            "\u{212A}ext İİ"
        } else {
            "8 342 200 00 00"
        };
        text.push_str(&format!("{i};Иванов {i};{phone}\n"));
    }
    assert_rows(dir.path(), &t, "50k.csv", text.as_bytes(), 0, 50_000);
}

#[test]
fn unusual_but_readable_text_is_read_row_by_row() {
    let (dir, t) = setup();
    let d = dir.path();
    let case = csv(&[
        ["1", "ǅemal Straße", "\u{212A}ext İİ"],
        ["2", "İIıi ﬃ ΐ", "8 342 200 00 00 ДОБ. 5"],
        ["3", "\u{212A}elvin", "+7 (342) 200-00-00 Ext 1"],
    ]);
    assert_rows(d, &t, "case.csv", &case, 0, 3);
    let marks = csv(&[
        ["1", "Йо\u{301}\u{308}\u{301}жик", "8 342 200 00 00"],
        ["2", "\u{300}\u{301}\u{302}", ""],
    ]);
    assert_rows(d, &t, "combining.csv", &marks, 0, 2);
    let invisible = csv(&[
        ["1", "\u{202E}вонавИ\u{202C}", "\u{200F}8 342 200 00 00"],
        ["2", "Ива\u{200D}нов\u{200B}", "\u{FEFF}"],
        ["3", "مرحبا \u{2067}Иван\u{2069}", "\u{2028}"],
    ]);
    assert_rows(d, &t, "rtl.csv", &invisible, 0, 3);
    let digits = csv(&[
        ["1", "Ширина", "８ ３４２ ２００ ００ ００"],
        ["2", "Араб", "٨ ٣٤٢ ٢٠٠ ٠٠ ٠٠"],
        ["3", "Фарси", "۸۳۴۲۲۰۰۰۰۰۰"],
    ]);
    assert_rows(d, &t, "digits.csv", &digits, 0, 3);
    // An emoji is a row error (the CRM rejects 4-byte characters), not the end of the file.
    let emoji = csv(&[["1", "Иван 😀", ""], ["2", "Пётр", ""]]);
    assert_rows(d, &t, "emoji.csv", &emoji, 1, 2);
}

#[test]
fn big_cells_quotes_and_newlines_stay_inside_their_row() {
    let (dir, t) = setup();
    let d = dir.path();
    let long = "Я".repeat(20_000);
    let big = csv(&[["1", &long, ""], ["2", "Пётр", ""]]);
    // Too long for the CRM's varchar(250): a row error, and the next row is still read.
    assert_rows(d, &t, "long.csv", &big, 1, 2);
    let quoted = "ID;Имя;Телефон\n1;\"Иванов\nИван\r\n\"\"Ваня\"\"\";\"8 342\n200 00 00\"\n2;\";;;\";\"\"\n3;\"\"\"\";x\n";
    assert_rows(d, &t, "quoted.csv", quoted.as_bytes(), 0, 3);
    // A quote left open swallows the rest of the file into one cell: still one row, not a crash.
    let open_quote = "ID;Имя;Телефон\n1;Иван;\"8 342\n2;Пётр;1\n";
    assert_rows(d, &t, "open-quote.csv", open_quote.as_bytes(), 0, 1);
}

#[test]
fn bom_less_utf16_is_read_as_utf16() {
    let (dir, t) = setup();
    let d = dir.path();
    let text = "ID;Имя;Телефон\r\n1;Иванов Иван;8 342 200 00 00\r\n2;Пётр 😀;\r\n";
    assert_rows(d, &t, "u16le.csv", &utf16(text, true), 1, 2);
    assert_rows(d, &t, "u16be.txt", &utf16(text, false), 1, 2);
    let out = Command::cargo_bin("smbatch")
        .unwrap()
        .env("SMBATCH_DATA_DIR", crate::common::data_dir())
        .args(["validate", "--template"])
        .arg(&t)
        .arg(d.join("u16le.csv"))
        .output()
        .unwrap();
    let (code, err) = (out.status.code(), String::from_utf8_lossy(&out.stderr));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("value 'Пётр 😀'"), "{err}");
}

#[test]
fn empty_header_only_and_headers_with_control_characters() {
    let (dir, t) = setup();
    let d = dir.path();
    assert_fatal(d, &t, "empty.csv", b"", "the file is empty");
    assert_rows(
        d,
        &t,
        "header-only.csv",
        "ID;Имя;Телефон\n".as_bytes(),
        0,
        0,
    );
    assert_rows(
        d,
        &t,
        "header-no-newline.csv",
        "ID;Имя;Телефон".as_bytes(),
        0,
        0,
    );
    let dup = "ID;Имя;Телефон;X\u{202E};X\u{202E}\n1;Иван;;;\n";
    let msg = assert_fatal(d, &t, "dup.csv", dup.as_bytes(), "duplicate column name");
    assert!(msg.contains("'X\\u{202e}'"), "{msg}");
}

#[test]
fn nul_bytes_and_binary_files_named_csv_are_refused_by_content() {
    let (dir, t) = setup();
    let d = dir.path();
    assert_fatal(
        d,
        &t,
        "nul.csv",
        b"ID;\xd0\x98\xd0\xbc\xd1\x8f;Tel\n1;\0\0\0;\n",
        "is not a text or spreadsheet file (it looks like binary data)",
    );
    let mut elf = b"\x7FELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x03\0\x3E\0".to_vec();
    elf.extend((0..2000u32).map(|i| (i * 31 % 256) as u8));
    assert_fatal(
        d,
        &t,
        "program.csv",
        &elf,
        "is not a text or spreadsheet file (it looks like an executable (ELF))",
    );
    assert_fatal(
        d,
        &t,
        "report.csv",
        b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n",
        "(it looks like a PDF document)",
    );
    let mut pe = b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xFF\xFF\0\0".to_vec();
    pe.resize(512, 0);
    assert_fatal(
        d,
        &t,
        "setup.txt",
        &pe,
        "(it looks like an executable (Windows))",
    );
    let png = b"\x89PNG\r\n\x1A\n\0\0\0\rIHDR";
    assert_fatal(d, &t, "photo.csv", png, "(it looks like a PNG image)");
}

#[test]
fn spreadsheets_are_read_by_content_whatever_their_name() {
    let (dir, t) = setup();
    let d = dir.path();
    let book = xlsx(&[
        ["1", "Иванов Иван", "8 342 200 00 00"],
        ["2", "\u{212A}elvin İ", "\u{212A}ext İİ"],
    ]);
    assert_rows(d, &t, "real.xlsx", &book, 0, 2);
    // Saved as .csv by a mail client: read as the XLSX it is, not as 'PK…' text.
    assert_rows(d, &t, "renamed.csv", &book, 0, 2);
    // Without shared strings the text cells are unreadable: rows or a clean error, no crash.
    let f = d.join("no-shared-strings.xlsx");
    std::fs::write(&f, without_part(&book, "xl/sharedStrings.xml")).unwrap();
    let (code, out, err) = validate(&f, &t);
    assert!(!err.contains("panicked"), "{err}");
    assert!(!err.chars().any(|c| c.is_control() && c != '\n'), "{err:?}");
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("no-shared-strings.xlsx"), "{err}");
}

#[test]
fn damaged_workbooks_give_a_clean_error() {
    let (dir, t) = setup();
    let d = dir.path();
    let book = xlsx(&[["1", "Иванов Иван", "8 342 200 00 00"]]);
    for (name, cut) in [
        ("half.xlsx", book.len() / 2),
        ("head.xlsx", 64),
        ("signature-only.csv", 4),
        ("almost.xlsx", book.len() - 10),
    ] {
        assert_fatal(d, &t, name, &book[..cut], "cannot read the workbook");
    }
    // An OLE2 header with nothing behind it (a broken .xls saved as .csv).
    let mut ole = b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1".to_vec();
    ole.resize(700, 0xFF);
    assert_fatal(d, &t, "broken-xls.csv", &ole, "cannot read the workbook");
    // A ZIP that is not a spreadsheet.
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    z.start_file("readme.txt", zip::write::SimpleFileOptions::default())
        .unwrap();
    z.write_all(b"hello").unwrap();
    let archive = z.finish().unwrap().into_inner();
    assert_fatal(d, &t, "archive.csv", &archive, "cannot read the workbook");
}

#[test]
fn template_errors_keep_their_layout_but_never_print_control_characters() {
    let (dir, _) = setup();
    let d = dir.path();
    let t = d.join("bad.toml");
    std::fs::write(&t, "[[entity]]\ntype = \"person\x1b[2J\n").unwrap();
    let f = d.join("ok.csv");
    std::fs::write(&f, "ID;Имя;Телефон\n1;Иван;\n").unwrap();
    let (code, out, err) = validate(&f, &t);
    assert_eq!(code, 2, "{out}{err}");
    // The TOML error's own lines (the offending line, a caret under it) stay lines.
    assert!(
        err.contains("bad.toml: not a valid template: TOML parse error at line 2"),
        "{err}"
    );
    assert!(
        err.contains("\\u{1b}[2J") && err.lines().count() > 2,
        "{err}"
    );
    assert!(!err.chars().any(|c| c.is_control() && c != '\n'), "{err:?}");
}

/// An ODS package: `mimetype` first and stored, as the format requires, a manifest, `content.xml`.
fn ods(rows: &str) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    z.start_file("mimetype", stored).unwrap();
    z.write_all(b"application/vnd.oasis.opendocument.spreadsheet")
        .unwrap();
    z.start_file(
        "META-INF/manifest.xml",
        zip::write::SimpleFileOptions::default(),
    )
    .unwrap();
    z.write_all(br#"<?xml version="1.0" encoding="UTF-8"?><manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2"><manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/><manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/></manifest:manifest>"#)
        .unwrap();
    z.start_file("content.xml", zip::write::SimpleFileOptions::default())
        .unwrap();
    write!(
        z,
        r#"<?xml version="1.0" encoding="UTF-8"?><office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"><office:body><office:spreadsheet><table:table table:name="Лист1">{rows}</table:table></office:spreadsheet></office:body></office:document-content>"#
    )
    .unwrap();
    z.finish().unwrap().into_inner()
}

fn ods_cell(v: &str) -> String {
    format!(
        r#"<table:table-cell office:value-type="string"><text:p>{v}</text:p></table:table-cell>"#
    )
}

#[test]
fn ods_is_read_by_content_and_repeat_bombs_are_refused() {
    let (dir, t) = setup();
    let d = dir.path();
    let row = |cells: [&str; 3]| {
        format!(
            "<table:table-row>{}</table:table-row>",
            cells.iter().map(|c| ods_cell(c)).collect::<String>()
        )
    };
    let book = ods(&format!(
        "{}{}{}<table:table-row table:number-rows-repeated=\"1048573\"><table:table-cell table:number-columns-repeated=\"16384\"/></table:table-row>",
        row(["ID", "Имя", "Телефон"]),
        row(["1", "Иванов Иван", "8 342 200 00 00"]),
        row(["2", "\u{212A}elvin", "\u{212A}ext İİ"]),
    ));
    // Named .xlsx, but its mimetype says ODS.
    assert_rows(d, &t, "calc.xlsx", &book, 0, 2);
    // One value repeated into a billion cells: refused before anything is expanded.
    let bomb = ods(&format!(
        "{}<table:table-row table:number-rows-repeated=\"1000000\"><table:table-cell table:number-columns-repeated=\"1000\" office:value-type=\"float\" office:value=\"1\"/></table:table-row>",
        row(["ID", "Имя", "Телефон"]),
    ));
    assert_fatal(d, &t, "bomb.csv", &bomb, "expands to more than");
}

#[test]
fn a_zip_bomb_named_xlsx_is_refused_before_it_is_inflated() {
    let (dir, t) = setup();
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    z.start_file(
        "xl/worksheets/sheet1.xml",
        zip::write::SimpleFileOptions::default(),
    )
    .unwrap();
    let zeros = vec![b' '; 1 << 20];
    for _ in 0..80 {
        z.write_all(&zeros).unwrap();
    }
    let bomb = z.finish().unwrap().into_inner();
    assert!(bomb.len() < 1 << 20);
    assert_fatal(dir.path(), &t, "bomb.xlsx", &bomb, "a ZIP bomb");
}
