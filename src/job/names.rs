//! Default file names, in one place: the reports and journals a command writes when the user
//! names none.

use std::path::{Path, PathBuf};

/// The embedded sandbox's database when `--sandbox` names none.
pub const SANDBOX_DB: &str = "smbatch-sandbox.sqlite";
/// `reconcile`'s report when `--output` names none.
pub const RECONCILE_REPORT: &str = "reconcile.xlsx";

fn stem(path: &Path, fallback: &str) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| fallback.into())
}

/// `import`'s report: FILE-STEM.import-report.xlsx in the current directory.
pub fn import_report(input: &Path) -> PathBuf {
    PathBuf::from(format!("{}.import-report.xlsx", stem(input, "import")))
}

/// Where smbatch keeps what outlives a run (journals): `SMBATCH_DATA_DIR`, else the user's
/// data directory (`~/.local/share/smbatch` on Linux), else `.smbatch` here.
pub fn data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SMBATCH_DATA_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    dirs::data_local_dir()
        .map(|d| d.join("smbatch"))
        .unwrap_or_else(|| PathBuf::from(".smbatch"))
}

/// An import's journal when `--journal` names none: derived from the input file's content, the
/// template's and the target CRM, under [`data_dir`] — so the same command with another report
/// name continues the same run, and an edited file or another CRM starts a journal of its own.
pub fn default_journal(
    input: &Path,
    input_hash: &str,
    template_hash: &str,
    target: &str,
) -> PathBuf {
    let id =
        crate::hash::fingerprint(format!("{input_hash}\n{template_hash}\n{target}").as_bytes());
    let id: String = id
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(16)
        .collect();
    data_dir()
        .join("journals")
        .join(format!("{}-{id}.journal.sqlite", stem(input, "import")))
}

#[cfg(test)]
#[test]
fn default_journals_follow_content_template_and_target_not_the_report() {
    let a = default_journal(
        Path::new("data/клиенты.csv"),
        "h1",
        "t",
        "sandbox /x.sqlite",
    );
    assert_eq!(
        a,
        default_journal(
            Path::new("other/клиенты.csv"),
            "h1",
            "t",
            "sandbox /x.sqlite"
        )
    );
    assert_ne!(
        a,
        default_journal(
            Path::new("data/клиенты.csv"),
            "h2",
            "t",
            "sandbox /x.sqlite"
        )
    );
    assert_ne!(
        a,
        default_journal(Path::new("data/клиенты.csv"), "h1", "t", "https://crm as a")
    );
    let name = a.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("клиенты-") && name.ends_with(".journal.sqlite"),
        "{name}"
    );
}

/// A delete's backup next to its report: `out/del.xlsx` → `out/del.backup.xlsx`.
pub fn backup_next_to(report: &Path) -> PathBuf {
    report.with_file_name(format!("{}.backup.xlsx", stem(report, "delete")))
}

/// `delete`'s report: FILE-STEM.delete-report.xlsx in the current directory.
pub fn delete_report(input: &Path) -> PathBuf {
    PathBuf::from(format!("{}.delete-report.xlsx", stem(input, "delete")))
}

/// The journal `reconcile --fix` keeps next to its report when `--journal` names none.
pub fn fix_journal(reconcile_report: &Path) -> PathBuf {
    reconcile_report.with_file_name(format!(
        "{}.journal.sqlite",
        stem(reconcile_report, "reconcile")
    ))
}

/// The import report of `reconcile --fix`, next to the reconcile report.
pub fn fix_report(reconcile_report: &Path) -> PathBuf {
    reconcile_report.with_file_name(format!(
        "{}.fix-report.xlsx",
        stem(reconcile_report, "reconcile")
    ))
}

/// `export`'s output: ENTITY.xlsx, or export.xlsx for every entity.
pub fn export_output(entity: Option<crate::crm::Entity>) -> PathBuf {
    match entity {
        Some(e) => PathBuf::from(format!("{e}.xlsx")),
        None => PathBuf::from("export.xlsx"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_follow_the_input_and_report() {
        assert_eq!(
            import_report(Path::new("data/клиенты.csv")),
            PathBuf::from("клиенты.import-report.xlsx")
        );
        assert_eq!(
            fix_journal(Path::new("out/rec.xlsx")),
            PathBuf::from("out/rec.journal.sqlite")
        );
        assert_eq!(
            fix_report(Path::new("out/rec.xlsx")),
            PathBuf::from("out/rec.fix-report.xlsx")
        );
        assert_eq!(export_output(None), PathBuf::from("export.xlsx"));
    }
}
