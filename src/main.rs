use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = smbatch::cli::Cli::parse();
    match smbatch::cmd::run(cli) {
        Ok(exit) => ExitCode::from(exit.code() as u8),
        Err(err) => {
            eprintln!("smbatch: error: {err}");
            ExitCode::from(2)
        }
    }
}
