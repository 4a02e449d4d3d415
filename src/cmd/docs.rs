//! `smbatch completions SHELL` and `smbatch man`: shell completions and man pages, generated
//! from the same clap definitions as `--help`, so they never drift from the tool.

use crate::{Error, Exit, Result};
use clap::{Args, CommandFactory};
use std::path::PathBuf;

pub const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  smbatch completions bash > ~/.local/share/bash-completion/completions/smbatch
  smbatch completions zsh > ~/.zfunc/_smbatch       # with fpath+=~/.zfunc in ~/.zshrc
  smbatch completions fish > ~/.config/fish/completions/smbatch.fish";

pub const MAN_EXAMPLES: &str = "\
Examples:
  smbatch man | man -l -                            # read it now
  smbatch man -o ~/.local/share/man/man1            # smbatch.1 and a page per command";

#[derive(Debug, Args)]
#[command(after_help = COMPLETIONS_EXAMPLES)]
pub struct CompletionsArgs {
    /// The shell to complete in
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
#[command(after_help = MAN_EXAMPLES)]
pub struct ManArgs {
    /// Write smbatch.1 and a page per command (smbatch-import.1, ...) into this directory
    /// (created if missing) instead of printing smbatch.1
    #[arg(long, short = 'o', value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Quiet: do not say where the pages were written
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// The completion script for the shell, on stdout.
pub fn completions(args: CompletionsArgs) -> Result<Exit> {
    let mut cmd = crate::cli::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "smbatch", &mut std::io::stdout());
    Ok(Exit::Clean)
}

/// The man page on stdout, or every page into a directory.
pub fn man(args: ManArgs) -> Result<Exit> {
    // As clap_mangen::generate_to prepares it, so the printed page is the one it writes.
    let mut cmd = crate::cli::Cli::command().disable_help_subcommand(true);
    cmd.build();
    let Some(dir) = args.output else {
        let mut out = std::io::stdout().lock();
        clap_mangen::Man::new(cmd)
            .render(&mut out)
            .map_err(|e| Error::Usage(format!("cannot print the man page: {e}")))?;
        return Ok(Exit::Clean);
    };
    let fail = |e: std::io::Error| Error::Usage(format!("{}: cannot write: {e}", dir.display()));
    std::fs::create_dir_all(&dir).map_err(fail)?;
    clap_mangen::generate_to(cmd, &dir).map_err(fail)?;
    if !args.quiet {
        eprintln!(
            "wrote {} and a page per command",
            dir.join("smbatch.1").display()
        );
    }
    Ok(Exit::Clean)
}
