use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = smbatch::cli::Cli::parse();
    // A panic is a bug, never a clean end: whatever thread it happens on, the run stops with
    // exit 2 and says so (the stages turn worker panics into errors naming the row).
    match std::panic::catch_unwind(|| cli.run()) {
        Ok(Ok(exit)) => ExitCode::from(exit.code() as u8),
        Ok(Err(smbatch::Error::AlreadyReported)) => ExitCode::from(2),
        Ok(Err(err)) => {
            eprintln!("smbatch: error: {err}");
            ExitCode::from(2)
        }
        Err(_) => {
            eprintln!(
                "smbatch: error: internal error (see the message above); the run stopped and did not finish"
            );
            ExitCode::from(2)
        }
    }
}
