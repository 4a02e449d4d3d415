use crate::{Error, Exit, Result};
use clap::Args;

#[derive(Debug, Args)]
pub struct ImportArgs {}

pub fn run(_args: ImportArgs) -> Result<Exit> {
    Err(Error::Usage("'import' is not built yet".into()))
}
