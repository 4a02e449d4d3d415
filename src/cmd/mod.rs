//! One file per subcommand; each only wires pipeline stages together.

pub mod export;
pub mod fields;
pub mod import;
pub mod reconcile;
pub mod sandbox;
pub mod template;
pub mod validate;

use crate::cli::{Cli, Command};
use crate::{Exit, Result};

pub fn run(cli: Cli) -> Result<Exit> {
    match cli.command {
        Command::Sandbox(args) => sandbox::run(args),
        Command::Validate(args) => validate::run(args),
        Command::Import(args) => import::run(args),
        Command::Export(args) => export::run(args),
        Command::Reconcile(args) => reconcile::run(args),
        Command::Template(cmd) => template::run(cmd),
        Command::Fields(args) => fields::run(args),
    }
}
