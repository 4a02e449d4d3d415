use crate::{Error, Exit, Result};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// Write a starter template for an entity from a file's columns
    Init {},
}

pub fn run(_cmd: TemplateCommand) -> Result<Exit> {
    Err(Error::Usage("'template' is not built yet".into()))
}
