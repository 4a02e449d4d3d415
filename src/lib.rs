//! smbatch: bulk data in and out of SalesMan CRM.
//!
//! The library is a pipeline (see `DESIGN.md`): `source` reads rows, `template` maps and validates
//! them into records, `crm` speaks HTTP, `upload`/`export`/`reconcile` orchestrate, `report` writes,
//! `sandbox` serves the same API from SQLite. `job` holds what each command does (ValidateJob,
//! ImportJob, ExportJob, ReconcileJob): plain inputs, typed outcomes.
//!
//! Layers, top to bottom; a module only uses the ones below it (a unit test below checks it):
//!
//! 1. `main.rs` → `cli` + `cmd/` — clap, printing, exit codes. Nothing else names `clap`,
//!    `crate::cli` or `crate::cmd`, and no command calls another's `run`.
//! 2. `job/` — the jobs; `config` resolves connections (no clap).
//! 3. `upload/`, `export/`, `reconcile/` — the stages.
//! 4. `template/`, `source/`, `crm/` — mapping and rules, readers, the HTTP client.
//! 5. `report/` — leaf sinks (XLSX, CSV, summary sheet, progress) fed plain rows; it imports
//!    no stage (only `crm::Entity` and `source`'s display helpers).
//!
//! `sandbox/` is its own server (it may use `crm` types and values).
//!
//! `values` (dates, phones, money, text) and `hash` are the layer under all of them (they import
//! nothing of the crate).

pub mod cli;
pub mod cmd;
pub mod config;
pub mod crm;
pub mod error;
pub mod export;
pub mod hash;
pub mod job;
pub mod reconcile;
pub mod report;
pub mod sandbox;
pub mod source;
pub mod template;
pub mod upload;
pub mod values;

pub use error::{Error, Result};

/// How a command ended, for the process exit code scripts rely on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything went through (exit code 0).
    Clean,
    /// The run finished but some rows failed or differ; the report says which (exit code 1).
    RowsFailed,
}

impl Exit {
    pub fn code(self) -> i32 {
        match self {
            Exit::Clean => 0,
            Exit::RowsFailed => 1,
        }
    }
}

#[cfg(test)]
mod layering {
    //! A cheap text check over the source tree: the layers above only point down.
    use std::path::{Path, PathBuf};

    fn files(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    /// Every source file under `src/`, as (path relative to src with `/`, code lines without
    /// comments).
    fn sources() -> Vec<(String, Vec<String>)> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut all = Vec::new();
        files(&src, &mut all);
        all.sort();
        all.into_iter()
            .map(|p| {
                let rel = p
                    .strip_prefix(&src)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                let text = std::fs::read_to_string(&p).unwrap();
                let code = text
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("//"))
                    .map(str::to_string)
                    .collect();
                (rel, code)
            })
            .collect()
    }

    fn violations(rule: &dyn Fn(&str, &str) -> bool) -> Vec<String> {
        let mut out = Vec::new();
        for (file, code) in sources() {
            for (i, line) in code.iter().enumerate() {
                if rule(&file, line) {
                    out.push(format!("{file}: {}", line.trim()));
                    let _ = i;
                }
            }
        }
        out
    }

    fn command_layer(file: &str) -> bool {
        // lib.rs declares the modules (and holds this test).
        file == "main.rs" || file == "lib.rs" || file == "cli.rs" || file.starts_with("cmd/")
    }

    #[test]
    fn nothing_below_the_command_layer_uses_clap_or_names_cli_or_cmd() {
        let bad = violations(&|file, line| {
            !command_layer(file)
                && (line.contains("crate::cmd")
                    || line.contains("crate::cli")
                    || line.contains("clap::")
                    || line.contains("use clap"))
        });
        assert!(
            bad.is_empty(),
            "below the command layer:\n{}",
            bad.join("\n")
        );
    }

    #[test]
    fn no_command_calls_another_commands_run() {
        let bad = violations(&|file, line| {
            file.starts_with("cmd/")
                && ["run(", "execute("].iter().any(|f| {
                    line.contains(&format!("super::import::{f}"))
                        || line.contains(&format!("cmd::import::{f}"))
                        || [
                            "validate",
                            "export",
                            "reconcile",
                            "fields",
                            "template",
                            "sandbox",
                        ]
                        .iter()
                        .any(|c| line.contains(&format!("super::{c}::{f}")))
                })
        });
        assert!(
            bad.is_empty(),
            "a command calls another:\n{}",
            bad.join("\n")
        );
    }

    #[test]
    fn lower_layers_do_not_import_higher_ones() {
        let stage = ["upload", "export", "reconcile"];
        let below_stages = ["template", "source", "crm"];
        let bad = violations(&|file, line| {
            let top = file.split('/').next().unwrap_or("");
            let top = top.trim_end_matches(".rs");
            let names = |m: &str| line.contains(&format!("crate::{m}"));
            if top == "report" {
                return [
                    "upload",
                    "export",
                    "reconcile",
                    "template",
                    "job",
                    "sandbox",
                    "config",
                ]
                .iter()
                .any(|m| names(m));
            }
            if below_stages.contains(&top) {
                return stage.iter().chain(&["job"]).any(|m| names(m));
            }
            if stage.contains(&top) || top == "config" {
                return names("job");
            }
            false
        });
        assert!(
            bad.is_empty(),
            "a lower layer imports a higher one:\n{}",
            bad.join("\n")
        );
    }

    #[test]
    fn no_source_file_is_over_1000_lines() {
        let long: Vec<String> = sources()
            .into_iter()
            .filter_map(|(f, _)| {
                let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(&f);
                let n = std::fs::read_to_string(path).unwrap().lines().count();
                (n > 1000).then(|| format!("{f}: {n} lines"))
            })
            .collect();
        assert!(long.is_empty(), "{}", long.join("\n"));
    }
}
