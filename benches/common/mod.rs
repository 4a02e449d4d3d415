//! What the benches (and the memory test, by `#[path]`) share: the persons template and input
//! they import, and a child's own exit code and rusage by wait4. Each includer uses a part.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;

/// Template mapping the persons input of [`write_persons`].
pub const PERSONS_TEMPLATE: &str = r#"
[source]
encoding = "utf-8"
delimiter = ";"

[[entity]]
type = "person"
key = "{mail}"
[entity.fields]
person = { column = "name", required = true }
ptitle = { column = "title" }
tel    = { column = "tel" }
mail   = { column = "mail" }
"#;

/// Write `rows` persons (name;title;tel;mail, distinct mails) to `path`, streamed.
pub fn write_persons(path: &Path, rows: usize) {
    let mut csv = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    csv.write_all("name;title;tel;mail\n".as_bytes()).unwrap();
    for i in 0..rows {
        writeln!(
            csv,
            "Сотрудник {i:06} Петрович;Менеджер по закупкам;+7 (342) 2{i:06};p{i}@example.com"
        )
        .unwrap();
    }
    csv.flush().unwrap();
}

/// Wait for a child and return (exit code, its own rusage): wait4 reports the one child's,
/// where RUSAGE_CHILDREN would mix every child's peak together.
pub fn wait_with_usage(child: std::process::Child) -> (i32, libc::rusage) {
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: plain syscall on a pid we spawned and have not waited for; both out-params are ours.
    unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (code, usage)
}

/// Peak RSS in MB of a rusage (ru_maxrss is in KB on Linux).
pub fn peak_mb(usage: &libc::rusage) -> f64 {
    usage.ru_maxrss as f64 / 1024.0
}
